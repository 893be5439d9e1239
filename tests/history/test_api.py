"""server.history.* over HTTP and the websocket, on stored and imported jobs."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import pytest_twisted

from mtclient import RPCError, start_service

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "moonraker_db")
CONFIG = "[server]\n"


def _job(i: int, **extra) -> dict:
    start = 1000.0 + i * 100
    job = {"filename": f"part_{i}.gcode", "status": "completed", "start_time": start,
           "end_time": start + 50, "print_duration": 40.0, "total_duration": 50.0,
           "filament_used": 10.0 * i, "metadata": {"size": i}}
    job.update(extra)
    return job


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), CONFIG)
    store = running.server.lookup("history_store")
    for i in range(1, 11):
        await store.add_job(_job(i))
    yield running
    await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_list_arguments(svc):
    ws = await svc.ws()
    listed = await ws.call("server.history.list")
    assert listed["count"] == 10
    assert [j["job_id"] for j in listed["jobs"]] == [f"{i:06X}" for i in range(10, 0, -1)]
    assert all(j["exists"] is False for j in listed["jobs"])
    page = await ws.call("server.history.list", {"start": 2, "limit": 3, "order": "asc"})
    assert [j["filename"] for j in page["jobs"]] == ["part_3.gcode", "part_4.gcode", "part_5.gcode"]
    code, body = await svc.get("/server/history/list?since=1250&before=1560&order=asc")
    assert code == 200 and [j["job_id"] for j in body["result"]["jobs"]] == ["000003", "000004", "000005"]
    unbounded = await ws.call("server.history.list", {"since": -1, "before": -1, "limit": 0})
    assert unbounded["count"] == 10
    with pytest.raises(RPCError) as err:
        await ws.call("server.history.list", {"order": "sideways"})
    assert err.value.code == 400
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_get_delete_and_totals(svc):
    ws = await svc.ws()
    job = (await ws.call("server.history.get_job", {"uid": "000004"}))["job"]
    assert job["filename"] == "part_4.gcode" and job["metadata"] == {"size": 4}
    assert job["user"] == "No User" and job["exists"] is False
    code, body = await svc.get("/server/history/job?uid=0000AA")
    assert code == 404
    code, body, _ = await svc.request("DELETE", "/server/history/job?uid=000004")
    assert (code, body["result"]) == (200, {"deleted_jobs": ["000004"]})
    with pytest.raises(RPCError) as err:
        await ws.call("server.history.delete_job", {"uid": "000004"})
    assert err.value.code == 404
    with pytest.raises(RPCError) as err:
        await ws.call("server.history.delete_job")
    assert err.value.code == 400
    totals = await ws.call("server.history.totals")
    assert totals["job_totals"]["total_jobs"] == 0 and totals["auxiliary_totals"] == []
    store = svc.server.lookup("history_store")
    await store.update_totals(_job(7))
    code, body = await svc.post("/server/history/reset_totals")
    assert code == 200 and body["result"]["last_totals"]["total_jobs"] == 1
    assert body["result"]["last_totals"]["total_filament_used"] == 70.0
    assert (await ws.call("server.history.totals"))["job_totals"]["total_jobs"] == 0
    deleted = await ws.call("server.history.delete_job", {"all": True})
    assert len(deleted["deleted_jobs"]) == 9
    assert (await ws.call("server.history.list"))["count"] == 0
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_in_progress_job_is_interrupted_at_start_up(tmp_path):
    datapath = str(tmp_path / "data")
    svc = await start_service(datapath, CONFIG)
    await svc.server.lookup("history_store").add_job(_job(1, status="in_progress", end_time=None))
    await svc.service.stopService()
    svc = await start_service(datapath, CONFIG)
    try:
        job = (await svc.get("/server/history/job?uid=000001"))[1]["result"]["job"]
        assert job["status"] == "interrupted"
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_imported_moonraker_jobs_list(tmp_path):
    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as fh:
        expected = json.load(fh)["history"]["jobs"]
    datapath = tmp_path / "data"
    (datapath / "database").mkdir(parents=True)
    shutil.copyfile(os.path.join(DATA, "moonraker-sql.db"), datapath / "database" / "moonraker-sql.db")
    # one of the files is still there, unchanged since the print
    first = expected[0]
    gcode = datapath / "gcodes" / first["filename"]
    gcode.parent.mkdir(parents=True)
    gcode.write_text("G28\n")
    os.utime(gcode, (first["metadata"]["modified"], first["metadata"]["modified"]))
    svc = await start_service(str(datapath), CONFIG)
    try:
        ws = await svc.ws()
        jobs = (await ws.call("server.history.list", {"order": "asc"}))["jobs"]
        assert [j["job_id"] for j in jobs] == [e["job_id_hex"] for e in expected]
        for job, want in zip(jobs, expected, strict=True):
            for key in ("status", "filename", "start_time", "end_time", "user", "metadata",
                        "filament_used", "print_duration", "total_duration"):
                assert job[key] == want[key], key
        assert [j["exists"] for j in jobs] == [True] + [False] * (len(expected) - 1)
        job = (await ws.call("server.history.get_job", {"uid": expected[-1]["job_id_hex"]}))["job"]
        assert job["status"] == "klippy_shutdown"
        totals = (await ws.call("server.history.totals"))["job_totals"]
        assert totals["total_jobs"] == len(expected)
        ws.sendClose()
    finally:
        await svc.service.stopService()
