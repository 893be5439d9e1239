"""``type: python``: a Python application pip-installed in its own virtualenv.

The installed distribution tells where it came from: a package index (PyPI or whatever
``pip_environment_variables`` point pip at) or a git URL (``direct_url.json``).  For an
index, a refresh asks pip itself (``install --dry-run --report``) what it would install;
for git, GitHub's API (github.com URLs) or ``git ls-remote`` (any other URL).  An update is
``pip install -U``; the version it replaced is kept for ``rollback``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from moontwist import jsonutil
from moontwist.api.errors import ServerError
from moontwist.plugins.update_manager.base import AppUpdater, Manager, UpdaterOptions
from moontwist.plugins.update_manager.dependencies import packages_from_json
from moontwist.plugins.update_manager.process import ProcessError
from moontwist.plugins.update_manager.versions import UNKNOWN, GitVersion, PyVersion

__all__ = ["PythonUpdater", "INSPECT_SCRIPT"]

# Run by the virtualenv's interpreter: what importlib.metadata knows about one distribution.
INSPECT_SCRIPT = r"""
import json, sys
from importlib import metadata
try:
    dist = metadata.distribution(sys.argv[1])
except metadata.PackageNotFoundError:
    print(json.dumps(None)); sys.exit(0)
info = {"version": dist.version, "urls": dist.metadata.get_all("Project-URL") or [],
        "direct_url": None, "release_info": None}
try:
    text = dist.read_text("direct_url.json")
    info["direct_url"] = json.loads(text) if text else None
except ValueError:
    pass
for top in (dist.read_text("top_level.txt") or "").split():
    try:
        info["release_info"] = json.loads(dist.locate_file(top + "/release_info").read_text())
        break
    except (OSError, ValueError):
        pass
