"""``server.files.zip``: files and folders of any root packed into one archive in a writable root.

Paths are checked on the reactor (the same helpers as every other file operation);
the archive is written in a thread to a hidden temp file beside the destination,
then renamed into place, so clients never see a partial archive.
"""

from __future__ import annotations

import os
import secrets
import time
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from moontwist.api.errors import ServerError
from moontwist.plugins.files.paths import relative
from moontwist.plugins.files.roots import Root
from moontwist.plugins.files.uploads import TEMP_PREFIX as UPLOAD_PREFIX

if TYPE_CHECKING:
    from moontwist.plugins.files.operations import FileManager

__all__ = ["zip_files", "default_dest", "TEMP_PREFIX"]

TEMP_PREFIX = ".zip-"
Source = tuple[Root, str]


def default_dest(now: float | None = None) -> str:
    """Moonraker's default destination: ``config/collection-<local time>.zip``."""
    return time.strftime("config/collection-%Y%m%d-%H%M%S.zip", time.localtime(now))


def _sources(manager: FileManager, items: list[Any]) -> list[Source]:
    """Every item resolved inside its root; all missing items are named in one 404."""
    if not items:
        raise ServerError("At least one file or directory must be specified", 400)
    sources: list[Source] = []
    missing: list[str] = []
    for item in items:
        root, full = manager.resolve(item)
        if not os.path.exists(full):
            missing.append(str(item))
        elif not (os.path.isfile(full) or os.path.isdir(full)):
            raise ServerError(f"Item at '{item}' is not a file or directory", 400)
        else:
            sources.append((root, full))
    if missing:
        raise ServerError("No file or directory at: " + ", ".join(missing), 404)
    return sources


def _destination(manager: FileManager, dest: str) -> Source:
    root, full = manager.resolve(dest, for_write=True)
    if full == root.path or os.path.isdir(full):
        raise ServerError(f"Cannot create archive at '{dest}': it is a directory", 400)
    if not os.path.isdir(os.path.dirname(full)):
        raise ServerError(f"Cannot create archive at '{dest}': its folder does not exist", 404)
    manager.check_not_loaded(full, "overwrite")
    return root, full


def _inside(root: Root, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root.realpath or real.startswith(root.realpath + os.sep)


def _members(root: Root, full: str) -> Iterator[tuple[str, str]]:
    """(path, archive name) of a file, or of every file under a folder; names start with the root."""
    if os.path.isfile(full):
        yield full, f"{root.name}/{relative(root, full)}"
        return
    for folder, dirs, files in os.walk(full):
        dirs.sort()
        for name in sorted(files):
            if name.startswith((TEMP_PREFIX, UPLOAD_PREFIX)):
                continue
            path = os.path.join(folder, name)
            if _inside(root, path):  # a symlink may point out of its root
                yield path, f"{root.name}/{relative(root, path)}"


def _write(sources: list[Source], dest: str, store_only: bool) -> None:
    """Blocking: build the archive in a temp file beside ``dest``, then rename it over ``dest``."""
    temp = os.path.join(os.path.dirname(dest), f"{TEMP_PREFIX}{secrets.token_hex(6)}.part")
    compression = zipfile.ZIP_STORED if store_only else zipfile.ZIP_DEFLATED
    seen: set[tuple[int, int]] = set()
    dest_real = os.path.realpath(dest)
    try:
        with open(temp, "xb") as f, zipfile.ZipFile(f, "w", compression, strict_timestamps=False) as zf:
            for root, full in sources:
                for path, arcname in _members(root, full):
                    try:
                        st = os.stat(path)
                        if (st.st_dev, st.st_ino) in seen or os.path.realpath(path) == dest_real:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                        zf.write(path, arcname)
                    except PermissionError:
                        if path == full:
                            raise ServerError(f"File is not readable: {root.name}/{relative(root, full)}", 403) from None
        os.replace(temp, dest)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


async def zip_files(manager: FileManager, items: list[Any], dest: str | None, store_only: bool) -> dict[str, Any]:
    """Check the paths, write the archive in a thread, announce it; Moonraker's reply shape."""
    dest_root, dest_full = _destination(manager, dest or default_dest())
    sources = _sources(manager, items)
    manager.suppress(dest_full)
    try:
        await manager.in_thread(_write, sources, dest_full, store_only)
    except OSError as exc:
        raise ServerError(f"Cannot create archive: {exc.strerror or exc}", 400) from None
    result = manager.announce("create_file", dest_root, dest_full)
    return {"destination": result["item"], "action": "zip_files"}
