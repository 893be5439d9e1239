"""``/klippysocket``: a websocket bridged to a connection of its own on Klippy's API socket.

As Moonraker's bridge: each text or binary message is written to Klippy with
the 0x03 terminator added, each message from Klippy goes out as one text frame
without it.  Nothing is decoded, so the streaming "dump" endpoints
(``motion_report/dump_stepper``, ``adxl345/dump_adxl345``) cost no JSON work.
The connection ends when either side closes; Klippy closes its clients when it
restarts.  Authorization happens on the upgrade request (API key header, JWT
or a oneshot ``token`` in the query), before Klippy is contacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import ClientCreator, Protocol
from twisted.logger import Logger

from moontwist.api.errors import ServerError
from moontwist.api.wsproto import HandshakeRequest, WebSocketProtocol, WebSocketResource

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["KlippyBridges", "MAX_KLIPPY_MESSAGE"]

ETX = b"\x03"
MAX_KLIPPY_MESSAGE = 20 * 1024 * 1024  # as Moonraker's limit on one message from Klippy
MAX_CLIENT_MESSAGE = 16 * 1024 * 1024
CLOSE_GOING_AWAY = 1001


class KlippyStream(Protocol):
    """The Klippy side of one bridge: splits Klippy's output on 0x03."""

    def __init__(self, log: Logger) -> None:
        self.log = log
        self.bridge: KlippyBridge | None = None
        self.pending: list[bytes] = []  # messages that arrived before the websocket opened
        self.partial: list[bytes] = []  # the start of a message still missing its 0x03
        self.partial_size = 0
        self.lost = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        *complete, rest = data.split(ETX)
        if complete:
            complete[0] = b"".join(self.partial) + complete[0]
            self.partial, self.partial_size = [], 0
            for message in complete:
                if self.bridge is not None:
                    self.bridge.send_text(message)
                else:
                    self.pending.append(message)
        if rest:
            self.partial.append(rest)
            self.partial_size += len(rest)
            if self.partial_size > MAX_KLIPPY_MESSAGE:
                self.log.warn("Klippy sent a message over {limit} bytes to a bridge; closing it", limit=MAX_KLIPPY_MESSAGE)
                self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost = True
        if self.bridge is not None:
            self.bridge.close(CLOSE_GOING_AWAY, "Klippy Disconnected")

    def close(self) -> None:
        if not self.lost and self.transport is not None:
            self.transport.loseConnection()


class KlippyBridge(WebSocketProtocol):
    """The websocket side of one bridge."""

    stream: KlippyStream
    bridges: KlippyBridges
    max_message = MAX_CLIENT_MESSAGE
    ping_interval = 30.0
    ping_timeout = 60.0
    close_timeout = 2.0

    def onConnect(self, request: HandshakeRequest) -> None:  # noqa: N802 - wsproto hook
        self.peer_ip = getattr(request.peer, "host", None)

    def onOpen(self) -> None:  # noqa: N802
        transport = self.transport
        if transport is not None and self.stream.transport is not None:
            # twisted.web's HTTPChannel stays registered after the upgrade: a slow
            # websocket reader now pauses reading from Klippy instead.
            transport.unregisterProducer()
            transport.registerProducer(self.stream.transport, True)
        self.bridges.opened(self)
        self.stream.bridge = self
        pending, self.stream.pending = self.stream.pending, []
        for message in pending:
            self.send_text(message)
        if self.stream.lost:
            self.close(CLOSE_GOING_AWAY, "Klippy Disconnected")
        else:
            self.log.info("Klippy bridge opened from {ip}", ip=self.peer_ip)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        if not self.stream.lost:
            self.stream.transport.write(payload + ETX)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        self.stream.close()
        if self.bridges.closed(self):
            self.log.info("Klippy bridge from {ip} closed: {code} {reason}", ip=self.peer_ip, code=code, reason=reason or "")

    def close(self, code: int, reason: str) -> None:
        self.send_close(code, reason)


class KlippyBridges:
    """The open bridges of one server, and the handler that opens new ones."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self._open: set[KlippyBridge] = set()

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, bridge: KlippyBridge) -> None:
        self._open.add(bridge)

    def closed(self, bridge: KlippyBridge) -> bool:
        if bridge in self._open:
            self._open.discard(bridge)
            return True
        return False

    def close_all(self, reason: str = "Server shutting down") -> None:
        for bridge in list(self._open):
            bridge.close(CLOSE_GOING_AWAY, reason)
            bridge.stream.close()

    async def open(self, http: Any, socket_path: str) -> WebSocketResource:
        """Connect to Klippy for an (authorized) upgrade request; the resource completes the upgrade."""
        if (http.getHeader(b"upgrade") or b"").lower() != b"websocket":
            raise ServerError("/klippysocket expects a websocket upgrade request", 400)
        full = self.server.lookup("websockets_full")
        if full is not None and full():
            raise ServerError("Maximum number of websocket connections reached", 503)
        origin = http.getHeader(b"origin")
        if origin is not None:
            checker = self.server.origin_allowed
            host = http.getHeader(b"host")
            if checker is None or not checker(origin.decode("latin-1"), host.decode("latin-1") if host else None):
                raise ServerError(f"Origin {origin.decode('latin-1')} is not allowed", 403)
        try:
            stream = await ClientCreator(self.server.reactor, KlippyStream, self.log).connectUNIX(socket_path, timeout=2)
        except Exception as exc:
            raise ServerError(f"Failed to open a connection to Klippy: {exc}", 503) from None
        bridge = type("BoundKlippyBridge", (KlippyBridge,), {"stream": stream, "bridges": self, "log": self.log})
        if http._disconnected:
            stream.close()
            raise ServerError("Client went away", 400)
        # rendered at once by the HTTP transport; from then on the bridge's onClose closes the stream
        return WebSocketResource(bridge, self.server.reactor)
