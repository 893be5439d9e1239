"""JSON-RPC 2.0 over the websocket and the unix socket, through real sockets."""

from __future__ import annotations

import json
import os
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import Endpoint
from moontwist.hookspecs import hookimpl
from mtclient import RPCError, connect_unix, sleep, start_service


class RPCTestPlugin:
    @hookimpl
    def register_endpoints(self, register):
        register(Endpoint("test.add", lambda r: r.args["a"] + r.args["b"], "/test/add", args=(Arg("a", "int", required=True), Arg("b", "int", default=0))))
        register(Endpoint("test.teapot", self.teapot, "/test/teapot"))
        register(Endpoint("test.slow", self.slow, "/test/slow"))
        register(Endpoint("test.http_only", lambda r: "ok", "/test/http_only", transports={"http"}))
        # a name as os.fsdecode gives it for bytes that aren't UTF-8
        register(Endpoint("test.surrogate", lambda r: {"name": "caf\udce9.gcode"}, "/test/surrogate"))

    def teapot(self, req):
        raise ServerError("I'm a teapot", 418)

    def slow(self, req):
        d = Deferred()
        reactor.callLater(0.2, d.callback, "late")
        return d


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\n", extra_plugins={"rpctest": RPCTestPlugin()})
    yield running
    await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_server_info_over_websocket(svc):
    ws = await svc.ws()
    info = await ws.call("server.info")
    assert info["websocket_count"] == 1
    assert info["klippy_state"] == "disconnected"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_ids_are_echoed_and_errors_follow_jsonrpc(svc):
    ws = await svc.ws()
    for req_id in ("abc", 3.5, 12345678901234):
        ws.sendMessage(json.dumps({"jsonrpc": "2.0", "method": "test.add", "params": {"a": 1}, "id": req_id}).encode())
        reply = await ws.raw.get()
        assert reply == {"jsonrpc": "2.0", "result": 1, "id": req_id}
    reply = await ws.rpc("no.such.method")
    assert reply["error"]["code"] == -32601
    reply = await ws.rpc("test.add", {"a": "x"})
    assert reply["error"] == {"code": -32602, "message": "Invalid argument 'a': expected an integer, got 'x'"}
    reply = await ws.rpc("test.add", {})
    assert reply["error"]["code"] == -32602 and "'a'" in reply["error"]["message"]
    reply = await ws.rpc("test.teapot")
    assert reply["error"] == {"code": 418, "message": "I'm a teapot"}
    reply = await ws.rpc("test.http_only")
    assert reply["error"]["code"] == -32601
    ws.sendMessage(b"{this is not json")
    assert (await ws.raw.get())["error"]["code"] == -32700
    ws.sendMessage(json.dumps({"jsonrpc": "2.0", "id": 5}).encode())
    reply = await ws.raw.get()
    assert reply["error"]["code"] == -32600 and reply["id"] == 5
    ws.sendMessage(json.dumps({"jsonrpc": "2.0", "method": "test.add", "params": [1, 2], "id": 6}).encode())
    assert (await ws.raw.get())["error"]["code"] == -32602
    ws.sendMessage(b"42")
    assert (await ws.raw.get())["error"]["code"] == -32600
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_batches_and_requests_without_id(svc):
    ws = await svc.ws()
    batch = [
        {"jsonrpc": "2.0", "method": "test.add", "params": {"a": 1, "b": 2}, "id": 1},
        {"jsonrpc": "2.0", "method": "test.add", "params": {"a": 5}},  # notification: no reply
        {"jsonrpc": "2.0", "method": "test.slow", "id": 2},
        {"jsonrpc": "2.0", "method": "nope", "id": 3},
    ]
    ws.sendMessage(json.dumps(batch).encode())
    reply = await ws.raw.get()
    assert [r["id"] for r in reply] == [1, 2, 3]
    assert reply[0]["result"] == 3 and reply[1]["result"] == "late" and reply[2]["error"]["code"] == -32601
    ws.sendMessage(json.dumps({"jsonrpc": "2.0", "method": "test.add", "params": {"a": 1}}).encode())
    ws.sendMessage(json.dumps([]).encode())
    assert (await ws.raw.get())["error"]["code"] == -32600  # the empty batch; the notification got nothing
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_identify_once_and_unique_agents(svc):
    ws = await svc.ws()
    wsid = (await ws.call("server.websocket.id"))["websocket_id"]
    params = {"client_name": "probe", "version": "1.0", "type": "agent", "url": "https://example.invalid"}
    result = await ws.call("server.connection.identify", params)
    assert result == {"connection_id": wsid}
    with pytest.raises(RPCError) as err:
        await ws.call("server.connection.identify", params)
    assert err.value.code == 400
    other = await svc.ws()
    with pytest.raises(RPCError) as err:
        await other.call("server.connection.identify", params)
    assert "already connected" in err.value.message
    with pytest.raises(RPCError) as err:
        await other.call("server.connection.identify", {**params, "type": "toaster"})
    assert err.value.code == -32602 and "'type'" in err.value.message
    ws.sendClose()
    await ws.closed
    await sleep(0.05)
    assert (await other.call("server.connection.identify", params))["connection_id"] != wsid
    other.sendClose()


