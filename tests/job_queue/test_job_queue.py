"""server.job_queue.* and automatic transitions on the simulated printer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted
import treq
from history.printing import gcode, start_printer, write_gcodes
from twisted.logger import Logger

from moontwist.config import Config, ConfigError
from moontwist.plugins.job_queue import JobQueuePlugin
from mtclient import RPCError, wait_for


def _names(result: dict) -> list[str]:
    return [job["filename"] for job in result["queued_jobs"]]


async def _queue_note(ws, action: str) -> dict:
    while True:
        note = (await ws.next_notification("notify_job_queue_changed", timeout=15))["params"][0]
        if note["action"] == action:
            return note


async def _queue_state(ws, state: str) -> dict:
    while True:
        note = await _queue_note(ws, "state_changed")
        if note["queue_state"] == state:
            return note


@pytest_twisted.ensureDeferred
async def test_queue_editing(printer):
    ws = await printer.ws()
    status = await ws.call("server.job_queue.status")
    assert status == {"queued_jobs": [], "queue_state": "paused"}
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
    # as in current Moonraker: an emptied queue pauses
    assert second["updated_queue"] == [] and second["queue_state"] == "paused"

    while True:
        note = (await ws.next_notification("notify_history_changed", timeout=15))["params"][0]
        if note["action"] == "finished" and note["job"]["filename"] == "b.gcode":
            break
    jobs = (await ws.call("server.history.list", {"order": "asc"}))["jobs"]
    assert [(j["filename"], j["status"]) for j in jobs] == [("a.gcode", "completed"), ("b.gcode", "completed")]
    # job_transition_delay (0.3 s) separates the prints
    assert jobs[1]["start_time"] - jobs[0]["end_time"] >= 0.3
    # the transition G-code runs between jobs, not when start loads the first one
    store = (await printer.get("/server/gcode_store?count=200"))[1]["result"]["gcode_store"]
    assert sum(e["message"] == "M118 transition" for e in store) == 1
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_cancel_pauses_the_queue_and_remote_methods(printer):
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    await wait_for(lambda: printer.server.klippy.status["print_stats"]["state"] == "printing")
    # automatic_transition: a job queued while printing makes the queue ready
    queued = await ws.call("server.job_queue.post_job", {"filenames": ["long.gcode", "a.gcode"]})
    assert queued["queue_state"] == "ready"
    # print_stats "cancelled" pauses the queue ("standby", a macro's cancel, doesn't in Moonraker)
    await ws.call("printer.gcode.script", {"script": "BASE_CANCEL_PRINT"})
    await _queue_state(ws, "paused")
    printer.sim.call_remote_method("start_job_queue", {})
    loaded = await _queue_note(ws, "job_loaded")
    assert _names({"queued_jobs": loaded["updated_queue"]}) == ["a.gcode"]
    assert loaded["queue_state"] == "ready"
    printer.sim.call_remote_method("pause_job_queue", {})
    await _queue_state(ws, "paused")
    # a cancel through the print API (print_stats back to standby) leaves the queue as it is
    await ws.call("printer.print.cancel")
    await wait_for(lambda: printer.server.klippy.status["print_stats"]["state"] == "standby")
    status = await ws.call("server.job_queue.status")
    assert _names(status) == ["a.gcode"] and status["queue_state"] == "paused"
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
        assert loaded["updated_queue"] == [] and loaded["queue_state"] == "paused"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_without_automatic_transition_one_job_loads_per_start(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"a.gcode": 60, "b.gcode": 60, "long.gcode": 400})
    svc = await start_printer(datapath)
    try:
        ws = await svc.ws()
        await ws.call("printer.print.start", {"filename": "long.gcode"})
        await wait_for(lambda: svc.server.klippy.status["print_stats"]["state"] == "printing")
        await ws.call("server.job_queue.post_job", {"filenames": ["a.gcode", "b.gcode"]})
        # the printer is busy and transitions are manual: start leaves the queue paused
        assert (await ws.call("server.job_queue.start"))["queue_state"] == "paused"
        await ws.call("printer.print.cancel")
        await wait_for(lambda: svc.server.klippy.status["print_stats"]["state"] != "printing")
        assert (await ws.call("server.job_queue.start"))["queue_state"] == "loading"
        loaded = await _queue_note(ws, "job_loaded")
        assert _names({"queued_jobs": loaded["updated_queue"]}) == ["b.gcode"]
        assert loaded["queue_state"] == "paused"
        while True:
            note = (await ws.next_notification("notify_history_changed", timeout=15))["params"][0]
            if note["action"] == "finished" and note["job"]["filename"] == "a.gcode":
                break
        assert note["job"]["status"] == "completed"
        status = await ws.call("server.job_queue.status")
        assert _names(status) == ["b.gcode"] and status["queue_state"] == "paused"
        ws.sendClose()
    finally:
        await svc.service.stopService()
    # like Moonraker's, the queue is not kept across restarts
    svc = await start_printer(datapath)
    try:
        assert (await svc.get("/server/job_queue/status"))[1]["result"] == {
            "queued_jobs": [],
            "queue_state": "paused",
        }
    finally:
        await svc.service.stopService()


def test_transition_delay_must_be_above_zero():
    config = Config.from_string("[job_queue]\njob_transition_delay: 0\n")
    with pytest.raises(ConfigError, match="job_transition_delay"):
        JobQueuePlugin().configure(server=SimpleNamespace(logger=Logger), config=config)


@pytest_twisted.ensureDeferred
async def test_uploads_with_print_are_queued_while_printing(tmp_path):
    """[file_manager] queue_gcode_uploads: an upload that can't start now joins the queue."""
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"long.gcode": 400})
    svc = await start_printer(datapath, "[server]\n[simulator]\nspeed: 50\n[file_manager]\nqueue_gcode_uploads: True\n")
    try:
        ws = await svc.ws()
        await wait_for(lambda: svc.server.lookup("file_manager").store.get("long.gcode"))

        async def upload(name: str) -> dict:
            resp = await treq.post(
                svc.base + "/server/files/upload",
                data={"print": "true"},
                files={"file": (name, "application/octet-stream", gcode(60).encode())},
            )
            assert resp.code == 201, await resp.text()
            return await resp.json()

        first = await upload("first.gcode")
        assert first["print_started"] is True and first["print_queued"] is False
        await wait_for(lambda: svc.server.klippy.status.get("print_stats", {}).get("state") == "printing")
        second = await upload("second.gcode")
        assert second["print_started"] is False and second["print_queued"] is True
        status = await ws.call("server.job_queue.status")
        assert _names(status) == ["second.gcode"]
        ws.sendClose()
    finally:
        await svc.service.stopService()
