"""A minimal RFC 6455 websocket client for JSON-RPC load, on a raw asyncio protocol.

Handshake, masked text frames built from a pre-encoded payload prefix (only the id is
formatted per request), a frame parser for the server's frames (text, continuation, ping,
close), and a driver that keeps N requests in flight and matches replies by ``id``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import time

from bench.measure import LoadResult, Window
from bench.server import ProcStats

try:
    import orjson

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover - depends on the environment
    import json

    _loads = json.loads

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


__all__ = ["WsRpcClient", "accept_key", "encode_frame", "rpc_prefix", "ws_rpc_load"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_perf = time.perf_counter
_getrandbits = random.getrandbits

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WsError(Exception):
    pass


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value a server must answer for ``key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    m = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    key = _getrandbits(32).to_bytes(4, "little")
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + _mask(payload, key)


def rpc_prefix(method: str, params: dict | None = None) -> bytes:
    """Pre-encoded request up to the id: ``{"jsonrpc":"2.0","method":...,"id":``."""
    msg = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return _dumps(msg)[:-1] + b',"id":'


class WsRpcClient(asyncio.Protocol):
    """One websocket connection sending JSON-RPC requests and matching replies by id.

    ``on_reply(id, ok, msg)`` is called for every reply carrying an id; messages without an
    id (notifications) are counted and dropped.
    """

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None):
        self.host, self.port, self.path = host, port, path
        self.headers = headers or {}
        self.key = base64.b64encode(os.urandom(16))
        self.transport: asyncio.Transport | None = None
        self.handshaken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.notifications = 0
        self.on_notification = None  # called with each decoded notification, when set
        self.error: Exception | None = None
        self.on_reply = None
        self.on_batch_done = None

    # -- handshake

    def connection_made(self, transport) -> None:
        self.transport = transport
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _handshake(self, data: bytes) -> bytes | None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return None
        head = buf[:end]
        rest = buf[end + 4 :]
        self.buf = b""
        status_line, _, hdrs = head.partition(b"\r\n")
        if status_line[9:12] != b"101":
            raise WsError(f"handshake refused: {status_line.decode(errors='replace')}")
        expected = accept_key(self.key)
        for line in hdrs.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                if value.strip() != expected:
                    raise WsError("bad Sec-WebSocket-Accept")
                break
        else:
            raise WsError("no Sec-WebSocket-Accept in handshake answer")
        self.upgraded = True
        self.handshaken.set_result(None)
        return rest

    # -- frames

    def data_received(self, data: bytes) -> None:
        try:
            if not self.upgraded:
                data = self._handshake(data)
                if not data:
                    return
            self._frames(data)
        except (WsError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if not self.handshaken.done():
            self.handshaken.set_exception(exc)
        if self.error is None:
            self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def _frames(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        on_reply = self.on_reply
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hl = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hl = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hl = 10
            masked = b1 & 0x80
            if masked:
                hl += 4
            end = pos + hl + length
            if end > n:
                break
            payload = buf[pos + hl : end]
            if masked:  # servers must not mask, but tolerate it
                payload = _mask(payload, buf[pos + hl - 4 : pos + hl])
            pos = end
            opcode = b0 & 0x0F
            if opcode >= 0x8:
                self._control(opcode, payload)
                continue
            if not b0 & 0x80:  # non-final fragment
                self.fragments.append(payload)
                continue
            if opcode == OP_CONT:
                self.fragments.append(payload)
                payload = b"".join(self.fragments)
                self.fragments = []
            msg = _loads(payload)
            rid = msg.get("id") if type(msg) is dict else None
            if rid is None:
                self.notifications += 1
                if self.on_notification is not None:
                    self.on_notification(msg)
            elif on_reply is not None:
                on_reply(rid, "result" in msg, msg)
        self.buf = buf[pos:] if pos < n else b""
        if self.on_batch_done is not None:
            self.on_batch_done()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.transport.write(encode_frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            if not self.closed.done():
                self.transport.write(encode_frame(payload[:2], OP_CLOSE))
                self.closed.set_result(None)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        if not self.handshaken.done():
            self.handshaken.set_exception(exc or WsError("connection closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- sending

    def send_raw(self, data: bytes) -> None:
        self.transport.write(data)

    async def close(self, timeout: float = 1.0) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(encode_frame((1000).to_bytes(2, "big"), OP_CLOSE))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except (asyncio.TimeoutError, Exception):
            pass
        self.transport.close()

    async def call(self, method: str, params: dict | None = None, timeout: float = 10.0):
        """One request, awaiting its reply message (for probes, not for load)."""
        rid = _getrandbits(31)
        fut = asyncio.get_running_loop().create_future()
        prev = self.on_reply

        def got(i, ok, msg):
            if i == rid and not fut.done():
                fut.set_result(msg)
            elif prev is not None:
                prev(i, ok, msg)

        self.on_reply = got
        try:
            self.send_raw(encode_frame(rpc_prefix(method, params) + str(rid).encode() + b"}"))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.on_reply = prev


async def ws_connect(
    host: str, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> WsRpcClient:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: WsRpcClient(host, port, path, headers), host, port), timeout
    )
    try:
        await asyncio.wait_for(proto.handshaken, timeout)
    except BaseException:
        proto.transport.close()
        raise
    return proto


async def ws_rpc_load(
    host: str,
    port: int,
    path: str,
    method: str,
    inflight: int,
    warmup: float,
    duration: float,
    server: ProcStats | None = None,
    params: dict | None = None,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Keep ``inflight`` JSON-RPC calls outstanding on one websocket for the window."""
    window = Window(warmup, duration, server)
    client = await ws_connect(host, port, path, headers)
    prefix = rpc_prefix(method, params)
    pending: dict[int, float] = {}
    next_id = 1
    to_send = 0

    def make(count: int) -> bytes:
        nonlocal next_id
        frames = []
        now = _perf()
        for _ in range(count):
            rid = next_id
            next_id += 1
            pending[rid] = now
            frames.append(encode_frame(prefix + str(rid).encode() + b"}"))
        return b"".join(frames)

    def on_reply(rid, ok, msg) -> None:
        nonlocal to_send
        sent = pending.pop(rid, None)
        if sent is None:
            window.abort(f"reply with unknown id {rid!r}")
            return
        if ok:
            window.record(_perf() - sent)
        else:
            window.error()
        if window.sending:
            to_send += 1

    def on_batch_done() -> None:
        nonlocal to_send
        if to_send:
            client.send_raw(make(to_send))
            to_send = 0

    client.on_reply = on_reply
    client.on_batch_done = on_batch_done
    window.start()
    client.send_raw(make(inflight))
    done = asyncio.ensure_future(window.finished)
    await asyncio.wait([done, client.closed], return_when=asyncio.FIRST_COMPLETED)
    if not done.done():
        exc = client.error
        window.abort(f"websocket closed{': ' + repr(exc) if exc else ' by the server'}")
    # drain replies still in flight (bounded), then close politely
    deadline = _perf() + 2.0
    while pending and _perf() < deadline and not client.closed.done():
        await asyncio.sleep(0.01)
    await client.close()
    return window.result()
