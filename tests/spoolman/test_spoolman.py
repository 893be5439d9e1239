"""Spoolman integration against a fake Spoolman (REST + websocket) while the simulator prints."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from spoolman.fakespoolman import FakeSpoolman

from moontwist.config import ConfigError
from moontwist.server import Server, ServerOptions
from mtclient import RPCError, sleep, start_service, wait_for

MOVES = 200  # each extrudes 0.5 mm (M83)
GCODE = "G28\nG90\nM83\nG1 Z0.3 F3000\n" + "".join(f"G1 X{10 + i % 2 * 20} Y{10 + i % 50} E0.5 F3000\n"
                                                   for i in range(MOVES))


def config(port: int) -> str:
    return f"[server]\n[simulator]\nspeed: 20\n[spoolman]\nserver: http://127.0.0.1:{port}\nsync_rate: 1\n"


async def start(datapath: str, port: int):
    os.makedirs(os.path.join(datapath, "gcodes"), exist_ok=True)
    with open(os.path.join(datapath, "gcodes", "cube.gcode"), "w") as f:
        f.write(GCODE)
    svc = await start_service(datapath, config(port), simulate=True)
    await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    svc.plugin = svc.server.plugins.pm.get_plugin("spoolman")
    svc.sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    await wait_for(lambda: svc.plugin.last_epos is not None, timeout=10)  # knows where the extruder is
    return svc


@pytest_twisted.async_yield_fixture
async def env(tmp_path):
    fake = FakeSpoolman()
    port = fake.listen()
    svc = await start(str(tmp_path / "data"), port)
    await wait_for(lambda: svc.plugin.peer.connected, timeout=10)
    svc.fake = fake
    svc.fake_port = port
    yield svc
    await svc.service.stopService()
    await fake.stop()


async def status(svc) -> dict:
    code, body = await svc.get("/server/spoolman/status")
    assert code == 200
    return body["result"]


async def print_file(svc, ws) -> None:
    await ws.call("printer.print.start", {"filename": "cube.gcode"})
    await wait_for(lambda: svc.server.print_state == "printing", timeout=10)
    await wait_for(lambda: svc.server.print_state == "complete", timeout=60)


def reported(fake: FakeSpoolman, spool_id: int) -> float:
    return sum(length for sid, length in fake.uses() if sid == spool_id)


@pytest_twisted.ensureDeferred
async def test_active_spool_usage_reports_and_history(env):
    fake = env.fake
    spool = fake.add_spool(price=20.0, initial_weight=1000.0)
    ws = await env.ws()
    assert await status(env) == {"spoolman_connected": True, "pending_reports": [], "spool_id": None,
                                 "tool_spool_map": {}}
    assert await ws.call("server.spoolman.post_spool_id", {"spool_id": spool}) == {"spool_id": spool}
    note = await ws.next_notification("notify_active_spool_set")
    assert note["params"] == [{"spool_id": spool}]
    assert await ws.call("server.spoolman.get_spool_id") == {"spool_id": spool}
    assert (await env.get("/server/spoolman/spool_id"))[1]["result"] == {"spool_id": spool}

    await print_file(env, ws)
    await wait_for(lambda: reported(fake, spool) >= MOVES * 0.5 - 0.6, timeout=10)
    await wait_for(lambda: not env.plugin.pending, timeout=10)
    total = reported(fake, spool)
    assert total == pytest.approx(MOVES * 0.5, abs=0.6)
    assert len(fake.uses()) >= 1  # batched: far fewer reports than moves
    assert len(fake.uses()) < MOVES / 4
    assert fake.spools[spool]["used_weight"] == pytest.approx(1.24 * total * 3.14159265 * 0.875 ** 2 / 1000, rel=1e-3)

    jobs = (await env.get("/server/history/list"))[1]["result"]["jobs"]
    aux = {a["name"]: a for a in jobs[0]["auxiliary_data"] if a["provider"] == "spoolman"}
    assert aux["spool_ids"]["value"] == [spool]
    usage, = aux["filament_usage"]["value"]
    assert usage["tool"] == "T0" and usage["spool_id"] == spool
    # the job ends when print_stats says so; the simulator may push the last position a tick later
    assert usage["filament_used"] == pytest.approx(MOVES * 0.5, abs=5)
    grams = 1.24 * usage["filament_used"] * 3.14159265 * 0.875 ** 2 / 1000
    assert usage["filament_weight"] == pytest.approx(grams, rel=1e-3)
    assert usage["filament_cost"] == pytest.approx(grams * 20.0 / 1000.0, abs=1e-4)
    assert usage["currency"] == "EUR" and aux["filament_cost"]["units"] == "EUR"
    assert aux["filament_weight"]["value"] == pytest.approx(grams, rel=1e-3) and aux["filament_weight"]["units"] == "g"
    totals = (await env.get("/server/history/totals"))[1]["result"]["auxiliary_totals"]
    weight_total = next(t for t in totals if t["field"] == "filament_weight")
    assert weight_total["total"] == pytest.approx(grams, rel=1e-3)



@pytest_twisted.ensureDeferred
async def test_a_job_without_an_active_spool_has_no_null_history_values(env):
    # Mainsail's job details dialog (HistoryListPanelDetailsDialog.vue, get entries) calls
    # value.toString() on every auxiliary_data entry: a null weight or cost and it never opens.
    ws = await env.ws()
    assert await ws.call("server.spoolman.get_spool_id") == {"spool_id": None}
    await print_file(env, ws)
    await wait_for(lambda: env.server.print_state == "complete", timeout=10)
    job = (await ws.call("server.history.list"))["jobs"][0]
    aux = {a["name"]: a["value"] for a in job["auxiliary_data"] if a["provider"] == "spoolman"}
    assert aux == {"spool_ids": [], "filament_usage": []}
    totals = (await ws.call("server.history.totals"))["auxiliary_totals"]
    assert [t for t in totals if t["provider"] == "spoolman"] == []

@pytest_twisted.ensureDeferred
async def test_reports_survive_spoolman_leaving_and_a_restart(env):
    fake, port = env.fake, env.fake_port
    spool = fake.add_spool()
    ws = await env.ws()
    await ws.call("server.spoolman.post_spool_id", {"spool_id": spool})
    await fake.stop()  # Spoolman goes away before the print
    note = await ws.next_notification("notify_spoolman_status_changed")
    assert note["params"] == [{"spoolman_connected": False}]
    await print_file(env, ws)
    await wait_for(lambda: env.plugin.pending.get(spool, 0) > MOVES * 0.5 - 0.6, timeout=10)
    pending = (await status(env))["pending_reports"]
    assert pending[0]["spool_id"] == spool and pending[0]["filament_used"] == pytest.approx(MOVES * 0.5, abs=0.6)
    uses_before = len(fake.uses())

    # a restart while Spoolman is away keeps the reports (they are in the database)
    await env.server.restart()
    env.plugin = env.server.plugins.pm.get_plugin("spoolman")
    after = await status(env)
    assert after["spoolman_connected"] is False and after["spool_id"] == spool
    assert after["pending_reports"][0]["filament_used"] == pytest.approx(pending[0]["filament_used"])

    # Spoolman returns on the same port: the kept usage arrives, once
    fake.listen(port)
    await wait_for(lambda: env.plugin.peer.connected, timeout=10)
    await wait_for(lambda: not env.plugin.pending, timeout=10)
    assert len(fake.uses()) > uses_before
    assert reported(fake, spool) == pytest.approx(pending[0]["filament_used"])
    assert (await status(env))["pending_reports"] == []


@pytest_twisted.ensureDeferred
async def test_spoolman_that_hangs_or_answers_garbage(env):
    fake = env.fake
    spool = fake.add_spool()
    env.plugin.peer.request_timeout = 0.5
    ws = await env.ws()
    await ws.call("server.spoolman.post_spool_id", {"spool_id": spool})
    env.plugin.pending[spool] = 12.5  # as if printed

    fake.mode = "hang"
    started = env.server.reactor.seconds()
    reply = await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool",
                                                    "use_v2_response": True})
    assert reply == {"response": None, "error": {"status_code": 504, "message": reply["error"]["message"]}}
    assert "did not answer" in reply["error"]["message"]
    assert env.server.reactor.seconds() - started < 5
    code, body = await env.post("/server/spoolman/proxy", json={"request_method": "GET", "path": "/v1/spool"})
    assert code == 504
    assert (await env.get("/server/info"))[0] == 200
    await sleep(1.5)  # a report cycle that times out keeps the usage
    assert env.plugin.pending[spool] == pytest.approx(12.5)

    fake.mode = "garbage"
    reply = await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool",
                                                    "use_v2_response": True})
    assert reply["response"] is None and reply["error"]["status_code"] == 502
    assert "not JSON" in reply["error"]["message"]
    with pytest.raises(RPCError) as err:
        await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool"})
    assert err.value.code == 502
    await sleep(1.5)
    assert env.plugin.pending[spool] == pytest.approx(12.5)

    fake.mode = "fail_use"
    await sleep(1.5)
    assert env.plugin.pending[spool] == pytest.approx(12.5)
    fake.mode = None
    await wait_for(lambda: not env.plugin.pending, timeout=5)
    assert reported(fake, spool) == pytest.approx(12.5)


@pytest_twisted.ensureDeferred
async def test_proxy(env):
    fake = env.fake
    spool = fake.add_spool()
    ws = await env.ws()
    listed = await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool"})
    assert [s["id"] for s in listed] == [spool] and listed[0]["filament"]["name"] == "Reactor Red"
    v2 = await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool", "query": "limit=5",
                                                 "use_v2_response": True})
    assert v2["error"] is None and v2["response"][0]["id"] == spool and v2["response_headers"]["X-Total-Count"] == "1"
    assert fake.requests[-1][:2] == ("GET", "/api/v1/spool")
    created = await ws.call("server.spoolman.proxy", {"request_method": "POST", "path": "/v1/spool",
                                                      "body": {"filament_id": 1, "price": 19.5}})
    assert created["price"] == 19.5 and fake.requests[-1][2] == {"filament_id": 1, "price": 19.5}
    missing = await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool/99",
                                                      "use_v2_response": True})
    assert missing == {"response": None, "error": {"status_code": 404, "message": "No spool with ID 99 found."}}
    with pytest.raises(RPCError) as err:
        await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool/99"})
    assert err.value.code == 404 and "No spool with ID 99" in err.value.message
    bad = [
        ({"request_method": "GET", "path": "/spool"}, "path"),
        ({"request_method": "GET", "path": "/v1/../admin"}, "path"),
        ({"request_method": "GET", "path": "/v1/spool\r\nX-Evil: 1"}, "path"),
        ({"request_method": "TRACE", "path": "/v1/spool"}, "request_method"),
        ({"request_method": "GET", "path": "/v1/spool", "body": {"a": 1}}, "body"),
        ({"request_method": "GET", "path": "/v1/spool", "query": "a=1#x"}, "query"),
        ({"path": "/v1/spool"}, "request_method"),
    ]
    for params, name in bad:
        with pytest.raises(RPCError) as err:
            await ws.call("server.spoolman.proxy", params)
        assert name in err.value.message, params
    # a batch over HTTP
    code, body, _ = await env.request("POST", "/server/jsonrpc", json=[
        {"jsonrpc": "2.0", "method": "server.spoolman.status", "id": 1},
        {"jsonrpc": "2.0", "method": "server.spoolman.proxy", "id": 2,
         "params": {"request_method": "GET", "path": "/v1/info"}}])
    assert body[0]["result"]["spoolman_connected"] is True and body[1]["result"]["version"] == "0.26.1"
    # Spoolman away: v1 503, v2 an error object
    await fake.stop()
    await wait_for(lambda: not env.plugin.peer.connected)
    with pytest.raises(RPCError) as err:
        await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool"})
    assert err.value.code == 503
    v2 = await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool", "use_v2_response": True})
    assert v2 == {"response": None, "error": {"status_code": 503, "message": "Spoolman server not available"}}


@pytest_twisted.ensureDeferred
async def test_an_answer_that_never_ends_is_cut_off_at_the_size_limit(env, monkeypatch):
    import moontwist.plugins.spoolman.peer as peer_module

    monkeypatch.setattr(peer_module, "MAX_RESPONSE", 1024 * 1024)
    env.plugin.peer.request_timeout = 5.0
    ws = await env.ws()
    env.fake.mode = "flood"
    with pytest.raises(RPCError) as err:
        await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool"})
    assert err.value.code == 502 and "too large" in err.value.message
    await wait_for(lambda: env.fake.floods[0]["closed"])
    assert env.fake.floods[0]["sent"] < 4 * 1024 * 1024
    env.fake.mode = None
    assert await ws.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/info"})


@pytest_twisted.ensureDeferred
async def test_spools_that_vanish_and_bad_ids(env):
    fake = env.fake
    keep, doomed = fake.add_spool(), fake.add_spool()
    ws = await env.ws()
    with pytest.raises(RPCError) as err:
        await ws.call("server.spoolman.post_spool_id", {"spool_id": 404})
    assert err.value.code == 404 and "404" in err.value.message
    for value in (0, -3, "abc", 1.5):
        with pytest.raises(RPCError) as err:
            await ws.call("server.spoolman.post_spool_id", {"spool_id": value})
        assert "spool_id" in err.value.message
    with pytest.raises(RPCError):
        await ws.call("server.spoolman.post_spool_id", {"spool_id": keep, "tool": 999})
    assert (await ws.call("server.spoolman.get_spool_id")) == {"spool_id": None}

    # deleted in Spoolman: the websocket event clears it
    await ws.call("server.spoolman.post_spool_id", {"spool_id": doomed})
    await ws.next_notification("notify_active_spool_set")
    env.plugin.pending[doomed] = 3.0
    fake.delete_spool(doomed)
    note = await ws.next_notification("notify_active_spool_set")
    assert note["params"] == [{"spool_id": None}]
    assert doomed not in env.plugin.pending

    # set while Spoolman was away, missing when it returns: cleared on connect (Moonraker's GET on connect)
    await ws.call("server.spoolman.post_spool_id", {"spool_id": keep})
    await fake.stop()
    await wait_for(lambda: not env.plugin.peer.connected)
    await ws.call("server.spoolman.post_spool_id", {"spool_id": 77})
    assert (await ws.call("server.spoolman.get_spool_id")) == {"spool_id": 77}
    fake.listen(env.fake_port)
    await wait_for(lambda: env.plugin.peer.connected, timeout=10)
    await wait_for(lambda: env.plugin.active.get(0) is None, timeout=5)


@pytest_twisted.ensureDeferred
async def test_remote_method_and_one_spool_per_tool(env):
    fake = env.fake
    first, second = fake.add_spool(), fake.add_spool()
    ws = await env.ws()
    # {action_call_remote_method("spoolman_set_active_spool", spool_id=1)} from a Klipper macro
    env.sim.call_remote_method("spoolman_set_active_spool", {"spool_id": first})
    assert (await ws.next_notification("notify_active_spool_set"))["params"] == [{"spool_id": first}]
    env.sim.call_remote_method("spoolman_set_active_spool", {"spool_id": second, "tool": 1})
    note = await ws.next_notification("notify_spoolman_tool_spool_set")
    while note["params"][0]["tool"] != 1:
        note = await ws.next_notification("notify_spoolman_tool_spool_set")
    assert note["params"][0]["tool_spool_map"] == {"T0": first, "T1": second}
    assert await ws.call("server.spoolman.get_spool_id", {"tool": 1}) == {"spool_id": second}
    env.sim.call_remote_method("spoolman_set_active_spool", {"spool_id": "bogus"})  # logged, nothing changes
    assert (await status(env))["tool_spool_map"] == {"T0": first, "T1": second}

    # extrusion on extruder1 is charged to T1's spool, on extruder to T0's
    klippy = env.server.klippy
    plugin = env.plugin
    e0 = plugin.last_epos
    klippy.status_changed({"toolhead": {"extruder": "extruder1", "position": [0, 0, 0, e0]}}, 1.0)
    klippy.status_changed({"toolhead": {"position": [0, 0, 0, e0 + 30.0]}}, 1.1)
    klippy.status_changed({"toolhead": {"position": [0, 0, 0, e0 + 28.0]}}, 1.2)  # a retraction
    klippy.status_changed({"toolhead": {"position": [0, 0, 0, e0 + 31.0]}}, 1.3)
    klippy.status_changed({"toolhead": {"extruder": "extruder", "position": [0, 0, 0, e0 + 31.0]}}, 1.4)
    klippy.status_changed({"toolhead": {"position": [0, 0, 0, e0 + 41.0]}}, 1.5)
    await wait_for(lambda: not plugin.pending, timeout=5)
    assert reported(fake, second) == pytest.approx(31.0)
    assert reported(fake, first) == pytest.approx(10.0)
    env.sim.call_remote_method("spoolman_set_active_spool", {"spool_id": None, "tool": 1})
    await wait_for(lambda: plugin.active.get(1) is None)


@pytest_twisted.ensureDeferred
async def test_without_credentials(tmp_path):
    svc = await start_service(str(tmp_path / "data"),
                              "[server]\n[authorization]\n[spoolman]\nserver: 127.0.0.1:9\n", simulate=False)
    try:
        for path in ("/server/spoolman/status", "/server/spoolman/spool_id"):
            assert (await svc.get(path))[0] == 401
        for path in ("/server/spoolman/spool_id", "/server/spoolman/proxy"):
            assert (await svc.post(path, json={"spool_id": 1}))[0] == 401
        ws = await svc.ws()
        with pytest.raises(RPCError) as err:
            await ws.call("server.spoolman.status")
        assert err.value.code == 401
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_bad_server_option(tmp_path):
    config_file = tmp_path / "moontwist.conf"
    config_file.write_text("[server]\n[spoolman]\nserver: http://\nsync_rate: 0\n")
    server = Server(ServerOptions(datapath=str(tmp_path / "data"), config_file=str(config_file), simulate=False,
                                  use_entry_points=False))
    with pytest.raises(ConfigError, match="spoolman"):
        await server.start()
    await server.stop()
    server.close_log()
