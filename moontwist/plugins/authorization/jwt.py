"""Compact HS256 JSON Web Tokens: only ``HS256`` is produced and accepted."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from moontwist import jsonutil

__all__ = ["TokenError", "encode", "decode", "MAX_TOKEN_LENGTH", "ALGORITHM"]

ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 4096
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}


class TokenError(Exception):
    """A token is malformed, forged, expired or of the wrong kind; the message is safe to show."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or len(text) % 4 == 1:
        raise TokenError("Malformed token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("Malformed token") from None


def _json_part(text: str) -> dict[str, Any]:
    try:
        value = jsonutil.loads(_b64decode(text))
    except jsonutil.JSONDecodeError:
        raise TokenError("Malformed token") from None
    if not isinstance(value, dict):
        raise TokenError("Malformed token")
    return value


def _sign(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def encode(payload: dict[str, Any], key: bytes) -> str:
    """``payload`` signed with ``key`` (HMAC-SHA256)."""
    signing_input = _b64encode(jsonutil.dumpb(_HEADER)) + "." + _b64encode(jsonutil.dumpb(payload))
    return signing_input + "." + _b64encode(_sign(key, signing_input))


def decode(token: str, key_for: Callable[[dict[str, Any]], bytes | None], token_type: str) -> dict[str, Any]:
    """The verified payload of ``token``.

    ``key_for(unverified_payload)`` returns the signing key for the subject, or
    None when the subject has no valid key (unknown user, logged out).  The
    signature is checked before any claim is trusted; then expiry and type.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("Malformed token")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenError("Malformed token")
    header = _json_part(parts[0])
    if header.get("alg") != ALGORITHM or header.get("typ", "JWT") != "JWT":
        raise TokenError(f"Token algorithm must be {ALGORITHM}")
    payload = _json_part(parts[1])
    signature = _b64decode(parts[2]) if parts[2] else b""
    key = key_for(payload)
    expected = _sign(key or b"\0" * 32, parts[0] + "." + parts[1])
    if not hmac.compare_digest(signature, expected) or key is None:
        raise TokenError("Invalid token signature")
    exp = payload.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= time.time():
        raise TokenError("Token expired")
    if payload.get("token_type") != token_type:
        raise TokenError(f"Token is not an {token_type} token" if token_type == "auth" else f"Token is not a {token_type} token")
    return payload
