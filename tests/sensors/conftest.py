"""A Mosquitto broker per test (see tests/mqtt/broker.py)."""

from __future__ import annotations

import pytest
from mqtt.broker import broker, peer  # noqa: F401 - fixtures


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/sensors/" in str(item.fspath).replace("\\", "/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
