"""Fixtures: fakes and services stopped after each test."""

from __future__ import annotations

import pytest_twisted
from power.service import Fakes


@pytest_twisted.async_yield_fixture
async def fakes():
    box = Fakes()
    yield box
    for fake in box.started:
        stopped = fake.stop()
        if stopped is not None:
            await stopped


@pytest_twisted.async_yield_fixture
async def services():
    """Services to stop after the test: ``services.append(svc)``."""
    started: list = []
    yield started
    for svc in started:
        await svc.service.stopService()
