"""Slow and oversized request heads get an answer and a closed connection, never a held one."""

from __future__ import annotations

import pytest_twisted
from security import rawhttp
from twisted.internet.task import LoopingCall

from moontwist.api.http import APISite
from mtclient import connect_unix, sleep, start_service


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")
    running.service.site.header_timeout = 0.5
    yield running
    await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_headers_trickling_in_are_cut_off(svc):
    head = b"GET /server/info HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    clients = [await rawhttp.connect(svc.port) for _ in range(20)]
    sent = [0]

    def trickle() -> None:  # one byte per client every 20 ms: the idle timeout never fires
        for client in clients:
            if client.open and sent[0] < len(head):
                client.send(head[sent[0] : sent[0] + 1])
        sent[0] += 1

    loop = LoopingCall(trickle)
    loop.start(0.02)
    try:
        for client in clients:
            assert await client.wait_closed(5), "a slow client was never disconnected"
    finally:
        loop.stop()
    status, _, body = rawhttp.parse_response(clients[0].received)
    assert status == 408 and "in time" in body["error"]["message"]
    # the server still answers, and a request that arrives in one piece is not affected
    status, _, body = await rawhttp.request(svc.port, "GET /server/info HTTP/1.1\nHost: x")
    assert status == 200


@pytest_twisted.ensureDeferred
async def test_a_slow_but_timely_head_is_served(svc):
    client = await rawhttp.connect(svc.port)
    for part in (b"GET /server/info HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        client.send(part)
        await sleep(0.1)
    status, _, _ = await client.wait_response()
    assert status == 200
    # keep-alive: the next request's deadline starts with its own first byte
    await sleep(0.7)
    client.send(b"GET /server/info HTTP/1.1\r\n")
    await sleep(0.1)
    client.send(b"Host: x\r\n\r\n")
    await sleep(0.1)
    assert client.received.count(b"HTTP/1.1 200") == 2
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_is_closed(svc):
    assert svc.service.site.timeOut == APISite.idle_timeout <= 300
    svc.service.site.timeOut = 0.5
    client = await rawhttp.connect(svc.port)
    assert await client.wait_closed(5)


@pytest_twisted.ensureDeferred
async def test_oversized_heads_are_answered(svc):
    status, _, body = await rawhttp.request(svc.port, f"GET /server/info?{'a' * 20000} HTTP/1.1\nHost: x")
    assert status == 414 and "request line" in body["error"]["message"]
    status, _, _ = await rawhttp.request(svc.port, f"GET /server/info HTTP/1.1\nHost: x\nX-Big: {'a' * 20000}")
    assert status == 431
    many = "\n".join(f"X-H{i}: {'b' * 100}" for i in range(200))  # each line is fine, together too large
    status, _, _ = await rawhttp.request(svc.port, f"GET /server/info HTTP/1.1\nHost: x\n{many}")
    assert status == 431
    status, _, _ = await rawhttp.request(svc.port, "NONSENSE\nHost: x")
    assert status == 400


@pytest_twisted.ensureDeferred
async def test_unix_socket_messages_in_pieces_and_oversized(svc):
    unix = await connect_unix(svc.server.path("comms", "moonraker.sock"))
    message = b'{"jsonrpc": "2.0", "method": "server.info", "id": 1}\x03'
    for i in range(len(message)):
        unix.transport.write(message[i : i + 1])
    assert (await unix.messages.get())["result"]["klippy_state"]
    unix.transport.write(b"[" * (17 * 1024 * 1024))
    for _ in range(250):
        if not unix.transport.connected:
            break
        await sleep(0.02)
    assert not unix.transport.connected
