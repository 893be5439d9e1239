"""Fixtures for the storage tests: real SQLite files in temporary data paths."""

from __future__ import annotations

import pytest_twisted

from moontwist.storage.database import Database


@pytest_twisted.async_yield_fixture
async def db(tmp_path):
    """An open Database in a fresh data path; closed after the test."""
    database = Database(str(tmp_path))
    await database.open()
    yield database
    await database.close()
