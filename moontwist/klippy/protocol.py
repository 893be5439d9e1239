"""Klippy's socket protocol: JSON messages, each ended by byte 0x03."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from moontwist import jsonutil

__all__ = ["KlippyProtocol", "ETX", "MAX_MESSAGE"]

ETX = b"\x03"
# Klippy's largest replies (configfile, bed meshes) are a few hundred KB.
MAX_MESSAGE = 8 * 1024 * 1024


class KlippyProtocol(Protocol):
    """Frames messages; hands decoded ones to ``on_message``.

    A message that isn't JSON is logged and skipped; one larger than
    ``MAX_MESSAGE`` drops the connection, since framing can't be trusted after it.
    """

    def __init__(
        self,
        on_message: Callable[[dict[str, Any]], None],
        on_lost: Callable[[KlippyProtocol, Failure], None],
        log: Logger,
    ) -> None:
        self._on_message = on_message
        self.log = log
        self._on_lost = on_lost
        self._buffer = bytearray()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self._buffer += data
        if ETX not in data:
            if len(self._buffer) > MAX_MESSAGE:
                self.log.error("Klippy sent a message over {limit} bytes; reconnecting", limit=MAX_MESSAGE)
                self._buffer.clear()
                self.transport.abortConnection()
            return
        *messages, rest = bytes(self._buffer).split(ETX)
        self._buffer = bytearray(rest)
        for raw in messages:
            if not raw:
                continue
            try:
                msg = jsonutil.loads(raw)
            except jsonutil.JSONDecodeError:
                self.log.warn("Klippy sent a message that is not JSON ({size} bytes); ignored", size=len(raw))
                continue
            if not isinstance(msg, dict):
                self.log.warn("Klippy sent a JSON {kind}, not an object; ignored", kind=type(msg).__name__)
                continue
            self._on_message(msg)

    def send(self, msg: dict[str, Any]) -> None:
        self.transport.write(jsonutil.dumpb(msg) + ETX)

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802
        self._on_lost(self, reason)