print(json.dumps(info))
"""
_GITHUB_RE = re.compile(r"(?:git\+)?https://(?:www\.)?github\.com/(?P<owner>[^/]+)/(?P<proj>[^/@#]+?)(?:\.git)?(?:[@#/].*)?$", re.I)


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PythonUpdater(AppUpdater):
    """A pip-installed application, updated with pip."""

    type_name: ClassVar[str] = "python"

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        self._configure_virtualenv()
        if self.virtualenv is None:
            raise options.error("Option 'virtualenv' must specify a valid the path to a Python virtualenv")
        self.path = self.virtualenv
        self._configure_services()
        self.primary_branch: str | None = options.get("primary_branch", None)
        project = options.get("project_name", name)
        match = re.match(r"([^[]+)\[([^]]+)\]", project)
        self.project_name, self.extras = (match.group(1), match.group(2)) if match else (project, None)
        self.source = "unknown"
        self.repo_url = ""
        self.repo_owner = UNKNOWN
        self.repo_name = UNKNOWN
        self.current_version = PyVersion(UNKNOWN)
        self.git_version = GitVersion(UNKNOWN)
        self.current_sha = UNKNOWN
        self.upstream_version = PyVersion(UNKNOWN)
        self.upstream_sha = UNKNOWN
        self.rollback_version = PyVersion(UNKNOWN)
        self.rollback_ref = UNKNOWN
        self.changelog = ""
        self.system_packages: list[str] = []
        self.warnings: list[str] = []

    async def initialize(self, stored: dict[str, Any]) -> None:
        await super().initialize(stored)
        self.upstream_sha = stored.get("upstream_commit", UNKNOWN)
        self.upstream_version = PyVersion(stored.get("upstream_version", UNKNOWN))
        self.rollback_ref = stored.get("rollback_ref", UNKNOWN)
        self.rollback_version = PyVersion(stored.get("rollback_version", UNKNOWN))
        await self._read_local()

    def persistent(self) -> dict[str, Any]:
        return {
            **super().persistent(),
            "upstream_commit": self.upstream_sha,
            "upstream_version": self.upstream_version.full,
            "rollback_ref": self.rollback_ref,
            "rollback_version": self.rollback_version.full,
        }

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            {
                "detected_type": "python_package",
                "name": self.name,
                "branch": self.primary_branch,
                "owner": self.repo_owner,
                "repo_name": self.repo_name,
                "version": self.current_version.short,
                "remote_version": self.upstream_version.short,
                "rollback_version": self.rollback_version.short,
                "current_hash": self.current_sha,
                "remote_hash": self.upstream_sha,
                "is_dirty": self.git_version.dirty,
                "changelog_url": self.changelog,
                "full_version_string": self.current_version.full,
                "pristine": not self.git_version.dirty,
                "warnings": list(self.warnings),
            }
        )
        return status

    # the installed distribution -------------------------------------------------------------

    async def _inspect(self) -> dict[str, Any] | None:
        assert self.python is not None
        result = await self.manager.run([self.python, "-c", INSPECT_SCRIPT, self.project_name], timeout=60.0, notify=False)
        data = jsonutil.loads(result.stdout)
        return data if isinstance(data, dict) else None

    def _url(self, keys: tuple[str, ...], info: dict[str, Any]) -> str:
        release = info.get("release_info")
        if isinstance(release, dict) and isinstance(release.get("urls"), dict):
            for key, url in release["urls"].items():
                if key.lower() in keys:
                    return str(url)
        for entry in info.get("urls") or []:
            key, _, url = str(entry).partition(",")
            if key.strip().lower() in keys:
                return url.strip()
        return ""

    async def _read_local(self) -> None:
        self.warnings = []
        self.is_valid = False
        try:
            info = await self._inspect()
        except (ProcessError, ValueError) as exc:
            self.warnings.append(f"Failed to read package info: {getattr(exc, 'message', exc)}")
            return
        if info is None:
            self.warnings.append(f"Package '{self.project_name}' is not installed in {self.virtualenv}")
            return
        self.current_sha = UNKNOWN
        self.git_version = GitVersion(UNKNOWN)
        direct = info.get("direct_url")
        release = info.get("release_info") if isinstance(info.get("release_info"), dict) else None
        if direct is None:
            self.source = "pip"
            self.repo_url = self._url(("repository", "repo"), info)
        else:
            vcs = direct.get("vcs_info") or {}
            if vcs.get("vcs") != "git" or "url" not in direct:
                self.source = "unknown"
                self.warnings.append(f"Package installed from source other than pypi or git: {direct}")
            else:
                self.source = "git"
                self.repo_url = str(direct["url"])
                self.current_sha = str(vcs.get("commit_id", UNKNOWN))
        match = _GITHUB_RE.match(self.repo_url)
        self.repo_owner, self.repo_name = (match["owner"], match["proj"]) if match else (UNKNOWN, UNKNOWN)
        self.current_version = PyVersion(str(info.get("version", "")))
        if not self.current_version.valid:
            self.warnings.append("Failed to parse package version")
        if release is not None:
            if self.current_sha == UNKNOWN:
                self.current_sha = str(release.get("commit_sha", UNKNOWN))
            self.git_version = GitVersion(str(release.get("git_version", UNKNOWN)))
            self.system_packages = packages_from_json(release.get("system_dependencies"), self.manager.distro)
        if self.current_sha == UNKNOWN and self.source != "git":
            self.current_sha = "not-specified"
        self.changelog = self._url(("changelog",), info)
        self.is_valid = not self.warnings

    # refresh --------------------------------------------------------------------------------

    async def refresh(self) -> None:
        try:
            await self._read_local()
            if self.source == "pip":
                await self._refresh_index()
            elif self.source == "git":
                await self._refresh_git()
        except ServerError as exc:
            self.log.info("Python package {name}: refresh failed: {error}", name=self.name, error=exc.message)
        self.save()

    async def _refresh_index(self) -> None:
        args = ["install", "-U", "--quiet", "--disable-pip-version-check", "--dry-run", "--no-deps", "--report", "-"]
        if self.channel == "beta":
            args.append("--pre")
        result = await self.manager.run([*self.pip_command(), *args, normalize_name(self.project_name)],
                                        env=self.pip_env, timeout=600.0, notify=False)
        try:
            report = jsonutil.loads(result.stdout[result.stdout.find("{"):])
        except ValueError:
            raise ServerError("pip printed no installation report") from None
        wanted = normalize_name(self.project_name)
        for item in report.get("install") or []:
            meta = item.get("metadata") or {}
            if normalize_name(str(meta.get("name", ""))) == wanted:
                self.upstream_version = PyVersion(str(meta.get("version", UNKNOWN)))
                break
        else:
            self.upstream_version = self.current_version
        newer = self.upstream_version.valid and self.current_version.valid and self.current_version < self.upstream_version
        self.upstream_sha = "update-available" if newer else self.current_sha

    async def _refresh_git(self) -> None:
        if self.channel == "dev":
            ref = f"refs/heads/{self.primary_branch}" if self.primary_branch else "HEAD"
            out = (await self.manager.run(["git", "ls-remote", self._git_url(), ref], timeout=60.0, notify=False)).stdout
            sha = out.split()[0] if out.split() else UNKNOWN
            self.upstream_sha = sha
            self.upstream_version = self.current_version
            if sha not in (UNKNOWN, self.current_sha) and self.current_version.valid:
                self.upstream_version = PyVersion(f"{self.current_version.full.split('+')[0]}+g{sha[:8]}")
            return
        if self.repo_owner != UNKNOWN:
            resource = f"repos/{self.repo_owner}/{self.repo_name}/releases/" + ("latest" if self.channel == "stable" else "?per_page=1")
            release = await self.manager.github.api(resource.replace("/?", "?"))
            if isinstance(release, list):
                release = release[0] if release else {}
            tag = str(release.get("tag_name", "")) if isinstance(release, dict) else ""
        else:
            out = (await self.manager.run(["git", "ls-remote", "--tags", "--refs", self._git_url()], timeout=60.0, notify=False)).stdout
            tags = [PyVersion(line.split("refs/tags/")[-1]) for line in out.splitlines() if "refs/tags/" in line]
            tags = [t for t in tags if t.valid and (self.channel == "beta" or not (t.version and t.version.is_prerelease))]
            tag = max(tags).full if tags else ""
        if not tag:
            self.upstream_version, self.upstream_sha = self.current_version, self.current_sha
            return
        self.upstream_version = PyVersion(tag)
        newer = self.upstream_version.valid and self.current_version.valid and self.current_version < self.upstream_version
        self.upstream_sha = "update-available" if newer else self.current_sha

    def _git_url(self) -> str:
        return self.repo_url[len("git+"):] if self.repo_url.startswith("git+") else self.repo_url

    # update ---------------------------------------------------------------------------------

    def _requirement(self, rollback: bool) -> str:
        name = normalize_name(self.project_name) + (f"[{self.extras}]" if self.extras else "")
        if self.source == "pip":  # exactly the version the refresh reported
            return f"{name}=={self.rollback_ref if rollback else self.upstream_version.full}"
        if rollback:
            ref = self.rollback_ref
        elif self.channel == "dev":
            ref = self.primary_branch or self.upstream_sha
        else:
            ref = self.upstream_version.full
        return f"{name} @ git+{self._git_url()}@{ref}"

    async def update(self, rollback: bool = False) -> bool:
        if self.source not in ("pip", "git"):
            raise ServerError("Cannot update, package source is unknown", 400)
        target = self.rollback_version if rollback else self.upstream_version
        if not target.valid or (self.current_version.valid and self.current_version == target and self.upstream_sha != "update-available" and not rollback):
            return False
        if rollback and self.current_version == target:
            return False
        previous_version, previous_ref = self.current_version, self.current_version.full
        if self.source == "git" and self.current_sha not in (UNKNOWN, "not-specified"):
            previous_ref = self.current_sha
        previous_packages = list(self.system_packages)
        args = ["-U", "--upgrade-strategy", "eager"]
        if self.channel == "beta" and self.source == "pip":
            args.append("--pre")
        self.notify(f"Updating Python Package {self.name} from {self.source.upper()}...")
        await self.pip_install([*args, self._requirement(rollback)])
        await self._read_local()
        if not rollback:
            self.rollback_version, self.rollback_ref = previous_version, previous_ref
            self.upstream_sha, self.upstream_version = self.current_sha, self.current_version
        new_packages = [p for p in self.system_packages if p not in previous_packages]
        if new_packages:
            await self.manager.install_packages(new_packages)
        self.save(refreshed=False)
        await self.restart_services()
        self.notify("Rollback Complete" if rollback else "Update Finished...", complete=True)
        return True

    async def rollback(self) -> bool:
        if self.rollback_ref == UNKNOWN or not self.rollback_version.valid:
            raise ServerError("Incomplete rollback data stored, cannot rollback", 400)
        if not await self.update(rollback=True):
            self.notify("Rollback not performed", complete=True)
            return False
        return True
