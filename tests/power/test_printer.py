"""Power options that depend on the printer, through a running service with the simulated Klippy."""

from __future__ import annotations

import pytest_twisted
from history.printing import write_gcodes
from power.fake_http import FakeTasmota
from power.service import start_power

from mtclient import sleep, wait_for

PRINTER = "[machine]\nprovider: recording\n[simulator]\nspeed: 50\n"


async def start_printer(tmp_path, config: str):
    datapath = tmp_path / "data"
    write_gcodes(str(datapath), {"long.gcode": 3000, "short.gcode": 40})
    svc = await start_power(tmp_path, PRINTER + config, simulate=True)
    svc.sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    files = svc.server.lookup("file_manager")
    await wait_for(lambda: files.store.get("long.gcode") and files.store.get("short.gcode"), timeout=10)
    return svc


def tasmota(name: str, fake: FakeTasmota, extra: str = "") -> str:
    return f"[power {name}]\ntype: tasmota\naddress: {fake.address}\n{extra}\n"


async def switch(svc, name: str, action: str):
    code, body = await svc.post("/machine/device_power/device", json={"device": name, "action": action})
    return body["result"][name] if code == 200 else (code, body["error"]["message"])


def print_state(svc) -> str:
    return svc.server.klippy.status["print_stats"]["state"]


@pytest_twisted.ensureDeferred
async def test_locks_queue_groups_initial_state_services_and_remote_method(tmp_path, fakes, services):
    psu = fakes.start(FakeTasmota())
    lights = fakes.start(FakeTasmota())
    svc = await start_printer(
        tmp_path,
        tasmota("printer", psu, "locked_while_printing: true\ninitial_state: on\nbound_services: klipper.service")
        + tasmota("lights", lights, "on_when_job_queued: true")
        + "[power_group all]\ndevices:\n  printer\n  lights\n",
    )
    services.append(svc)
    provider = svc.server.lookup("machine_provider")
    # initial_state: switched on at start-up, the bound service started with it
    assert psu.relays[1] and [r.query["cmnd"] for r in psu.requests[:2]] == ["Power1", "Power1 on"]
    await wait_for(lambda: ("start", "klipper") in provider.commands)
    devices = (await svc.get("/machine/device_power/devices"))[1]["result"]["devices"]
    assert devices[-1] == {
        "device": "all", "status": "off", "locked_while_printing": True, "type": "group", "devices": ["printer", "lights"]
    }
    ws = await svc.ws()

    # on_when_job_queued: a job added to the queue switches the lights on
    code, body = await svc.post("/server/job_queue/job", json={"filenames": ["short.gcode"]})
    assert code == 200
    await wait_for(lambda: lights.relays[1])
    assert await switch(svc, "all", "status") == (400, "Invalid requested action 'status' for device all (on, off or toggle)")
    assert (await svc.get("/machine/device_power/device?device=all"))[1]["result"] == {"all": "on"}

    # locked_while_printing: off and toggle refused while printing, on when already on is fine
    assert await ws.call("printer.print.start", {"filename": "long.gcode"}) == "ok"
    await wait_for(lambda: print_state(svc) == "printing")
    assert await switch(svc, "printer", "off") == (400, "Unable to change power for printer while printing")
    assert await switch(svc, "printer", "toggle") == (400, "Unable to change power for printer while printing")
    assert await switch(svc, "printer", "on") == "on" and psu.relays[1]
    # a group acts on every member; a locked member refuses, the others switch
    code, message = await switch(svc, "all", "off")
    assert code == 400 and "Unable to change power for printer while printing" in message
    assert psu.relays[1] and not lights.relays[1]
    assert (await svc.get("/machine/device_power/device?device=all"))[1]["result"] == {"all": "off"}

    # the remote method from a Klipper macro: force overrides the lock
    svc.sim.call_remote_method("set_device_power", {"device": "printer", "state": "off", "force": True})
    await wait_for(lambda: not psu.relays[1])
    await wait_for(lambda: ("stop", "klipper") in provider.commands)
    svc.sim.call_remote_method("set_device_power", {"device": "lights", "state": True})
    await wait_for(lambda: lights.relays[1])
    svc.sim.call_remote_method("set_device_power", {"device": "lights", "state": "toggle"})
    await wait_for(lambda: not lights.relays[1])
    svc.sim.call_remote_method("set_device_power", {"device": "lights", "state": "sideways"})
    svc.sim.call_remote_method("set_device_power", {"device": "ghost", "state": "on"})
    svc.sim.call_remote_method("set_device_power", {"device": "printer", "state": "on"})  # locked, no force
    await sleep(0.3)
    assert not lights.relays[1] and not psu.relays[1]

    # paused counts as printing
    await ws.call("printer.print.pause")
    await wait_for(lambda: print_state(svc) == "paused")
    assert await switch(svc, "printer", "on") == (400, "Unable to change power for printer while printing")
    await ws.call("printer.print.cancel")
    await wait_for(lambda: print_state(svc) not in ("printing", "paused"), timeout=15)
    # group toggle when partly on: everything on, one notification for the group
    assert await switch(svc, "lights", "on") == "on"
    assert await switch(svc, "all", "toggle") == "on" and psu.relays[1] and lights.relays[1]
    note = await ws.next_notification("notify_power_changed")
    while note["params"][0]["device"] != "all":
        note = await ws.next_notification("notify_power_changed")
    assert note["params"][0]["status"] == "on"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_restart_klipper_when_powered_and_off_when_shutdown(tmp_path, fakes, services):
    psu = fakes.start(FakeTasmota())
    svc = await start_printer(
        tmp_path,
        tasmota(
            "psu", psu,
            "restart_klipper_when_powered: true\nrestart_delay: 0.1\noff_when_shutdown: true\noff_when_shutdown_delay: 0.2",
        ),
    )
    services.append(svc)
    assert await switch(svc, "psu", "on") == "on"
    await sleep(0.3)
    assert svc.sim.restart_count == 0  # Klippy is ready: no FIRMWARE_RESTART needed
    await svc.post("/printer/emergency_stop")
    await wait_for(lambda: svc.server.klippy_state == "shutdown")
    await wait_for(lambda: not psu.relays[1])  # off_when_shutdown
    assert svc.power.devices["psu"].state == "off"
    assert await switch(svc, "psu", "on") == "on"  # the PSU is back: Klipper's MCUs need a restart
    await wait_for(lambda: svc.sim.restart_count == 1)
    await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    assert psu.relays[1]


