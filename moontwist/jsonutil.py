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


def _stdlib_dumpb(obj: Any) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # a lone surrogate (a file name that isn't UTF-8): as a \uXXXX escape, still valid JSON
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


if orjson is not None:
    _OPTS = orjson.OPT_NON_STR_KEYS

    def dumpb(obj: Any) -> bytes:
        """Encode ``obj`` as compact UTF-8 JSON bytes."""
        try:
            return orjson.dumps(obj, option=_OPTS)
        except TypeError:
            # orjson refuses ints above 64 bits, some subclasses and lone surrogates; stdlib copes
            return _stdlib_dumpb(obj)

    def loads(data: bytes | str) -> Any:
        """Decode JSON; raises ``ValueError`` on bad input (also bad UTF-8)."""
        return orjson.loads(data)

else:  # pragma: no cover

    def dumpb(obj: Any) -> bytes:
        return _stdlib_dumpb(obj)

    def loads(data: bytes | str) -> Any:
        return json.loads(data)


def dumps(obj: Any) -> str:
    """Encode ``obj`` as a compact JSON string."""
    return dumpb(obj).decode()
