"""A misbehaving Klippy: moontwist reports the truth, fails requests clearly and recovers."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

from moontwist.sim import KlippySimulator
from mtclient import RPCError, sleep, start_service, wait_for


@pytest_twisted.ensureDeferred
async def test_disconnect_mid_request_fails_it_and_recovers(printer):
    ws = await printer.ws()
    await ws.call("printer.objects.subscribe", {"objects": {"extruder": ["target"]}})
    printer.sim.never_answer("gcode/script")
    pending = ws.call("printer.gcode.script", {"script": "M118 lost"})
    await sleep(0.1)
    await printer.sim.drop_connections()
    with pytest.raises(RPCError) as err:
        await pending
    assert err.value.code == 503 and "Klippy Disconnected" in err.value.message
    await ws.next_notification("notify_klippy_disconnected")
    printer.sim.answer_again()
    await ws.next_notification("notify_klippy_ready", timeout=10)
    # the client's subscription was restored
    assert "extruder" in printer.server.klippy.subscriptions.live
    await ws.call("printer.gcode.script", {"script": "M104 S150"})
    note = await ws.next_notification("notify_status_update")
    assert note["params"][0] == {"extruder": {"target": 150.0}}
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_requests_while_klippy_is_away_fail_at_once(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\nklippy_uds_address: " + str(tmp_path / "nothing.sock") + "\n", simulate=False)
    try:
        info = (await svc.get("/server/info"))[1]["result"]
        assert info["klippy_connected"] is False and info["klippy_state"] == "disconnected"
        for path in ("/printer/info", "/printer/objects/list", "/printer/objects/query?toolhead"):
            code, body = await svc.get(path)
            assert code == 503 and body["error"]["message"] == "Klippy Disconnected"
        code, body = await svc.post("/printer/gcode/script?script=G28")
        assert code == 503
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_klippy_appearing_later_is_found(tmp_path):
    sock = str(tmp_path / "k.sock")
    svc = await start_service(str(tmp_path / "data"), f"[server]\nklippy_uds_address: {sock}\n", simulate=False)
    sim = KlippySimulator(sock, str(tmp_path), speed=50)
    try:
        ws = await svc.ws()
        await sleep(0.3)
        await sim.start()
        await ws.next_notification("notify_klippy_ready", timeout=10)
        assert (await svc.get("/server/info"))[1]["result"]["klippy_state"] == "ready"
        ws.sendClose()
    finally:
        await svc.service.stopService()
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_startup_shutdown_and_error_states_are_reported(tmp_path):
    sock = str(tmp_path / "k.sock")
    sim = KlippySimulator(sock, str(tmp_path), speed=50, start_state="error", start_message="MCU 'mcu' shutdown: Timer too close")
    await sim.start()
    svc = await start_service(str(tmp_path / "data"), f"[server]\nklippy_uds_address: {sock}\n", simulate=False)
    try:
        await wait_for(lambda: svc.server.klippy_state == "error")
        info = (await svc.get("/server/info"))[1]["result"]
        assert info["klippy_connected"] is True and info["klippy_state"] == "error"
        assert "Timer too close" in svc.server.klippy.state_message
        ws = await svc.ws()
        sim.set_state("ready")
        await ws.next_notification("notify_klippy_ready", timeout=10)
        sim.set_state("shutdown", "Lost communication with MCU 'mcu'")
        await ws.next_notification("notify_klippy_shutdown", timeout=10)
        assert (await svc.get("/server/info"))[1]["result"]["klippy_state"] == "shutdown"
        ws.sendClose()
    finally:
        await svc.service.stopService()
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_malformed_message_is_ignored(printer):
    printer.sim.send_malformed()
    await sleep(0.1)
    assert printer.server.klippy_state == "ready"
    assert (await printer.post("/printer/gcode/script?script=M118%20still%20fine"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_oversized_message_drops_the_connection_and_recovers(printer):
    ws = await printer.ws()
    printer.sim.send_oversized(10 * 1024 * 1024)
    await ws.next_notification("notify_klippy_disconnected", timeout=10)
    await ws.next_notification("notify_klippy_ready", timeout=10)
    assert (await printer.post("/printer/gcode/script?script=M118%20back"))[0] == 200
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_klippy_that_never_answers_times_requests_out(printer):
    printer.sim.never_answer("objects/list")
    printer.server.klippy.request_timeout = 0.5
    code, body = await printer.get("/printer/objects/list")
    assert code == 504 and "timed out" in body["error"]["message"]
    printer.sim.answer_again()
    assert (await printer.get("/printer/objects/list"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_repeated_restarts_end_ready(printer):
    ws = await printer.ws()
    await printer.sim.restart_repeatedly(4, 0.05)
    await wait_for(lambda: printer.server.klippy_state == "ready" and printer.server.klippy.initialized, timeout=15)
    assert await ws.call("printer.gcode.script", {"script": "M118 done"}) == "ok"
    assert os.path.exists(printer.server.klippy_uds_address)
    ws.sendClose()
