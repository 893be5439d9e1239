"""git_repo updaters against real git: bare origins, clones, tags, channels, updates, rollback."""

from __future__ import annotations

import os

import pytest_twisted

from update_manager.conftest import config, git_section, ready, rpc_error, start, until_complete
from update_manager.gitrepos import git, make_origin


@pytest_twisted.ensureDeferred
async def test_refresh_update_rollback_dev_channel(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    head = git(clone, "rev-parse", "HEAD")
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.bare, "info_tags:\n  desc=My App\n")))
    try:
        ws = await svc.ws()
        await ready(svc)
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
        while refreshed["params"][0]["version_info"]["app"]["remote_version"] != "v0.2.0-0":  # the start-up one first
            refreshed = await ws.next_notification("notify_update_refreshed")
        assert refreshed["params"][0]["version_info"]["app"]["commits_behind_count"] == 2
        # the update streams git's output and ends with one complete message
        assert await ws.call("machine.update.upgrade", {"name": "app"}) == "ok"
        messages = await until_complete(ws)
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
        messages = await until_complete(ws)
        assert {m["application"] for m in messages} == {"rollback_app"}
        assert messages[-1]["message"] == "Rollback Complete"
        assert git(clone, "rev-parse", "HEAD") == head
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["version"] == "v0.1.0-1" and app["remote_version"] == "v0.2.0-0"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_stable_and_beta_channels_and_pinned_commit(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    origin.commit("beta work", tag="v0.2.0-beta.1")
    rc = origin.commit("release candidate", tag="v0.2.0rc1")
    origin.commit("more dev")
    stable, beta, pinned = (origin.clone(os.path.join(tmp, n)) for n in ("stable", "beta", "pinned"))
    for clone in (stable, beta, pinned):
        git(clone, "reset", "-q", "--hard", "v0.1.0")
    second = git(origin.work, "rev-parse", "HEAD~3")
    sections = (
        git_section("stable", stable, origin.url, "channel: stable\n")
        + git_section("beta", beta, origin.url, "channel: beta\n")
        + git_section("pinned", pinned, origin.bare, f"pinned_commit: {second[:10]}\n")
    )
    svc = await start(tmp_path, config(tmp, sections))
    try:
        await ready(svc)
        code, body = await svc.get("/machine/update/status")
        info = body["result"]["version_info"]
        # stable: no final release newer than v0.1.0
        assert info["stable"]["version"] == "v0.1.0-0" and info["stable"]["remote_version"] == "v0.1.0-0"
        assert info["stable"]["remote_hash"] == info["stable"]["current_hash"] and info["stable"]["is_valid"]
        # beta: the newest tag that is not an alpha: the release candidate
        assert info["beta"]["remote_version"] == "v0.2.0rc1-0" and info["beta"]["remote_hash"] == rc
        assert info["beta"]["commits_behind_count"] == 3
        # pinned: the pinned commit, not the branch's tip
        assert info["pinned"]["remote_hash"] == second and info["pinned"]["remote_version"] == "v0.1.0-1"
        code, body = await svc.post("/machine/update/upgrade", json={"name": "beta"})
        assert code == 200 and body["result"] == "ok"
        assert git(beta, "rev-parse", "HEAD") == rc
        code, body = await svc.post("/machine/update/upgrade", json={"name": "pinned"})
        assert code == 200 and git(pinned, "rev-parse", "HEAD") == second
        # an origin given as a file:// URL or a path matches the clone's remote: no anomaly
        assert info["stable"]["anomalies"] == [] and info["pinned"]["anomalies"] == []
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_forced_push_upstream_resets_to_the_new_history(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.url)))
    try:
        ws = await svc.ws()
        await ready(svc)
        git(origin.work, "reset", "-q", "--hard", "HEAD~1")
        rewritten = origin.commit("rewritten", push=False)
        origin.push(force=True)
        app = (await ws.call("machine.update.refresh", {"name": "app"}))["version_info"]["app"]
        # the local commit is no longer upstream: the repo has diverged and is invalid
        assert "Repo has diverged from remote" in app["anomalies"] and app["is_valid"] is False
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "app"})
        assert err.code == 400 and err.message == "Update aborted, repo not valid"
        failed = await until_complete(ws)
        assert failed[-1]["message"] == "Error updating app: Update aborted, repo not valid"
        # a soft recovery resets onto the rewritten branch
        assert await ws.call("machine.update.recover", {"name": "app"}) == "ok"
        messages = await until_complete(ws)
        assert messages[-1] == {**messages[-1], "application": "recover_app", "message": "Reinstall Complete"}
        assert git(clone, "rev-parse", "HEAD") == rewritten
        assert (await ws.call("machine.update.status"))["version_info"]["app"]["is_valid"] is True
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_dirty_repo_is_never_overwritten(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.bare)))
    try:
        ws = await svc.ws()
        await ready(svc)
        origin.commit("upstream change")
        await ws.call("machine.update.refresh", {"name": "app"})
        with open(os.path.join(clone, "app.py"), "w") as f:
            f.write("print('local edit')\n")
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "app"})
        assert (err.code, err.message) == (400, "Update aborted, repo has been modified")
        note = await ws.next_notification("notify_update_response")
        assert note["params"][0]["complete"] is True and "repo has been modified" in note["params"][0]["message"]
        with open(os.path.join(clone, "app.py")) as f:
            assert f.read() == "print('local edit')\n"
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["is_dirty"] is True and app["pristine"] is False and app["is_valid"] is False
        assert any("Repo is dirty" in w and "app.py" in w for w in app["warnings"])
        # recover (soft) discards the edit on request
        await ws.call("machine.update.recover", {"name": "app", "hard": False})
        with open(os.path.join(clone, "app.py")) as f:
            assert f.read() == "print('v1')\n"
        ws.sendClose()
    finally:
        await svc.service.stopService()
