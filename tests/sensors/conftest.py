"""A Mosquitto broker per test (see tests/mqtt/broker.py)."""

from __future__ import annotations

import pytest
import pytest_twisted
from mqtt.broker import Mosquitto, Peer


@pytest_twisted.async_yield_fixture
async def broker(tmp_path):
    mosquitto = Mosquitto(str(tmp_path / "broker"))
    await mosquitto.start()
    yield mosquitto
    await mosquitto.stop()


@pytest_twisted.async_yield_fixture
async def peer(broker):
    client = Peer(broker.port)
    await client.connect()
    yield client
    client.close()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/sensors/" in str(item.fspath).replace("\\", "/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
