"""``type: git_repo``: an application deployed as a git clone (Klipper, moontwist, extensions).

Refresh reads the clone (branch, tracking remote, ``git describe`` version, modified and
untracked files), fetches its remote and works out the version to update to: the newest
commit of the branch (``dev``), the newest tag (``beta``), the newest release tag
(``stable``), or the ``pinned_commit``.  An update fetches and fast-forwards (or resets
to the target when the remote was force-pushed), installs new system packages and
Python requirements, then restarts the managed services; if any step fails the clone
goes back to the commit it was on.  ``recover`` resets the clone (soft) or clones it
again from origin keeping ``persistent_files`` (hard); ``rollback`` returns to the
commit before the last update.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any, ClassVar

from twisted.internet import threads

from moontwist.api.errors import ServerError
from moontwist.plugins.update_manager.base import AppUpdater, Manager, UpdaterOptions
from moontwist.plugins.update_manager.git import Git, GitError, normalize_url
from moontwist.plugins.update_manager.versions import UNKNOWN, GitVersion

__all__ = ["GitRepoUpdater"]

SOURCE_EXTENSIONS = (".py", ".c", ".cpp")
MAX_UNTAGGED_COMMITS = 30


class GitRepoUpdater(AppUpdater):
    """A git clone updated with fetch + fast-forward."""

    type_name: ClassVar[str] = "git_repo"
    default_channel: ClassVar[str] = "dev"

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        self._configure_path()
        self._configure_virtualenv()
        self._configure_dependencies()
        self._configure_services()
        origin = options.get("origin", None)
        self.origin: str | None = origin.strip() if origin else None
        options.get("moved_origin", None)
        self.primary_branch: str = options.get("primary_branch", "master")
        pinned = options.get("pinned_commit", None)
        if pinned is not None:
            pinned = pinned.strip().lower()
            if len(pinned) < 8 or not re.fullmatch(r"[0-9a-f]+", pinned):
                raise options.error("Value for option 'pinned_commit' must be a hash of at least 8 characters")
        self.pinned_commit: str | None = pinned
        self.persistent_files = [p.strip("/") for p in options.getlist("persistent_files", [])]
        for item in self.persistent_files:
            if not item or ".." in item.split("/") or item.split("/")[0] == ".git":
                raise options.error(f"Invalid value for option 'persistent_files': '{item}'")
        self.git = Git(manager, self.path, manager.fetch_timeout, manager.fetch_attempts)
        self._reset_state({})

    # state --------------------------------------------------------------------------

    def _reset_state(self, stored: dict[str, Any]) -> None:
        self.repo_valid: bool = stored.get("repo_valid", False)
        self.owner: str = stored.get("git_owner", UNKNOWN)
        self.repo_name: str = stored.get("git_repo_name", UNKNOWN)
        self.remote: str = stored.get("git_remote", UNKNOWN)
        self.branch: str = stored.get("git_branch", UNKNOWN)
        self.current_version = GitVersion(stored.get("full_version_string", UNKNOWN))
        self.upstream_version = GitVersion(stored.get("upstream_version", UNKNOWN))
        self.current_commit: str = stored.get("current_commit", UNKNOWN)
        self.upstream_commit: str = stored.get("upstream_commit", UNKNOWN)
        self.upstream_url: str = stored.get("upstream_url", UNKNOWN)
        self.recovery_url: str = stored.get("recovery_url", self.origin or UNKNOWN)
        self.detached: bool = stored.get("head_detached", False)
        self.git.messages = list(stored.get("git_messages", []))
        self.commits_behind: list[dict[str, Any]] = stored.get("commits_behind", [])
        self.commits_behind_count: int = stored.get("cbh_count", 0)
        self.diverged: bool = stored.get("diverged", False)
        self.git.corrupt = stored.get("corrupt", False)
        self.modified_files: list[str] = stored.get("modified_files", [])
        self.untracked_files: list[str] = stored.get("untracked_files", [])
        self.rollback_commit: str = stored.get("rollback_commit", self.current_commit)
        self.rollback_branch: str = stored.get("rollback_branch", self.branch)
        self.rollback_version = GitVersion(stored.get("rollback_version", self.current_version.full))
        self.pinned_commit_valid: bool = stored.get("pinned_commit_valid", True)
        self.stale_lock_removed = False
        self.warnings: list[str] = []
        self.anomalies: list[str] = []

    async def initialize(self, stored: dict[str, Any]) -> None:
        await super().initialize(stored)
        self._reset_state(stored)
        if self.git.git_dir is None:
            self.repo_valid = False
        self._check_warnings()
        self.is_valid = self._valid()

    def persistent(self) -> dict[str, Any]:
        return {
            **super().persistent(),
            "repo_valid": self.repo_valid,
            "git_owner": self.owner,
            "git_repo_name": self.repo_name,
            "git_remote": self.remote,
            "git_branch": self.branch,
            "full_version_string": self.current_version.full,
            "upstream_version": self.upstream_version.full,
            "current_commit": self.current_commit,
            "upstream_commit": self.upstream_commit,
            "rollback_commit": self.rollback_commit,
            "rollback_branch": self.rollback_branch,
            "rollback_version": self.rollback_version.full,
            "upstream_url": self.upstream_url,
            "recovery_url": self.recovery_url,
            "head_detached": self.detached,
            "git_messages": list(self.git.messages),
            "commits_behind": self.commits_behind,
            "cbh_count": self.commits_behind_count,
            "diverged": self.diverged,
            "corrupt": self.git.corrupt,
            "modified_files": self.modified_files,
            "untracked_files": self.untracked_files,
            "pinned_commit_valid": self.pinned_commit_valid,
        }

    @property
    def corrupt(self) -> bool:
        return self.git.corrupt

    @property
    def dirty(self) -> bool:
        return self.current_version.dirty

    def _valid(self) -> bool:
        detached_error = self.detached and not self.manager.debug
        return (
            UNKNOWN not in (self.branch, self.remote, self.upstream_commit)
            and self.repo_valid
            and not self.corrupt
            and not (self.diverged or self.dirty or detached_error)
        )

    def _check_warnings(self) -> None:
        warnings: list[str] = []
        anomalies: list[str] = []
        if self.pinned_commit is not None and not self.pinned_commit_valid:
            anomalies.append(f"Pinned Commit {self.pinned_commit} does not exist")
        if not self.repo_valid:
            warnings.append("No git repo detected at configured path")
        if self.corrupt:
            warnings.append("Repo is corrupt")
        if self.branch == UNKNOWN:
            warnings.append("Failed to detect git branch")
        elif self.remote == UNKNOWN:
            warnings.append(f"Failed to detect tracking remote for branch {self.branch}")
        elif self.branch != self.primary_branch or self.remote != "origin":
            anomalies.append(
                f"Repo not on official remote/branch, expected: origin/{self.primary_branch}, "
                f"detected: {self.remote}/{self.branch}"
            )
        if self.upstream_url == UNKNOWN:
            warnings.append("Failed to detect repo url")
        elif self.origin is not None and normalize_url(self.upstream_url) != normalize_url(self.origin):
            anomalies.append(f"Unofficial remote url: {self.upstream_url}")
        if self.untracked_files:
            anomalies.append(f"Repo has untracked source files: {self.untracked_files}")
        if self.diverged:
            anomalies.append("Repo has diverged from remote")
        if self.detached:
            (anomalies if self.manager.debug else warnings).append("Detached HEAD detected")
        if self.dirty:
            warnings.append(f"Repo is dirty.  Detected the following modified files: {self.modified_files}")
        if self.stale_lock_removed:
            anomalies.append("A stale git lock file (index.lock) was removed")
        self.warnings, self.anomalies = warnings, anomalies

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            {
                "detected_type": "git_repo",
                "repo_detected": self.repo_valid,
                "remote_alias": self.remote,
                "branch": self.branch,
                "owner": self.owner,
                "repo_name": self.repo_name,
                "remote_url": self.upstream_url,
                "recovery_url": self.recovery_url,
                "version": self.current_version.short,
                "remote_version": self.upstream_version.short,
                "rollback_version": self.rollback_version.short,
                "current_hash": self.current_commit,
                "remote_hash": self.upstream_commit,
                "is_dirty": self.dirty,
                "detached": self.detached,
                "commits_behind": self.commits_behind,
                "commits_behind_count": self.commits_behind_count,
                "git_messages": list(self.git.messages),
                "full_version_string": self.current_version.full,
                "pristine": not self.untracked_files and not self.dirty,
                "corrupt": self.corrupt,
                "warnings": list(self.warnings),
                "anomalies": list(self.anomalies) if self.report_anomalies else [],
                "name": self.name,
            }
        )
        return status

    # refresh --------------------------------------------------------------------------

    async def refresh(self) -> None:
        await self._refresh(fetch=True, raise_errors=False)

    async def _refresh(self, fetch: bool = True, raise_errors: bool = True) -> None:
        self.is_valid = False
        try:
            await self._read_repo(fetch)
        except (GitError, ServerError) as exc:
            self.log.info("Git repo {name}: refresh failed: {error}", name=self.name, error=exc.message)
            if raise_errors:
                raise
        finally:
            self._check_warnings()
            self.is_valid = self._valid()
            self.save()

    async def _read_repo(self, fetch: bool) -> None:
        self.pinned_commit_valid = True
        self.current_commit = self.upstream_commit = UNKNOWN
        self.current_version = self.upstream_version = GitVersion(UNKNOWN)
        self.commits_behind, self.commits_behind_count = [], 0
        self.git.messages.clear()
        if not await self._read_status():
            return
        await self._read_branch()
        if self.remote == UNKNOWN:
            raise ServerError(f"Git Repo {self.name}: No valid git remote detected")
        self.upstream_url = (await self.git.run("remote", "get-url", self.remote)).strip()
        remotes = (await self.git.run("remote")).split()
        if "origin" in remotes:
            origin_url = (await self.git.run("remote", "get-url", "origin")).strip()
            self.recovery_url = self.origin or origin_url
        else:
            self.recovery_url = self.origin or UNKNOWN
        if fetch:
            await self.fetch()
        tip = f"{self.remote}/{self.branch}"
        self.diverged = not self.detached and not await self.git.ok("merge-base", "--is-ancestor", "HEAD", tip)
        owner = re.match(r"https?://[^/]+/([^/]+)", self.upstream_url)
        self.owner = owner.group(1) if owner else UNKNOWN
        repo = re.match(r".*/([^./]+)[^/]*$", self.upstream_url.rstrip("/"))
        self.repo_name = repo.group(1) if repo else UNKNOWN
        self.current_commit = (await self.git.run("rev-parse", "HEAD")).strip()
        current = GitVersion(await self.git.run("describe", "--always", "--tags", "--long", "--dirty", "--abbrev=8"))
        upstream = await self._upstream_version(tip)
        await self._set_versions(current, upstream)
        if self.commits_behind_count > 0:
            await self._read_commits_behind(tip)
        self.git.corrupt = False
        if self.rollback_commit == UNKNOWN or self.rollback_branch == UNKNOWN:
            self._set_rollback(None)

    async def _read_status(self) -> bool:
        self.repo_valid = False
        if self.git.git_dir is None:
            self.log.info("Git repo {name}: '{path}' is not a git repo", name=self.name, path=self.path)
            return False
        if await self.git.clear_stale_lock(self.manager.lock_wait):
            self.stale_lock_removed = True
            self.log.warn("Git repo {name}: removed a stale index.lock", name=self.name)
        for attempt in range(2):
            try:
                out = await self.git.run("status", "--porcelain", "-b")
                break
            except GitError:
                if attempt or not self.git.corrupt:
                    raise
                # a power cut leaves empty loose objects: drop them and fetch them again
                if not await self._repair_loose_objects():
                    raise
        self.modified_files, self.untracked_files = [], []
        for line in out.splitlines():
            code, name = line[:2], line[3:].strip()
            if code == "##" or not name:
                continue
            if code == "??":
                if name.endswith(SOURCE_EXTENSIONS):
                    self.untracked_files.append(name)
            elif code != "!!":
                self.modified_files.append(name)
        self.repo_valid = True
        return True

    async def _repair_loose_objects(self) -> bool:
        self.notify("Attempting to repair loose objects...")
        removed = await self.git.remove_empty_objects()
        if not removed:
            return False
        try:
            await self.git.run("fetch", "--all", "--prune", stream=True)
            await self.git.run("fsck", "--full", timeout=300.0)
        except GitError:
            self.notify("Attempt to repair loose objects failed, hard recovery is required")
            return False
        self.git.corrupt = False
        self.notify("Loose objects repaired")
        return True

    async def _read_branch(self) -> None:
        out = await self.git.run("branch", "--list", "--no-color")
        current = UNKNOWN
        for line in out.splitlines():
            if line.startswith("*"):
                current = line[2:].strip()
        if current.startswith("("):
            self.detached = True
            ref = current.split()[-1].rstrip(")") if current.startswith("(HEAD detached") else ""
            for remote in (await self.git.run("remote")).split():
                if ref.startswith(remote + "/"):
                    self.remote, self.branch = remote, ref[len(remote) + 1:]
                    break
        else:
            self.detached = False
            self.branch = current
            self.remote = (await self.git.config_get(f"branch.{current}.remote")) or UNKNOWN if current != UNKNOWN else UNKNOWN

    async def _upstream_version(self, tip: str) -> GitVersion:
        describe = ("--always", "--tags", "--long", "--abbrev=8")
        if self.pinned_commit is not None:
            self.upstream_commit = self.current_commit
            if not self.current_commit.startswith(self.pinned_commit):
                if not await self.git.ok("cat-file", "-e", f"{self.pinned_commit}^{{commit}}"):
                    self.pinned_commit_valid = False
                elif await self.git.ok("merge-base", "--is-ancestor", self.current_commit, self.pinned_commit):
                    self.upstream_commit = (await self.git.run("rev-parse", self.pinned_commit)).strip()
            version = GitVersion(await self.git.run("describe", self.upstream_commit, *describe))
        elif self.channel == "dev":
            self.upstream_commit = (await self.git.run("rev-parse", tip)).strip()
            version = GitVersion(await self.git.run("describe", tip, *describe))
        else:
            version = GitVersion(UNKNOWN)
            self.upstream_commit = UNKNOWN
            # the highest version the channel accepts (tag dates can tie)
            for sha, tag in (await self.git.tagged_commits(tip)).items():
                candidate = GitVersion(tag)
                if not candidate.valid or (version.valid and candidate <= version):
                    continue
                if (self.channel == "stable" and candidate.is_final) or (self.channel == "beta" and not candidate.is_alpha):
                    self.upstream_commit, version = sha, candidate
        if self.upstream_commit != UNKNOWN:
            self.commits_behind_count = int((await self.git.run("rev-list", f"HEAD..{self.upstream_commit}", "--count")).strip())
        return version

    async def _set_versions(self, current: GitVersion, upstream: GitVersion) -> None:
        if not current.valid:
            # no tag reachable: count commits from the start and borrow the upstream's tag
            count = (await self.git.run("rev-list", "HEAD", "--count")).strip()
            tag = upstream.previous_tag() if upstream.valid else "v0.0.0"
            dirty = "-dirty" if current.dirty else ""
            current = GitVersion(f"{tag}-{count}-g{self.current_commit[:8]}{dirty}-inferred")
        if self.channel == "dev" and self.pinned_commit is None:
            if not upstream.valid:
                count = str(self.commits_behind_count + current.count)
                upstream = GitVersion(f"{current.tag}-{count}-inferred")
        elif not upstream.valid:
            self.upstream_commit, upstream = self.current_commit, current
        elif upstream <= current:
            self.upstream_commit = self.current_commit
            if self.pinned_commit is None:
                self.commits_behind_count = 0
        self.current_version, self.upstream_version = current, upstream

    async def _read_commits_behind(self, tip: str) -> None:
        target = tip if self.channel == "dev" and self.pinned_commit is None else self.upstream_commit
        commits = await self.git.commits_between(self.current_commit, target)
        tags = await self.git.tagged_commits(tip)
        kept = []
        for i, commit in enumerate(commits):
            tag = tags.get(commit["sha"])
            if i < MAX_UNTAGGED_COMMITS or tag is not None:
                kept.append({**commit, "tag": tag})
        self.commits_behind = kept

    # git operations ------------------------------------------------------------------

    async def fetch(self) -> None:
        await self.git.run("fetch", self.remote, "--prune", "--progress", notify=True, stream=True)

    def _rollback_state(self) -> dict[str, Any]:
        branch = self.branch
        if self.detached:
            branch = f"{self.remote}/{self.branch}" if UNKNOWN not in (self.remote, self.branch) else UNKNOWN
        return {"commit": self.current_commit, "branch": branch, "version": self.current_version}

    def _set_rollback(self, state: dict[str, Any] | None) -> None:
        state = state or self._rollback_state()
        self.rollback_commit = state["commit"]
        self.rollback_branch = state["branch"]
        self.rollback_version = state["version"]

    async def _reset_to(self, commit: str, branch: str | None = None) -> None:
        await self.git.clear_stale_lock(0)
        if branch and branch != self.branch:
            await self.git.run("checkout", "-q", branch)
        await self.git.run("reset", "--hard", commit, attempts=2)

    async def _check_clean(self) -> None:
        """Re-read the work tree: a file modified since the last refresh must not be overwritten."""
        if self.git.git_dir is None:
            return
        out = await self.git.run("status", "--porcelain", "--untracked-files=no")
        if out.strip():
            self.modified_files = [line[3:].strip() for line in out.splitlines() if line[3:].strip()]
            self.current_version.dirty = True
            self._check_warnings()
            self.is_valid = False
            self.save(refreshed=False)

    async def update(self) -> bool:
        if self.corrupt or not self.repo_valid:
            raise ServerError("Update aborted, repo not valid", 400)
        try:
            await self._check_clean()
        except GitError as exc:
            raise ServerError(f"Update aborted, repo not valid: {exc.message}", 400) from None
        if self.dirty:
            raise ServerError("Update aborted, repo has been modified", 400)
        if not self.is_valid:
            raise ServerError("Update aborted, repo not valid", 400)
        if self.current_commit == self.upstream_commit:
            return False
        self.notify(f"Updating Application {self.name}...")
        before = await self.collect_dependencies()
        previous = self._rollback_state()
        try:
            await self._pull()
            await self.update_dependencies(before)
        except Exception as exc:
            await self._undo(previous, exc)
            raise
        self._set_rollback(previous)
        await self._refresh(fetch=False)
        await self.restart_services()
        self.notify("Update Finished...", complete=True)
        return True

    async def _pull(self) -> None:
        self.notify("Updating Repo...")
        await self.fetch()
        target = self.upstream_commit
        if self.channel == "dev" and self.pinned_commit is None:
            target = f"{self.remote}/{self.branch}"
        if self.detached:
            await self.git.run("checkout", "-q", target)
        elif not await self.git.ok("merge-base", "--is-ancestor", "HEAD", target):
            self.notify("Repo has diverged, attempting git reset")
            await self.git.run("reset", "--hard", target)
        else:
            await self.git.run("merge", "--ff-only", "--no-edit", target, notify=True)

    async def _undo(self, previous: dict[str, Any], exc: Exception) -> None:
        """Put the clone back on the commit it was on before a failed update."""
        message = getattr(exc, "message", str(exc))
        self.notify(f"Update failed: {message}")
        if previous["commit"] == UNKNOWN:
            return
        self.notify(f"Restoring {self.name} to {previous['version'].short} ({previous['commit'][:8]})")
        try:
            await self._reset_to(previous["commit"])
        except GitError as undo_error:
            self.notify(f"Unable to restore the previous version: {undo_error.message}")
        await self._refresh(fetch=False, raise_errors=False)

    async def recover(self, hard: bool = False) -> None:
        self.notify("Attempting Repo Recovery...")
        before = await self.collect_dependencies()
        if hard:
            await self._clone()
            await self._refresh(fetch=False)
        else:
            self.notify("Resetting Git Repo...")
            await self.git.clear_stale_lock(0)
            if self.git.git_dir is None:
                raise ServerError(f"Git Repo {self.name}: no git repo at {self.path}, a hard recovery is required", 400)
            ref = await self._recovery_ref()
            try:
                await self.git.run("checkout", "--", ".")
            except GitError:
                pass
            await self.git.run("checkout", "-q", self.primary_branch)
            await self.git.run("reset", "--hard", ref, attempts=2)
            await self._refresh(fetch=True)
        self._set_rollback(None)
        self.save(refreshed=False)
        if self.dirty or not self.is_valid:
            raise ServerError("Recovery attempt failed, repo state not pristine", 500)
        await self.update_dependencies(before)
        await self.restart_services()
        self.notify("Reinstall Complete", complete=True)

    async def _recovery_ref(self, upstream: str | None = None) -> str:
        if upstream is None:
            remote = await self.git.config_get(f"branch.{self.primary_branch}.remote")
            if remote is None:
                raise ServerError(f"Failed to find remote for primary branch '{self.primary_branch}'", 400)
            upstream = f"{remote}/{self.primary_branch}"
        for commit in (self.pinned_commit, self.current_commit):
            if commit and commit != UNKNOWN:
                try:
                    if await self.git.ok("merge-base", "--is-ancestor", commit, upstream):
                        return commit
                except GitError:
                    pass
        return upstream

    async def _clone(self) -> None:
        git_dir = self.git.git_dir
        if git_dir is not None and os.path.basename(os.path.dirname(git_dir)) in ("modules", "worktrees"):
            raise ServerError(f"Cannot clone git repo {self.name}, it is a submodule or worktree of another repo", 400)
        if self.recovery_url == UNKNOWN:
            raise ServerError("Recovery url has not been detected, clone aborted", 400)
        parent, base = os.path.split(self.path.rstrip("/"))
        staging = await threads.deferToThread(tempfile.mkdtemp, prefix=f".{base}_repo_backup.", dir=parent)
        clone_path = os.path.join(staging, base)
        self.notify(f"Git Repo {self.name}: Starting Clone Recovery...")
        try:
            try:
                await self.git.run(
                    "clone", "--branch", self.primary_branch, "--progress", self.recovery_url, clone_path,
                    notify=True, stream=True, cwd_arg=False, attempts=1,
                )
            except GitError as exc:
                self.notify(f"Git Repo {self.name}: Git Clone Failed")
                raise ServerError(f"Git Clone Error: {exc.message}", 500) from None
            await threads.deferToThread(self._swap_in_clone, clone_path, staging)
        finally:
            await threads.deferToThread(shutil.rmtree, staging, True)
        self.git.corrupt = False
        self.repo_valid = True
        self.notify(f"Git Repo {self.name}: Git Clone Complete")
        if self.current_commit != UNKNOWN:
            ref = await self._recovery_ref("HEAD")
            if ref != "HEAD":
                self.notify(f"Git Repo {self.name}: Moving HEAD to previous commit {self.current_commit}")
                await self.git.run("reset", "--hard", ref)

    def _swap_in_clone(self, clone_path: str, staging: str) -> None:
        """Replace the damaged clone by the fresh one, carrying ``persistent_files`` over."""
        old = os.path.join(staging, "previous")
        if os.path.exists(self.path):
            os.replace(self.path, old)
        try:
            for item in self.persistent_files:
                src = os.path.join(old, item)
                if os.path.lexists(src):
                    dest = os.path.join(clone_path, item)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    if os.path.lexists(dest):
                        shutil.rmtree(dest) if os.path.isdir(dest) and not os.path.islink(dest) else os.remove(dest)
                    os.replace(src, dest)
            os.replace(clone_path, self.path)
        except OSError:
            if os.path.exists(old) and not os.path.exists(self.path):
                os.replace(old, self.path)
            raise

    async def rollback(self) -> bool:
        if UNKNOWN in (self.rollback_commit, self.rollback_branch):
            raise ServerError("Incomplete rollback data stored, cannot rollback", 400)
        await self._check_clean()
        if self.dirty:
            raise ServerError("Rollback aborted, repo has been modified", 400)
        if self.rollback_branch == self.branch and self.rollback_commit == self.current_commit:
            self.notify("Rollback not performed", complete=True)
            return False
        before = await self.collect_dependencies()
        previous = self._rollback_state()
        self.notify(f"Rolling back {self.name} to {self.rollback_version.short}...")
        try:
            await self._reset_to(self.rollback_commit, self.rollback_branch)
            await self.update_dependencies(before)
        except Exception as exc:
            await self._undo(previous, exc)
            raise
        await self._refresh(fetch=False)
        await self.restart_services()
        self.notify("Rollback Complete", complete=True)
        return True
