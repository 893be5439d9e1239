"""JSON-RPC over the websocket at ``/websocket`` (Autobahn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from moontwist.api.connection import Connection, SendQueue
from moontwist.api.limits import ANONYMOUS_RPC, AUTHENTICATED_RPC

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["WebSocketConnection", "build_websocket_resource"]

log = Logger()

MAX_MESSAGE = AUTHENTICATED_RPC.message
MAX_ANONYMOUS_MESSAGE = ANONYMOUS_RPC.message
MAX_BACKLOG = 8 * 1024 * 1024
CLOSE_TOO_SLOW = 1008


class WebSocketConnection(WebSocketServerProtocol, Connection):
    """One websocket client: JSON-RPC in, replies and notifications out."""

    transport_name = "websocket"
    server: Server

    def onConnect(self, request: Any) -> None:  # noqa: N802 - Autobahn API
        if not self.server.running:
            raise ConnectionDeny(503, "Server is not ready")
        full = self.server.lookup("websockets_full")
        if full is not None and full():
            raise ConnectionDeny(503, "Maximum number of websocket connections reached")
        origin = request.headers.get("origin")
        checker = self.server.origin_allowed
        if origin and (checker is None or not checker(origin, request.headers.get("host"))):
            raise ConnectionDeny(403, f"Origin {origin} is not allowed")
        self.init_connection(getattr(self.transport.getPeer(), "host", None))
        self.http_params = request.params
        self.http_headers = request.headers

    def user_changed(self) -> None:
        # Autobahn checks these on every frame header: a stranger can't make us buffer 16 MiB.
        limit = MAX_ANONYMOUS_MESSAGE if self.user is None else MAX_MESSAGE
        self.maxFramePayloadSize = self.maxMessagePayloadSize = limit

    def onOpen(self) -> None:  # noqa: N802
        self.queue = SendQueue(self._write, self._overflow, MAX_BACKLOG)
        transport = self.transport
        if transport is not None:
            # twisted.web's HTTPChannel stays registered after the upgrade; take its place.
            transport.unregisterProducer()
            transport.registerProducer(self.queue, True)
        self.server.connections.add(self)
        log.info("Websocket {id} opened from {ip}", id=self.connection_id, ip=self.ip)

    def _write(self, data: bytes) -> None:
        # One unfragmented, unmasked text frame: what sendMessage would build, minus its overhead.
        n = len(data)
        if n < 126:
            header = bytes((0x81, n))
        elif n < 65536:
            header = b"\x81\x7e" + n.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + n.to_bytes(8, "big")
        self.transport.write(header + data)

    def processData(self) -> bool:  # noqa: N802 - Autobahn API
        """Handle complete, unfragmented, masked text frames here; everything else as Autobahn does.

        Autobahn's general frame machinery (per-frame objects, futures, hooks)
        cost several times more than the JSON-RPC call itself. Control frames,
        fragments, partial frames, binary and oversized messages still take
        Autobahn's path, with its checks and close codes.
        """
        data = self.data
        if self.current_frame is None and not self.inside_message and len(data) >= 6 and data[0] == 0x81:
            b1 = data[1]
            length = b1 & 0x7F
            start = 6
            if length == 126:
                length = int.from_bytes(data[2:4], "big")
                start = 8
            if b1 & 0x80 and length != 127 and len(data) >= start + length and length <= self.maxFramePayloadSize:
                payload = _unmask(data[start : start + length], data[start - 4 : start])
                self.data = data[start + length :]
                self._text_message(payload)
                return len(self.data) > 0 and self.state == self.STATE_OPEN
        return super().processData()

    def _text_message(self, payload: bytes) -> None:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            log.info("Websocket {id} sent invalid UTF-8; closing with 1007", id=self.connection_id)
            self._fail_connection(1007, "Invalid UTF-8 in a text message")
            return
        self.onMessage(payload, False)

    def _overflow(self) -> None:
        log.warn(
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
        # sendClose only accepts 1000 and 3000-4999; a server may also say 1001 and 1008.
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode()[:120], isReply=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        reply = self.server.dispatcher.handle_bytes(payload, "websocket", self, self.ip)
        if isinstance(reply, Deferred):
            reply.addCallback(self._reply)
            reply.addErrback(lambda f: log.failure("websocket reply failed", f))
        elif reply is not None:
            self.send_bytes(reply)

    def _reply(self, data: bytes | None) -> None:
        if data is not None:
            self.send_bytes(data)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if hasattr(self, "connection_id"):
            log.info("Websocket {id} closed: {code} {reason}", id=self.connection_id, code=code, reason=reason or "")
            self.server.connections.remove(self)


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def _quiet_autobahn_debug_formatting() -> None:
    """Stop Autobahn colouring debug-log arguments for every frame.

    Autobahn builds its debug messages' arguments (``hltype``/``hlval``, which
    call click's styling) before the logger drops them; per message that was
    the largest cost on the websocket path. Plain ``str`` keeps the messages
    readable when debug logging is on.
    """
    from autobahn.twisted import websocket as tx_websocket
    from autobahn.websocket import protocol as ws_protocol

    for module in (ws_protocol, tx_websocket):
        for name in ("hltype", "hlval", "hl"):
            if hasattr(module, name):
                setattr(module, name, _plain)


def _plain(obj: Any, *args: Any, **kwargs: Any) -> str:
    return obj if isinstance(obj, str) else getattr(obj, "__qualname__", None) or str(obj)


_quiet_autobahn_debug_formatting()


def build_websocket_resource(server: Server) -> WebSocketResource:
    """The ``/websocket`` resource, bound to ``server``."""
    factory = WebSocketServerFactory()
    factory.protocol = type("BoundWebSocketConnection", (WebSocketConnection,), {"server": server})
    factory.setProtocolOptions(
        maxFramePayloadSize=MAX_MESSAGE,
        maxMessagePayloadSize=MAX_MESSAGE,
        autoPingInterval=30,
        autoPingTimeout=60,
        openHandshakeTimeout=10,
        failByDrop=False,
        closeHandshakeTimeout=2,
    )
    return WebSocketResource(factory)
