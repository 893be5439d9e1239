"""The websocket protocol at /websocket, frame by frame, through real sockets (RFC 6455 server rules)."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from websocket_protocol.rawws import SAMPLE_KEY, accept_for, frame, open_raw, upgrade_request

from moontwist.api.websocket import WebSocketConnection
from mtclient import sleep, start_service

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def rpc(method: str, req_id: int, params: dict | None = None) -> bytes:
    msg = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\n")
    yield running
    await running.service.stopService()


async def reply(ws) -> dict:
    b0, payload = await ws.next_frame()
    assert b0 == 0x81, f"expected a final text frame, got {b0:#x}"
    return json.loads(payload)


async def closed_with(ws) -> int | None:
    await ws.lost
    frames = ws.close_frames()
    assert len(frames) == 1, frames
    return frames[0][0]


@pytest_twisted.ensureDeferred
async def test_handshake_answers_with_the_rfc_accept_key(svc):
    ws = await open_raw(svc.port)
    head = ws.head.decode()
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    assert headers["upgrade"].lower() == "websocket" and headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" == accept_for(SAMPLE_KEY).decode()
    assert "sec-websocket-extensions" not in headers  # permessage-deflate is never accepted
    ws.send(frame(TEXT, rpc("server.info", 1)))
    assert (await reply(ws))["result"]["websocket_count"] == 1
    ws.transport.loseConnection()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /websocket HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (upgrade_request(version="8"), 426),
        (upgrade_request(key="c2hvcnQ="), 400),
        (upgrade_request().replace(b"Connection: Upgrade", b"Connection: keep-alive"), 400),
        (upgrade_request().replace(b"GET ", b"POST "), 405),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_upgrade_requests_get_http_errors(svc, request_bytes, status):
    ws = await open_raw(svc.port, request_bytes)
    assert ws.head.split(b" ")[1] == str(status).encode()
    if status == 426:
        assert b"sec-websocket-version: 13" in ws.head.lower()
    assert svc.server.connections.count("websocket") == 0
    ws.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_plain_get_of_the_websocket_path_is_refused(svc):
    resp = await treq.get(f"{svc.base}/websocket")
    assert resp.code == 400
    assert "websocket" in (await resp.json())["error"]["message"].lower()


@pytest_twisted.ensureDeferred
async def test_a_frame_arriving_byte_by_byte(svc):
    ws = await open_raw(svc.port)
    data = frame(TEXT, rpc("server.info", 7))
    for i in range(len(data)):
        ws.send(data[i : i + 1])
        await sleep(0)
    assert (await reply(ws))["id"] == 7
    ws.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_pipelined_frames_in_one_write(svc):
    ws = await open_raw(svc.port)
    ws.send(b"".join(frame(TEXT, rpc("server.info", i)) for i in range(1, 4)))
    assert sorted([(await reply(ws))["id"] for _ in range(3)]) == [1, 2, 3]
    ws.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_fragmented_message_with_a_ping_in_between(svc):
    ws = await open_raw(svc.port)
    data = rpc("server.info", 5)
    ws.send(frame(TEXT, data[:10], fin=False))
    ws.send(frame(PING, b"are you there"))
    ws.send(frame(CONT, data[10:20], fin=False))
    ws.send(frame(CONT, data[20:]))
    b0, payload = await ws.next_frame()
    assert (b0, payload) == (0x80 | PONG, b"are you there")
    assert (await reply(ws))["id"] == 5
    ws.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_large_message_with_a_64_bit_length(svc):
    ws = await open_raw(svc.port)
    big = "x" * 100_000
    ws.send(frame(TEXT, rpc("server.database.post_item", 9, {"namespace": "bench", "key": "k", "value": big})))
    answer = await reply(ws)
    assert answer["result"]["value"] == big
    ws.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_binary_and_non_ascii_text_messages(svc):
    ws = await open_raw(svc.port)
    ws.send(frame(BINARY, rpc("server.info", 3)))
    assert (await reply(ws))["id"] == 3
    ws.send(frame(TEXT, rpc("server.database.post_item", 4, {"namespace": "t", "key": "k", "value": "Grüße ✓"})))
    assert (await reply(ws))["result"]["value"] == "Grüße ✓"
    ws.transport.loseConnection()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(TEXT, b"{}", mask=False), 1002),
        (frame(TEXT, b"{}", rsv=4), 1002),
        (frame(0x3, b"{}"), 1002),
        (frame(0xB, b""), 1002),
        (frame(CONT, b"{}"), 1002),
        (frame(PING, b"x", fin=False), 1002),
        (frame(PING, b"x" * 126), 1002),
        (frame(TEXT, b"[", fin=False) + frame(TEXT, b"]"), 1002),
        (frame(CLOSE, b"\x03"), 1002),
        (frame(CLOSE, (999).to_bytes(2, "big")), 1002),
        (frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
        (frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
        (frame(TEXT, b'"\xce', fin=False) + frame(CONT, b'\xff"'), 1007),
        (frame(TEXT, b"", length=17 * 1024 * 1024), 1009),
        (frame(TEXT, b"x" * 1000, fin=False) + frame(CONT, b"", length=16 * 1024 * 1024), 1009),
    ],
    ids=[
        "unmasked", "reserved-bit", "opcode-3", "opcode-11", "continuation-first", "fragmented-ping",
        "long-ping", "new-message-mid-message", "one-byte-close", "close-code-999", "close-code-1005",
        "close-reason-not-utf8", "fragmented-invalid-utf8", "too-big-declared", "too-big-in-fragments",
    ],
)
@pytest_twisted.ensureDeferred
async def test_protocol_violations_close_with_the_rfc_code(svc, data, code):
    ws = await open_raw(svc.port)
    ws.send(data)
    assert await closed_with(ws) == code
    assert svc.server.connections.count("websocket") == 0
    assert (await svc.get("/server/info"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_client_close_is_echoed_and_the_server_closes_tcp(svc):
    ws = await open_raw(svc.port)
    ws.send(frame(TEXT, rpc("server.info", 1)))
    await reply(ws)
    assert svc.server.connections.count("websocket") == 1
    ws.send(frame(CLOSE, (1000).to_bytes(2, "big") + b"bye"))
    assert await closed_with(ws) == 1000
    assert svc.server.connections.count("websocket") == 0


@pytest_twisted.ensureDeferred
async def test_close_without_a_code_is_answered_without_one(svc):
    ws = await open_raw(svc.port)
    ws.send(frame(CLOSE, b""))
    assert await closed_with(ws) is None


@pytest_twisted.ensureDeferred
async def test_a_client_that_ignores_the_close_handshake_is_dropped(svc, monkeypatch):
    monkeypatch.setattr(WebSocketConnection, "close_timeout", 0.2)
    ws = await open_raw(svc.port)
    ws.send(frame(TEXT, rpc("server.info", 1)))
    await reply(ws)
    for conn in svc.server.connections:
        conn.close_connection(1001, "Server restarting")
    await ws.lost  # never answered: dropped after close_timeout
    assert ws.close_frames() == [(1001, b"Server restarting")]
    assert svc.server.connections.count("websocket") == 0


@pytest_twisted.ensureDeferred
async def test_ping_keepalive_drops_a_silent_client_only(svc, monkeypatch):
    monkeypatch.setattr(WebSocketConnection, "ping_interval", 0.1)
    monkeypatch.setattr(WebSocketConnection, "ping_timeout", 0.3)
    silent = await open_raw(svc.port)
    good = await svc.ws()  # Autobahn's client answers pings
    await silent.lost
    assert [b0 & 0x0F for b0, _ in silent.received] == [PING]
    assert svc.server.connections.count("websocket") == 1
    await sleep(0.5)
    assert (await good.call("server.info"))["websocket_count"] == 1
    good.sendClose()


@pytest_twisted.ensureDeferred
async def test_pong_keeps_a_raw_client_alive(svc, monkeypatch):
    monkeypatch.setattr(WebSocketConnection, "ping_interval", 0.1)
    monkeypatch.setattr(WebSocketConnection, "ping_timeout", 0.3)
    ws = await open_raw(svc.port)
    for _ in range(4):
        b0, payload = await ws.next_frame()
        assert b0 == 0x80 | PING
        ws.send(frame(PONG, payload))
    ws.send(frame(TEXT, rpc("server.info", 2)))
    assert (await reply(ws))["id"] == 2
    ws.transport.loseConnection()
