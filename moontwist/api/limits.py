"""Size limits every transport applies before a request reaches a handler.

Request bodies (per endpoint, checked on the headers), JSON nesting depth,
JSON-RPC batch length and the size of one reply.  A client that has not
authenticated gets much lower limits than one that has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moontwist.api.errors import ServerError

__all__ = [
    "DEFAULT_MAX_BODY",
    "LARGE_BODY",
    "ANONYMOUS_MAX_BODY",
    "MAX_JSON_DEPTH",
    "RPCLimits",
    "AUTHENTICATED_RPC",
    "ANONYMOUS_RPC",
    "check_depth",
]

# An argument body (JSON or form) of an endpoint that declares no ``max_body``.
DEFAULT_MAX_BODY = 1024 * 1024
# For endpoints that take a big value (a database item): as large as a websocket message.
LARGE_BODY = 16 * 1024 * 1024
# Any body from a client that has not authenticated (public endpoints: login, refresh).
ANONYMOUS_MAX_BODY = 64 * 1024
# Deeper JSON is refused before anything recursive (encoders, storage) walks it.
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class RPCLimits:
    """Bounds for one JSON-RPC message: its size, its batch length and the size of its reply."""

    message: int
    batch: int
    reply: int


AUTHENTICATED_RPC = RPCLimits(message=LARGE_BODY, batch=256, reply=64 * 1024 * 1024)
ANONYMOUS_RPC = RPCLimits(message=64 * 1024, batch=10, reply=1024 * 1024)


def check_depth(raw: bytes | str, value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse ``value`` (decoded from ``raw``) when arrays and objects nest deeper than ``limit``.

    Counting brackets in ``raw`` is done in C; only a document with more
    brackets than ``limit`` is walked (iteratively) to measure its depth.
    """
    if isinstance(raw, str):
        opened = raw.count("[") + raw.count("{")
    else:
        opened = raw.count(b"[") + raw.count(b"{")
    if opened <= limit:
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ServerError(f"JSON nested deeper than {limit} levels", 400)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
