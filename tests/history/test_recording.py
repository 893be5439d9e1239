"""Jobs recorded from print_stats transitions of the simulated printer."""

from __future__ import annotations

import pytest_twisted
from history.printing import gcode, start_printer, write_gcodes

from mtclient import start_service, wait_for


async def _changed(ws, action: str) -> dict:
    note = await ws.next_notification("notify_history_changed", timeout=15)
    assert note["params"][0]["action"] == action
    return note["params"][0]["job"]


@pytest_twisted.ensureDeferred
async def test_completed_print_is_recorded_with_totals_and_file_job_id(printer):
    ws = await printer.ws()
    await wait_for(lambda: printer.server.lookup("file_manager").store.get("short.gcode"))
    assert await ws.call("printer.print.start", {"filename": "short.gcode"}) == "ok"
    added = await _changed(ws, "added")
    assert added["status"] == "in_progress" and added["filename"] == "short.gcode"
    assert added["exists"] is True and len(added["job_id"]) == 6
    assert added["metadata"]["size"] > 0 and "job_id" not in added["metadata"]
    done = await _changed(ws, "finished")
    assert done["job_id"] == added["job_id"] and done["status"] == "completed"
    assert done["end_time"] >= done["start_time"]
    assert done["filament_used"] > 0 and done["total_duration"] > 0
    listed = await ws.call("server.history.list")
    assert listed["count"] == 1 and listed["jobs"][0] == done
    job = (await printer.get(f"/server/history/job?uid={done['job_id']}"))[1]["result"]["job"]
    assert job == done
    totals = (await ws.call("server.history.totals"))["job_totals"]
    assert totals["total_jobs"] == 1
    assert totals["total_filament_used"] == done["filament_used"]
    assert totals["longest_print"] == done["print_duration"]
    meta = await ws.call("server.files.metadata", {"filename": "short.gcode"})
    assert meta["job_id"] == done["job_id"] and meta["print_start_time"] == done["start_time"]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_pause_resume_is_one_job_and_cancel_macro_records_cancelled(printer):
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "sub/long.gcode"})
    added = await _changed(ws, "added")
    code, body = await printer.post("/server/history/reset_totals")
    assert code == 400 and "in progress" in body["error"]["message"]
    await ws.call("printer.print.pause")
    await wait_for(lambda: printer.server.klippy.status["print_stats"]["state"] == "paused")
    await ws.call("printer.print.resume")
    await wait_for(lambda: printer.server.klippy.status["print_stats"]["state"] == "printing")
    # the reference CANCEL_PRINT never calls BASE_CANCEL_PRINT: print_stats goes to standby
    await ws.call("printer.print.cancel")
    done = await _changed(ws, "finished")
    assert done["job_id"] == added["job_id"] and done["status"] == "cancelled"
    assert done["filename"] == "sub/long.gcode" and done["print_duration"] > 0
    assert (await ws.call("server.history.list"))["count"] == 1
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_base_cancel_and_klippy_shutdown(printer):
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "sub/long.gcode"})
    await _changed(ws, "added")
    await ws.call("printer.gcode.script", {"script": "BASE_CANCEL_PRINT"})
    assert (await _changed(ws, "finished"))["status"] == "cancelled"
    await ws.call("printer.print.start", {"filename": "sub/long.gcode"})
    await _changed(ws, "added")
    await ws.call("printer.emergency_stop")
    shut = await _changed(ws, "finished")
    assert shut["status"] == "klippy_shutdown" and shut["filename"] == "sub/long.gcode"
    statuses = [j["status"] for j in (await ws.call("server.history.list", {"order": "asc"}))["jobs"]]
    assert statuses == ["cancelled", "klippy_shutdown"]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_klippy_disconnect_ends_the_job(printer):
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "sub/long.gcode"})
    await _changed(ws, "added")
    await printer.sim.stop()
    assert (await _changed(ws, "finished"))["status"] == "klippy_disconnect"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_server_exit_ends_the_job(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"long.gcode": 400})
    svc = await start_printer(datapath)
    ws = await svc.ws()
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    job_id = (await _changed(ws, "added"))["job_id"]
    await svc.service.stopService()
    svc = await start_service(datapath, "[server]\n")
    try:
        job = (await svc.get(f"/server/history/job?uid={job_id}"))[1]["result"]["job"]
        assert job["status"] == "server_exit" and job["print_duration"] > 0
        assert (await svc.get("/server/history/totals"))[1]["result"]["job_totals"]["total_jobs"] == 1
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_gcode_error_ends_the_job_as_error(printer):
    with open(f"{printer.datapath}/gcodes/bad.gcode", "w") as f:
        f.write(gcode(60) + "G1 X9999 F3000\n")
    ws = await printer.ws()
    await ws.call("printer.print.start", {"filename": "bad.gcode"})
    await _changed(ws, "added")
    done = await _changed(ws, "finished")
    assert done["status"] == "error" and done["filament_used"] > 0
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_job_records_who_started_it(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"mine.gcode": 60})
    config = "[server]\n[simulator]\nspeed: 50\n[authorization]\ntrusted_clients:\n    127.0.0.0/8\n"
    svc = await start_printer(datapath, config)
    try:
        ws = await svc.ws()
        await wait_for(lambda: svc.server.lookup("file_manager").store.get("mine.gcode"))
        assert await ws.call("printer.print.start", {"filename": "mine.gcode"}) == "ok"
        added = await _changed(ws, "added")
        assert added["user"] == "_TRUSTED_USER_"
        await ws.call("printer.gcode.script", {"script": "BASE_CANCEL_PRINT"})
        await _changed(ws, "finished")
        # a job loaded by the job queue belongs to whoever queued it
        await ws.call("server.job_queue.post_job", {"filenames": ["mine.gcode"]})
        await ws.call("server.job_queue.start")
        assert (await _changed(ws, "added"))["user"] == "_TRUSTED_USER_"
        ws.sendClose()
    finally:
        await svc.service.stopService()
