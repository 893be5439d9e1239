"""Path safety: every client path is resolved inside its root or refused with a 4xx."""

from __future__ import annotations

import os
import posixpath

from moontwist.api.errors import ServerError
from moontwist.plugins.files.roots import Root, Roots

__all__ = ["split_root", "resolve", "relative", "check_name", "MAX_NAME_BYTES"]

MAX_NAME_BYTES = 255


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
    full = os.path.join(root.path, *parts) if parts else root.path
    real = os.path.realpath(full)
    base = root.realpath
    if real != base and not real.startswith(base + os.sep):
        raise ServerError(f"Invalid path {rel!r}: it leads outside root '{root.name}'", 403)
    return full


def relative(root: Root, full: str) -> str:
    """``full`` relative to its root, with ``/`` separators (``""`` for the root itself)."""
    rel = os.path.relpath(full, root.path)
    return "" if rel == "." else posixpath.join(*rel.split(os.sep))
