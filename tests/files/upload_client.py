"""Helpers for file manager tests: samples, multipart bodies, raw HTTP uploads."""

from __future__ import annotations

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "gcode_samples")
BOUNDARY = "----moontwistBoundary7MA4YWxk"

BUILTINS = {
    "server": "moontwist.plugins.server_info:ServerPlugin",
    # nothing answers without an authorization check (none configured: everyone is trusted)
    "database": "moontwist.plugins.database:DatabasePlugin",
    "authorization": "moontwist.plugins.authorization:AuthorizationPlugin",
    "file_manager": "moontwist.plugins.files:FileManagerPlugin",
}


def sample(name: str) -> bytes:
    with open(os.path.join(SAMPLES, name), "rb") as f:
        return f.read()


def multipart_body(filename: str | None, data: bytes, **fields: str) -> bytes:
    """A multipart/form-data body: the file part first, then the fields."""
    out = b""
    if filename is not None:
        out += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + b"\r\n"
    for key, value in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
    return out + f"--{BOUNDARY}--\r\n".encode()


class RawHTTP(Protocol):
    """Sends raw bytes, collects the whole answer until the server closes."""

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: object) -> None:  # noqa: N802
        if not self.done.called:
            self.done.callback(self.data)

    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1]) if self.data else 0

    def json(self) -> dict:
        return json.loads(self.data.partition(b"\r\n\r\n")[2] or b"null")


async def raw_connect(port: int) -> RawHTTP:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawHTTP())


def upload_head(length: int, path: str = "/server/files/upload", extra: str = "", version: str = "1.0") -> bytes:
    return (
        f"POST {path} HTTP/{version}\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def raw_upload(port: int, body: bytes, path: str = "/server/files/upload") -> RawHTTP:
    proto = await raw_connect(port)
    proto.transport.write(upload_head(len(body), path) + body)
    await proto.done
    return proto


