"""Just enough image code for thumbnails, in pure Python (no Pillow):
read PNG (8-bit, non-interlaced) and QOI into RGBA, shrink, write PNG."""

from __future__ import annotations

import math
import struct
import zlib
from itertools import accumulate
from operator import mul

__all__ = ["ImageError", "Image", "png_size", "decode_png", "decode_qoi", "encode_png", "fit_within"]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_QOI_MAGIC = b"qoif"
_MAX_PIXELS = 4096 * 4096


class ImageError(ValueError):
    """The data is not an image this module can read."""


class Image:
    """An RGBA image: ``width`` x ``height`` pixels, 4 bytes each."""

    __slots__ = ("width", "height", "rgba")

    def __init__(self, width: int, height: int, rgba: bytes) -> None:
        self.width = width
        self.height = height
        self.rgba = rgba


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk, or None if not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIG) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _chunks(data: bytes):
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ImageError("truncated PNG chunk")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos += 12 + length


def _add_bytes(a: bytes, b: bytes, low: int, high: int) -> bytearray:
    """Bytewise ``(a + b) & 0xFF`` on whole rows at once, via big ints."""
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    total = ((x & low) + (y & low)) ^ ((x ^ y) & high)
    return bytearray(total.to_bytes(len(a), "big"))


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    out = bytearray(height * stride)
    prev = bytearray(stride)
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    wrap = (255).__and__
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += stride + 1
        if ftype == 1:  # Sub: running sum per channel
            for c in range(bpp):
                line[c::bpp] = bytes(map(wrap, accumulate(line[c::bpp])))
        elif ftype == 2:  # Up
            line = _add_bytes(line, prev, low, high)
        elif ftype == 3:  # Average
            for i in range(bpp):
                line[i] = (line[i] + (prev[i] >> 1)) & 0xFF
            for i in range(bpp, stride):
                line[i] = (line[i] + ((line[i - bpp] + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(bpp):
                line[i] = (line[i] + prev[i]) & 0xFF
            for i in range(bpp, stride):
                a, b, c = line[i - bpp], prev[i], prev[i - bpp]
                pa, pb = b - c, a - c
                pc = pa + pb
                pa = pa if pa >= 0 else -pa
                pb = pb if pb >= 0 else -pb
                pc = pc if pc >= 0 else -pc
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise ImageError(f"bad PNG filter {ftype}")
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return out


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced PNG (grey, RGB, palette, +alpha)."""
    if not data.startswith(_PNG_SIG):
        raise ImageError("not a PNG")
    header = b""
    palette = b""
    trns = b""
    idat = []
    for ctype, body in _chunks(data):
        if ctype == b"IHDR":
            header = body
        elif ctype == b"PLTE":
            palette = body
        elif ctype == b"tRNS":
            trns = body
        elif ctype == b"IDAT":
            idat.append(body)
    if len(header) != 13:
        raise ImageError("PNG without IHDR")
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ImageError("unsupported PNG variant")
    if not 0 < width * height <= _MAX_PIXELS:
        raise ImageError("PNG size out of range")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ImageError(str(exc)) from exc
    stride = width * channels
    if len(raw) < height * (stride + 1):
        raise ImageError("truncated PNG data")
    px = _unfilter(raw, height, stride, channels)
    n = width * height
    if ctype == 6:
        rgba = bytes(px)
    else:
        rgba_buf = bytearray(n * 4)
        if ctype == 2:
            for c in range(3):
                rgba_buf[c::4] = px[c::3]
            rgba_buf[3::4] = b"\xff" * n
        elif ctype == 0:
            for c in range(3):
                rgba_buf[c::4] = px
            rgba_buf[3::4] = b"\xff" * n
        elif ctype == 4:
            for c in range(3):
                rgba_buf[c::4] = px[0::2]
            rgba_buf[3::4] = px[1::2]
        else:  # palette
            alpha = trns + b"\xff" * (256 - len(trns))
            table = [palette[i * 3 : i * 3 + 3] + alpha[i : i + 1] for i in range(len(palette) // 3)]
            try:
                rgba_buf = bytearray(b"".join(table[i] for i in px))
            except IndexError as exc:
                raise ImageError("palette index out of range") from exc
        rgba = bytes(rgba_buf)
    return Image(width, height, rgba)


def decode_qoi(data: bytes) -> Image:
    """Decode a QOI image (the "Quite OK Image" format some slicers embed)."""
    if len(data) < 14 or not data.startswith(_QOI_MAGIC):
        raise ImageError("not a QOI image")
    width, height = struct.unpack(">II", data[4:12])
    n = width * height
    if not 0 < n <= _MAX_PIXELS:
        raise ImageError("QOI size out of range")
    out = bytearray(n * 4)
    seen = [(0, 0, 0, 0)] * 64
    r, g, b, a = 0, 0, 0, 255
    pos, end, i = 14, len(data), 0
    run = 0
    while i < n:
        if run:
            run -= 1
        else:
            if pos >= end:
                raise ImageError("truncated QOI data")
            op = data[pos]
            pos += 1
            if op == 0xFE:
                r, g, b = data[pos : pos + 3]
                pos += 3
            elif op == 0xFF:
                r, g, b, a = data[pos : pos + 4]
                pos += 4
            elif op >> 6 == 0:
                r, g, b, a = seen[op]
            elif op >> 6 == 1:
                r = (r + ((op >> 4) & 3) - 2) & 0xFF
                g = (g + ((op >> 2) & 3) - 2) & 0xFF
                b = (b + (op & 3) - 2) & 0xFF
            elif op >> 6 == 2:
                dg = (op & 0x3F) - 32
                nxt = data[pos]
                pos += 1
                r = (r + dg - 8 + (nxt >> 4)) & 0xFF
                g = (g + dg) & 0xFF
                b = (b + dg - 8 + (nxt & 0x0F)) & 0xFF
            else:
                run = op & 0x3F
            seen[(r * 3 + g * 5 + b * 7 + a * 11) % 64] = (r, g, b, a)
        out[i * 4 : i * 4 + 4] = bytes((r, g, b, a))
        i += 1
    return Image(width, height, bytes(out))


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def encode_png(img: Image) -> bytes:
    """Encode an RGBA image as PNG (no filtering, zlib level 9)."""
    stride = img.width * 4
    raw = b"".join(
        b"\x00" + img.rgba[y * stride : (y + 1) * stride] for y in range(img.height)
    )
    ihdr = struct.pack(">IIBBBBB", img.width, img.height, 8, 6, 0, 0, 0)
    return (
        _PNG_SIG
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _fit_size(width: int, height: int, box: int) -> tuple[int, int]:
    """Largest size within ``box`` x ``box`` keeping the aspect ratio as close
    as whole pixels allow (never upscaling)."""
    if width <= box and height <= box:
        return width, height
    aspect = width / height
    if aspect >= 1:
        exact = box / aspect
        options = {max(math.floor(exact), 1), max(math.ceil(exact), 1)}
        return box, min(sorted(options), key=lambda h: abs(aspect - box / h))
    exact = box * aspect
    options = {max(math.floor(exact), 1), max(math.ceil(exact), 1)}
    return min(sorted(options), key=lambda w: abs(aspect - w / box)), box


def fit_within(img: Image, box: int) -> Image:
    """Shrink ``img`` to fit a ``box`` square by area averaging
    (alpha-weighted, so transparent pixels don't darken edges)."""
    nw, nh = _fit_size(img.width, img.height, box)
    if (nw, nh) == (img.width, img.height):
        return img
    src, w, h = img.rgba, img.width, img.height
    alpha = src[3::4]
    # alpha-premultiplied channels, then alpha itself
    planes = [list(map(mul, src[c::4], alpha)) for c in range(3)] + [list(alpha)]
    out = bytearray(nw * nh * 4)
    for oy in range(nh):
        y0 = oy * h // nh
        y1 = max((oy + 1) * h // nh, y0 + 1)
        # per source column: sum over this band of rows
        cols = [list(map(sum, zip(*(p[y * w : (y + 1) * w] for y in range(y0, y1))))) for p in planes]
        for ox in range(nw):
            x0 = ox * w // nw
            x1 = max((ox + 1) * w // nw, x0 + 1)
            sr, sg, sb, sa = (sum(c[x0:x1]) for c in cols)
            if sa:
                count = (y1 - y0) * (x1 - x0)
                o = (oy * nw + ox) * 4
                out[o : o + 4] = bytes((sr // sa, sg // sa, sb // sa, (sa + count // 2) // count))
    return Image(nw, nh, bytes(out))
