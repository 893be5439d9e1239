"""The websocket protocol (RFC 6455, server side): the upgrade from a twisted.web request, then frames.

What a JSON-RPC server needs and nothing more: no extensions (a client's
``permessage-deflate`` offer is declined by not answering it), no subprotocol
selection, unfragmented unmasked frames out. Incoming frames are checked as the
RFC requires (masking, reserved bits, opcodes, control-frame rules, close codes,
UTF-8 of text messages) and a violation closes the connection with the code the
RFC names (1002, 1007, 1009). A message larger than ``max_message`` is refused
from its frame header, before its payload is buffered. The server pings an idle
client every ``ping_interval`` seconds and drops it when the pong doesn't come
within ``ping_timeout``; a close handshake that gets no answer within
``close_timeout`` ends with the connection dropped.

Subclasses implement the hooks ``onConnect(request)`` (raise ``ConnectionDeny``
to refuse the upgrade), ``onOpen()``, ``onMessage(payload, isBinary)`` and
``onClose(wasClean, code, reason)``, the names Autobahn uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from moontwist import jsonutil

__all__ = ["ConnectionDeny", "HandshakeRequest", "WebSocketProtocol", "WebSocketResource"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL_MAX = 125

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009


class ConnectionDeny(Exception):
    """Raised by ``onConnect`` to answer the upgrade request with an HTTP error."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@dataclass
class HandshakeRequest:
    """The upgrade request as ``onConnect`` sees it."""

    path: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    params: dict[str, list[str]]  # the query string
    peer: Any  # the client's address (``.host``)
    raw: Request = field(repr=False)


def _valid_close_code(code: int) -> bool:
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _unmask(payload: bytes | bytearray, key: bytes | bytearray) -> bytes:
    n = len(payload)
    if not n:
        return b""
    mask = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def _frame(first: int, payload: bytes) -> bytes:
    """One unmasked frame (a server never masks)."""
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + n.to_bytes(8, "big")
    return header + payload


