"""Damaged clones (truncated objects, index.lock, detached HEAD, wrong remote, unreachable or
stalled origin) are detected, reported and recovered; a failed update goes back."""

from __future__ import annotations

import os
import time

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from update_manager.conftest import config, git_section, ready, rpc_error, start, until_complete
from update_manager.gitrepos import git, make_origin
from update_manager.wheels import build_wheel, installed_version, make_venv


def loose_object(clone: str, sha: str) -> str:
    return os.path.join(clone, ".git", "objects", sha[:2], sha[2:])


@pytest_twisted.ensureDeferred
async def test_truncated_object_reported_and_hard_recovery_reclones(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    third = origin.commit("third")
    git(clone, "pull", "-q", "--ff-only")  # a small fetch leaves loose objects, as on a printer
    with open(os.path.join(clone, "local.cfg"), "w") as f:
        f.write("keep me\n")
    with open(os.path.join(clone, "scratch.txt"), "w") as f:
        f.write("untracked, not persistent\n")
    with open(os.path.join(tmp, "beside.txt"), "w") as f:
        f.write("outside the configured path\n")
    obj = loose_object(clone, third)
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as f:  # a power cut in the middle of writing the commit
        f.truncate(7)
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.bare, "persistent_files:\n  local.cfg\n")))
    try:
        ws = await svc.ws()
        await ready(svc)
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["corrupt"] is True and app["is_valid"] is False
        assert "Repo is corrupt" in app["warnings"]
        assert any("corrupt" in m for m in app["git_messages"])
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "app"})
        assert err.code == 400
        await until_complete(ws)
        assert await ws.call("machine.update.recover", {"name": "app", "hard": True}) == "ok"
        messages = await until_complete(ws)
        texts = [m["message"] for m in messages]
        assert "Git Repo app: Starting Clone Recovery..." in texts and texts[-1] == "Reinstall Complete"
        assert {m["application"] for m in messages} == {"recover_app"}
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["corrupt"] is False and app["is_valid"] is True and app["current_hash"] == third
        with open(os.path.join(clone, "local.cfg")) as f:
            assert f.read() == "keep me\n"
        assert not os.path.exists(os.path.join(clone, "scratch.txt"))
        # nothing beside the configured path was touched or left behind
        assert sorted(os.listdir(tmp)) == sorted(["app", "app-origin.git", "app-work", "beside.txt", "data"])
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_stale_lock_detached_head_and_wrong_remote(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    fork = os.path.join(tmp, "fork.git")
    git(tmp, "clone", "-q", "--bare", origin.url, fork)
    locked, detached, moved = (origin.clone(os.path.join(tmp, n)) for n in ("locked", "detached", "moved"))
    lock = os.path.join(locked, ".git", "index.lock")
    open(lock, "w").close()
    os.utime(lock, (time.time() - 3600, time.time() - 3600))  # left behind an hour ago
    git(detached, "checkout", "-q", "--detach", "HEAD~1")
    git(moved, "remote", "set-url", "origin", fork)
    sections = "".join(git_section(n, os.path.join(tmp, n), origin.url) for n in ("locked", "detached", "moved"))
    svc = await start(tmp_path, config(tmp, sections))
    try:
        ws = await svc.ws()
        await ready(svc)
        origin.commit("third")
        info = (await ws.call("machine.update.status"))["version_info"]
        # the lock is removed, the repo works and says so
        assert not os.path.exists(lock)
        assert info["locked"]["is_valid"] is True
        assert "A stale git lock file (index.lock) was removed" in info["locked"]["anomalies"]
        await ws.call("machine.update.refresh", {"name": "locked"})
        assert await ws.call("machine.update.upgrade", {"name": "locked"}) == "ok"
        await until_complete(ws)
        assert git(locked, "log", "-1", "--format=%s") == "third"
        # a detached HEAD is a warning: updates disabled until a recovery
        assert info["detached"]["detached"] is True and info["detached"]["is_valid"] is False
        assert "Detached HEAD detected" in info["detached"]["warnings"]
        await ws.call("machine.update.recover", {"name": "detached"})
        await until_complete(ws)
        detached_info = (await ws.call("machine.update.status"))["version_info"]["detached"]
        assert detached_info["detached"] is False and detached_info["branch"] == "master"
        # another remote URL is an anomaly, the repo stays valid
        assert info["moved"]["is_valid"] is True
        assert info["moved"]["anomalies"] == [f"Unofficial remote url: {fork}"]
        assert info["moved"]["remote_url"] == fork
        await ws.call("machine.update.recover", {"name": "moved", "hard": True})
        await until_complete(ws)
        moved_info = (await ws.call("machine.update.status"))["version_info"]["moved"]
        assert moved_info["anomalies"] == [] and moved_info["remote_url"] == origin.url
        ws.sendClose()
    finally:
        await svc.service.stopService()


class Silent(Protocol):
    """Accepts a connection and never answers (a stalled git server)."""


@pytest_twisted.ensureDeferred
async def test_unreachable_and_stalled_origin(tmp_path):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    gone, stalled = origin.clone(os.path.join(tmp, "gone")), origin.clone(os.path.join(tmp, "stalled"))
    git(gone, "remote", "set-url", "origin", os.path.join(tmp, "missing.git"))
    port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    stalled_url = f"http://127.0.0.1:{port.getHost().port}/app.git"
    git(stalled, "remote", "set-url", "origin", stalled_url)
    sections = git_section("gone", gone, origin.bare) + git_section("stalled", stalled, stalled_url)
    svc = await start(tmp_path, config(tmp, sections, manager="fetch_timeout: 0.5\n"))
    try:
        ws = await svc.ws()
        await ready(svc)
        info = (await ws.call("machine.update.status"))["version_info"]
        assert info["gone"]["is_valid"] is False
        assert any("missing.git" in m or "does not appear to be a git repository" in m for m in info["gone"]["git_messages"])
        assert info["gone"]["version"] == "?" and info["gone"]["current_hash"] == "?"
        assert info["stalled"]["is_valid"] is False
        assert info["stalled"]["git_messages"] == [
            "Git Command 'git fetch origin --prune --progress' stalled after 3 attempts"
        ]
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "gone"})
        assert (err.code, err.message) == (400, "Update aborted, repo not valid")
        assert git(gone, "log", "-1", "--format=%s") == "second"
        # the server kept answering
        code, body = await svc.get("/server/info")
        assert code == 200
        ws.sendClose()
    finally:
        await svc.service.stopService()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_requirements_installed_and_failed_install_rolls_back(tmp_path):
    tmp = str(tmp_path)
    wheels = os.path.join(tmp, "wheels")
    build_wheel(wheels, "tinypkg", "1.0")
    origin = make_origin(tmp)
    clone = origin.clone(os.path.join(tmp, "app"))
    venv = os.path.join(tmp, "app-env")
    python = make_venv(venv)
    extra = (
        f"virtualenv: {venv}\nrequirements: requirements.txt\nsystem_dependencies: deps.json\n"
        f"pip_environment_variables:\n  PIP_NO_INDEX=1\n  PIP_FIND_LINKS={wheels}\n"
    )
    origin.commit("deps file", {"deps.json": '{"debian": ["libfoo"], "fedora": ["foo-libs"]}\n'})
    git(clone, "pull", "-q")
    svc = await start(tmp_path, config(tmp, git_section("app", clone, origin.bare, extra)))
    try:
        ws = await svc.ws()
        um = await ready(svc)
        um.distro.id, um.distro.like = "raspbian", ["debian"]
        provider = um.updaters["system"].provider
        good = origin.commit("needs tinypkg", {"requirements.txt": "tinypkg==1.0\n",
                                               "deps.json": '{"debian": ["libfoo", "libbar; distro_id == \'raspbian\'"]}\n'})
        await ws.call("machine.update.refresh", {"name": "app"})
        assert await ws.call("machine.update.upgrade", {"name": "app"}) == "ok"
        texts = [m["message"] for m in await until_complete(ws)]
        assert "Installing system dependencies..." in texts and texts[-1] == "Update Finished..."
        assert installed_version(python, "tinypkg") == "1.0"
        assert ("install", ["libbar"]) in provider.commands  # only the new package
        origin.commit("needs a package nobody has", {"requirements.txt": "tinypkg==1.0\nno-such-package==9\n"})
        await ws.call("machine.update.refresh", {"name": "app"})
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "app"})
        assert err.code == 500 and "pip" in err.message
        messages = await until_complete(ws)
        texts = [m["message"] for m in messages]
        assert any(t.startswith("Restoring app to") for t in texts)
        assert texts[-1].startswith("Error updating app:")
        assert any("no-such-package" in t for t in texts)  # pip's own words, streamed
        assert git(clone, "rev-parse", "HEAD") == good
        app = (await ws.call("machine.update.status"))["version_info"]["app"]
        assert app["current_hash"] == good and app["is_valid"] is True
        ws.sendClose()
    finally:
        await svc.service.stopService()
