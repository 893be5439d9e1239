"""idle_timeout follows Klipper's rule: any command that syncs print time starts "Printing".

Fluidd showed READY (with "Re-print") and no Pause/Cancel while a print heated
its bed, because the simulator only switched on the first toolhead move.
"""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import reactor

from .klippy_client import connect_ready, sleep


async def idle(client) -> dict:
    status = await client.result("objects/query", {"objects": {"idle_timeout": None, "print_stats": ["state"]}})
    return status["status"]


async def wait_idle_state(client, state: str, timeout: float = 5.0) -> None:
    deadline = reactor.seconds() + timeout
    while (await idle(client))["idle_timeout"]["state"] != state:
        assert reactor.seconds() < deadline, f"idle_timeout never became {state}"
        await sleep(0.05)


@pytest_twisted.ensureDeferred
async def test_heater_fan_and_pin_commands_switch_to_printing_at_once(make_sim):
    # at real speed, as in Klipper, Printing lasts ~0.75 s (buffer + READY_TIMEOUT): time to look
    sim = await make_sim(speed=1.0)
    client = await connect_ready(sim.socket_path)
    for script in ("M140 S50", "M104 S100", "SET_HEATER_TEMPERATURE HEATER=extruder TARGET=0",
                   "M106 S128", "SET_PIN PIN=BEEPER_pin VALUE=0", "SET_LED LED=caselight RED=1"):
        await wait_idle_state(client, "Ready" if script != "M140 S50" else "Idle")
        await client.result("gcode/script", {"script": script})
        status = await idle(client)
        assert status["idle_timeout"]["state"] == "Printing", script
        assert status["idle_timeout"]["printing_time"] >= 0.0
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_turn_off_heaters_and_reports_leave_the_state_alone(sim, client):
    for script in ("TURN_OFF_HEATERS", "M105", "M115", "M118 hi"):
        await client.result("gcode/script", {"script": script})
        assert (await idle(client))["idle_timeout"]["state"] == "Idle", script


@pytest_twisted.ensureDeferred
async def test_print_heating_its_bed_is_printing_before_any_move(make_sim):
    sim = await make_sim(speed=5.0)
    client = await connect_ready(sim.socket_path)
    folder = os.path.join(os.path.dirname(sim.socket_path), "gcodes")
    with open(os.path.join(folder, "heat.gcode"), "w") as f:
        f.write("M190 S100\nG28\nG1 X10 Y10 Z1 F3000\n")
    await client.result("gcode/script", {"script": 'SDCARD_PRINT_FILE FILENAME="heat.gcode"'})
    status = await idle(client)
    while status["print_stats"]["state"] != "printing":
        await sleep(0.02)
        status = await idle(client)
    assert status["idle_timeout"]["state"] == "Printing"
    # still heating (no move yet) well after the motion queue of the M190 has drained
    await sleep(0.5)
    status = await idle(client)
    assert status["print_stats"]["state"] == "printing"
    assert status["idle_timeout"]["state"] == "Printing"
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_console_heater_wait_stays_printing_until_it_returns(make_sim):
    sim = await make_sim(speed=5.0)
    client = await connect_ready(sim.socket_path)
    reply = client.request("gcode/script", {"script": "M109 S60"}, timeout=30)
    await sleep(0.6)
    assert not reply.called
    assert (await idle(client))["idle_timeout"]["state"] == "Printing"
    await reply
    await wait_idle_state(client, "Ready")
    client.transport.loseConnection()
