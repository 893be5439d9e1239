"""JSON-RPC over the websocket at ``/websocket``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from moontwist.api.connection import Connection, SendQueue
from moontwist.api.limits import ANONYMOUS_RPC, AUTHENTICATED_RPC
from moontwist.api.wsproto import (
    ConnectionDeny,
    HandshakeRequest,
    WebSocketProtocol,
    WebSocketResource,
)

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["WebSocketConnection", "build_websocket_resource"]

MAX_MESSAGE = AUTHENTICATED_RPC.message
MAX_ANONYMOUS_MESSAGE = ANONYMOUS_RPC.message
MAX_BACKLOG = 8 * 1024 * 1024
CLOSE_TOO_SLOW = 1008


class WebSocketConnection(WebSocketProtocol, Connection):
    """One websocket client: JSON-RPC in, replies and notifications out."""

    transport_name = "websocket"
    server: Server
    max_message = MAX_MESSAGE
    ping_interval = 30.0
    ping_timeout = 60.0
    close_timeout = 2.0

    def onConnect(self, request: HandshakeRequest) -> None:  # noqa: N802 - wsproto hook
        if not self.server.running:
            raise ConnectionDeny(503, "Server is not ready")
        full = self.server.lookup("websockets_full")
        if full is not None and full():
            raise ConnectionDeny(503, "Maximum number of websocket connections reached")
        origin = request.headers.get("origin")
        checker = self.server.origin_allowed
        if origin and (checker is None or not checker(origin, request.headers.get("host"))):
            raise ConnectionDeny(403, f"Origin {origin} is not allowed")
        self.init_connection(getattr(request.peer, "host", None), self.server.connections.ids)
        self.http_params = request.params
        self.http_headers = request.headers

    def user_changed(self) -> None:
        # Checked on every frame header: a stranger can't make us buffer 16 MiB.
        self.max_message = MAX_ANONYMOUS_MESSAGE if self.user is None else MAX_MESSAGE

    def onOpen(self) -> None:  # noqa: N802
        self.queue = SendQueue(self.send_text, self._overflow, MAX_BACKLOG)
        transport = self.transport
        if transport is not None:
            # twisted.web's HTTPChannel stays registered after the upgrade; take its place.
            transport.unregisterProducer()
            transport.registerProducer(self.queue, True)
        self.server.connections.add(self)
        self.log.info("Websocket {id} opened from {ip}", id=self.connection_id, ip=self.ip)

    def _overflow(self) -> None:
        self.log.warn(
            "Websocket {id} can't keep up ({backlog} bytes queued); disconnecting",
            id=self.connection_id,
            backlog=MAX_BACKLOG,
        )
        self.close_connection(CLOSE_TOO_SLOW, "Client is not reading its messages")
        if self.transport is not None:
            self.transport.abortConnection()

    def send_bytes(self, data: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.queue.send(data)

    def close_connection(self, code: int = 1000, reason: str = "") -> None:
        self.send_close(code, reason)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        reply = self.server.dispatcher.handle_bytes(payload, "websocket", self, self.ip)
        if isinstance(reply, Deferred):
            reply.addCallback(self._reply)
            reply.addErrback(lambda f: self.log.failure("websocket reply failed", f))
        elif reply is not None:
            self.send_bytes(reply)

    def _reply(self, data: bytes | None) -> None:
        if data is not None:
            self.send_bytes(data)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if hasattr(self, "connection_id"):
            self.log.info("Websocket {id} closed: {code} {reason}", id=self.connection_id, code=code, reason=reason or "")
            self.server.connections.remove(self)


def build_websocket_resource(server: Server) -> WebSocketResource:
    """The ``/websocket`` resource, bound to ``server``."""
    bound = type("BoundWebSocketConnection", (WebSocketConnection,), {"server": server, "log": server.logger(__name__)})
    return WebSocketResource(bound, server.reactor)