@pytest_twisted.ensureDeferred
async def test_klipper_devices_output_pin_led_and_shutdown(tmp_path, services):
    svc = await start_printer(
        tmp_path,
        "[power psu]\ntype: klipper_device\nobject_name: output_pin psu_pin\n"
        "[power case]\ntype: klipper_device\nobject_name: led caselight\nled_color: 0.5, 0.5, 0.5, 0\n"
        "[power nope]\ntype: klipper_device\nobject_name: output_pin nope\n"
        "[power refused]\ntype: klipper_device\nobject_name: output_pin psu_pin\noff_when_shutdown: true\n"
        "[power wrongkind]\ntype: klipper_device\nobject_name: fan\n",
    )
    services.append(svc)
    warnings = "\n".join((await svc.get("/server/info"))[1]["result"]["warnings"])
    assert "[power refused]" in warnings and "'off_when_shutdown'" in warnings
    assert "[power wrongkind]" in warnings and "'object_name'" in warnings
    plugin = svc.power
    await wait_for(lambda: plugin.devices["psu"].state == "on" and plugin.devices["case"].state == "off")
    await wait_for(lambda: plugin.devices["nope"].state == "error")
    fans = svc.sim.printer.fans
    assert await switch(svc, "psu", "off") == "off" and fans.pins["psu_pin"][0] == 0.0
    assert await switch(svc, "case", "on") == "on" and fans.led == [0.5, 0.5, 0.5, 0.0]
    ws = await svc.ws()
    await svc.post("/printer/gcode/script", json={"script": "SET_PIN PIN=psu_pin VALUE=1"})
    note = await ws.next_notification("notify_power_changed")
    assert note["params"][0] == {
        "device": "psu", "status": "on", "locked_while_printing": False, "type": "klipper_device", "is_shutdown": False
    }
    await svc.post("/printer/emergency_stop")
    await wait_for(lambda: plugin.devices["psu"].state == "error")
    info = {d["device"]: d for d in (await svc.get("/machine/device_power/devices"))[1]["result"]["devices"]}
    assert info["psu"]["is_shutdown"] is True and info["psu"]["status"] == "error"
    code, message = await switch(svc, "case", "off")
    assert code == 400 and "Klippy is shut down" in message
    await svc.post("/printer/firmware_restart")
    await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    await wait_for(lambda: plugin.devices["psu"].state == "on" and plugin.devices["case"].state == "off")
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_off_when_idle(tmp_path, fakes, services):
    psu = fakes.start(FakeTasmota())
    svc = await start_printer(tmp_path, tasmota("printer", psu, "off_when_idle: 0.02"))  # 1.2 s
    services.append(svc)
    ws = await svc.ws()
    assert await switch(svc, "printer", "on") == "on"
    await wait_for(lambda: not psu.relays[1], timeout=5)  # idle: switched off
    assert (await ws.next_notification("notify_power_changed"))["params"][0]["status"] == "on"
    assert (await ws.next_notification("notify_power_changed"))["params"][0]["status"] == "off"
    assert await switch(svc, "printer", "on") == "on"
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    await wait_for(lambda: print_state(svc) == "printing")
    await ws.call("printer.print.pause")
    await wait_for(lambda: print_state(svc) == "paused")
    await sleep(2.0)
    assert psu.relays[1]  # a paused print keeps the printer busy
    await ws.call("printer.print.cancel")
    await wait_for(lambda: not psu.relays[1], timeout=15)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_energy_of_a_print_goes_into_its_history_job(tmp_path, fakes, services):
    meter = fakes.start(FakeTasmota(energy=12.5))
    svc = await start_printer(tmp_path, tasmota("printer", meter, "record_energy: true\nenergy_interval: 1"))
    services.append(svc)
    device = svc.power.devices["printer"]
    await wait_for(lambda: device.energy_field._last == 12.5)
    ws = await svc.ws()
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    await wait_for(lambda: print_state(svc) == "printing")
    meter.energy = 12.875  # the print used 0.375 kWh
    await wait_for(lambda: device.energy_field._last == 12.875, timeout=5)
    await ws.call("printer.print.cancel")
    note = await ws.next_notification("notify_history_changed", timeout=15)
    while note["params"][0]["action"] != "finished":
        note = await ws.next_notification("notify_history_changed", timeout=15)
    job = note["params"][0]["job"]
    assert job["auxiliary_data"] == [{
        "provider": "power printer", "name": "energy", "value": 0.375,
        "description": "Energy used by power device printer", "units": "kWh",
    }]
    totals = await ws.call("server.history.totals")
    assert totals["auxiliary_totals"] == [
        {"provider": "power printer", "field": "energy", "maximum": 0.375, "total": 0.375}
    ]
    assert any(r.query["cmnd"] == "Status 8" for r in meter.requests)
    ws.sendClose()
