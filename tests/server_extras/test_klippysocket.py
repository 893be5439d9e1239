"""/klippysocket: a raw websocket bridge to Klippy's API socket, authorized on the upgrade request."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq

from mtclient import connect_ws, start_service, wait_for

SIM = "[server]\nhost: 127.0.0.1\n{server}\n[simulator]\nspeed: 50\n{auth}"


async def _printer(tmp_path, auth: str = "", server: str = ""):
    svc = await start_service(str(tmp_path / "data"), SIM.format(server=server, auth=auth), simulate=True)
    svc.sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    await wait_for(lambda: svc.server.klippy_state == "ready")
    return svc


def _bridge_url(svc, query: str = "") -> str:
    return f"ws://127.0.0.1:{svc.port}/klippysocket{query}"


async def _next(ws, timeout: float = 5.0) -> dict:
    from twisted.internet import reactor

    d = ws.raw.get()
    timer = reactor.callLater(timeout, d.cancel)
    try:
        return await d
    finally:
        if timer.active():
            timer.cancel()


def _send(ws, msg: dict) -> None:
    ws.sendMessage(json.dumps(msg).encode())


@pytest_twisted.ensureDeferred
async def test_bridge_speaks_klippys_protocol(tmp_path):
    svc = await _printer(tmp_path)
    try:
        ws = await connect_ws(_bridge_url(svc))
        _send(ws, {"id": 7, "method": "info", "params": {}})
        reply = await _next(ws)
        assert reply["id"] == 7 and reply["result"]["state"] == "ready"
        # binary frames too; Klippy's pushes use the client's own template
        ws.sendMessage(json.dumps({"id": 8, "method": "gcode/subscribe_output",
                                   "params": {"response_template": {"tag": "out"}}}).encode(), isBinary=True)
        assert (await _next(ws))["id"] == 8
        _send(ws, {"id": 9, "method": "gcode/script", "params": {"script": "M118 over the bridge"}})
        pushed = await _next(ws)
        assert pushed == {"tag": "out", "params": {"response": "// over the bridge"}}
        assert (await _next(ws)) == {"id": 9, "result": {}}
        assert len(svc.server.lookup("klippy_bridges")) == 1
        # Klippy restarting closes every client connection, the bridge with it
        _send(ws, {"id": 10, "method": "gcode/restart", "params": {}})
        code, _ = await ws.closed
        assert code == 1001
        await wait_for(lambda: len(svc.server.lookup("klippy_bridges")) == 0)
        # the main connection is not disturbed by bridges
        await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_bridge_needs_credentials_on_the_upgrade(tmp_path):
    svc = await _printer(tmp_path, auth="[authorization]\n")
    try:
        with pytest.raises(ConnectionError, match="401"):
            await connect_ws(_bridge_url(svc))
        key = svc.server.lookup("identify_credentials").__self__.auth.api_key
        ws = await connect_ws(_bridge_url(svc), headers={"X-Api-Key": key})
        _send(ws, {"id": 1, "method": "info", "params": {}})
        assert (await _next(ws))["result"]["state"] == "ready"
        ws.sendClose()
        code, body = await svc.get("/access/oneshot_token", headers={"X-Api-Key": key})
        token = body["result"]
        ws = await connect_ws(_bridge_url(svc, f"?token={token}"))
        _send(ws, {"id": 2, "method": "info", "params": {}})
        assert (await _next(ws))["id"] == 2
        ws.sendClose()
        with pytest.raises(ConnectionError, match="401"):  # a oneshot token works once
            await connect_ws(_bridge_url(svc, f"?token={token}"))
        with pytest.raises(ConnectionError, match="403"):
            await connect_ws(_bridge_url(svc), headers={"X-Api-Key": key}, origin="http://evil.example")
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_bridge_refusals(tmp_path):
    svc = await _printer(tmp_path, server="max_websocket_connections: 2")
    try:
        resp = await treq.get(svc.base + "/klippysocket")
        assert resp.code == 400 and "websocket" in (await resp.json())["error"]["message"]
        first = await connect_ws(_bridge_url(svc))
        ordinary = await svc.ws()
        with pytest.raises(ConnectionError, match="503"):  # bridges and websockets share the limit
            await connect_ws(_bridge_url(svc))
        with pytest.raises(ConnectionError, match="503"):
            await svc.ws()
        ordinary.sendClose()
        first.sendClose()
        await wait_for(lambda: len(svc.server.lookup("klippy_bridges")) == 0)
        await svc.sim.stop()
        with pytest.raises(ConnectionError, match="503"):
            await connect_ws(_bridge_url(svc))
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_server_restart_closes_bridges(tmp_path):
    svc = await _printer(tmp_path)
    try:
        ws = await connect_ws(_bridge_url(svc))
        _send(ws, {"id": 1, "method": "info", "params": {}})
        await _next(ws)
        code, _ = await svc.post("/server/restart")
        assert code == 200
        code, _ = await ws.closed
        assert code == 1001
    finally:
        await svc.service.stopService()
