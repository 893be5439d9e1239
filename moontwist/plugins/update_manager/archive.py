"""Release archives: checked before anything is touched, extracted only inside their folder,
and installed into an application folder so that a failure puts the old files back.

These functions block; callers run them with ``deferToThread``.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile

__all__ = ["ArchiveError", "check_zip", "extract_zip", "replace_contents"]


class ArchiveError(ValueError):
    """A release archive is unusable; nothing was changed."""


def check_zip(path: str) -> list[zipfile.ZipInfo]:
    """The members of the zip file at ``path``; raise ArchiveError when it is not a zip or
    when a member would land outside the folder it is extracted to (absolute paths,
    ``..``, symbolic links)."""
    if not zipfile.is_zipfile(path):
        raise ArchiveError("The release asset is not a zip file")
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArchiveError(f"The release asset is a damaged zip file: {exc}") from None
    if bad is not None:
        raise ArchiveError(f"The release asset is a damaged zip file: bad CRC for '{bad}'")
    for member in members:
        name = member.filename.replace("\\", "/")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise ArchiveError(f"The release asset has an entry outside its folder: '{member.filename}'")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ArchiveError(f"The release asset has a symbolic link: '{member.filename}'")
    return members


def extract_zip(path: str, dest: str) -> None:
    """Extract the (checked) zip at ``path`` into the folder ``dest``."""
    members = check_zip(path)
    root = os.path.realpath(dest)
    with zipfile.ZipFile(path) as zf:
        for member in members:
            target = os.path.realpath(os.path.join(root, member.filename))
            if os.path.commonpath([root, target]) != root:
                raise ArchiveError(f"The release asset has an entry outside its folder: '{member.filename}'")
            if member.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = (member.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode | stat.S_IRUSR | stat.S_IWUSR)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def replace_contents(folder: str, staged: str, backup: str, keep: list[str]) -> None:
    """Make ``folder`` hold what ``staged`` holds, keeping the ``keep`` paths of ``folder``.

    The old contents go to the empty folder ``backup`` first; if anything fails they are
    put back and the error is raised.  Nothing outside the three folders is touched.
    """
    os.makedirs(folder, exist_ok=True)
    moved = []
    for entry in os.listdir(folder):
        shutil.move(os.path.join(folder, entry), os.path.join(backup, entry))
        moved.append(entry)
    try:
        for entry in os.listdir(staged):
            shutil.move(os.path.join(staged, entry), os.path.join(folder, entry))
        for item in keep:
            src = os.path.join(backup, item)
            if not os.path.lexists(src):
                continue
            dest = os.path.join(folder, item)
            _remove(dest)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copytree(src, dest, symlinks=True) if os.path.isdir(src) and not os.path.islink(src) else shutil.copy2(src, dest, follow_symlinks=False)
    except Exception:
        for entry in os.listdir(folder):
            _remove(os.path.join(folder, entry))
        for entry in moved:
            shutil.move(os.path.join(backup, entry), os.path.join(folder, entry))
        raise
