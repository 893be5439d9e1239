"""Klippy's socket framing: JSON messages each terminated by 0x03."""

from __future__ import annotations

import logging

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from ..jsonutil import JSONDecodeError, dumpb, loads

log = logging.getLogger(__name__)

ETX = b"\x03"


class KlippyConnection(Protocol):
    """One API client; holds its output template for ``gcode/subscribe_output``."""

    def __init__(self, server) -> None:
        self.server = server
        self.output_template: dict | None = None
        self.client_info: dict | None = None
        self.lost = Deferred()
        self._buffer = bytearray()

    def connectionMade(self) -> None:
        self.server.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(ETX)
            if end < 0:
                return
            raw = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            try:
                msg = loads(raw)
            except JSONDecodeError:
                log.debug("dropping undecodable request %r", raw[:200])
                continue
            self.server.handle_request(self, msg)
            if self.transport is None or self.transport.disconnecting:
                return

    def send(self, obj: object) -> None:
        """Encode and write one message."""
        self.send_raw(dumpb(obj))

    def send_raw(self, payload: bytes) -> None:
        """Write ``payload`` plus the terminator, unless the connection is closing."""
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.write(payload + ETX)

    def connectionLost(self, reason=None) -> None:
        self.server.connection_lost(self)
        self.lost.callback(None)


class KlippyFactory(Factory):
    """Builds connections bound to the simulator."""

    def __init__(self, server) -> None:
        self.server = server

    def buildProtocol(self, addr) -> KlippyConnection:
        return KlippyConnection(self.server)
