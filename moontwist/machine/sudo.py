"""Privileged actions that sudo refused for want of a password, reported as ``notify_sudo_alert``.

moontwist never stores a sudo password: it runs privileged commands with
``sudo -n``.  When sudo answers that it needs a password, the action is
recorded here (and clients are alerted) until the same action runs with sudo,
after the administrator allowed it in sudoers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SudoAlerts", "needs_password"]

# what ``sudo -n`` prints when it would have to ask
_PASSWORD_WANTED = ("a password is required", "a terminal is required", "no tty present")


def needs_password(stderr: str) -> bool:
    """Whether ``sudo -n`` failed because it wanted a password."""
    text = stderr.lower()
    return "sudo" in text and any(reason in text for reason in _PASSWORD_WANTED)


class SudoAlerts:
    """Pending sudo requests by action; ``notify`` receives each ``notify_sudo_alert`` payload."""

    def __init__(self, notify: Callable[[dict[str, Any]], None]) -> None:
        self._notify = notify
        self._pending: dict[str, str] = {}

    @property
    def requested(self) -> bool:
        return bool(self._pending)

    @property
    def messages(self) -> list[str]:
        return list(self._pending.values())

    def needed(self, action: str) -> None:
        """sudo wanted a password to ``action`` (e.g. "restart the klipper service")."""
        if action in self._pending:
            return
        self._pending[action] = (
            f"Sudo permission is required to {action}: allow the command without a password in sudoers"
        )
        self._send([])

    def succeeded(self, action: str) -> None:
        """``action`` ran with sudo; a pending request for it is resolved."""
        if self._pending.pop(action, None) is not None:
            self._send([f"Sudo permission granted: able to {action}"])

    def _send(self, responses: list[str]) -> None:
        messages = self.messages
        # Moonraker's documentation names the list sudo_messages, its code request_messages: send both.
        self._notify({"sudo_requested": bool(messages), "sudo_messages": responses + messages,
                      "request_messages": messages})
