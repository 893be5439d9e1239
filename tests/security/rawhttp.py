"""A bare TCP client for HTTP requests a normal client won't send (slow, huge, lying headers)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from mtclient import sleep


class RawClient(Protocol):
    """Records every byte the server sends; ``closed`` fires when the connection ends."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred = Deferred()
        self.open = False

    def connectionMade(self) -> None:  # noqa: N802
        self.open = True

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.open = False
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    async def wait_closed(self, timeout: float) -> bool:
        """Whether the server closed the connection within ``timeout`` seconds."""
        waited = 0.0
        while self.open and waited < timeout:
            await sleep(0.02)
            waited += 0.02
        return not self.open

    async def wait_response(self, timeout: float = 5.0) -> tuple[int, dict[str, str], Any]:
        """The first complete response: status, headers (lower-case names) and decoded JSON body."""
        waited = 0.0
        while waited < timeout:
            parsed = parse_response(self.received)
            if parsed is not None:
                return parsed
            await sleep(0.02)
            waited += 0.02
        raise TimeoutError(f"no complete response within {timeout}s; got {self.received[:200]!r}")


def parse_response(data: bytes) -> tuple[int, dict[str, str], Any] | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded = _dechunk(body)
        if decoded is None:
            return None
        body = decoded
    else:
        length = int(headers.get("content-length", "0"))
        if len(body) < length:
            return None
        body = body[:length]
    try:
        return status, headers, json.loads(body) if body else None
    except ValueError:
        return status, headers, body


def _dechunk(data: bytes) -> bytes | None:
    out = b""
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return None
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        if len(rest) < size + 2:
            return None
        out += rest[:size]
        data = rest[size + 2 :]


async def connect(port: int) -> RawClient:
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


async def request(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, dict[str, str], Any]:
    """Send ``head`` (lines joined by CRLF, blank line added) and ``body``; return the first response."""
    client = await connect(port)
    client.send(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body)
    try:
        return await client.wait_response(timeout)
    finally:
        client.transport.loseConnection()
