"""A trivial Moonraker stand-in on raw asyncio, for measuring the load generator's ceiling
and for the bench's own tests.

It answers ``GET /server/info`` with a fixed, Moonraker-shaped JSON body and the websocket
JSON-RPC method ``server.info`` on ``/websocket``; everything else gets 404 / a JSON-RPC
error. It does as little work per request as it can, so that a benchmark against it measures
the generator, not the server.

    python -m bench.standin [--host 127.0.0.1] [--port 0]

prints ``listening <host> <port> <pid>`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
import sys

try:
    import orjson

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SERVER_INFO = {
    "klippy_connected": True,
    "klippy_state": "ready",
    "components": ["database", "file_manager", "klippy_apis", "machine", "data_store"],
    "failed_components": [],
    "registered_directories": ["config", "logs", "gcodes"],
    "warnings": [],
    "websocket_count": 1,
    "moonraker_version": "bench-standin",
    "missing_klippy_requirements": [],
    "api_version": [1, 5, 0],
    "api_version_string": "1.5.0",
}

_INFO_BODY = _dumps({"result": SERVER_INFO})
_INFO_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
    b"Content-Length: " + str(len(_INFO_BODY)).encode() + b"\r\n\r\n" + _INFO_BODY
)
_NOT_FOUND_BODY = _dumps({"error": {"code": 404, "message": "Not Found"}})
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(_NOT_FOUND_BODY)).encode() + b"\r\n\r\n" + _NOT_FOUND_BODY
)
_RPC_INFO_PREFIX = b'{"jsonrpc":"2.0","result":' + _dumps(SERVER_INFO) + b',"id":'


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    m = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def _rpc_reply(payload: bytes) -> bytes:
    try:
        msg = _loads(payload)
        rid = msg.get("id")
        method = msg.get("method")
    except (ValueError, AttributeError):
        return _frame(b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}')
    if rid is None:
        return b""
    if method == "server.info":
        return _frame(_RPC_INFO_PREFIX + _dumps(rid) + b"}")
    return _frame(
        b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":'
        + _dumps(rid)
        + b"}"
    )


class StandinProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.ws = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if self.ws:
            self.buf = self._ws_frames(buf)
        else:
            self.buf = self._http(buf)

    def _http(self, buf: bytes) -> bytes:
        out = []
        pos = 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            head = buf[pos:end]
            pos = end + 4
            line_end = head.find(b"\r\n")
            request_line = head[:line_end] if line_end >= 0 else head
            parts = request_line.split(b" ")
            target = parts[1] if len(parts) > 1 else b""
            lower = head.lower()
            if b"\r\nupgrade: websocket" in lower:
                i = lower.find(b"\r\nsec-websocket-key:")
                if i < 0 or not target.startswith(b"/websocket"):
                    out.append(_NOT_FOUND)
                    continue
                j = head.find(b"\r\n", i + 2)
                key = head[i + 20 : j if j >= 0 else len(head)].strip()
                accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
                out.append(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                self.transport.write(b"".join(out))
                self.ws = True
                return self._ws_frames(buf[pos:])
            if b"\r\ncontent-length:" in lower:  # skip a request body (not expected here)
                i = lower.find(b"\r\ncontent-length:")
                j = lower.find(b"\r\n", i + 2)
                length = int(lower[i + 17 : j if j >= 0 else len(lower)])
                if len(buf) - pos < length:
                    pos = end - len(head)  # wait for the whole request
                    break
                pos += length
            path = target.split(b"?", 1)[0]
            out.append(_INFO_RESPONSE if path == b"/server/info" else _NOT_FOUND)
        if out:
            self.transport.write(b"".join(out))
        return buf[pos:] if pos < len(buf) else b""

    def _ws_frames(self, buf: bytes) -> bytes:
        out = []
        n = len(buf)
        pos = 0
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
            if masked:
                payload = _unmask(payload, buf[pos + hl - 4 : pos + hl])
            pos = end
            opcode = b0 & 0x0F
            if opcode == 0x1:
                out.append(_rpc_reply(payload))
            elif opcode == 0x9:
                out.append(_frame(payload, 0xA))
            elif opcode == 0x8:
                out.append(_frame(payload[:2], 0x8))
                self.transport.write(b"".join(out))
                self.transport.close()
                return b""
        if out:
            self.transport.write(b"".join(out))
        return buf[pos:] if pos < n else b""


async def serve(host: str, port: int, ready=None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StandinProtocol, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    if ready is not None:
        ready(bound[0], bound[1])
    async with server:
        await stop


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m bench.standin", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        p.error("the stand-in only listens on loopback")

    def ready(host: str, port: int) -> None:
        print(f"listening {host} {port} {os.getpid()}", flush=True)

    from bench.loop import new_event_loop

    loop = new_event_loop(not args.no_uvloop)
    try:
        loop.run_until_complete(serve(args.host, args.port, ready))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
