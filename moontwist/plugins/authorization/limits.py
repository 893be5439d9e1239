"""Per-address login throttling and single-use query-string tokens."""

from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["LoginThrottle", "OneshotTokens", "ONESHOT_TIMEOUT", "LOCKOUT_SECONDS"]

ONESHOT_TIMEOUT = 5.0
LOCKOUT_SECONDS = 300.0
_BASE_DELAY = 0.2
_MAX_DELAY = 3.0


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Login attempts per address: failures are answered more and more slowly, then a lockout.

    An attempt is counted when it begins, before its password is checked, so
    attempts made at once (a JSON-RPC batch, parallel requests) can't get past
    ``max_attempts`` either; a success clears the address's count.
    """

    def __init__(self, max_attempts: int, clock: Any, lockout: float = LOCKOUT_SECONDS) -> None:
        self.max_attempts = max_attempts
        self.lockout = lockout
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def locked_for(self, ip: str) -> float:
        """Seconds left on the address's lockout (0 when it may try)."""
        entry = self._failures.get(ip)
        if entry is None or not entry.locked_until:
            return 0.0
        left = entry.locked_until - self._clock.seconds()
        if left <= 0:
            del self._failures[ip]
            return 0.0
        return left

    def begin(self, ip: str) -> float:
        """Count an attempt from ``ip`` before it is checked.

        Returns the seconds of lockout left (the attempt must be refused), or 0.
        The attempt that reaches ``max_attempts`` is still checked; it starts the lockout.
        """
        left = self.locked_for(ip)
        if left:
            return left
        entry = self._failures.setdefault(ip, _Failures())
        entry.count += 1
        if entry.count >= self.max_attempts:
            entry.locked_until = self._clock.seconds() + self.lockout
        return 0.0

    def failed(self, ip: str) -> float:
        """How long to wait before answering a failed attempt (longer with every attempt)."""
        entry = self._failures.get(ip)
        count = entry.count if entry is not None else 1
        return min(_BASE_DELAY * 2 ** (max(count, 1) - 1), _MAX_DELAY)

    def succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)


class OneshotTokens:
    """Random tokens valid ``ONESHOT_TIMEOUT`` seconds, once, from the address that asked."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._tokens: list[tuple[str, str | None, dict[str, Any] | None, float]] = []

    def issue(self, ip: str | None, user: dict[str, Any] | None) -> str:
        self._prune()
        token = base64.b32encode(os.urandom(20)).decode("ascii")
        self._tokens.append((token, ip, user, self._clock.seconds() + ONESHOT_TIMEOUT))
        return token

    def consume(self, token: str, ip: str | None) -> tuple[bool, dict[str, Any] | None]:
        """``(valid, user)``; a valid token is spent by this call."""
        self._prune()
        candidate = token.encode("utf-8", "surrogateescape")
        for entry in self._tokens:
            if hmac.compare_digest(entry[0].encode("ascii"), candidate):
                self._tokens.remove(entry)
                return entry[1] == ip, entry[2]
        return False, None

    def _prune(self) -> None:
        now = self._clock.seconds()
        self._tokens = [t for t in self._tokens if t[3] > now]
