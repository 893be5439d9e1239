"""Password hashing: scrypt for new passwords, Moonraker's PBKDF2 for imported ones.

Both functions block for tens of milliseconds; call them through ``deferToThread``.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from moontwist.storage.moonraker_import import MOONRAKER_HASH_SCHEME, verify_moonraker_password

__all__ = ["SCRYPT_SCHEME", "hash_password", "verify_password"]

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
SCRYPT_SCHEME = f"scrypt${_N}${_R}${_P}"


def hash_password(password: str) -> tuple[str, str, str]:
    """``(hash_hex, salt_hex, scheme)`` for a new password."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return digest.hex(), salt.hex(), SCRYPT_SCHEME


def verify_password(password: str, hash_hex: str | None, salt_hex: str | None, scheme: str | None) -> bool:
    """Whether ``password`` matches a stored hash (constant-time comparison)."""
    if not hash_hex or not salt_hex:
        return False
    if scheme == MOONRAKER_HASH_SCHEME:
        return verify_moonraker_password(password, salt_hex, hash_hex)
    try:
        name, n, r, p = (scheme or "").split("$")
        if name != "scrypt":
            return False
        salt = bytes.fromhex(salt_hex)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=_DKLEN)
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), hash_hex.lower())
