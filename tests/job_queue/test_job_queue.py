"""server.job_queue.* and automatic transitions on the simulated printer."""

from __future__ import annotations

import pytest
import pytest_twisted
from history.printing import start_printer, write_gcodes

from mtclient import RPCError, wait_for


def _names(result: dict) -> list[str]:
    return [job["filename"] for job in result["queued_jobs"]]


async def _queue_note(ws, action: str) -> dict:
    while True:
        note = (await ws.next_notification("notify_job_queue_changed", timeout=15))["params"][0]
        if note["action"] == action:
            return note


@pytest_twisted.ensureDeferred
async def test_queue_editing(printer):
    ws = await printer.ws()
    status = await ws.call("server.job_queue.status")
    assert status == {"queued_jobs": [], "queue_state": "ready"}
    added = await ws.call("server.job_queue.post_job", {"filenames": ["a.gcode", "b.gcode"]})
    assert _names(added) == ["a.gcode", "b.gcode"]
    note = await _queue_note(ws, "jobs_added")
    assert [j["filename"] for j in note["updated_queue"]] == ["a.gcode", "b.gcode"]
    job = added["queued_jobs"][0]
    assert len(job["job_id"]) == 16 and job["time_in_queue"] >= 0
    code, body = await printer.post("/server/job_queue/job?filenames=a.gcode,long.gcode")
    assert code == 200 and _names(body["result"]) == ["a.gcode", "b.gcode", "a.gcode", "long.gcode"]
    last = body["result"]["queued_jobs"][-1]["job_id"]
    jumped = await ws.call("server.job_queue.jump", {"job_id": last})
    assert _names(jumped)[0] == "long.gcode"
    with pytest.raises(RPCError) as err:
        await ws.call("server.job_queue.jump", {"job_id": "NOPE"})
    assert err.value.code == 400
    with pytest.raises(RPCError) as err:
        await ws.call("server.job_queue.post_job", {"filenames": ["a.gcode", "missing.gcode"]})
    assert err.value.code == 400 and "missing.gcode" in err.value.message
    assert len((await ws.call("server.job_queue.status"))["queued_jobs"]) == 4
    ids = [j["job_id"] for j in jumped["queued_jobs"]]
    code, body, _ = await printer.request("DELETE", f"/server/job_queue/job?job_ids={ids[0]},{ids[1]},UNKNOWN")
    assert code == 200 and _names(body["result"]) == ["b.gcode", "a.gcode"]
    reset = await ws.call("server.job_queue.post_job", {"filenames": ["b.gcode"], "reset": True})
    assert _names(reset) == ["b.gcode"]
    paused = await ws.call("server.job_queue.pause")
    assert paused["queue_state"] == "paused"
    assert (await _queue_note(ws, "state_changed"))["queue_state"] == "paused"
    emptied = await ws.call("server.job_queue.delete_job", {"all": True})
    assert emptied == {"queued_jobs": [], "queue_state": "paused"}
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_jobs_print_one_after_another(printer):
    ws = await printer.ws()
    await ws.call("server.job_queue.pause")
    await ws.call("server.job_queue.post_job", {"filenames": ["a.gcode", "b.gcode"]})
    started = await ws.call("server.job_queue.start")
    assert started["queue_state"] == "loading"
    first = await _queue_note(ws, "job_loaded")
    assert [j["filename"] for j in first["updated_queue"]] == ["b.gcode"]
    assert first["queue_state"] == "ready"
    second = await _queue_note(ws, "job_loaded")
    assert second["updated_queue"] == [] and second["queue_state"] == "ready"

    while True:
        note = (await ws.next_notification("notify_history_changed", timeout=15))["params"][0]
        if note["action"] == "finished" and note["job"]["filename"] == "b.gcode":
            break
    jobs = (await ws.call("server.history.list", {"order": "asc"}))["jobs"]
    assert [(j["filename"], j["status"]) for j in jobs] == [("a.gcode", "completed"), ("b.gcode", "completed")]
    store = (await printer.get("/server/gcode_store?count=200"))[1]["result"]["gcode_store"]
    assert any(e["message"] == "M118 transition" for e in store)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_cancel_pauses_the_queue_and_remote_methods(printer):
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    await wait_for(lambda: printer.server.klippy.status["print_stats"]["state"] == "printing")
    await ws.call("server.job_queue.post_job", {"filenames": ["a.gcode"]})
    await ws.call("printer.print.cancel")
    assert (await _queue_note(ws, "state_changed"))["queue_state"] == "paused"
    printer.sim.call_remote_method("start_job_queue", {})
    assert (await _queue_note(ws, "job_loaded"))["updated_queue"] == []
    printer.sim.call_remote_method("pause_job_queue", {})
    assert (await _queue_note(ws, "state_changed"))["queue_state"] == "paused"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_load_on_startup_loads_when_klippy_is_ready_again(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"a.gcode": 60})
    svc = await start_printer(datapath, "[server]\n[simulator]\nspeed: 50\n[job_queue]\nload_on_startup: True\n")
    try:
        ws = await svc.ws()
        queued = await ws.call("server.job_queue.post_job", {"filenames": ["a.gcode"]})
        assert queued["queue_state"] == "paused"
        await ws.call("printer.restart")
        loaded = await _queue_note(ws, "job_loaded")
        assert loaded["updated_queue"] == [] and loaded["queue_state"] == "ready"
        ws.sendClose()
    finally:
        await svc.service.stopService()
