r"""Path safety: every client path is resolved inside its root or refused with a 4xx.

File names that are not valid UTF-8 (a USB stick copied by another system can
leave ``caf\xe9.gcode``) reach Python as strings with lone surrogates, which
JSON can't carry.  Clients see such a name with each undecodable byte written
as ``\xHH`` (:func:`shown`), and a path a client sends is matched back to the
name on disk component by component (a file literally named so wins).
"""

from __future__ import annotations

import os
import posixpath
import re

from moontwist.api.errors import ServerError
from moontwist.plugins.files.roots import Root, Roots

__all__ = ["split_root", "resolve", "relative", "check_name", "shown", "MAX_NAME_BYTES"]

MAX_NAME_BYTES = 255
_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def shown(name: str) -> str:
    """``name`` as clients see it: bytes that are not UTF-8 become ``\\xHH``."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _on_disk(folder: str, part: str) -> str:
    """The name in ``folder`` that ``part`` (as a client sent it) stands for."""
    if "\\x" not in part or os.path.lexists(os.path.join(folder, part)):
        return part
    raw = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), part)
    return raw if os.path.lexists(os.path.join(folder, raw)) else part


def split_root(roots: Roots, path: str, default_root: str | None = None) -> tuple[Root, str]:
    """``"gcodes/sub/a.gcode"`` -> (gcodes root, ``"sub/a.gcode"``)."""
    if not isinstance(path, str):
        raise ServerError(f"Invalid path: expected a string, got {type(path).__name__}", 400)
    path = path.lstrip("/")
    name, _, rest = path.partition("/")
    if not name and default_root is not None:
        name = default_root
    # "gcodes//a.gcode" is "gcodes/a.gcode" (Mainsail sends such paths), never an absolute path
    return roots.get(name), rest.lstrip("/")


def check_name(name: str) -> None:
    """Refuse names no file should have: control characters, NUL, too long, dot names."""
    if name in ("", ".", ".."):
        raise ServerError(f"Invalid file name {name!r}", 400)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ServerError(f"Invalid file name {name!r}: control characters are not allowed", 400)
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ServerError(f"Invalid file name: longer than {MAX_NAME_BYTES} bytes", 400)


def resolve(root: Root, rel: str, *, for_write: bool = False) -> str:
    """The absolute path of ``rel`` inside ``root``; refuses anything that would leave it.

    ``..`` components, absolute paths, NUL bytes and symlinks resolving outside
    the root are refused with 403/400.  ``for_write`` also checks that the root
    is writable and every component is a valid file name.
    """
    if "\x00" in rel:
        raise ServerError(f"Invalid path {rel!r}: NUL bytes are not allowed", 400)
    if rel.startswith("/"):
        raise ServerError(f"Invalid path {rel!r}: absolute paths are not allowed", 403)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ServerError(f"Invalid path {rel!r}: '..' is not allowed", 403)
    if for_write:
        if not root.writable:
            raise ServerError(f"Root '{root.name}' is read-only", 403)
        for part in parts:
            check_name(part)
    full = root.path
    for part in parts:
        full = os.path.join(full, _on_disk(full, part))
    real = os.path.realpath(full)
    base = root.realpath
    if real != base and not real.startswith(base + os.sep):
        raise ServerError(f"Invalid path {rel!r}: it leads outside root '{root.name}'", 403)
    return full


def relative(root: Root, full: str) -> str:
    """``full`` relative to its root as clients see it, ``/`` separated (``""`` for the root)."""
    rel = os.path.relpath(full, root.path)
    return "" if rel == "." else shown(posixpath.join(*rel.split(os.sep)))
