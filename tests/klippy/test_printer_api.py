"""printer.* endpoints, subscriptions and the data store against the simulated Klippy."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq

from mtclient import RPCError, sleep, wait_for


@pytest_twisted.ensureDeferred
async def test_info_and_state(printer):
    info = (await printer.get("/server/info"))[1]["result"]
    assert info["klippy_connected"] is True and info["klippy_state"] == "ready"
    assert {"klippy_apis", "data_store"} <= set(info["components"])
    code, body = await printer.get("/printer/info")
    assert code == 200 and body["result"]["state"] == "ready"
    assert body["result"]["software_version"].startswith("v0.13")


@pytest_twisted.ensureDeferred
async def test_objects_list_and_query_forms(printer):
    objects = (await printer.get("/printer/objects/list"))[1]["result"]["objects"]
    assert "toolhead" in objects and "extruder" in objects
    code, body = await printer.get("/printer/objects/query?gcode_move&toolhead&extruder=target,temperature")
    assert code == 200
    status = body["result"]["status"]
    assert set(status["extruder"]) == {"target", "temperature"}
    assert "position" in status["toolhead"] and "speed_factor" in status["gcode_move"]
    assert isinstance(body["result"]["eventtime"], float)
    ws = await printer.ws()
    result = await ws.call("printer.objects.query", {"objects": {"toolhead": ["homed_axes", "nonexistent"], "no_such": None}})
    assert result["status"]["toolhead"] == {"homed_axes": "", "nonexistent": None}
    assert result["status"]["no_such"] == {}
    with pytest.raises(RPCError) as err:
        await ws.call("printer.objects.query", {"objects": ["toolhead"]})
    assert err.value.code == -32602 and "'objects'" in err.value.message
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_gcode_script_replies_after_completion_and_errors_reach_client(printer):
    ws = await printer.ws()
    assert await ws.call("printer.gcode.script", {"script": "M118 hello there"}) == "ok"
    note = await ws.next_notification("notify_gcode_response")
    assert note["params"] == ["// hello there"]
    with pytest.raises(RPCError) as err:
        await ws.call("printer.gcode.script", {"script": "G1 X10"})
    assert err.value.code == 400 and "Must home axis first" in err.value.message
    code, body = await printer.post("/printer/gcode/script?script=G28")
    assert (code, body) == (200, {"result": "ok"})
    store = (await printer.get("/server/gcode_store?count=50"))[1]["result"]["gcode_store"]
    commands = [e["message"] for e in store if e["type"] == "command"]
    assert commands[-3:] == ["M118 hello there", "G1 X10", "G28"]
    assert any(e["type"] == "response" and e["message"] == "// hello there" for e in store)
    assert len((await printer.get("/server/gcode_store?count=1"))[1]["result"]["gcode_store"]) == 1
    help_ = (await printer.get("/printer/gcode/help"))[1]["result"]
    assert "G28" in help_ or "RESTART" in help_
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_each_client_gets_only_its_fields_only_when_changed(printer):
    a = await printer.ws()
    b = await printer.ws()
    first = await a.call("printer.objects.subscribe", {"objects": {"extruder": ["target"]}})
    assert first["status"] == {"extruder": {"target": 0.0}}
    await b.call("printer.objects.subscribe", {"objects": {"toolhead": ["homed_axes"], "extruder": ["temperature"]}})
    await a.call("printer.gcode.script", {"script": "M104 S200"})
    note = await a.next_notification("notify_status_update")
    status, eventtime = note["params"]
    assert status == {"extruder": {"target": 200.0}} and isinstance(eventtime, float)
    await a.call("printer.gcode.script", {"script": "G28"})
    seen_b = []
    for _ in range(20):
        msg = await b.next_notification("notify_status_update")
        seen_b.append(msg["params"][0])
        if "toolhead" in msg["params"][0]:
            break
    assert all(set(s) <= {"toolhead", "extruder"} for s in seen_b)
    assert all(set(s.get("extruder", {})) <= {"temperature"} for s in seen_b)
    assert any(s.get("toolhead", {}).get("homed_axes") == "xyz" for s in seen_b)
    # a's subscription never delivers fields it didn't ask for
    while not a.notifications.waiting and a.notifications.pending:
        msg = a.notifications.pending.pop(0)
        if msg["method"] == "notify_status_update":
            assert set(msg["params"][0]) == {"extruder"} and set(msg["params"][0]["extruder"]) == {"target"}
    a.sendClose()
    b.sendClose()


@pytest_twisted.ensureDeferred
async def test_union_grows_and_shrinks(printer):
    subs = printer.server.klippy.subscriptions
    ws = await printer.ws()
    await ws.call("printer.objects.subscribe", {"objects": {"fan": None}})
    assert subs.live.get("fan") is None and "fan" in subs.live
    assert (await ws.call("printer.objects.subscribe", {"objects": {}}))["status"] == {}
    await wait_for(lambda: "fan" not in subs.live)
    await ws.call("printer.objects.subscribe", {"objects": {"motion_report": None}})
    assert "motion_report" in subs.live
    ws.sendClose()
    await ws.closed
    await wait_for(lambda: "motion_report" not in subs.live)
    assert "webhooks" in subs.live  # moontwist's own needs stay


@pytest_twisted.ensureDeferred
async def test_cached_query_and_subscribe_need_no_klippy_round_trip(printer):
    ws = await printer.ws()
    await ws.call("printer.objects.subscribe", {"objects": {"toolhead": None, "extruder": None}})
    printer.sim.never_answer("objects/query", "objects/subscribe")
    try:
        result = await ws.call("printer.objects.query", {"objects": {"toolhead": ["position"], "extruder": None}})
        assert set(result["status"]) == {"toolhead", "extruder"}
        other = await printer.ws()
        result = await other.call("printer.objects.subscribe", {"objects": {"extruder": ["temperature"]}})
        assert set(result["status"]["extruder"]) == {"temperature"}
        other.sendClose()
    finally:
        printer.sim.answer_again()
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_many_subscribes_together_make_one_klippy_request(printer):
    klippy = printer.server.klippy
    sent = []
    original = klippy.request

    def counting(method, params=None, timeout=None):
        sent.append(method)
        return original(method, params, timeout)

    klippy.request = counting
    try:
        clients = [await printer.ws() for _ in range(30)]
        sent.clear()
        replies = [c.call("printer.objects.subscribe", {"objects": {"gcode_move": None, "idle_timeout": ["state"]}}) for c in clients]
        results = [await r for r in replies]
        assert all(set(r["status"]) == {"gcode_move", "idle_timeout"} for r in results)
        assert sent.count("objects/subscribe") <= 2
    finally:
        klippy.request = original
    for c in clients:
        c.sendClose()


@pytest_twisted.ensureDeferred
async def test_http_subscribe_with_connection_id(printer):
    ws = await printer.ws()
    conn_id = (await ws.call("server.websocket.id"))["websocket_id"]
    code, body = await printer.post(f"/printer/objects/subscribe?connection_id={conn_id}&heater_bed=target")
    assert code == 200 and body["result"]["status"] == {"heater_bed": {"target": 0.0}}
    await printer.post("/printer/gcode/script?script=M140%20S60")
    note = await ws.next_notification("notify_status_update")
    assert note["params"][0] == {"heater_bed": {"target": 60.0}}
    code, body = await printer.post("/printer/objects/subscribe?heater_bed")
    assert code == 400 and "connection_id" in body["error"]["message"]
    code, body = await printer.post("/printer/objects/subscribe?connection_id=1&heater_bed")
    assert code == 404
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_temperature_store_samples_each_second(printer):
    await sleep(2.3)
    store = (await printer.get("/server/temperature_store"))[1]["result"]
    assert set(store["extruder"]) == {"temperatures", "targets", "powers"}
    assert set(store["temperature_sensor chamber"]) == {"temperatures"}
    assert 1 <= len(store["extruder"]["temperatures"]) <= 4
    assert all(isinstance(t, float) for t in store["extruder"]["temperatures"])
    with_monitors = (await printer.get("/server/temperature_store?include_monitors=true"))[1]["result"]
    assert set(store) <= set(with_monitors)


@pytest_twisted.ensureDeferred
async def test_endstops_and_emergency_stop_then_firmware_restart(printer):
    ws = await printer.ws()
    endstops = await ws.call("printer.query_endstops.status")
    assert set(endstops.values()) <= {"open", "TRIGGERED"}
    assert await ws.call("printer.emergency_stop") == "ok"
    await ws.next_notification("notify_klippy_shutdown")
    info = (await printer.get("/server/info"))[1]["result"]
    assert info["klippy_state"] == "shutdown"
    with pytest.raises(RPCError):
        await ws.call("printer.gcode.script", {"script": "G28"})
    assert await ws.call("printer.firmware_restart") == "ok"
    await ws.next_notification("notify_klippy_disconnected", timeout=5)
    await ws.next_notification("notify_klippy_ready", timeout=10)
    assert (await printer.get("/server/info"))[1]["result"]["klippy_state"] == "ready"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_simulated_klippy_log_is_downloadable(printer):
    await printer.post("/printer/gcode/script?script=M118%20written%20to%20the%20log")
    info = (await printer.get("/printer/info"))[1]["result"]
    assert info["log_file"].endswith("logs/klippy.log")
    resp = await treq.get(printer.base + "/server/files/klippy.log")
    text = (await resp.content()).decode()
    assert resp.code == 200 and "Start printer at" in text and "// written to the log" in text
