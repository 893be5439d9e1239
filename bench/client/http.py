"""A lean HTTP/1.1 keep-alive load client on raw asyncio protocols.

Each connection sends one pre-encoded request, waits for the complete response (parsed by
Content-Length, or chunked transfer encoding), records its latency and sends the next: a
closed loop of ``concurrency`` connections, like ``wrk -c N``.
"""

from __future__ import annotations

import asyncio
import time

from bench.measure import LoadResult, Window
from bench.server import ProcStats

__all__ = ["build_request", "http_load", "parse_response"]

_perf = time.perf_counter


def build_request(
    host: str, port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> bytes:
    """The request bytes, encoded once and reused for every request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: */*"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ProtocolError(Exception):
    pass


def _chunked_end(buf: bytes, pos: int) -> int:
    """End offset of a chunked body starting at ``pos``, or -1 if incomplete."""
    n = len(buf)
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size_s = buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_s, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_s!r}") from None
        pos = eol + 2
        if size == 0:
            # optional trailers, then an empty line
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return -1
                if eol == pos:
                    return eol + 2
                pos = eol + 2
        pos += size + 2
        if pos > n:
            return -1


def parse_response(buf: bytes, pos: int = 0) -> tuple[int, int, bool] | None:
    """Parse one response at ``buf[pos:]``.

    Returns ``(status, end, keep_alive)`` where ``end`` is the offset just past the response,
    or ``None`` when the response is not complete yet.
    """
    hend = buf.find(b"\r\n\r\n", pos)
    if hend < 0:
        return None
    if buf[pos : pos + 5] != b"HTTP/":
        raise ProtocolError(f"not an HTTP response: {buf[pos:pos + 40]!r}")
    status = int(buf[pos + 9 : pos + 12])
    head = buf[pos:hend].lower()
    body = hend + 4
    keep_alive = b"\r\nconnection: close" not in head
    if head.startswith(b"http/1.0") and b"\r\nconnection: keep-alive" not in head:
        keep_alive = False
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 17)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
        end = body + length
        return (status, end, keep_alive) if len(buf) >= end else None
    if b"\r\ntransfer-encoding:" in head and b"chunked" in head:
        end = _chunked_end(buf, body)
        return (status, end, keep_alive) if end >= 0 else None
    if status in (204, 304) or 100 <= status < 200:
        return status, body, keep_alive
    raise ProtocolError("response without Content-Length or chunked encoding (read-until-close)")


class _Conn(asyncio.Protocol):
    __slots__ = ("window", "request", "transport", "buf", "sent_at", "closed", "on_lost", "inflight")

    def __init__(self, window: Window, request: bytes, on_lost) -> None:
        self.window = window
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent_at = 0.0
        self.closed = False
        self.inflight = False
        self.on_lost = on_lost

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self) -> None:
        self.inflight = True
        self.sent_at = _perf()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        try:
            parsed = parse_response(buf)
        except (ProtocolError, ValueError) as exc:
            self.window.abort(f"HTTP protocol error: {exc}")
            self.transport.close()
            return
        if parsed is None:
            self.buf = buf
            return
        status, end, keep_alive = parsed
        now = _perf()
        self.buf = buf[end:]
        self.inflight = False
        if status == 200:
            self.window.record(now - self.sent_at)
        else:
            self.window.error()
        if not keep_alive:
            self.transport.close()
            return
        if self.buf:
            self.window.abort("unexpected bytes after a response")
            self.transport.close()
            return
        if self.window.sending:
            self.send()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.on_lost(self)


async def http_load(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    warmup: float,
    duration: float,
    server: ProcStats | None = None,
    connect_timeout: float = 5.0,
) -> LoadResult:
    """Keep ``concurrency`` keep-alive connections busy with ``request`` for the window."""
    loop = asyncio.get_running_loop()
    window = Window(warmup, duration, server)
    conns: list[_Conn] = []
    reconnects = 0

    def lost(conn: _Conn) -> None:
        nonlocal reconnects
        if window.sending:
            if conn.inflight:
                window.error()
            reconnects += 1
            if reconnects > 1000 + concurrency * 10:
                window.abort("too many reconnects (server closes connections)")
                return
            loop.create_task(_open_one())

    async def _open_one() -> None:
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(window, request, lost), host, port),
                connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            window.abort(f"connect failed: {exc}")
            return
        conns.append(proto)
        if window.sending:
            proto.send()

    window.start()
    await asyncio.gather(*(_open_one() for _ in range(concurrency)))
    await window.finished
    # let requests in flight finish (bounded), then close
    deadline = _perf() + 2.0
    while any(c.inflight and not c.closed for c in conns) and _perf() < deadline:
        await asyncio.sleep(0.01)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(0)
    return window.result()
