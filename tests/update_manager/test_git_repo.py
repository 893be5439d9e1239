"""git_repo updaters against real git: bare origins, clones, tags, channels, updates, rollback."""

from __future__ import annotations

import os

import pytest_twisted

from mtclient import RPCError
from update_manager.conftest import config, git_section, plugin, start
from update_manager.gitrepos import git, make_origin


async def rpc_error(ws, method, params=None):
    try:
        await ws.call(method, params)
    except RPCError as exc:
        return exc
    raise AssertionError(f"{method} succeeded")


async def notifications_until_complete(ws, timeout=20.0):
    messages = []
    while True:
        note = await ws.next_notification("notify_update_response", timeout=timeout)
        messages.append(note["params"][0])
        if note["params"][0]["complete"]:
            return messages


@pytest_twisted.ensureDeferred
async def test_refresh_update_rollback_dev_channel(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    head = git(clone, "rev-parse", "HEAD")
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.bare, "info_tags:\n  desc=My App\n")))
    try:
        ws = await svc.ws()
        um = plugin(svc)
        status = await ws.call("machine.update.refresh", {"name": "app"}) if um.initial_refresh_complete else None
        while not um.initial_refresh_complete:
            await ws.next_notification("notify_update_refreshed", timeout=20)
        status = await ws.call("machine.update.status")
        app = status["version_info"]["app"]
        assert app["configured_type"] == "git_repo" and app["channel"] == "dev"
        assert app["is_valid"] is True, app
        assert app["version"] == "v0.1.0-1" and app["remote_version"] == "v0.1.0-1"
        assert app["current_hash"] == head == app["remote_hash"]
        assert app["branch"] == "master" and app["remote_alias"] == "origin"
        assert app["info_tags"] == ["desc=My App"]
        assert app["anomalies"] == [] and app["warnings"] == []
        assert app["commits_behind"] == [] and app["commits_behind_count"] == 0
        assert app["full_version_string"].startswith("v0.1.0-1-g")
        assert status["busy"] is False
        # two new commits upstream, the second tagged
        origin.commit("third")
        fourth = origin.commit("fourth", tag="v0.2.0")
        status = await ws.call("machine.update.refresh", {"name": "app"})
        app = status["version_info"]["app"]
        assert app["remote_version"] == "v0.2.0-0" and app["remote_hash"] == fourth
        assert app["commits_behind_count"] == 2
        assert [c["subject"] for c in app["commits_behind"]] == ["fourth", "third"]
        assert app["commits_behind"][0]["tag"] == "v0.2.0" and app["commits_behind"][1]["tag"] is None
        assert app["commits_behind"][0]["author"] == "Test Author"
        assert app["commits_behind"][0]["message"] == "Body of fourth."
        assert app["commits_behind"][0]["date"].isdigit()
        refreshed = await ws.next_notification("notify_update_refreshed")
        assert refreshed["params"][0]["version_info"]["app"]["remote_version"] == "v0.2.0-0"
        # the update streams git's output and ends with one complete message
        assert await ws.call("machine.update.upgrade", {"name": "app"}) == "ok"
        messages = await notifications_until_complete(ws)
        assert all(m["application"] == "app" for m in messages)
        assert len({m["proc_id"] for m in messages}) == 1
        assert [m["complete"] for m in messages].count(True) == 1
        texts = [m["message"] for m in messages]
        assert "Updating Application app..." in texts and texts[-1] == "Update Finished..."
        assert git(clone, "rev-parse", "HEAD") == fourth
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["version"] == "v0.2.0-0" and app["rollback_version"] == "v0.1.0-1"
        assert app["commits_behind"] == []
        # rollback on request
        assert await ws.call("machine.update.rollback", {"name": "app"}) == "ok"
        messages = await notifications_until_complete(ws)
        assert {m["application"] for m in messages} == {"rollback_app"}
        assert messages[-1]["message"] == "Rollback Complete"
        assert git(clone, "rev-parse", "HEAD") == head
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["version"] == "v0.1.0-1" and app["remote_version"] == "v0.2.0-0"
        ws.sendClose()
    finally:
        await svc.service.stopService()
