"""Every registered endpoint, on every transport, with and without credentials.

Handlers (and argument checks) are swapped for a stub before the matrix runs, so only the
authorization layer is exercised (no restart, reboot or logout happens).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest_twisted

from moontwist.api.registry import RPC_TRANSPORTS
from mtclient import connect_unix


def _stub_handlers(server) -> list:
    endpoints = list(server.registry)
    for endpoint in endpoints:
        if endpoint.method in ("server.jsonrpc", "access.oneshot_token", "server.connection.identify"):
            continue  # the matrix needs these for real
        server.registry.remove(endpoint.method)
        server.registry.add(replace(endpoint, args=(), handler=lambda request: {"stub": request.user["username"] if request.user else None}))
    return list(server.registry)


def _http_calls(endpoints):
    for endpoint in endpoints:
        # Streaming uploads parse their body before the registry is reached (see the report).
        if "http" not in endpoint.transports or endpoint.method == "server.jsonrpc" or endpoint.raw_body:
            continue
        path = endpoint.http_path.replace("*", "x")
        for verb in endpoint.http_methods:
            yield endpoint, verb, path


async def _oneshot(svc, key: str) -> str:
    code, body, _ = await svc.request("GET", "/access/oneshot_token", headers={"X-Api-Key": key})
    assert code == 200
    return body["result"]


@pytest_twisted.ensureDeferred
async def test_every_endpoint_every_transport(svc, kit):
    key = kit.api_key(svc)
    token = (await kit.create_user(svc))["token"]
    endpoints = _stub_handlers(svc.server)
    public = {e.method for e in endpoints if not e.auth}
    assert {"access.login", "access.refresh_jwt", "access.info", "server.connection.identify"} <= public
    calls = list(_http_calls(endpoints))
    assert len(calls) > 20
    for endpoint, verb, path in calls:
        code, body, _ = await svc.request(verb, path)
        expected = 200 if endpoint.method in public else 401
        assert code == expected, (verb, path, code, body)
        for headers in ({"X-Api-Key": key}, {"Authorization": f"Bearer {token}"}):
            code, body, _ = await svc.request(verb, path, headers=headers)
            assert code == 200, (verb, path, headers, body)
        for query in (f"access_token={token}", f"token={await _oneshot(svc, key)}"):
            code, body, _ = await svc.request(verb, path + "?" + query)
            assert code == 200, (verb, path, query, body)

    rpc = [e for e in endpoints if e.transports & RPC_TRANSPORTS]
    anonymous = await svc.ws()
    authed = await svc.ws(headers={"X-Api-Key": key})
    by_token = await svc.ws()
    await by_token.call("server.connection.identify", {"client_name": "t", "version": "1", "type": "web", "url": "x", "access_token": token})
    unix = await connect_unix(svc.server.path("comms", "moonraker.sock"))
    for endpoint in rpc:
        if "websocket" in endpoint.transports and endpoint.method != "server.connection.identify":
            reply = await anonymous.rpc(endpoint.method)
            if endpoint.method in public:
                assert "result" in reply, (endpoint.method, reply)
            else:
                assert reply["error"]["code"] == 401, (endpoint.method, reply)
            for ws in (authed, by_token):
                reply = await ws.rpc(endpoint.method)
                assert "result" in reply, (endpoint.method, reply)
        if "jsonrpc_http" in endpoint.transports:
            msg = {"jsonrpc": "2.0", "method": endpoint.method, "id": 1}
            code, body, _ = await svc.request("POST", "/server/jsonrpc", data=json.dumps(msg).encode())
            assert code == 401, (endpoint.method, body)
            code, body, _ = await svc.request(
                "POST", "/server/jsonrpc", data=json.dumps(msg).encode(), headers={"Authorization": f"Bearer {token}"}
            )
            assert "result" in body, (endpoint.method, body)
        if "unix" in endpoint.transports and endpoint.method != "server.connection.identify":
            unix.send({"jsonrpc": "2.0", "method": endpoint.method, "id": 7})
            reply = await unix.messages.get()
            while "id" not in reply:  # skip notifications
                reply = await unix.messages.get()
            assert "result" in reply, (endpoint.method, reply)
    for ws in (anonymous, authed, by_token):
        ws.sendClose()
    unix.transport.loseConnection()
