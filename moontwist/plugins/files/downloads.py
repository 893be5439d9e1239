"""Downloads streamed from disk by twisted.web.static.File (Range, HEAD, If-Modified-Since)."""

from __future__ import annotations

from urllib.parse import quote

from twisted.web import static
from twisted.web.server import Request

__all__ = ["DownloadResource"]

_TEXT = "text/plain; charset=utf-8"
_EXTRA_TYPES = {
    ".gcode": _TEXT,
    ".g": _TEXT,
    ".gco": _TEXT,
    ".nc": _TEXT,
    ".cfg": _TEXT,
    ".conf": _TEXT,
    ".log": _TEXT,
    ".md": "text/markdown; charset=utf-8",
    ".ufp": "application/octet-stream",
}


class DownloadResource(static.File):
    """One file, rendered as is whatever path segments follow (a leaf)."""

    isLeaf = True

    def __init__(self, path: str, name: str) -> None:
        super().__init__(path, defaultType="application/octet-stream")
        self.contentTypes = {**self.contentTypes, **_EXTRA_TYPES}
        self.download_name = name

    def render(self, request: Request) -> bytes | int:
        # Browsers save rather than show the file, under its name (as Moonraker sends it).
        ascii_name = self.download_name.encode("ascii", "replace").decode().replace('"', "_")
        request.setHeader(
            b"content-disposition",
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(self.download_name)}".encode(),
        )
        return super().render(request)
