"""The ``git`` executable for one working tree, through the manager's process runner.

Each call runs ``git -C PATH ...`` as a child process (never blocking the reactor) with
a time limit; fetches, pulls and clones stream their progress into
``notify_update_response`` and are killed and retried when they stop printing.
Errors that show a damaged object store set ``corrupt``.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from twisted.internet import threads
from twisted.internet.task import deferLater

from moontwist.plugins.update_manager.process import ProcessError

if TYPE_CHECKING:
    from moontwist.plugins.update_manager.base import Manager

__all__ = ["Git", "GitError", "normalize_url", "STALE_LOCK_AGE"]

# An index.lock older than this is left over from a git that died (a power cut).
STALE_LOCK_AGE = 60.0
LOG_FORMAT = "sha:%H%x1Dauthor:%an%x1Ddate:%ct%x1Dsubject:%s%x1Dmessage:%b%x1E"
_CORRUPT_RE = re.compile(
    r"^(fatal|error):.*(corrupt|is empty|bad object|unable to read|inflate|invalid object|broken)", re.IGNORECASE
)


class GitError(ProcessError):
    """A git command failed; ``lines`` is what it printed."""

    def __init__(self, message: str, lines: list[str], exit_code: int | None, timed_out: bool = False) -> None:
        super().__init__(message, timed_out=timed_out)
        self.lines = lines
        self.code = exit_code


def normalize_url(url: str) -> str:
    """A remote URL in a comparable form: paths and file:// URLs resolved, '.git' and case dropped."""
    url = url.strip()
    if url.startswith("file://"):
        url = url[len("file://"):]
    if url.startswith("/") or url.startswith("~"):
        url = os.path.realpath(os.path.expanduser(url))
    url = url.rstrip("/")
    if url.lower().endswith(".git"):
        url = url[:-4]
    return url if url.startswith("/") else url.lower()


