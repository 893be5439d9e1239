"""JSON-RPC over a unix socket (``comms/moonraker.sock``), each message ended by 0x03."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from moontwist.api.connection import Connection, SendQueue

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["UnixSocketConnection", "UnixSocketFactory", "ETX"]

ETX = b"\x03"
MAX_MESSAGE = 16 * 1024 * 1024
MAX_BACKLOG = 8 * 1024 * 1024


class UnixSocketConnection(Protocol, Connection):
    """A local client (tools, agents) speaking JSON-RPC framed by 0x03."""

    transport_name = "unix"

    def __init__(self, server: Server) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self._partial: list[bytes] = []  # pieces of a message whose ETX hasn't arrived
        self._partial_size = 0

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.init_connection(None, self.server.connections.ids)
        self.queue = SendQueue(self.transport.write, self._overflow, MAX_BACKLOG)
        self.transport.registerProducer(self.queue, True)
        self.server.connections.add(self)

    def _overflow(self) -> None:
        self.log.warn("Unix socket client {id} can't keep up; disconnecting", id=self.connection_id)
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        # Pieces are joined only once their message is complete: a big message costs O(size).
        if ETX in data:
            if self._partial:
                data = b"".join(self._partial) + data
            *messages, rest = data.split(ETX)
            self._partial = [rest] if rest else []
            self._partial_size = len(rest)
        else:
            messages = []
            self._partial.append(data)
            self._partial_size += len(data)
        if self._partial_size > MAX_MESSAGE:
            self.log.warn("Unix socket client {id} sent an oversized message; closing", id=self.connection_id)
            self._partial, self._partial_size = [], 0
            self.transport.loseConnection()
            return
        for message in messages:
            if message.strip():
                self._handle(message)

    def _handle(self, message: bytes) -> None:
        reply = self.server.dispatcher.handle_bytes(message, "unix", self)
        if isinstance(reply, Deferred):
            reply.addCallback(lambda data: data is not None and self.send_bytes(data))
            reply.addErrback(lambda f: self.log.failure("unix socket reply failed", f))
        elif reply is not None:
            self.send_bytes(reply)

    def send_bytes(self, data: bytes) -> None:
        if self.transport is not None and self.connected:
            self.queue.send(data + ETX)

    def close_connection(self, code: int = 1000, reason: str = "") -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        self.server.connections.remove(self)


class UnixSocketFactory(Factory):
    noisy = False

    def __init__(self, server: Server) -> None:
        self.server = server

    def buildProtocol(self, addr: object) -> UnixSocketConnection:  # noqa: N802
        return UnixSocketConnection(self.server)
