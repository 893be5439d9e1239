"""A frame-level websocket client for protocol tests: sends any frame, even invalid ones, and records what comes back."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def upgrade_request(key: str = SAMPLE_KEY, extra: str = "", version: str = "13") -> bytes:
    return (
        f"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0, length: int | None = None) -> bytes:
    """One client frame; ``length`` overrides the declared payload length."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = bytes((first, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWS(Protocol):
    """Records the handshake answer, every frame the server sends, and when the connection ends."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.head: bytes | None = None
        self.buffer = b""
        self.frames: DeferredQueue = DeferredQueue()
        self.received: list[tuple[int, bytes]] = []
        self.answered: Deferred = Deferred()
        self.lost: Deferred = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.buffer += data
        if self.head is None:
            if b"\r\n\r\n" not in self.buffer:
                return
            self.head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.answered.callback(self.head)
            if not self.head.startswith(b"HTTP/1.1 101"):
                return
        while len(self.buffer) >= 2:
            b0, b1 = self.buffer[0], self.buffer[1]
            assert not b1 & 0x80, "server frames must not be masked"
            n, start = b1 & 0x7F, 2
            if n == 126:
                n, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif n == 127:
                n, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < start + n:
                return
            payload, self.buffer = self.buffer[start : start + n], self.buffer[start + n :]
            self.received.append((b0, payload))
            self.frames.put((b0, payload))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def close_frames(self) -> list[tuple[int | None, bytes]]:
        """(code, reason) of every close frame received."""
        return [
            (int.from_bytes(p[:2], "big") if p else None, p[2:]) for b0, p in self.received if b0 & 0x0F == 0x8
        ]

    async def next_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        d = self.frames.get()
        timer = reactor.callLater(timeout, d.cancel)
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()


async def open_raw(port: int, request: bytes | None = None) -> RawWS:
    proto = RawWS(request or upgrade_request())
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    await proto.answered
    return proto


def accept_for(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
