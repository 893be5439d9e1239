"""A simulated printer with an automatic job queue."""

from __future__ import annotations

import pytest_twisted
from history.printing import start_printer, write_gcodes

CONFIG = (
    "[server]\n[simulator]\nspeed: 50\n"
    "[job_queue]\nautomatic_transition: True\njob_transition_delay: 0.3\n"
    "job_transition_gcode:\n  M118 transition\n"
)


@pytest_twisted.async_yield_fixture
async def printer(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"a.gcode": 60, "b.gcode": 60, "long.gcode": 400})
    svc = await start_printer(datapath, CONFIG)
    yield svc
    await svc.service.stopService()
