"""Version strings as the update manager reports them.

``GitVersion`` reads ``git describe --tags --long --always --dirty`` output; its
``short`` form is always ``TAG-COUNT`` (``v0.1.0-0`` on the tag itself), as frontends
expect.  ``PyVersion`` reads a Python package version (PEP 440).
"""

from __future__ import annotations

import re
from functools import total_ordering
from typing import Any

from packaging.version import InvalidVersion, Version

__all__ = ["GitVersion", "PyVersion", "UNKNOWN"]

UNKNOWN = "?"

_PRE_RANK = {"a": 1, "alpha": 1, "b": 2, "beta": 2, "c": 3, "rc": 3, "pre": 3, "preview": 3}
_GIT_RE = re.compile(
    r"""^\s*
    (?P<tag>v?(?P<release>\d+(?:\.\d+)*)
        (?P<pre>[-_.]?(?P<pre_l>alpha|beta|preview|pre|rc|a|b|c)[-_.]?(?P<pre_n>\d+)?)?)
    (?:-(?P<count>\d+)(?:-g(?P<hash>[0-9a-fA-F]+))?)?
    (?P<dirty>-dirty)?
    (?P<inferred>-(?:inferred|shallow))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_HASH_RE = re.compile(r"^\s*(?P<hash>[0-9a-fA-F]+)(?P<dirty>-dirty)?\s*$")


@total_ordering
class GitVersion:
    """A ``git describe`` result: tag, commits since the tag, hash, dirty and inferred flags."""

    def __init__(self, text: str) -> None:
        self.full = text.strip()
        self.valid = False
        self.tag = UNKNOWN
        self.count = 0
        self.hash = ""
        self.dirty = False
        self.inferred = False
        self.release: tuple[int, ...] = ()
        self.pre: tuple[int, int] | None = None
        match = _GIT_RE.match(self.full)
        if match is None:
            fallback = _HASH_RE.match(self.full)
            if fallback is not None:  # no tag reachable: describe printed the abbreviated hash
                self.hash = fallback["hash"]
                self.dirty = fallback["dirty"] is not None
            return
        self.valid = True
        self.tag = match["tag"]
        self.release = tuple(int(part) for part in match["release"].split("."))
        if match["pre_l"]:
            self.pre = (_PRE_RANK[match["pre_l"].lower()], int(match["pre_n"] or 0))
        self.count = int(match["count"] or 0)
        self.hash = match["hash"] or ""
        self.dirty = match["dirty"] is not None
        self.inferred = match["inferred"] is not None

    @property
    def short(self) -> str:
        """``TAG-COUNT``, or ``?`` when no version could be read."""
        return f"{self.tag}-{self.count}" if self.valid else UNKNOWN

    @property
    def is_final(self) -> bool:
        return self.valid and self.pre is None

    @property
    def is_alpha(self) -> bool:
        return self.pre is not None and self.pre[0] == 1

    def _key(self) -> tuple[Any, ...]:
        # a pre-release sorts before its final release; then commits since the tag
        return (self.release, (0, *self.pre) if self.pre else (1, 0, 0), self.count)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GitVersion):
            return NotImplemented
        return self.valid and other.valid and self._key() == other._key()

    def __lt__(self, other: GitVersion) -> bool:
        if not (self.valid and other.valid):
            raise ValueError(f"cannot compare versions {self.full!r} and {other.full!r}")
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"GitVersion({self.full!r})"

    def previous_tag(self) -> str:
        """A plausible tag before this one (to infer a version when a repo has no tags)."""
        if not self.valid:
            return "v0.0.0"
        if self.inferred:
            return self.tag
        parts = list(self.release)
        for i in reversed(range(len(parts))):
            if parts[i] > 0:
                parts[i] -= 1
                break
        return "v" + ".".join(map(str, parts))


@total_ordering
class PyVersion:
    """A Python package version; ``short`` is ``[v]RELEASE[PRE][.postN]`` plus ``-DEV`` for dev releases."""

    def __init__(self, text: str) -> None:
        self.full = text.strip()
        self.version: Version | None
        try:
            self.version = Version(self.full)
        except InvalidVersion:
            self.version = None

    @property
    def valid(self) -> bool:
        return self.version is not None

    @property
    def tag(self) -> str:
        v = self.version
        if v is None:
            return UNKNOWN
        text = ("v" if self.full[:1] in "vV" else "") + ".".join(map(str, v.release))
        if v.pre is not None:
            text += f"{v.pre[0]}{v.pre[1]}"
        if v.post is not None:
            text += f".post{v.post}"
        return text

    @property
    def short(self) -> str:
        v = self.version
        if v is None:
            return UNKNOWN
        return f"{self.tag}-{v.dev}" if v.dev else self.tag

    @property
    def local(self) -> str | None:
        return None if self.version is None else self.version.local

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PyVersion):
            return NotImplemented
        return self.version is not None and self.version == other.version

    def __lt__(self, other: PyVersion) -> bool:
        if self.version is None or other.version is None:
            raise ValueError(f"cannot compare versions {self.full!r} and {other.full!r}")
        return self.version < other.version

    def __hash__(self) -> int:
        return hash(self.version)

    def __repr__(self) -> str:
        return f"PyVersion({self.full!r})"
