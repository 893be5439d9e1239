"""The one place JSON is encoded and decoded (orjson when installed, stdlib otherwise)."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

__all__ = ["dumps", "dumpb", "loads", "JSONDecodeError"]

JSONDecodeError = (ValueError, UnicodeDecodeError)


if orjson is not None:
    _OPTS = orjson.OPT_NON_STR_KEYS

    def dumpb(obj: Any) -> bytes:
        """Encode ``obj`` as compact UTF-8 JSON bytes."""
        try:
            return orjson.dumps(obj, option=_OPTS)
        except TypeError:
            # orjson refuses ints above 64 bits and some subclasses; stdlib copes
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes | str) -> Any:
        """Decode JSON; raises ``ValueError`` on bad input (also bad UTF-8)."""
        return orjson.loads(data)

else:  # pragma: no cover

    def dumpb(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes | str) -> Any:
        return json.loads(data)


def dumps(obj: Any) -> str:
    """Encode ``obj`` as a compact JSON string."""
    return dumpb(obj).decode()
