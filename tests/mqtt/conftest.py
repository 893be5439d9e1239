"""Fixtures: a Mosquitto broker per test and a moontwist service connected to it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mqtt.broker import Mosquitto, Peer, broker, peer  # noqa: F401 - fixtures

from mtclient import start_service

INSTANCE = "printer1"


def mqtt_config(port: int, options: str = "", extra: str = "") -> str:
    return (
        "[server]\nhost: 127.0.0.1\n"
        f"[mqtt]\naddress: 127.0.0.1\nport: {port}\ninstance_name: {INSTANCE}\n{options}\n{extra}"
    )


async def start_mqtt(tmp_path, port: int, options: str = "", extra: str = "", **kwargs):
    """A service whose ``[mqtt]`` points at ``port`` (plus ``options``; ``extra``: more sections)."""
    return await start_service(str(tmp_path / "data"), mqtt_config(port, options, extra), **kwargs)


@pytest.fixture
def kit():
    return SimpleNamespace(start_mqtt=start_mqtt, INSTANCE=INSTANCE, Peer=Peer, Mosquitto=Mosquitto)


def pytest_collection_modifyitems(items):
    """A hung broker conversation fails the test in a minute instead of the suite's five."""
    for item in items:
        if "tests/mqtt/" in str(item.fspath).replace("\\", "/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
