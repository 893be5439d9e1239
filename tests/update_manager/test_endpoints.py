"""The machine.update.* API itself: errors by transport, one operation at a time, printing,
the full update's order, authorization, and the automatic refresh window."""

from __future__ import annotations

import os
import time

import pytest_twisted
from history.printing import write_gcodes
from twisted.internet.defer import Deferred

from mtclient import sleep, start_service, wait_for
from update_manager.conftest import (
    BUILTINS,
    config,
    git_section,
    ready,
    rpc_error,
    start,
    until_complete,
)
from update_manager.gitrepos import git, make_origin

PRINTING = {
    **BUILTINS,
    "klippy_apis": "moontwist.plugins.klippy_apis:KlippyAPIsPlugin",
    "file_manager": "moontwist.plugins.files:FileManagerPlugin",
}
UPDATE_METHODS = ("upgrade", "client", "recover", "rollback", "refresh")


@pytest_twisted.ensureDeferred
async def test_unknown_names_errors_and_busy(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.bare)))
    try:
        ws = await svc.ws()
        um = await ready(svc)
        for method in UPDATE_METHODS:
            code, body = await svc.post(f"/machine/update/{method}", json={"name": "nope"})
            assert code == 404 and body["error"]["message"] == "Updater nope not available", (method, body)
            err = await rpc_error(ws, f"machine.update.{method}", {"name": "nope"})
            assert err.code == -32601 and err.message == "Updater nope not available"
        code, body, _ = await svc.request("POST", "/server/jsonrpc", json={
            "jsonrpc": "2.0", "id": 1, "method": "machine.update.rollback", "params": {"name": "nope"}})
        assert body["error"]["code"] == -32601
        # missing and wrong arguments name the argument
        code, body = await svc.post("/machine/update/recover", json={})
        assert code == 400 and "'name'" in body["error"]["message"]
        code, body = await svc.post("/machine/update/recover", json={"name": "app", "hard": "maybe"})
        assert code == 400 and "'hard'" in body["error"]["message"]
        # recovery is for git repos only
        err = await rpc_error(ws, "machine.update.recover", {"name": "system"})
        assert (err.code, err.message) == (400, "Updater system is not a Git Repo Type")
        # the moontwist updater is missing here: Moonraker's empty object
        status = await ws.call("machine.update.status")
        assert status["version_info"]["klipper"] == {} and status["version_info"]["moonraker"] == {}
        # one operation at a time: a system upgrade that waits
        provider = um.updaters["system"].provider
        provider.available = ["libfoo"]
        um.updaters["system"].available = ["libfoo"]
        gate: Deferred = Deferred()
        upgrade = provider.upgrade

        async def slow_upgrade():
            await gate
            await upgrade()

        provider.upgrade = slow_upgrade
        pending = ws.call("machine.update.system")
        await wait_for(lambda: um.current_app == "system")
        assert (await ws.call("machine.update.status"))["busy"] is True
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "app"})
        assert (err.code, err.message) == (503, "Update Refused: system is in progress")
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "system"})
        assert (err.code, err.message) == (503, "Item system is currently updating")
        err = await rpc_error(ws, "machine.update.refresh")
        assert (err.code, err.message) == (503, "Server is busy, cannot perform refresh")
        code, body = await svc.get("/server/info")
        assert code == 200
        gate.callback(None)
        assert await pending == "ok"
        messages = await until_complete(ws)
        assert messages[-1]["message"] == "Package update finished..." and messages[-1]["application"] == "system"
        assert ("upgrade", ["libfoo"]) in provider.commands
        status = await ws.call("machine.update.status")
        assert status["busy"] is False and status["version_info"]["system"] == {
            "name": "system", "configured_type": "system", "package_count": 0, "package_list": []}
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_refused_while_printing(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    datapath = tmp_path / "data"
    write_gcodes(str(datapath), {"long.gcode": 20000})
    text = config(tmp, git_section("app", clone, origin.bare)).replace(f"[file_manager]\nklipper_path: {tmp}/not-installed\n", "") + (
        f"[file_manager]\nklipper_path: {tmp}/not-installed\n[simulator]\nspeed: 20\n")
    svc = await start_service(str(datapath), text, builtins=PRINTING, simulate=True)
    try:
        ws = await svc.ws()
        await wait_for(lambda: svc.server.klippy_state == "ready", timeout=20)
        um = await ready(svc)
        origin.commit("upstream")
        await ws.call("machine.update.refresh", {"name": "app"})
        await ws.call("printer.print.start", {"filename": "long.gcode"})
        await wait_for(lambda: svc.server.printing, timeout=20)
        last = um.updaters["app"].last_refresh_time
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "app"})
        assert (err.code, err.message) == (503, "Update Refused: Klippy is printing")
        note = (await ws.next_notification("notify_update_response"))["params"][0]
        assert note["application"] == "app" and note["complete"] is True
        assert note["message"] == "Update Refused: Klippy is printing"
        for method, status, message in (
            ("machine.update.full", 503, "Update Refused: Klippy is printing"),
            ("machine.update.recover", 400, "Recovery Attempt Refused: Klippy is printing"),
            ("machine.update.rollback", 400, "Rollback Attempt Refused: Klippy is printing"),
            ("machine.update.refresh", 503, "Server is busy, cannot perform refresh"),
        ):
            err = await rpc_error(ws, method, {"name": "app"})
            assert (err.code, err.message) == (status, message), method
        code, body = await svc.post("/machine/update/upgrade", json={"name": "app"})
        assert code == 503
        # the deprecated refresh flag is ignored during a print
        await ws.call("machine.update.status", {"refresh": True})
        assert um.updaters["app"].last_refresh_time == last
        # so is a due automatic refresh (Moonraker issue #809: refreshes during prints)
        um.clock = lambda: time.time() + 30 * 24 * 3600
        assert um.updaters["app"].needs_refresh(um.clock())
        await um._auto_refresh_once()
        assert um.updaters["app"].last_refresh_time == last
        assert git(clone, "log", "-1", "--format=%s") == "second"
        await ws.call("printer.print.cancel")
        await wait_for(lambda: not svc.server.printing, timeout=20)
        assert await ws.call("machine.update.upgrade", {"name": "app"}) == "ok"
        assert git(clone, "log", "-1", "--format=%s") == "upstream"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_full_update_klipper_from_file_manager_path_and_moontwist(tmp_path):
    tmp = str(tmp_path)
    klipper = make_origin(tmp, "klipper")
    moontwist = make_origin(tmp, "moontwist")
    ext = make_origin(tmp, "KlipperScreen")
    klipper_clone = klipper.clone(os.path.join(tmp, "klipper"))
    moontwist_clone = moontwist.clone(os.path.join(tmp, "moontwist"))
    ext_clone = ext.clone(os.path.join(tmp, "KlipperScreen"))
    text = config(
        tmp,
        git_section("KlipperScreen", ext_clone, ext.bare, "managed_services: KlipperScreen klipper\n"),
        manager="channel: stable\n",
        moonraker=f"[update_manager moonraker]\npath: {moontwist_clone}\norigin: {moontwist.bare}\nprimary_branch: master\n",
    ).replace(f"klipper_path: {tmp}/not-installed", f"klipper_path: {klipper_clone}")
    for origin in (klipper, moontwist, ext):
        origin.commit("release", tag="v0.2.0")
    svc = await start(tmp_path, text)
    try:
        ws = await svc.ws()
        await ready(svc)
        info = (await ws.call("machine.update.status"))["version_info"]
        assert list(info) == ["system", "moonraker", "klipper", "KlipperScreen"]
        # Klipper's defaults: the path from [file_manager], GitHub's origin, the stable channel here
        assert info["klipper"]["channel"] == "stable" and info["klipper"]["remote_version"] == "v0.2.0-0"
        assert info["klipper"]["anomalies"] == [f"Unofficial remote url: {klipper.url}"]
        assert info["klipper"]["is_valid"] is True
        assert info["moonraker"]["name"] == "moonraker" and info["moonraker"]["anomalies"] == []
        assert info["KlipperScreen"]["channel"] == "dev"  # [update_manager] channel is for Klipper and moontwist
        machine = svc.server.lookup("machine_provider")
        machine.set_state("KlipperScreen", "active", "running")
        before = len(machine.commands)
        assert await ws.call("machine.update.upgrade") == "ok"  # no name: everything
        messages = await until_complete(ws, timeout=60)
        assert {m["application"] for m in messages} == {"full"}
        assert [m["complete"] for m in messages].count(True) == 1
        texts = [m["message"] for m in messages]
        assert texts[0] == "Preparing full software update..." and texts[-1] == "Full Update Complete"
        assert texts.index("Updating Application KlipperScreen...") < texts.index("Updating Application klipper...") < texts.index(
            "Updating Application moonraker...")
        assert "Service klipper restart postponed..." in texts
        for clone in (klipper_clone, moontwist_clone, ext_clone):
            assert git(clone, "describe", "--tags") == "v0.2.0"
        await wait_for(lambda: len(machine.commands) >= before + 3)
        restarts = machine.commands[before:]
        assert restarts[:2] == [("restart", "KlipperScreen"), ("restart", "klipper")]
        assert restarts[2:] == [("restart", machine.self_unit)]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_authorization_required(tmp_path):
    tmp = str(tmp_path)
    text = config(tmp).replace("[server]\nhost: 127.0.0.1\n", "[server]\nhost: 127.0.0.1\n[authorization]\n")
    svc = await start(tmp_path, text)
    try:
        for method in ("upgrade", "full", "recover", "rollback", "refresh", "system"):
            code, _ = await svc.post(f"/machine/update/{method}", json={"name": "system"})
            assert code == 401, method
        code, _ = await svc.get("/machine/update/status")
        assert code == 401
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_auto_refresh_window_and_spam_guard(tmp_path, monkeypatch):
    from moontwist.plugins.update_manager.plugin import UpdateManagerPlugin

    monkeypatch.setattr(UpdateManagerPlugin, "AUTO_REFRESH_CHECK", 0.1)
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    text = config(tmp, git_section("app", clone, origin.bare, "refresh_interval: 1\n"),
                  manager="enable_auto_refresh: True\nrefresh_window: 2-4\n")
    svc = await start(tmp_path, text)
    try:
        ws = await svc.ws()
        um = await ready(svc)
        app = um.updaters["app"]
        first = app.last_refresh_time
        assert first > 0
        # the deprecated status?refresh is ignored within 60 s of the last refresh
        await ws.call("machine.update.status", {"refresh": True})
        assert app.last_refresh_time == first
        # two hours later, outside the window (10:00): no refresh
        base = time.mktime(time.strptime("2030-01-02 10:00", "%Y-%m-%d %H:%M"))
        um.clock = lambda: base
        await sleep(0.6)
        assert app.last_refresh_time == first
        # inside the window (03:00): refreshed, and notify_update_refreshed sent
        origin.commit("upstream")
        um.clock = lambda: base - 7 * 3600
        while True:
            note = await ws.next_notification("notify_update_refreshed", timeout=10)
            if note["params"][0]["version_info"]["app"]["commits_behind_count"] == 1:
                break
        assert app.last_refresh_time > first
        ws.sendClose()
    finally:
        await svc.service.stopService()
