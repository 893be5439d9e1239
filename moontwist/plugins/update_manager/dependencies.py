"""What an application needs besides its own files: system packages and Python requirements.

System packages come from a ``system-dependencies.json`` file (``{"debian": [...]}`` keyed
by distribution id or an id it is like, entries optionally ``name; distro_version >= "12"``)
or, in older applications, from ``PKGLIST="..."`` lines of an install script.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from moontwist.machine.distro import parse_os_release

__all__ = [
    "DistroInfo",
    "file_digest",
    "packages_from_install_script",
    "packages_from_json",
    "read_requirements",
]

_PKGLIST_RE = re.compile(r'PKGLIST="(.*)"')
_COMPARISON_RE = re.compile(r"\s*(distro_id|distro_version|vendor)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")


class DistroInfo:
    """The running distribution as system-dependency files name it."""

    def __init__(self, distro_id: str = "", like: list[str] | None = None, version: str = "", vendor: str = "") -> None:
        self.id = distro_id.lower()
        self.like = [name.lower() for name in like or []]
        self.version = version
        self.vendor = vendor

    @classmethod
    def detect(cls, root: str = "/") -> DistroInfo:
        for path in ("etc/os-release", "usr/lib/os-release"):
            try:
                with open(os.path.join(root, path), encoding="utf-8") as f:
                    fields = parse_os_release(f.read())
            except OSError:
                continue
            vendor = os.environ.get("MOONRAKER_VENDOR", "")
            if not vendor and os.path.isfile(os.path.join(root, "etc/rpi-issue")):
                vendor = "raspberry-pi"
            return cls(fields.get("id", ""), fields.get("id_like", "").split(), fields.get("version_id", ""), vendor)
        return cls()


def _version_tuple(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.-]", text.strip()))


def _compare(left: Any, op: str, right: Any) -> bool:
    try:
        return {
            "==": left == right,
            "!=": left != right,
            "<": left < right,
            ">": left > right,
            "<=": left <= right,
            ">=": left >= right,
        }[op]
    except TypeError:
        return False


def _condition_holds(condition: str, distro: DistroInfo) -> bool | None:
    """Evaluate ``a and b or c`` left to right; None when the expression can't be read."""
    words = re.split(r"\s+(and|or)\s+", condition.strip())
    if len(words) % 2 == 0:
        return None
    result = True
    op = "and"
    for i, word in enumerate(words):
        if i % 2:
            op = word
            continue
        match = _COMPARISON_RE.match(word)
        if match is None:
            return None
        var, cmp, value = match.groups()
        value = value.strip("\"'")
        if var == "distro_version":
            if not distro.version:
                return None
            holds = _compare(_version_tuple(distro.version), cmp, _version_tuple(value))
        else:
            holds = _compare(distro.id if var == "distro_id" else distro.vendor, cmp, value)
        result = (result and holds) if op == "and" else (result or holds)
    return result


def packages_from_json(data: Any, distro: DistroInfo) -> list[str]:
    """The packages a ``system-dependencies.json`` object lists for ``distro``."""
    if not isinstance(data, dict):
        return []
    entries = None
    for key in (distro.id, *distro.like):
        if isinstance(data.get(key), list):
            entries = data[key]
            break
    excluded = set(os.environ.get("MOONRAKER_EXCLUDED_PKGS", "").split())
    packages: list[str] = []
    for entry in entries or []:
        if not isinstance(entry, str):
            continue
        name, _, condition = entry.partition(";")
        name = name.strip()
        if not name or name in excluded:
            continue
        if condition.strip() and not _condition_holds(condition, distro):
            continue
        packages.append(name)
    return packages


def packages_from_install_script(text: str) -> list[str]:
    """Packages named in ``PKGLIST="..."`` lines (``${PKGLIST}`` itself skipped)."""
    packages: list[str] = []
    for line in _PKGLIST_RE.findall(text):
        packages.extend(word for word in line.replace("${PKGLIST}", " ").split() if word)
    return packages


def read_requirements(path: str) -> list[str]:
    """Requirement lines of a pip requirements file (comments and blank lines dropped)."""
    with open(path, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [line for line in lines if line]


def file_digest(path: str | None) -> str | None:
    """SHA-256 of a file, None when it can't be read."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def load_json_file(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
