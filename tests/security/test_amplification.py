"""JSON-RPC batches and replies are bounded on every transport, much lower for anonymous clients."""

from __future__ import annotations

import json

import pytest_twisted
import treq

from moontwist.api.limits import ANONYMOUS_RPC, AUTHENTICATED_RPC
from moontwist.api.registry import Endpoint
from mtclient import connect_unix, connect_ws


def _batch(n: int, method: str = "rpc.discover") -> bytes:
    return json.dumps([{"jsonrpc": "2.0", "method": method, "id": i} for i in range(n)]).encode()


@pytest_twisted.ensureDeferred
async def test_anonymous_websocket_batches_are_small(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        ws = await connect_ws(svc.ws_url)
        ws.sendMessage(_batch(600))
        reply = await ws.raw.get()
        assert reply["error"]["code"] == -32600 and "batch" in reply["error"]["message"]
        ws.sendMessage(_batch(ANONYMOUS_RPC.batch))
        replies = await ws.raw.get()
        assert len(replies) == ANONYMOUS_RPC.batch
        assert len(json.dumps(replies)) <= ANONYMOUS_RPC.reply
        results = [r for r in replies if "result" in r]
        assert results and results[0]["result"]["openrpc"]
        assert all(r["error"]["code"] == 413 for r in replies if "error" in r)
        # a message larger than an anonymous client may send closes the connection (1009)
        ws.sendMessage(b'{"jsonrpc": "2.0", "method": "rpc.discover", "pad": "' + b"x" * ANONYMOUS_RPC.message + b'"}')
        code, _ = await ws.closed
        assert code == 1009
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_authenticated_batches_are_bounded_on_every_transport(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        key = kit.api_key(svc)
        ws = await connect_ws(svc.ws_url, headers={"X-Api-Key": key})
        ws.sendMessage(_batch(AUTHENTICATED_RPC.batch + 1, "server.info"))
        assert (await ws.raw.get())["error"]["code"] == -32600
        ws.sendMessage(_batch(50))  # authenticated: 50 descriptions at once are fine
        assert all("result" in r for r in await ws.raw.get())
        ws.sendClose()
        resp = await treq.post(svc.base + "/server/jsonrpc", data=_batch(AUTHENTICATED_RPC.batch + 1, "server.info"),
                               headers={"X-Api-Key": key, "Content-Type": "application/json"})
        assert (await resp.json())["error"]["code"] == -32600
        unix = await connect_unix(svc.server.path("comms", "moonraker.sock"))
        unix.transport.write(_batch(AUTHENTICATED_RPC.batch + 1, "server.info") + b"\x03")
        assert (await unix.messages.get())["error"]["code"] == -32600
        unix.transport.loseConnection()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_reply_over_the_limit_becomes_an_error(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        big = "x" * (ANONYMOUS_RPC.reply + 10)
        svc.server.registry.add(Endpoint("test.big", lambda request: big, auth=False, transports=frozenset({"websocket"})))
        anonymous = await connect_ws(svc.ws_url)
        reply = await anonymous.rpc("test.big")
        assert reply["error"]["code"] == 413 and reply["id"] == 1
        authenticated = await connect_ws(svc.ws_url, headers={"X-Api-Key": kit.api_key(svc)})
        assert await authenticated.call("test.big") == big
        anonymous.sendClose()
        authenticated.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_api_descriptions_are_cached_until_the_registry_changes(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        ws = await connect_ws(svc.ws_url)
        first = await ws.call("rpc.discover")
        assert "test.added" not in {m["name"] for m in first["methods"]}
        svc.server.registry.add(Endpoint("test.added", lambda request: 1, "/test/added", auth=False))
        assert "test.added" in {m["name"] for m in (await ws.call("rpc.discover"))["methods"]}
        code, body = await svc.get("/server/openapi.json")
        assert code == 200 and "/test/added" in body["paths"]
        svc.server.registry.remove("test.added")
        assert "test.added" not in {m["name"] for m in (await ws.call("rpc.discover"))["methods"]}
        ws.sendClose()
    finally:
        await svc.service.stopService()
