"""SD printing: a whole print, pause/resume/cancel, print errors."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import reactor

from .conftest import write_print_file
from .klippy_client import connect_ready, sleep

JOB = {"print_stats": None, "virtual_sdcard": None, "pause_resume": None,
       "toolhead": ["position", "homed_axes"], "display_status": None}


async def job(client) -> dict:
    return (await client.result("objects/query", {"objects": JOB}))["status"]


async def wait_state(client, state: str, timeout: float = 10.0) -> dict:
    deadline = reactor.seconds() + timeout
    while True:
        status = await job(client)
        if status["print_stats"]["state"] == state:
            return status
        assert reactor.seconds() < deadline, status["print_stats"]
        await sleep(0.05)


@pytest_twisted.ensureDeferred
async def test_whole_print_completes(sim, client):
    path = write_print_file(os.path.join(os.path.dirname(sim.socket_path), "gcodes"))
    size = os.path.getsize(path)
    await client.result("gcode/subscribe_output", {})
    await client.result("objects/subscribe", {"objects": {"print_stats": ["state"]}})
    await client.result("gcode/script", {"script": "G28"})
    started = reactor.seconds()
    reply = await client.script('SDCARD_PRINT_FILE FILENAME="cube.gcode"')
    assert reply["result"] == {}
    assert client.outputs()[-2:] == [f"File opened:cube.gcode Size:{size}", "File selected"]
    status = await wait_state(client, "complete")
    elapsed = reactor.seconds() - started
    stats, vsd = status["print_stats"], status["virtual_sdcard"]
    assert vsd["progress"] == 1.0 and vsd["file_position"] == size == vsd["file_size"]
    assert vsd["is_active"] is False
    assert vsd["file_path"].endswith("/gcodes/cube.gcode")
    assert abs(stats["filament_used"] - 125.0) < 1e-6
    assert stats["info"] == {"total_layer": 5, "current_layer": 5}
    assert stats["filename"] == "cube.gcode"
    # ~100 moves of ~40 mm at 50 mm/s: about 80-90 simulated seconds, run at speed 100
    assert 50.0 < stats["total_duration"] < 150.0
    assert 0.0 < stats["print_duration"] <= stats["total_duration"]
    assert 0.4 < elapsed < 5.0
    assert status["display_status"]["message"] == "layer 5"
    assert "// print body done" in client.outputs()
    assert client.outputs()[-1] == "Done printing file"
    states = [m["params"]["status"]["print_stats"]["state"] for m in client.messages
              if "status" in m.get("params", {}) and "id" not in m]
    assert "printing" in states and states[-1] == "complete"


@pytest_twisted.ensureDeferred
async def test_pause_resume_cancel_with_macros_and_endpoints(make_sim):
    sim = await make_sim(speed=20.0)
    write_print_file(os.path.join(os.path.dirname(sim.socket_path), "gcodes"), layers=100)
    client = await connect_ready(sim.socket_path)
    await client.result("gcode/script", {"script": "G28\nSDCARD_PRINT_FILE FILENAME=cube.gcode"})
    printing = await wait_state(client, "printing")
    assert printing["virtual_sdcard"]["is_active"] is True
    await sleep(0.3)
    await client.result("gcode/script", {"script": "PAUSE"})
    paused = await job(client)
    assert paused["print_stats"]["state"] == "paused"
    assert paused["pause_resume"]["is_paused"] is True
    assert paused["virtual_sdcard"]["is_active"] is False
    x, y, z, _ = paused["toolhead"]["position"]
    assert (x, y) == (100.0, 100.0) and z > 100.0
    position = paused["virtual_sdcard"]["file_position"]
    await sleep(0.3)
    later = await job(client)
    assert later["virtual_sdcard"]["file_position"] == position
    assert later["print_stats"]["total_duration"] > paused["print_stats"]["total_duration"]
    assert later["print_stats"]["print_duration"] == paused["print_stats"]["print_duration"]
    await client.result("gcode/script", {"script": "RESUME"})
    resumed = await wait_state(client, "printing")
    assert resumed["pause_resume"]["is_paused"] is False
    assert resumed["virtual_sdcard"]["is_active"] is True
    await sleep(0.2)
    await client.result("gcode/script", {"script": "CANCEL_PRINT"})
    cancelled = await job(client)
    assert cancelled["print_stats"]["state"] == "standby"
    assert cancelled["print_stats"]["filename"] == ""
    assert cancelled["virtual_sdcard"]["file_path"] is None
    assert cancelled["toolhead"]["homed_axes"] == ""
    # unhomed now: the print fails on its first move
    await client.result("gcode/script", {"script": "SDCARD_PRINT_FILE FILENAME=cube.gcode"})
    failed = await wait_state(client, "error")
    assert failed["print_stats"]["message"].startswith("Must home axis first: ")
    assert failed["virtual_sdcard"]["file_path"].endswith("cube.gcode")
    # endpoints and Klipper's own cancel
    await client.result("gcode/script", {"script": "G28\nSDCARD_PRINT_FILE FILENAME=cube.gcode"})
    await wait_state(client, "printing")
    assert await client.result("pause_resume/pause", {}) == {}
    assert (await job(client))["print_stats"]["state"] == "paused"
    assert await client.result("pause_resume/resume", {}) == {}
    await wait_state(client, "printing")
    await client.result("gcode/script", {"script": "BASE_CANCEL_PRINT"})
    done = await job(client)
    assert done["print_stats"]["state"] == "cancelled"
    assert done["print_stats"]["filename"] == "cube.gcode"
    assert done["virtual_sdcard"]["file_path"] is None
    assert done["virtual_sdcard"]["progress"] == 0.0
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_cancel_endpoint_and_missing_file(make_sim):
    sim = await make_sim(speed=20.0)
    write_print_file(os.path.join(os.path.dirname(sim.socket_path), "gcodes"), layers=100)
    client = await connect_ready(sim.socket_path)
    reply = await client.script("SDCARD_PRINT_FILE FILENAME=nope.gcode")
    assert reply["error"]["message"] == "Unable to open file"
    await client.result("gcode/script", {"script": "G28\nSDCARD_PRINT_FILE FILENAME=cube.gcode"})
    await wait_state(client, "printing")
    reply = await client.script("SDCARD_PRINT_FILE FILENAME=cube.gcode")
    assert reply["error"]["message"] == "SD busy"
    assert await client.result("pause_resume/cancel", {}) == {}
    assert (await job(client))["print_stats"]["state"] == "standby"
    client.transport.loseConnection()
