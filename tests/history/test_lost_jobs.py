"""Prints that start and end between two Klippy status updates (250 ms) are still recorded.

Four prints run one after another through the API lost the short one: print_stats
went standby -> complete within one tick, so no "printing" was ever seen.
"""

from __future__ import annotations

import os

import pytest
import pytest_twisted
import treq
from history.printing import gcode, start_printer, write_gcodes

from mtclient import RPCError, sleep, wait_for

# no motion at all: the simulator finishes it as soon as it is started
SHORT = "M117 short print\nM118 short print done\n"
CONFIG = "[server]\n[simulator]\nspeed: 1000\n"


def _write(datapath: str, name: str, text: str) -> None:
    with open(os.path.join(datapath, "gcodes", name), "w") as f:
        f.write(text)


async def _jobs(svc) -> list[tuple[str, str]]:
    jobs = (await svc.get("/server/history/list?order=asc"))[1]["result"]["jobs"]
    return [(job["filename"], job["status"]) for job in jobs]


async def _until_jobs(svc, count: int) -> list[tuple[str, str]]:
    """The history once it holds ``count`` jobs, none in progress."""
    for _ in range(200):
        jobs = await _jobs(svc)
        if len(jobs) >= count and all(status != "in_progress" for _, status in jobs):
            return jobs
        await sleep(0.05)
    raise AssertionError(f"history has {jobs}, expected {count} finished jobs")


@pytest_twisted.async_yield_fixture
async def fast_printer(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"long.gcode": 4000})
    _write(datapath, "short.gcode", SHORT)
    _write(datapath, "unhomed.gcode", "G90\nG1 X20 Y20 Z5 F3000\n" + gcode(5))
    svc = await start_printer(datapath, CONFIG)
    svc.datapath = datapath
    await wait_for(lambda: svc.server.lookup("file_manager").store.get("short.gcode"))
    yield svc
    await svc.service.stopService()


async def _cancel_long(svc, ws) -> None:
    await ws.call("printer.print.start", {"filename": "long.gcode"})
    await wait_for(lambda: svc.server.print_state == "printing", timeout=10)
    await ws.call("printer.print.cancel")
    await wait_for(lambda: svc.server.print_state == "standby", timeout=10)


@pytest_twisted.ensureDeferred
async def test_four_prints_in_a_row_are_all_recorded(fast_printer):
    svc = fast_printer
    ws = await svc.ws()
    await _cancel_long(svc, ws)
    assert await ws.call("printer.print.start", {"filename": "short.gcode"}) == "ok"
    await wait_for(lambda: svc.server.print_state == "complete", timeout=10)
    await _cancel_long(svc, ws)
    resp = await treq.post(
        svc.base + "/server/files/upload", data={"print": "true"}, files={"file": ("uploaded.gcode", SHORT.encode())}
    )
    assert (await resp.json())["print_started"] is True
    assert await _until_jobs(svc, 4) == [
        ("long.gcode", "cancelled"),
        ("short.gcode", "completed"),
        ("long.gcode", "cancelled"),
        ("uploaded.gcode", "completed"),
    ]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_short_print_again_and_a_print_failing_on_its_first_move(fast_printer):
    svc = fast_printer
    ws = await svc.ws()
    for n in range(1, 4):  # complete -> complete: no state change is ever seen
        await ws.call("printer.print.start", {"filename": "short.gcode"})
        assert len(await _until_jobs(svc, n)) == n
    await ws.call("printer.gcode.script", {"script": "M84"})
    await ws.call("printer.print.start", {"filename": "unhomed.gcode"})
    jobs = await _until_jobs(svc, 4)
    assert jobs == [("short.gcode", "completed")] * 3 + [("unhomed.gcode", "error")]
    totals = (await ws.call("server.history.totals"))["job_totals"]
    assert totals["total_jobs"] == 4
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_reprint_that_changes_nothing_in_print_stats_is_recorded(fast_printer):
    """A re-print with durations equal to the last one pushes nothing; the start's own check finds it."""
    svc = fast_printer
    providers = svc.sim.printer._providers
    real = providers["print_stats"]
    providers["print_stats"] = lambda: {**real(), "total_duration": 1.5, "print_duration": 0.0}
    ws = await svc.ws()
    for n in range(1, 3):
        await ws.call("printer.print.start", {"filename": "short.gcode"})
        assert await _until_jobs(svc, n) == [("short.gcode", "completed")] * n
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_failed_print_start_records_nothing(fast_printer):
    svc = fast_printer
    ws = await svc.ws()
    await ws.call("printer.print.start", {"filename": "short.gcode"})
    await _until_jobs(svc, 1)
    with pytest.raises(RPCError):
        await ws.call("printer.print.start", {"filename": "missing.gcode"})
    await sleep(0.6)
    assert await _jobs(svc) == [("short.gcode", "completed")]
    ws.sendClose()
