"""Directory walks and file information (blocking: call them in a thread)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from typing import Any

from moontwist.plugins.files.paths import relative, shown
from moontwist.plugins.files.roots import GCODE_EXTENSIONS, Root

__all__ = ["item_info", "list_files", "walk_files", "directory_info", "is_gcode", "is_hidden"]


def is_gcode(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in GCODE_EXTENSIONS


def is_hidden(rel: str) -> bool:
    """Hidden items (any component starting with a dot: ``.thumbs``, upload temp files)."""
    return any(part.startswith(".") for part in rel.split("/") if part)


def _permissions(root: Root, st: os.stat_result) -> str:
    return "rw" if root.writable and st.st_mode & stat.S_IWUSR else "r"


def item_info(root: Root, full: str) -> dict[str, Any]:
    """``{"path", "root", "modified", "size", "permissions"}`` of an item (zeros when gone)."""
    info: dict[str, Any] = {"path": relative(root, full), "root": root.name}
    try:
        st = os.stat(full)
    except OSError:
        info.update(modified=0, size=0, permissions="")
    else:
        info.update(modified=st.st_mtime, size=st.st_size, permissions=_permissions(root, st))
    return info


def list_files(root: Root, gcode_only: bool) -> list[dict[str, Any]]:
    """Every file under ``root`` (recursively, hidden items skipped, symlink loops avoided)."""
    return [info for _, info in walk_files(root, gcode_only)]


def walk_files(root: Root, gcode_only: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """(absolute path, info as listed) of every file under ``root``."""
    base = root.realpath
    seen = {base}
    stack = [(root.path, "")]
    writable = root.writable
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    real = os.path.realpath(entry.path)
                    if real in seen or not (real == base or real.startswith(base + os.sep)):
                        continue
                    seen.add(real)
                    stack.append((entry.path, prefix + shown(name) + "/"))
                    continue
                if gcode_only and not is_gcode(name):
                    continue
                st = entry.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if entry.is_symlink() and not _inside(base, entry.path):
                continue
            yield entry.path, {
                "path": prefix + shown(name),
                "modified": st.st_mtime,
                "size": st.st_size,
                "permissions": "rw" if writable and st.st_mode & stat.S_IWUSR else "r",
            }


def _inside(base: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == base or real.startswith(base + os.sep)


def directory_info(root: Root, full: str) -> dict[str, Any]:
    """The files and folders directly in ``full``, disk usage and root info."""
    dirs: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    base = root.realpath
    with os.scandir(full) as it:
        entries = list(it)
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        if entry.is_symlink() and not _inside(base, entry.path):
            continue
        info = {"modified": st.st_mtime, "size": st.st_size, "permissions": _permissions(root, st)}
        if stat.S_ISDIR(st.st_mode):
            info["dirname"] = shown(name)
            dirs.append(info)
        elif stat.S_ISREG(st.st_mode):
            info["filename"] = shown(name)
            files.append(info)
    usage = shutil.disk_usage(full)
    return {
        "dirs": dirs,
        "files": files,
        "disk_usage": {"total": usage.total, "used": usage.used, "free": usage.free},
        "root_info": {"name": root.name, "permissions": root.permissions},
    }
