"""A simulated printer with small G-code files to print, for history tests."""

from __future__ import annotations

import pytest_twisted
from history.printing import start_printer, write_gcodes


@pytest_twisted.async_yield_fixture
async def printer(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"short.gcode": 60, "sub/long.gcode": 400})
    svc = await start_printer(datapath)
    svc.datapath = datapath
    yield svc
    await svc.service.stopService()