class WebSocketProtocol(Protocol):
    """One websocket connection after the upgrade."""

    STATE_CONNECTING, STATE_OPEN, STATE_CLOSING, STATE_CLOSED = range(4)

    max_message = 16 * 1024 * 1024
    ping_interval: float | None = 30.0
    ping_timeout = 60.0
    close_timeout = 2.0
    reactor: Any = None  # set by the resource
    log: Logger  # set by the subclass bound to a server (its instance's log)

    state = STATE_CONNECTING
    _buffer: bytearray | None = None
    _fragments: list[bytes] | None = None
    _fragments_size = 0
    _fragments_binary = False
    _close_received: tuple[int, str] | None = None
    _failed = False
    _awaiting_pong = False
    _ping_call: Any = None
    _drop_call: Any = None

    # hooks ------------------------------------------------------------------------------

    def onConnect(self, request: HandshakeRequest) -> None:  # noqa: N802 - the hook names Autobahn uses
        """Vet the upgrade request; raise ConnectionDeny to refuse it."""

    def onOpen(self) -> None:  # noqa: N802
        """The connection is open."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        """A complete message arrived (text messages are valid UTF-8)."""

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:  # noqa: N802, N803
        """The connection is gone; ``code`` is the peer's close code (1005 none, 1006 no close frame)."""

    # sending ------------------------------------------------------------------------------

    def send_text(self, payload: bytes) -> None:
        """Send ``payload`` (UTF-8) as one text message."""
        self.transport.write(_frame(0x80 | _TEXT, payload))

    def send_close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the close handshake; the connection drops if the client doesn't answer in time."""
        if self.state != self.STATE_OPEN:
            return
        self._write_close(code, reason)
        self.state = self.STATE_CLOSING
        self._drop_later()

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): a close frame naming the problem, then the TCP close."""
        if self.state != self.STATE_OPEN and self.state != self.STATE_CLOSING:
            return
        self.log.info("Websocket failed: {code} {reason}", code=code, reason=reason)
        if self.state == self.STATE_OPEN:
            self._write_close(code, reason)
        self.state = self.STATE_CLOSING
        self._failed = True
        self.transport.loseConnection()
        self._drop_later()

    def _write_close(self, code: int | None, reason: str = "") -> None:
        payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode("utf-8")[: _CONTROL_MAX - 2]
        self.transport.write(_frame(0x80 | _CLOSE, payload))

    def _drop_later(self) -> None:
        """Abort the connection if it is still there after ``close_timeout`` seconds."""
        if self._drop_call is None:
            self._drop_call = self.reactor.callLater(self.close_timeout, self.transport.abortConnection)

    # keep-alive ---------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        if self.ping_interval and self.state == self.STATE_OPEN:
            self._ping_call = self.reactor.callLater(self.ping_interval, self._ping)

    def _ping(self) -> None:
        self.transport.write(_frame(0x80 | _PING, b"moontwist"))
        self._awaiting_pong = True
        self._ping_call = self.reactor.callLater(self.ping_timeout, self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        self._ping_call = None
        self.log.info("Websocket client did not answer a ping within {t}s; dropping it", t=self.ping_timeout)
        self.transport.abortConnection()

    def _pong(self) -> None:
        if self._awaiting_pong:
            self._awaiting_pong = False
            self._ping_call.cancel()
            self._schedule_ping()

    # the transport ---------------------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.state = self.STATE_OPEN
        self._schedule_ping()
        self.onOpen()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.state = self.STATE_CLOSED
        self._buffer = self._fragments = None
        for call in (self._ping_call, self._drop_call):
            if call is not None and call.active():
                call.cancel()
        self._ping_call = self._drop_call = None
        code, text = self._close_received or (CLOSE_ABNORMAL, "")
        self.onClose(self._close_received is not None and not self._failed, code, text)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._failed or self._close_received is not None or self.state == self.STATE_CLOSED:
            return  # after a failure or the peer's close frame nothing more is read
        buffer = self._buffer
        if buffer:
            buffer += data
            buf: bytes | bytearray = buffer
        else:
            buf = data
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[head : head + 2], "big")
                head += 2
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            problem = self._check_header(b0, b1, length)
            if problem is not None:
                self.fail(*problem)
                break
            end = head + 4 + length
            if end > n:
                break
            payload = _unmask(buf[head + 4 : end], buf[head : head + 4])
            pos = end
            if not self._handle_frame(b0, payload):
                break
        if self.state == self.STATE_CLOSED or self._failed or self._close_received is not None or pos >= n:
            self._buffer = None
        elif buf is buffer:
            del buffer[:pos]
        else:
            self._buffer = bytearray(buf[pos:])

    def _check_header(self, b0: int, b1: int, length: int) -> tuple[int, str] | None:
        """What is wrong with a frame, known from its header alone."""
        if b0 & 0x70:
            return CLOSE_PROTOCOL_ERROR, "Reserved bits set (no extension was negotiated)"
        if not b1 & 0x80:
            return CLOSE_PROTOCOL_ERROR, "Client frames must be masked"
        opcode = b0 & 0x0F
        if opcode >= 0x8:
            if opcode > _PONG:
                return CLOSE_PROTOCOL_ERROR, f"Unknown opcode {opcode}"
            if not b0 & 0x80 or length > _CONTROL_MAX:
                return CLOSE_PROTOCOL_ERROR, "Control frames must be final and at most 125 bytes"
            return None
        if opcode > _BINARY:
            return CLOSE_PROTOCOL_ERROR, f"Unknown opcode {opcode}"
        if opcode == 0:
            if self._fragments is None:
                return CLOSE_PROTOCOL_ERROR, "Continuation frame without a message to continue"
            length += self._fragments_size
        elif self._fragments is not None:
            return CLOSE_PROTOCOL_ERROR, "New message before the previous one was finished"
        if length > self.max_message:
            return CLOSE_TOO_BIG, f"Message larger than {self.max_message} bytes"
        return None

    def _handle_frame(self, b0: int, payload: bytes) -> bool:
        """Act on one complete frame; False once the connection is being closed."""
        opcode = b0 & 0x0F
        if opcode >= 0x8:
            if opcode == _PING:
                if self.state == self.STATE_OPEN:
                    self.transport.write(_frame(0x80 | _PONG, payload))
            elif opcode == _PONG:
                self._pong()
            else:
                self._close_frame(payload)
                return False
            return True
        if opcode != 0:
            if b0 & 0x80:
                return self._message(payload, opcode == _BINARY)
            self._fragments, self._fragments_size, self._fragments_binary = [payload], len(payload), opcode == _BINARY
            return True
        assert self._fragments is not None  # checked with the header
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not b0 & 0x80:
            return True
        message, binary = b"".join(self._fragments), self._fragments_binary
        self._fragments, self._fragments_size = None, 0
        return self._message(message, binary)

    def _message(self, payload: bytes, binary: bool) -> bool:
        if not binary and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(CLOSE_INVALID_DATA, "Invalid UTF-8 in a text message")
                return False
        if self.state == self.STATE_OPEN:
            self.onMessage(payload, binary)
        return self.state != self.STATE_CLOSED

    def _close_frame(self, payload: bytes) -> None:
        if len(payload) == 1:
            self.fail(CLOSE_PROTOCOL_ERROR, "Close frame with a one-byte payload")
            return
        code, text = CLOSE_NO_STATUS, ""
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not _valid_close_code(code):
                self.fail(CLOSE_PROTOCOL_ERROR, f"Invalid close code {code}")
                return
            try:
                text = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self.fail(CLOSE_INVALID_DATA, "Invalid UTF-8 in a close reason")
                return
        self._close_received = (code, text)
        if self.state == self.STATE_OPEN:  # the client closes: answer with its code
            self._write_close(None if code == CLOSE_NO_STATUS else code)
            self.state = self.STATE_CLOSING
        # The server closes the TCP connection first (RFC 6455 7.1.1).
        self.transport.loseConnection()
        self._drop_later()


def _accept_key(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())


def _refuse(request: Request, status: int, message: str, headers: dict[bytes, bytes] | None = None) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=UTF-8")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return jsonutil.dumpb({"error": {"code": status, "message": message}})


def _handshake_problem(request: Request) -> tuple[int, str, dict[bytes, bytes]] | None:
    if request.method != b"GET":
        return 405, "Websocket upgrades use GET", {b"allow": b"GET"}
    upgrade = (request.getHeader(b"upgrade") or b"").lower()
    if b"websocket" not in [t.strip() for t in upgrade.split(b",")]:
        return 400, "Expected a websocket upgrade (header 'Upgrade: websocket')", {}
    connection = (request.getHeader(b"connection") or b"").lower()
    if b"upgrade" not in [t.strip() for t in connection.split(b",")]:
        return 400, "Expected header 'Connection: Upgrade'", {}
    if request.getHeader(b"sec-websocket-version") != b"13":
        return 426, "Unsupported websocket version (13 is)", {b"sec-websocket-version": b"13"}
    key = request.getHeader(b"sec-websocket-key") or b""
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return 400, "Invalid Sec-WebSocket-Key", {}
    return None


class WebSocketResource(Resource):
    """Renders an upgrade request: checks it, asks the protocol, then hands it the connection."""

    isLeaf = True

    def __init__(self, protocol_factory: Callable[[], WebSocketProtocol], reactor: Any) -> None:
        super().__init__()
        self.protocol_factory = protocol_factory
        self.reactor = reactor

    def render(self, request: Request) -> bytes | int:
        problem = _handshake_problem(request)
        if problem is not None:
            return _refuse(request, *problem)
        channel = request.channel
        transport = channel.transport
        if transport is None:
            return _refuse(request, 400, "The connection is gone")
        headers: dict[str, str] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers[name.decode("latin-1").lower()] = ", ".join(v.decode("latin-1") for v in values)
        query = request.uri.partition(b"?")[2].decode("utf-8", "replace")
        handshake = HandshakeRequest(
            request.path.decode("utf-8", "replace"), headers, parse_qs(query, keep_blank_values=True),
            transport.getPeer(), request,
        )
        protocol = self.protocol_factory()
        protocol.reactor = self.reactor
        try:
            protocol.onConnect(handshake)
        except ConnectionDeny as deny:
            return _refuse(request, deny.code, deny.reason or "Websocket refused")

        # Take the connection over from twisted.web's HTTPChannel, which keeps the request open.
        pending = b"".join(getattr(channel, "_dataBuffer", ()))
        channel.transport = None
        channel.setTimeout(None)
        transport.unregisterProducer()
        if isinstance(transport, ProtocolWrapper):  # TLS
            transport.wrappedProtocol = protocol
        elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
            transport.protocol.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + _accept_key(headers["sec-websocket-key"]) + b"\r\n\r\n"
        )
        protocol.makeConnection(transport)
        producer = getattr(channel, "_networkProducer", transport)
        if hasattr(producer, "resumeProducing"):
            producer.resumeProducing()  # twisted.web pauses reading while it handles a request
        if pending:
            protocol.dataReceived(pending)
        return NOT_DONE_YET
