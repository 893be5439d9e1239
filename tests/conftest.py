"""Shared fixtures: a real moontwist service on an ephemeral loopback port."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

from mtclient import FARM_ENV, start_service

# Test servers (in-process and child daemons) send nothing beyond this machine.
os.environ.setdefault("MOONTWIST_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--farm", action="store_true",
        help=f"start each service as an instance of a farm beside a busy neighbour (as {FARM_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--farm"):
        os.environ[FARM_ENV] = "1"


@pytest_twisted.async_yield_fixture
async def running(tmp_path):
    """A service with default config and no printer."""
    svc = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")
    yield svc
    await svc.service.stopService()


@pytest.fixture
def datapath(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path
