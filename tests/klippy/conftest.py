"""A service with the embedded simulated printer, sped up for tests."""

from __future__ import annotations

import pytest_twisted

from mtclient import start_service, wait_for

CONFIG = "[server]\n[simulator]\nspeed: 50\n"


@pytest_twisted.async_yield_fixture
async def printer(tmp_path):
    svc = await start_service(str(tmp_path / "data"), CONFIG, simulate=True)
    svc.sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    await wait_for(lambda: svc.server.klippy_state == "ready")
    yield svc
    await svc.service.stopService()
