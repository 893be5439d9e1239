"""Embedded thumbnails: find ``; thumbnail[_FMT] begin W[x ]H LEN`` blocks,
decode their base64 body and write ``.thumbs/<stem>-WxH.<ext>`` beside the
G-code file (QOI is converted to PNG with Pillow).  A block that is
malformed is skipped, never fatal.

Thumbnails are written confined to a root: a ``.thumbs`` that is a symlink is
never followed, and each file replaces whatever was there (a symlink
included) through a temporary file instead of writing through it.

Pillow is imported the first time an image has to be decoded: most servers
never need it, and it costs a few MB resident."""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from moontwist.storage.confined import Folder, Tree

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["THUMB_DIR", "THUMB_TEMP_PREFIX", "extract_thumbnails", "thumbnail_from_image_file"]


THUMB_DIR = ".thumbs"
THUMB_TEMP_PREFIX = ".thumb-"
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
_MAX_PIXELS = 4096 * 4096


def _pillow() -> Any:
    from PIL import Image as pillow

    return pillow


def _bad_image() -> tuple[type[BaseException], ...]:
    """What Pillow raises for data it can't decode (UnidentifiedImageError is an OSError)."""
    return (OSError, ValueError, SyntaxError, EOFError, _pillow().DecompressionBombError)


def _open(blob: bytes) -> Image.Image:
    """The image in ``blob`` (lazily decoded); refuses absurd sizes before decoding."""
    img = _pillow().open(io.BytesIO(blob))
    if img.width * img.height > _MAX_PIXELS:
        raise ValueError(f"image too large: {img.width}x{img.height}")
    return img


def _png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


class _Writer:
    """Writes into ``.thumbs/`` beside a G-code file (created on demand), inside ``root``."""

    def __init__(self, gcode_path: str, root: str | None, log: Logger) -> None:
        self.log = log
        self.folder = os.path.dirname(gcode_path)
        self.tree = Tree(root or self.folder)
        self.stem = os.path.splitext(os.path.basename(gcode_path))[0]
        self._thumbs: Folder | None = None
        self._error: OSError | None = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thumbs is not None:
            self._thumbs.close()

    def _open(self, create: bool) -> Folder:
        if self._error is not None:
            raise self._error
        if self._thumbs is None:
            try:
                with self.tree.folder(self.folder) as folder:
                    self._thumbs = folder.subfolder(THUMB_DIR, create=create, follow=False)
            except OSError as exc:
                self._error = exc
                raise
        return self._thumbs

    def name(self, width: int, height: int, ext: str) -> str:
        return f"{self.stem}-{width}x{height}.{ext}"

    def write(self, name: str, data: bytes) -> dict[str, Any] | None:
        try:
            self._open(create=True).write_file(name, data, THUMB_TEMP_PREFIX)
        except (OSError, ValueError) as exc:
            self.log.warn("Cannot write thumbnail {name} in {folder}: {error}", name=name, folder=self.folder, error=exc)
            return None
        return {"size": len(data), "relative_path": f"{THUMB_DIR}/{name}"}

    def read(self, name: str) -> bytes | None:
        try:
            with self._open(create=False).open_read(name) as f:
                return f.read()
        except (OSError, ValueError):
            return None


def _decode_block(m: re.Match[str], log: Logger) -> tuple[str, bytes] | None:
    """``(extension, file bytes)`` for one block, None if unusable."""
    fmt = (m.group("fmt") or "png").lower()
    text = _NOT_B64.sub("", m.group("body").replace(";", ""))
    if len(text) != int(m.group("len")):
        log.info("Thumbnail length mismatch: declared {declared}, found {found}", declared=m.group("len"), found=len(text))
        return None
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        log.info("Thumbnail with invalid base64 skipped")
        return None
    if fmt == "qoi":
        try:
            with _open(blob) as img:
                if img.format != "QOI":
                    raise ValueError("not a QOI image")
                return "png", _png_bytes(img)
        except _bad_image() as exc:
            log.info("Unreadable QOI thumbnail skipped: {error}", error=exc)
            return None
    sig = _SIGNATURES.get(fmt)
    if sig is None or not blob.startswith(sig):
        log.info("Unsupported or corrupt {kind} thumbnail skipped", kind=fmt)
        return None
    return fmt, blob


def _miniature(writer: _Writer, source: bytes) -> dict[str, Any] | None:
    """A 32x32-bounded PNG made from ``source`` (PNG or JPEG bytes), aspect kept.

    One bicubic pass over the full image (no ``reducing_gap`` pre-shrink):
    that reproduces Moonraker's recorded miniatures byte for byte.
    """
    try:
        with _open(source) as img:
            img.thumbnail((MINI, MINI), _pillow().Resampling.BICUBIC, reducing_gap=None)
            size, data = img.size, _png_bytes(img)
    except _bad_image() as exc:
        writer.log.info("Cannot shrink thumbnail: {error}", error=exc)
        return None
    info = writer.write(writer.name(MINI, MINI, "png"), data)
    if info is None:
        return None
    return {"width": size[0], "height": size[1], **info}


def extract_thumbnails(gcode_path: str, text: str, log: Logger, root: str | None = None) -> list[dict[str, Any]] | None:
    """Write every valid embedded thumbnail of ``text``; list their info.

    When none is 32x32, a 32x32-bounded PNG is made from the largest
    thumbnail (in bytes, first on ties) and listed first, as Moonraker
    does.  None if there are no usable thumbnails.  Nothing is written
    outside ``root`` (default: the G-code file's folder).
    """
    if "thumbnail" not in text:
        return None
    with _Writer(gcode_path, root, log) as writer:
        return _extract(writer, text)


def _extract(writer: _Writer, text: str) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = []
    has_mini = False
    largest: tuple[int, bytes] | None = None
    for m in _BLOCK.finditer(text):
        decoded = _decode_block(m, writer.log)
        if decoded is None:
            continue
        ext, blob = decoded
        width, height = int(m.group("w")), int(m.group("h"))
        info = writer.write(writer.name(width, height, ext), blob)
        if info is None:
            continue
        found.append({"width": width, "height": height, **info})
        has_mini = has_mini or (width, height) == (MINI, MINI)
        if largest is None or info["size"] > largest[0]:
            largest = (info["size"], blob)
    if not found:
        return None
    if not has_mini and largest is not None:
        mini = _miniature(writer, largest[1])
        if mini is not None:
            found.insert(0, mini)
    return found


def thumbnail_from_image_file(gcode_path: str, log: Logger, root: str | None = None) -> list[dict[str, Any]] | None:
    """Info for ``.thumbs/<stem>.png`` (left by a ``.ufp`` upload) plus a
    32x32-bounded copy; None if there is no such readable PNG."""
    with _Writer(gcode_path, root, log) as writer:
        return _from_image_file(writer)


def _from_image_file(writer: _Writer) -> list[dict[str, Any]] | None:
    name = f"{writer.stem}.png"
    blob = writer.read(name)
    if blob is None:
        return None
    try:
        with _open(blob) as img:
            if img.format != "PNG":
                return None
            width, height = img.size
    except _bad_image():
        return None
    full = {"width": width, "height": height, "size": len(blob), "relative_path": f"{THUMB_DIR}/{name}"}
    mini = _miniature(writer, blob)
    return [mini, full] if mini is not None else None
