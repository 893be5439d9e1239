"""Fixtures for the update manager: services with real git repositories and fakes."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

from mtclient import start_service

BUILTINS = {
    "server": "moontwist.plugins.server_info:ServerPlugin",
    "database": "moontwist.plugins.database:DatabasePlugin",
    "authorization": "moontwist.plugins.authorization:AuthorizationPlugin",
    "machine": "moontwist.plugins.machine:MachinePlugin",
    "update_manager": "moontwist.plugins.update_manager:UpdateManagerPlugin",
}
WITH_KLIPPY = {**BUILTINS, "klippy_apis": "moontwist.plugins.klippy_apis:KlippyAPIsPlugin"}


def config(tmp: str, sections: str = "", manager: str = "", moonraker: str | None = None) -> str:
    """A config whose Klipper and moontwist updaters point at nothing real unless given
    (never at this checkout)."""
    missing = os.path.join(tmp, "not-installed")
    if moonraker is None:
        moonraker = f"[update_manager moonraker]\npath: {missing}\n"
    return (
        "[server]\nhost: 127.0.0.1\n"
        "[machine]\nprovider: recording\n"
        f"[file_manager]\nklipper_path: {missing}\n"
        f"[update_manager]\nsystem_provider: recording\nfetch_timeout: 5\n{manager}"
        f"{moonraker}{sections}"
    )


def git_section(name: str, path: str, origin: str, extra: str = "") -> str:
    return (
        f"[update_manager {name}]\ntype: git_repo\npath: {path}\norigin: {origin}\n"
        f"is_system_service: False\n{extra}"
    )


def plugin(svc):
    return svc.server.plugins.pm.get_plugin("update_manager")


async def start(tmp_path, text: str, builtins=None, **options):
    return await start_service(str(tmp_path / "data"), text, builtins=builtins or BUILTINS, **options)


@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)


async def ready(svc, timeout: float = 30.0):
    """Wait for the start-up refresh; returns the plugin."""
    from mtclient import wait_for

    um = plugin(svc)
    await wait_for(lambda: um.initial_refresh_complete, timeout=timeout)
    return um


async def until_complete(ws, timeout: float = 30.0) -> list[dict]:
    """notify_update_response messages up to the one with complete: true."""
    messages = []
    while True:
        note = await ws.next_notification("notify_update_response", timeout=timeout)
        messages.append(note["params"][0])
        if note["params"][0]["complete"]:
            return messages


async def rpc_error(ws, method, params=None):
    from mtclient import RPCError

    try:
        await ws.call(method, params)
    except RPCError as exc:
        return exc
    raise AssertionError(f"{method} succeeded")


@pytest_twisted.async_yield_fixture
async def github():
    """The local GitHub API stand-in (see github_server.py)."""
    from update_manager.github_server import serve

    api, port = serve()
    yield api
    await port.stopListening()
