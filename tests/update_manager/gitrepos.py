"""Real git repositories for the update manager tests: a bare ``origin``, a work tree that
publishes to it, and clones the server manages (cloned through file:// so no object is
shared with the origin by hard links)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}


def git(cwd: str, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Origin:
    """``bare`` is the origin repository; ``work`` a clone that makes commits and pushes them."""

    bare: str
    work: str
    branch: str = "master"

    @property
    def url(self) -> str:
        return "file://" + self.bare

    def commit(self, message: str, files: dict[str, str] | None = None, tag: str | None = None, push: bool = True) -> str:
        for name, text in (files or {f"log_{message.replace(' ', '_')}.txt": message}).items():
            path = os.path.join(self.work, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message, "-m", f"Body of {message}.")
        if tag:
            git(self.work, "tag", "-a", tag, "-m", tag)
        if push:
            self.push()
        return git(self.work, "rev-parse", "HEAD")

    def push(self, force: bool = False) -> None:
        git(self.work, "push", "-q", *(["--force"] if force else []), "origin", self.branch, "--tags")

    def clone(self, dest: str) -> str:
        git(os.path.dirname(dest), "clone", "-q", self.url, dest)
        git(dest, "config", "user.email", "local@example.invalid")
        git(dest, "config", "user.name", "Local")
        return dest


def make_origin(root: str, name: str = "app", branch: str = "master") -> Origin:
    """An origin with two commits and tag v0.1.0 on the first."""
    bare = os.path.join(root, f"{name}-origin.git")
    work = os.path.join(root, f"{name}-work")
    os.makedirs(work)
    git(root, "init", "-q", "--bare", "-b", branch, bare)
    git(work, "init", "-q", "-b", branch)
    git(work, "remote", "add", "origin", bare)
    origin = Origin(bare, work, branch)
    origin.commit("initial", {"app.py": "print('v1')\n", "requirements.txt": "\n"}, tag="v0.1.0", push=False)
    origin.commit("second", {"README": "two\n"})
    return origin