class Git:
    """git commands on the working tree at ``path``."""

    def __init__(self, manager: Manager, path: str, fetch_timeout: float, attempts: int = 3) -> None:
        self.manager = manager
        self.path = path
        self.fetch_timeout = fetch_timeout
        self.attempts = attempts
        self.corrupt = False
        self.messages: list[str] = []

    @property
    def git_dir(self) -> str | None:
        """The repository's git directory (a worktree or submodule has a ``.git`` file)."""
        dot_git = os.path.join(self.path, ".git")
        if os.path.isdir(dot_git):
            return dot_git
        if os.path.isfile(dot_git):
            try:
                with open(dot_git, encoding="utf-8") as f:
                    key, _, target = f.read().partition(":")
            except OSError:
                return None
            target = target.strip()
            if key.strip() == "gitdir" and target:
                resolved = os.path.realpath(os.path.join(self.path, target))
                return resolved if os.path.isdir(resolved) else None
        return None

    def _scan(self, lines: list[str]) -> None:
        if any(_CORRUPT_RE.match(line) for line in lines):
            self.corrupt = True

    async def run(
        self,
        *args: str,
        notify: bool = False,
        timeout: float = 30.0,
        stream: bool = False,
        attempts: int | None = None,
        cwd_arg: bool = True,
    ) -> str:
        """Run ``git ARGS`` and return its stdout; raise :class:`GitError` on failure.

        ``stream`` commands (fetch, pull, clone) are killed when silent for
        ``fetch_timeout`` seconds and retried up to the configured attempts
        (``attempts`` overrides).
        """
        argv = ["git", "-C", self.path, *args] if cwd_arg else ["git", *args]
        printed: list[str] = []

        def on_line(line: str) -> None:
            printed.append(line)
            if notify:
                self.manager.notify(line)

        try:
            result = await self.manager.run(
                argv,
                timeout=timeout if not stream else max(timeout, 3600.0),
                inactivity=self.fetch_timeout if stream else None,
                attempts=attempts or (self.attempts if stream else 1),
                notify=False,
                on_line=on_line,
            )
        except ProcessError as exc:
            lines = printed or (exc.result.output.splitlines() if exc.result else [])
            self._scan(lines)
            what = f"stalled after {self.attempts} attempts" if exc.timed_out else "failed"
            detail = next((line for line in reversed(lines) if line.startswith(("fatal:", "error:"))), "")
            message = f"Git Command 'git {' '.join(args)}' {what}" + (f": {detail}" if detail else "")
            self.messages.extend(lines[-20:] or [message])
            raise GitError(message, lines, exc.exit_code, exc.timed_out) from None
        return result.stdout

    async def ok(self, *args: str) -> bool:
        """Whether ``git ARGS`` succeeds (exit code 0); damage still raises."""
        try:
            await self.run(*args)
        except GitError as exc:
            if exc.code == 1 or (exc.code is not None and exc.code > 1 and not self.corrupt):
                return False
            raise
        return True

    async def config_get(self, key: str) -> str | None:
        try:
            return (await self.run("config", "--get", key)).strip() or None
        except GitError as exc:
            if exc.code == 1:
                return None
            raise

    # lock files --------------------------------------------------------------------

    async def clear_stale_lock(self, wait: float = STALE_LOCK_AGE) -> bool:
        """Wait for a running git to drop ``index.lock``; remove one left behind. True if removed."""
        git_dir = self.git_dir
        if git_dir is None:
            return False
        lock = os.path.join(git_dir, "index.lock")
        reactor = self.manager.reactor
        deadline = reactor.seconds() + wait
        while True:
            try:
                age = time.time() - os.stat(lock).st_mtime
            except FileNotFoundError:
                return False
            if age >= STALE_LOCK_AGE or reactor.seconds() >= deadline:
                try:
                    os.remove(lock)
                except FileNotFoundError:
                    return False
                return True
            await deferLater(reactor, 1.0, lambda: None)

    async def remove_empty_objects(self) -> int:
        """Delete zero-length loose objects (what a power cut leaves); returns how many."""
        git_dir = self.git_dir
        if git_dir is None:
            return 0

        def sweep() -> int:
            removed = 0
            for root, _dirs, files in os.walk(os.path.join(git_dir, "objects")):
                for name in files:
                    full = os.path.join(root, name)
                    try:
                        if os.path.getsize(full) == 0:
                            os.remove(full)
                            removed += 1
                    except OSError:
                        pass
            return removed

        return await threads.deferToThread(sweep)

    # queries -----------------------------------------------------------------------

    async def commits_between(self, base: str, tip: str, limit: int = 100) -> list[dict[str, Any]]:
        out = await self.run("log", f"{base}..{tip}", f"--format={LOG_FORMAT}", f"--max-count={limit}")
        commits = []
        for entry in out.split("\x1e"):
            entry = entry.strip()
            if not entry:
                continue
            fields = dict(item.split(":", 1) for item in entry.split("\x1d") if ":" in item)
            commits.append(
                {
                    "sha": fields.get("sha", "").strip(),
                    "author": fields.get("author", "").strip(),
                    "date": fields.get("date", "").strip(),
                    "subject": fields.get("subject", "").strip(),
                    "message": fields.get("message", "").strip(),
                }
            )
        return commits

    async def tagged_commits(self, tip: str, count: int = 100) -> dict[str, str]:
        """Tags reachable from ``tip`` that contain HEAD, newest first: commit sha -> tag."""
        fmt = "%(if)%(*objecttype)%(then)%(*objecttype) %(*objectname)%(else)%(objecttype) %(objectname)%(end) %(refname)"
        out = await self.run(
            "for-each-ref", f"--count={count}", "--sort=-creatordate", "--contains=HEAD",
            f"--merged={tip}", f"--format={fmt}", "refs/tags",
        )
        tags: dict[str, str] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "commit":
                tags.setdefault(parts[1], parts[2].rsplit("/", 1)[-1])
        return tags
