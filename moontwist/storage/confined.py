"""Filesystem changes confined to one directory tree: nothing outside it is written, renamed or removed.

A path checked when a request arrives can be changed before the request's
work runs (a folder swapped for a symlink to ``/etc``).  So every change is
checked again when it happens: the folder that will hold it is opened, the
kernel tells where that open folder really is (``/proc/self/fd``), and the
change is made relative to that descriptor with its last component never
followed (``O_NOFOLLOW``, ``unlinkat``, ``renameat``, ``mkdirat``).  Symlinks
that stay inside the tree keep working; one leading out of it raises
:class:`OutsideTree`.

Temporary files are created exclusively (``O_EXCL``) and locked with ``flock``
while they are written, so a start-up sweep (:func:`sweep_temp_files`) can tell
the leftovers of a killed process (unlocked) from files still being written.

Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
from typing import IO

__all__ = ["OutsideTree", "Tree", "Folder", "TEMP_SUFFIX", "COPY_PREFIX", "temp_name", "is_temp_name", "sweep_temp_files"]

TEMP_SUFFIX = ".part"
COPY_PREFIX = ".copy-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_COPY_CHUNK = 1024 * 1024


class OutsideTree(PermissionError):
    """The operation would reach a place outside its tree (through a symlink)."""


def temp_name(prefix: str) -> str:
    """A fresh hidden temporary name: ``<prefix><random>.part`` (prefix starts with a dot)."""
    return f"{prefix}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def is_temp_name(name: str, prefixes: tuple[str, ...]) -> bool:
    return name.endswith(TEMP_SUFFIX) and name.startswith(prefixes)


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _where(fd: int) -> str:
    """Where the open file ``fd`` really is, as the kernel sees it."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        raise OutsideTree(errno.EACCES, "Cannot tell where an open file is (is /proc mounted?)") from None
    if path.endswith(" (deleted)") and not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "Folder was removed", path[: -len(" (deleted)")])
    return path


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


