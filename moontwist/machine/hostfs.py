"""Reading host files under an injectable root, so tests can point at fixture trees."""

from __future__ import annotations

import os


def host_path(root: str, rel: str) -> str:
    """``rel`` (an absolute host path such as ``/proc/cpuinfo``) below ``root``."""
    return os.path.join(root, rel.lstrip("/"))


def read_text(root: str, rel: str, limit: int = 1 << 20) -> str | None:
    """The text of a small host file, or None when it is missing or unreadable."""
    try:
        with open(host_path(root, rel), "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


def read_line(root: str, rel: str) -> str | None:
    """A one-value sysfs/procfs file, stripped (NULs removed), or None."""
    text = read_text(root, rel, 4096)
    return None if text is None else text.replace("\x00", "").strip()
