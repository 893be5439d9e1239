"""Every endpoint Klippy lists is served as /printer/<endpoint> and printer.<endpoint>, as Moonraker does."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

from mtclient import RPCError, start_service, wait_for


async def _listed(svc) -> None:
    await wait_for(lambda: svc.server.registry.by_method("printer.bed_mesh.dump_mesh") is not None)


@pytest_twisted.ensureDeferred
async def test_klippy_endpoints_over_http_and_websocket(printer):
    await _listed(printer)
    code, body = await printer.get("/printer/bed_mesh/dump_mesh")
    assert code == 200 and "current_mesh" in body["result"]
    code, body = await printer.post("/printer/bed_mesh/dump_mesh")
    assert code == 200 and "current_mesh" in body["result"]
    ws = await printer.ws()
    assert "current_mesh" in await ws.call("printer.bed_mesh.dump_mesh")
    # arguments reach Klippy as given, and its errors come back
    with pytest.raises(RPCError) as err:
        await ws.call("printer.motion_report.dump_stepper", {})
    assert err.value.code == 400 and "Missing Argument [name]" in err.value.message
    code, body = await printer.get("/printer/motion_report/dump_stepper?name=stepper_x")
    assert code == 400 and "stepper_x" in body["error"]["message"]
    # the reserved ones stay Klippy's and moontwist's business
    assert (await printer.get("/printer/list_endpoints"))[0] == 404
    assert (await printer.post("/printer/gcode/subscribe_output"))[0] == 404
    for method in ("printer.register_remote_method", "printer.list_endpoints"):
        with pytest.raises(RPCError) as err:
            await ws.call(method, {})
        assert err.value.code == -32601
    # moontwist's own handlers keep their routes
    assert (await printer.get("/printer/info"))[1]["result"]["state"] == "ready"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_pause_resume_endpoints_control_a_print(printer):
    await _listed(printer)
    folder = printer.server.path("gcodes")
    with open(os.path.join(folder, "long.gcode"), "w") as f:
        f.write("G28\n" + "".join(f"G1 X{10 + i % 2 * 100} Y20 F1200\n" for i in range(400)))
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    await wait_for(lambda: printer.server.print_state == "printing", timeout=10)
    code, _ = await printer.post("/printer/pause_resume/pause")
    assert code == 200
    await wait_for(lambda: printer.server.print_state == "paused", timeout=10)
    assert await ws.call("printer.pause_resume.resume") == {}
    await wait_for(lambda: printer.server.print_state == "printing", timeout=10)
    await ws.call("printer.pause_resume.cancel")
    await wait_for(lambda: printer.server.print_state == "standby", timeout=10)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_klippy_endpoints_need_credentials_and_klippy(tmp_path):
    text = "[server]\nhost: 127.0.0.1\n[simulator]\nspeed: 50\n[authorization]\n"
    svc = await start_service(str(tmp_path / "data"), text, simulate=True)
    try:
        await _listed(svc)
        code, body = await svc.get("/printer/bed_mesh/dump_mesh")
        assert code == 401
        code, _ = await svc.post("/printer/pause_resume/pause")
        assert code == 401
        await svc.server.plugins.pm.get_plugin("klippy_apis").simulator.stop()
        await wait_for(lambda: svc.server.klippy_state == "disconnected")
        key = svc.server.lookup("identify_credentials").__self__.auth.api_key
        code, body = await svc.get("/printer/bed_mesh/dump_mesh", headers={"X-Api-Key": key})
        assert code == 503 and "Klippy" in body["error"]["message"]
    finally:
        await svc.service.stopService()
