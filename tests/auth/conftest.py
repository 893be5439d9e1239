"""A service with ``[authorization]`` configured, and helpers to obtain credentials."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted

from mtclient import start_service


async def start_auth(tmp_path, options: str = "", server_options: str = ""):
    """Start a service whose ``[authorization]`` section holds ``options``."""
    text = "[server]\nhost: 127.0.0.1\n" + server_options + "\n[authorization]\n" + options
    return await start_service(str(tmp_path / "data"), text)


def api_key(svc) -> str:
    return svc.server.lookup("identify_credentials").__self__.auth.api_key


def manager(svc):
    return svc.server.lookup("identify_credentials").__self__.auth


async def create_user(svc, username: str = "alice", password: str = "s3cret!") -> dict:
    code, body, _ = await svc.request(
        "POST", "/access/user", json={"username": username, "password": password},
        headers={"X-Api-Key": api_key(svc)},
    )
    assert code == 200, body
    return body["result"]


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_auth(tmp_path)
    yield running
    await running.service.stopService()


@pytest.fixture
def kit():
    """The helpers above, for test modules (conftest can't be imported by name here)."""
    return SimpleNamespace(start_auth=start_auth, api_key=api_key, manager=manager, create_user=create_user)
