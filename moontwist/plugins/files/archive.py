"""``server.files.zip``: files and folders of any root packed into one archive in a writable root.

Paths are checked on the reactor (the same helpers as every other file operation);
the archive is written in a thread to a hidden temp file beside the destination,
then renamed into place, so clients never see a partial archive.  The thread
checks again where every file and the destination folder really are (see
``moontwist.storage.confined``): nothing from outside a root goes into the
archive and nothing is written outside the destination's root.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from moontwist.api.errors import ServerError
from moontwist.plugins.files.paths import relative
from moontwist.plugins.files.roots import Root
from moontwist.plugins.files.uploads import TEMP_PREFIX as UPLOAD_PREFIX
from moontwist.storage.confined import TEMP_SUFFIX, OutsideTree, Tree

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
            if name.startswith((TEMP_PREFIX, UPLOAD_PREFIX)) and name.endswith(TEMP_SUFFIX):
                continue
            path = os.path.join(folder, name)
            if _inside(root, path):  # a symlink may point out of its root
                yield path, f"{root.name}/{relative(root, path)}"


def _zip_info(arcname: str, st: os.stat_result, compression: int) -> zipfile.ZipInfo:
    """A member's header from the open file's stat (dates outside what zip can hold are clamped)."""
    year_min, year_max = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 59)
    date_time = min(max(time.localtime(st.st_mtime)[:6], year_min), year_max)
    info = zipfile.ZipInfo(arcname, date_time)
    info.external_attr = (st.st_mode & 0xFFFF) << 16
    info.file_size = st.st_size
    info.compress_type = compression
    return info


def _write(sources: list[Source], dest_root: Root, dest: str, store_only: bool) -> None:
    """Blocking: build the archive in a temp file beside ``dest``, then rename it over ``dest``."""
    compression = zipfile.ZIP_STORED if store_only else zipfile.ZIP_DEFLATED
    folder, name = Tree(dest_root.path).parent(dest)
    with folder:
        seen: set[tuple[int, int]] = set()
        try:
            st = folder.lstat(name)
            seen.add((st.st_dev, st.st_ino))  # never pack the archive being replaced
        except FileNotFoundError:
            pass
        temp, f = folder.create_temp(TEMP_PREFIX)
        try:
            with f, zipfile.ZipFile(f, "w", compression) as zf:
                for root, full in sources:
                    tree = Tree(root.path)
                    for path, arcname in _members(root, full):
                        try:
                            src = tree.open_read(path)
                        except OutsideTree:
                            continue  # swapped for a symlink out of the root since the walk
                        except PermissionError:
                            if path == full:
                                raise ServerError(f"File is not readable: {root.name}/{relative(root, full)}", 403) from None
                            continue
                        with src:
                            st = os.fstat(src.fileno())
                            if (st.st_dev, st.st_ino) in seen:
                                continue
                            seen.add((st.st_dev, st.st_ino))
                            with zf.open(_zip_info(arcname, st, compression), "w") as out:
                                shutil.copyfileobj(src, out, 1024 * 1024)
            folder.replace(temp, folder, name)
        except BaseException:
            folder.unlink_quietly(temp)
            raise


async def zip_files(manager: FileManager, items: list[Any], dest: str | None, store_only: bool) -> dict[str, Any]:
    """Check the paths, write the archive in a thread, announce it; Moonraker's reply shape."""
    dest_root, dest_full = _destination(manager, dest or default_dest())
    sources = _sources(manager, items)
    manager.suppress(dest_full)
    await manager.change("create the archive", _write, sources, dest_root, dest_full, store_only)
    result = manager.announce("create_file", dest_root, dest_full)
    return {"destination": result["item"], "action": "zip_files"}
