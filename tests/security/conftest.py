"""Services with ``[authorization]`` (no trusted clients) and helpers to get credentials."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mtclient import start_service


async def start_auth(tmp_path, options: str = "", extra: str = "", server_options: str = "", **kwargs):
    """Start a service whose ``[authorization]`` section holds ``options``; ``extra`` sections follow."""
    text = "[server]\nhost: 127.0.0.1\n" + server_options + "\n[authorization]\n" + options + "\n" + extra
    return await start_service(str(tmp_path / "data"), text, **kwargs)


def api_key(svc) -> str:
    return svc.server.lookup("identify_credentials").__self__.auth.api_key


async def create_user(svc, username: str = "alice", password: str = "s3cret!") -> dict:
    code, body, _ = await svc.request(
        "POST", "/access/user", json={"username": username, "password": password},
        headers={"X-Api-Key": api_key(svc)},
    )
    assert code == 200, body
    return body["result"]


@pytest.fixture
def kit():
    return SimpleNamespace(start_auth=start_auth, api_key=api_key, create_user=create_user)
