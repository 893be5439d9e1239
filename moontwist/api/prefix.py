"""``[server] route_prefix``: every HTTP route (and the websockets) served below a path prefix."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote_to_bytes

__all__ = ["parse_route_prefix", "strip_route_prefix"]


def parse_route_prefix(value: str | None) -> str:
    """``"moonraker/printer1"`` -> ``"/moonraker/printer1"`` (parts URL-escaped); None -> ``""``.

    Raises ValueError for a prefix with no path part (``"/"``).
    """
    if value is None:
        return ""
    parts = [quote(part, safe="") for part in value.strip().strip("/").split("/") if part]
    if not parts:
        raise ValueError(f"Invalid value for option 'route_prefix': {value!r}")
    return "/" + "/".join(parts)


def strip_route_prefix(request: Any, prefix: str) -> bool:
    """Rewrite a twisted.web request for ``prefix/...`` to ``/...``; False when it is not below the prefix."""
    mark = prefix.encode("ascii")
    path = request.path
    if path != mark and not path.startswith(mark + b"/"):
        return False
    rest = path[len(mark):] or b"/"
    _, sep, query = request.uri.partition(b"?")
    request.path = rest
    request.uri = rest + sep + query
    request.postpath = [unquote_to_bytes(part) for part in rest[1:].split(b"/")]
    return True