@pytest_twisted.ensureDeferred
async def test_notifications_reach_every_client(svc):
    clients = [await svc.ws() for _ in range(3)]
    svc.server.notify("notify_test_event", {"value": 1})
    for ws in clients:
        msg = await ws.next_notification("notify_test_event")
        assert msg == {"jsonrpc": "2.0", "method": "notify_test_event", "params": [{"value": 1}]}
        ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_oversized_frame_closes_with_1009(svc):
    ws = await svc.ws()
    ws.sendMessage(b'"' + b"x" * (17 * 1024 * 1024) + b'"')
    code, _ = await ws.closed
    assert code == 1009
    code, _ = await svc.get("/server/info")
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_closes_cleanly(svc):
    ws = await svc.ws()
    # Autobahn's sendMessage validates nothing on the client side; the server must.
    ws.sendMessage(b'{"jsonrpc": "2.0", "method": "\xff\xfe", "id": 1}', isBinary=False)
    code, _ = await ws.closed
    assert code == 1007
    assert (await svc.get("/server/info"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_client_that_stops_reading_is_disconnected(svc):
    """A slow consumer is cut off instead of buffered without limit; others keep going."""
    raw = socket.create_connection(("127.0.0.1", svc.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.sendall(
        b"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await sleep(0.2)
    good = await svc.ws()
    assert svc.server.connections.count("websocket") == 2
    blob = "y" * 60000
    for _ in range(400):  # ~24 MB offered to a client that never reads
        svc.server.notify("notify_blob", blob)
        await sleep(0)
    await sleep(0.3)
    assert svc.server.connections.count("websocket") == 1
    assert (await good.call("server.info"))["websocket_count"] == 1
    good.sendClose()
    raw.close()


@pytest_twisted.ensureDeferred
async def test_client_disconnecting_mid_request(svc):
    ws = await svc.ws()
    ws.sendMessage(json.dumps({"jsonrpc": "2.0", "method": "test.slow", "id": 1}).encode())
    ws.transport.abortConnection()
    await sleep(0.4)
    assert (await svc.get("/server/info"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_unix_socket_speaks_the_same_jsonrpc(svc):
    path = os.path.join(svc.server.datapath, "comms", "moonraker.sock")
    client = await connect_unix(path)
    client.send({"jsonrpc": "2.0", "method": "test.add", "params": {"a": 2, "b": 3}, "id": 1})
    assert (await client.messages.get()) == {"jsonrpc": "2.0", "result": 5, "id": 1}
    client.send({"jsonrpc": "2.0", "method": "server.connection.identify", "params": {"client_name": "cli", "version": "1", "type": "other", "url": "x"}, "id": 2})
    assert "connection_id" in (await client.messages.get())["result"]
    svc.server.notify("notify_unix_test")
    assert (await client.messages.get())["method"] == "notify_unix_test"
    client.transport.write(b"{garbage\x03")
    assert (await client.messages.get())["error"]["code"] == -32700
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_endpoints_added_at_run_time_appear_everywhere(svc):
    svc.server.registry.add(Endpoint("late.hello", lambda r: "hello", "/late/hello"))
    assert (await svc.get("/late/hello")) == (200, {"result": "hello"})
    ws = await svc.ws()
    assert await ws.call("late.hello") == "hello"
    doc = (await svc.get("/server/openapi.json"))[1]
    assert "/late/hello" in doc["paths"]
    names = [m["name"] for m in (await ws.call("rpc.discover"))["methods"]]
    assert "late.hello" in names and "server.info" in names
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_a_result_with_a_lone_surrogate_still_gets_a_reply(svc):
    """orjson refuses lone surrogates: the reply falls back to an ASCII-escaped encoding."""
    ws = await svc.ws()
    assert await ws.call("test.surrogate") == {"name": "caf\udce9.gcode"}
    code, body = await svc.get("/test/surrogate")
    assert code == 200 and body == {"result": {"name": "caf\udce9.gcode"}}
    ws.sendClose()
