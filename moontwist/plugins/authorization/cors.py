"""CORS headers and preflight answers for HTTP requests."""

from __future__ import annotations

from typing import Any

from moontwist.api.http import error_body
from moontwist.plugins.authorization.policy import CorsPolicy

__all__ = ["prepare_http"]

ALLOW_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
_SAFE = frozenset((b"GET", b"HEAD"))
ALLOW_HEADERS = (
    b"Origin, Accept, Content-Type, X-Requested-With, X-CRSF-Token, Authorization, X-Access-Token, X-Api-Key"
)


def prepare_http(cors: CorsPolicy, request: Any) -> bytes | None:
    """Add CORS headers for an allowed origin; answer ``OPTIONS`` (preflight) here."""
    raw_origin = request.getHeader(b"origin")
    origin = raw_origin.decode("latin-1") if raw_origin else None
    host = (request.getHeader(b"host") or b"").decode("latin-1")
    allowed = origin is None or cors.allowed(origin, host)
    if origin is not None and allowed:
        request.setHeader(b"access-control-allow-origin", raw_origin)
        request.setHeader(b"vary", b"Origin")
        request.setHeader(b"access-control-allow-methods", ALLOW_METHODS)
        request.setHeader(b"access-control-allow-headers", ALLOW_HEADERS)
        if (request.getHeader(b"access-control-request-private-network") or b"").lower() == b"true":
            request.setHeader(b"access-control-allow-private-network", b"true")
    if request.method in _SAFE:
        return None  # the page can't read the answer (no CORS headers); actions are refused below
    if not allowed:  # a preflight, or an action (refused on the headers already: moontwist.api.upload)
        request.setResponseCode(403)
        return error_body(403, f"Origin {origin} is not allowed by [authorization] cors_domains")
    if request.method != b"OPTIONS":
        return None
    request.setResponseCode(204)
    return b""
