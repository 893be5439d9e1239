"""Embedded thumbnails: find ``; thumbnail[_FMT] begin W[x ]H LEN`` blocks,
decode their base64 body and write ``.thumbs/<stem>-WxH.<ext>`` beside the
G-code file.  A block that is malformed is skipped, never fatal."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from typing import Any

from .png import ImageError, decode_png, decode_qoi, encode_png, fit_within, png_size

__all__ = ["THUMB_DIR", "extract_thumbnails", "thumbnail_from_image_file"]

log = logging.getLogger(__name__)

THUMB_DIR = ".thumbs"
MINI = 32

# Begin line, base64 lines ("; <data>"), end line naming the same block kind.
_BLOCK = re.compile(
    r"; (thumbnail(?:_(?P<fmt>[A-Za-z0-9]+))?) begin "
    r"(?P<w>\d+)[x ](?P<h>\d+) (?P<len>\d+)[ \t]*\r?\n"
    r"(?P<body>(?:;[ \t]*[A-Za-z0-9+/=]*[ \t]*\r?\n)*)"
    r"; \1 end"
)
_NOT_B64 = re.compile(r"[^A-Za-z0-9+/=]")
_SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8"}


class _Writer:
    """Writes into ``.thumbs/`` beside a G-code file, creating it on demand."""

    def __init__(self, gcode_path: str) -> None:
        self.dir = os.path.join(os.path.dirname(gcode_path), THUMB_DIR)
        self.stem = os.path.splitext(os.path.basename(gcode_path))[0]

    def name(self, width: int, height: int, ext: str) -> str:
        return f"{self.stem}-{width}x{height}.{ext}"

    def write(self, name: str, data: bytes) -> dict[str, Any] | None:
        path = os.path.join(self.dir, name)
        try:
            os.makedirs(self.dir, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            log.warning("cannot write thumbnail %s: %s", path, exc)
            return None
        return {"size": len(data), "relative_path": f"{THUMB_DIR}/{name}"}


def _decode_block(m: re.Match[str]) -> tuple[str, bytes] | None:
    """``(extension, file bytes)`` for one block, None if unusable."""
    fmt = (m.group("fmt") or "png").lower()
    text = _NOT_B64.sub("", m.group("body").replace(";", ""))
    if len(text) != int(m.group("len")):
        log.info("thumbnail length mismatch: declared %s, found %d", m.group("len"), len(text))
        return None
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        log.info("thumbnail with invalid base64 skipped")
        return None
    if fmt == "qoi":
        try:
            return "png", encode_png(decode_qoi(blob))
        except ImageError as exc:
            log.info("unreadable QOI thumbnail skipped: %s", exc)
            return None
    sig = _SIGNATURES.get(fmt)
    if sig is None or not blob.startswith(sig):
        log.info("unsupported or corrupt %s thumbnail skipped", fmt)
        return None
    return fmt, blob


def _miniature(writer: _Writer, source: bytes) -> dict[str, Any] | None:
    """A 32x32-bounded PNG made from ``source`` (PNG bytes)."""
    try:
        small = fit_within(decode_png(source), MINI)
    except ImageError as exc:
        log.info("cannot shrink thumbnail: %s", exc)
        return None
    info = writer.write(writer.name(MINI, MINI, "png"), encode_png(small))
    if info is None:
        return None
    return {"width": small.width, "height": small.height, **info}


def extract_thumbnails(gcode_path: str, text: str) -> list[dict[str, Any]] | None:
    """Write every valid embedded thumbnail of ``text``; list their info.

    When none is 32x32, a 32x32-bounded PNG is made from the largest PNG
    thumbnail and listed first (Moonraker does the same).  None if there
    are no usable thumbnails.
    """
    if "thumbnail" not in text:
        return None
    writer = _Writer(gcode_path)
    found: list[dict[str, Any]] = []
    has_mini = False
    largest: tuple[int, bytes] | None = None
    for m in _BLOCK.finditer(text):
        decoded = _decode_block(m)
        if decoded is None:
            continue
        ext, blob = decoded
        width, height = int(m.group("w")), int(m.group("h"))
        info = writer.write(writer.name(width, height, ext), blob)
        if info is None:
            continue
        found.append({"width": width, "height": height, **info})
        has_mini = has_mini or (width, height) == (MINI, MINI)
        if ext == "png" and (largest is None or len(blob) > largest[0]):
            largest = (len(blob), blob)
    if not found:
        return None
    if not has_mini and largest is not None:
        mini = _miniature(writer, largest[1])
        if mini is not None:
            found.insert(0, mini)
    return found


def thumbnail_from_image_file(gcode_path: str) -> list[dict[str, Any]] | None:
    """Info for ``.thumbs/<stem>.png`` (left by a ``.ufp`` upload) plus a
    32x32-bounded copy; None if there is no such readable PNG."""
    writer = _Writer(gcode_path)
    name = f"{writer.stem}.png"
    try:
        with open(os.path.join(writer.dir, name), "rb") as f:
            blob = f.read()
    except OSError:
        return None
    dims = png_size(blob)
    if dims is None:
        return None
    full = {"width": dims[0], "height": dims[1], "size": len(blob), "relative_path": f"{THUMB_DIR}/{name}"}
    mini = _miniature(writer, blob)
    return [mini, full] if mini is not None else None
