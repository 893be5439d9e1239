"""``distribution``: the Linux distribution, from os-release."""

from __future__ import annotations

import platform
import re
import shlex
from typing import Any

from moontwist.machine.hostfs import read_text

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines (shell quoting allowed) as a dict with lowercase keys."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        fields[key.strip().lower()] = " ".join(words)
    return fields


def version_parts(version: str) -> dict[str, str]:
    """Split ``major.minor.build`` into parts, empty strings where absent."""
    numeric = re.sub(r"[^\d.].*$", "", version)
    parts = (numeric.split(".") + ["", "", ""])[:3]
    return {"major": parts[0], "minor": parts[1], "build_number": parts[2]}


def distribution_from_os_release(fields: dict[str, str]) -> dict[str, Any]:
    """The ``distribution`` object built from parsed os-release fields."""
    version = fields.get("version_id", "")
    codename = fields.get("version_codename") or fields.get("ubuntu_codename", "")
    if not codename:
        found = re.search(r"\(([^)]+)\)", fields.get("version", ""))
        codename = found.group(1).split()[0].lower() if found else ""
    name = fields.get("pretty_name") or " ".join(
        p for p in (fields.get("name", ""), fields.get("version", "")) if p
    )
    return {
        "name": name,
        "id": fields.get("id", ""),
        "version": version,
        "version_parts": version_parts(version),
        "like": fields.get("id_like", ""),
        "codename": codename,
        "release_info": dict(fields),
        "kernel_version": platform.release(),
    }


def distribution(root: str = "/") -> dict[str, Any]:
    """The ``distribution`` object for the host at ``root``."""
    for rel in OS_RELEASE_PATHS:
        text = read_text(root, rel)
        if text is not None:
            return distribution_from_os_release(parse_os_release(text))
    return distribution_from_os_release({})