class Folder:
    """An open folder inside a tree; every change is made relative to it."""

    def __init__(self, tree: Tree, fd: int, path: str) -> None:
        self.tree = tree
        self.fd = fd
        self.path = path  # the path it was opened by (for messages)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # reading -------------------------------------------------------------------

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(_check_name(name), dir_fd=self.fd, follow_symlinks=False)

    def _is_link(self, name: str) -> bool:
        try:
            return stat.S_ISLNK(self.lstat(name).st_mode)
        except OSError:
            return False

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def subfolder(self, name: str, *, create: bool = False, follow: bool = True) -> Folder:
        """Open the folder ``name`` in this one (``follow=False``: never through a symlink)."""
        _check_name(name)
        if create:
            try:
                os.mkdir(name, 0o777, dir_fd=self.fd)
            except FileExistsError:
                pass
        flags = _DIR_FLAGS | (0 if follow else os.O_NOFOLLOW)
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            if not follow and exc.errno in (errno.ELOOP, errno.ENOTDIR) and self._is_link(name):
                raise OutsideTree(errno.ELOOP, "Is a symbolic link", os.path.join(self.path, name)) from None
            raise
        return self.tree._adopt(fd, os.path.join(self.path, name))

    def open_read(self, name: str) -> IO[bytes]:
        """Open the file ``name`` for reading; refused if it really lies outside the tree."""
        fd = os.open(_check_name(name), os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            self.tree._check(fd, os.path.join(self.path, name))
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    # changing ------------------------------------------------------------------

    def create_temp(self, prefix: str) -> tuple[str, IO[bytes]]:
        """A new, exclusively created and locked temporary file: (name, open file)."""
        for _ in range(8):
            name = temp_name(prefix)
            try:
                fd = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=self.fd
                )
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return name, os.fdopen(fd, "wb")
        raise FileExistsError(errno.EEXIST, "Cannot create a temporary file", self.path)

    def write_file(self, name: str, data: bytes, prefix: str) -> None:
        """Replace ``name`` with ``data`` atomically (a symlink named ``name`` is replaced, not followed)."""
        temp, f = self.create_temp(prefix)
        try:
            with f:
                f.write(data)
            self.replace(temp, self, name)
        except BaseException:
            self.unlink_quietly(temp)
            raise

    def replace(self, name: str, dest: Folder, dest_name: str) -> None:
        """Rename ``name`` here to ``dest_name`` in ``dest`` (replacing a file there)."""
        os.rename(_check_name(name), _check_name(dest_name), src_dir_fd=self.fd, dst_dir_fd=dest.fd)

    def mkdir(self, name: str) -> None:
        os.mkdir(_check_name(name), 0o777, dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        os.unlink(_check_name(name), dir_fd=self.fd)

    def unlink_quietly(self, name: str) -> None:
        try:
            self.unlink(name)
        except OSError:
            pass

    def rmdir(self, name: str) -> None:
        os.rmdir(_check_name(name), dir_fd=self.fd)

    def rmtree(self, name: str) -> None:
        """Remove the folder ``name`` and everything in it (symlinks inside are removed, never followed)."""
        shutil.rmtree(_check_name(name), dir_fd=self.fd)

    def remove(self, name: str) -> None:
        """Remove ``name``, a file or a whole folder."""
        if stat.S_ISDIR(self.lstat(name).st_mode):
            self.rmtree(name)
        else:
            self.unlink(name)

    def copy_in(self, source: IO[bytes], name: str, st: os.stat_result | None = None) -> None:
        """Write ``source``'s content to ``name`` here through a temp file; keep mode and times of ``st``."""
        temp, f = self.create_temp(COPY_PREFIX)
        try:
            with f:
                shutil.copyfileobj(source, f, _COPY_CHUNK)
                if st is not None:
                    os.chmod(f.fileno(), stat.S_IMODE(st.st_mode))
                    os.utime(f.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            self.replace(temp, self, name)
        except BaseException:
            self.unlink_quietly(temp)
            raise


class Tree:
    """A directory tree (a root) that changes are confined to."""

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)

    def real(self) -> str:
        return os.path.realpath(self.base)

    def _check(self, fd: int, shown: str) -> None:
        if not _inside(self.real(), _where(fd)):
            raise OutsideTree(errno.EACCES, "Leads outside its root", shown)

    def _adopt(self, fd: int, shown: str) -> Folder:
        try:
            self._check(fd, shown)
        except BaseException:
            os.close(fd)
            raise
        return Folder(self, fd, shown)

    def _parts(self, path: str) -> list[str]:
        path = os.path.abspath(path)
        if not _inside(self.base, path):
            raise OutsideTree(errno.EACCES, "Not inside its root", path)
        rel = os.path.relpath(path, self.base)
        return [] if rel == "." else rel.split(os.sep)

    def folder(self, path: str, *, create: bool = False) -> Folder:
        """Open the folder ``path`` (absolute, under the tree), checked to really lie inside.

        ``create`` makes missing folders, each checked before anything is made in it.
        """
        parts = self._parts(path)
        if not create:
            return self._adopt(os.open(path, _DIR_FLAGS), path)
        current = self._adopt(os.open(self.base, _DIR_FLAGS), self.base)
        try:
            for part in parts:
                nxt = current.subfolder(part, create=True)
                current.close()
                current = nxt
        except BaseException:
            current.close()
            raise
        return current

    def parent(self, path: str, *, create: bool = False) -> tuple[Folder, str]:
        """The open folder holding ``path`` and ``path``'s last component."""
        if os.path.abspath(path) == self.base:
            raise OutsideTree(errno.EACCES, "The root itself can't be changed", path)
        return self.folder(os.path.dirname(path), create=create), os.path.basename(path)

    def open_read(self, path: str) -> IO[bytes]:
        """Open the file ``path`` for reading, refused if it really lies outside the tree."""
        self._parts(path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._check(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    # whole operations -------------------------------------------------------------

    def copy(self, source: Tree, src: str, dest: str) -> None:
        """Copy the file or folder ``src`` (in ``source``) to ``dest`` (here).

        Symlinks are followed only where they stay inside ``source``; the rest
        are skipped.  A folder is merged into an existing one.
        """
        folder, name = self.parent(dest)
        with folder:
            st = os.stat(src)
            if stat.S_ISDIR(st.st_mode):
                with source.folder(src) as from_dir:
                    self._copy_dir(from_dir, folder, name, {(st.st_dev, st.st_ino)})
            else:
                with source.open_read(src) as f:
                    folder.copy_in(f, name, os.fstat(f.fileno()))

    def _copy_dir(self, src: Folder, dest_parent: Folder, name: str, seen: set[tuple[int, int]]) -> None:
        with dest_parent.subfolder(name, create=True, follow=False) as dest:
            for entry in sorted(src.names()):
                try:
                    st = os.stat(entry, dir_fd=src.fd)
                except FileNotFoundError:
                    continue  # a dangling symlink
                if stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) in seen:
                        continue  # a symlink loop
                    try:
                        sub = src.subfolder(entry)
                    except OutsideTree:
                        continue
                    with sub:
                        self._copy_dir(sub, dest, entry, seen | {(st.st_dev, st.st_ino)})
                elif stat.S_ISREG(st.st_mode):
                    try:
                        f = src.open_read(entry)
                    except OutsideTree:
                        continue
                    with f:
                        dest.copy_in(f, entry, os.fstat(f.fileno()))

    def move(self, source: Tree, src: str, dest: str) -> None:
        """Move ``src`` (in ``source``) to ``dest`` (here): a rename, or copy and remove across filesystems."""
        src_folder, src_name = source.parent(src)
        with src_folder:
            dest_folder, dest_name = self.parent(dest)
            with dest_folder:
                try:
                    src_folder.replace(src_name, dest_folder, dest_name)
                    return
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                self.copy(source, src, dest)
                src_folder.remove(src_name)


def _unlocked(folder: Folder, name: str) -> bool:
    """Whether nobody holds the temp file ``name`` (a live writer keeps it flock'ed)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder.fd)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


def sweep_temp_files(tree: Tree, prefixes: tuple[str, ...], *, recursive: bool = True) -> list[str]:
    """Remove temporary files (``<prefix>*.part``) no live writer holds; returns their paths.

    Subfolders are walked (when ``recursive``) without following symlinks.
    """
    removed: list[str] = []
    try:
        top = tree.folder(tree.base)
    except OSError:
        return removed
    with top:
        _sweep(top, prefixes, recursive, removed)
    return removed


def _sweep(folder: Folder, prefixes: tuple[str, ...], recursive: bool, removed: list[str]) -> None:
    try:
        names = folder.names()
    except OSError:
        return
    for name in names:
        try:
            mode = folder.lstat(name).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) and recursive:
            try:
                sub = folder.subfolder(name, follow=False)
            except OSError:
                continue
            with sub:
                _sweep(sub, prefixes, recursive, removed)
        elif stat.S_ISREG(mode) and is_temp_name(name, prefixes) and _unlocked(folder, name):
            try:
                folder.unlink(name)
            except OSError:
                continue
            removed.append(os.path.join(folder.path, name))
