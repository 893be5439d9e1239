"""Unpacking UFP packages (Cura's Ultimaker Format Package): the G-code and its thumbnail.

A UFP is a zip archive holding ``/3D/model.gcode`` and usually
``/Metadata/thumbnail.png``.  Only those two members are read, by their exact
names, into paths this module is given, so a member named ``../../x`` can
never be written anywhere.  The G-code is copied in chunks with a size limit
(a zip bomb stops at the limit); the thumbnail must be a PNG of reasonable size.
"""

from __future__ import annotations

import os
import zipfile

from moontwist.api.errors import ServerError

__all__ = ["unpack_ufp", "MODEL_MEMBER", "THUMB_MEMBER"]

MODEL_MEMBER = "3D/model.gcode"
THUMB_MEMBER = "Metadata/thumbnail.png"
MAX_THUMBNAIL = 16 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK = 1024 * 1024


def _member(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    for info in zf.infolist():
        if info.filename.lstrip("/") == name and not info.is_dir():
            return info
    return None


def unpack_ufp(ufp_path: str, gcode_path: str, max_size: int) -> bytes | None:
    """Write the package's G-code to ``gcode_path``; return its PNG thumbnail (None if it has none).

    Raises ``ServerError`` (400) for a file that isn't a usable UFP; nothing
    is left at ``gcode_path`` then.
    """
    try:
        with zipfile.ZipFile(ufp_path) as zf:
            model = _member(zf, MODEL_MEMBER)
            if model is None:
                raise ServerError(f"Invalid UFP package: it has no /{MODEL_MEMBER}", 400)
            if model.file_size > max_size:
                raise ServerError(f"Invalid UFP package: its G-code ({model.file_size} bytes) exceeds "
                                  f"max_upload_size ({max_size} bytes)", 413)
            _copy(zf, model, gcode_path, max_size)
            thumb = _member(zf, THUMB_MEMBER)
            if thumb is None or thumb.file_size > MAX_THUMBNAIL:
                return None
            with zf.open(thumb) as f:
                data = f.read(MAX_THUMBNAIL + 1)
            return data if data.startswith(PNG_SIGNATURE) and len(data) <= MAX_THUMBNAIL else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        _remove(gcode_path)
        raise ServerError(f"Invalid UFP package: {exc}", 400) from None
    except ServerError:
        _remove(gcode_path)
        raise


def _copy(zf: zipfile.ZipFile, member: zipfile.ZipInfo, dest: str, max_size: int) -> None:
    written = 0
    with zf.open(member) as src, open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > max_size:  # the header lied about the size
                raise ServerError(f"Invalid UFP package: its G-code exceeds max_upload_size ({max_size} bytes)", 413)
            out.write(chunk)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
