"""python updaters (pip in a real virtualenv, a local package index) and the status shapes
of every type against current Moonraker's."""

from __future__ import annotations

import json
import os

import pytest_twisted

from update_manager import moonraker_shapes as shapes
from update_manager.conftest import config, git_section, ready, rpc_error, start, until_complete
from update_manager.github_server import Release, web_zip
from update_manager.gitrepos import make_origin
from update_manager.wheels import build_wheel, installed_version, make_venv, pip_install

URLS = {"Repository": "https://github.com/example/tinypkg", "Changelog": "https://example.invalid/changes"}


@pytest_twisted.ensureDeferred
async def test_python_package_update_and_rollback(tmp_path):
    tmp = str(tmp_path)
    index = os.path.join(tmp, "index")
    build_wheel(index, "tinypkg", "1.0", URLS, release_info={"system_dependencies": {"debian": ["libtiny"]}})
    build_wheel(index, "moontwist", "0.1.0")
    venv, selfvenv = os.path.join(tmp, "venv"), os.path.join(tmp, "selfvenv")
    python, selfpython = make_venv(venv), make_venv(selfvenv)
    pip_install(python, "--find-links", index, "tinypkg==1.0")
    pip_install(selfpython, "--find-links", index, "moontwist==0.1.0")
    pip_env = f"pip_environment_variables:\n  PIP_NO_INDEX=1\n  PIP_FIND_LINKS={index}\n"
    section = f"[update_manager tinypkg]\ntype: python\nvirtualenv: {venv}\nis_system_service: False\n{pip_env}"
    moontwist = f"[update_manager moonraker]\ntype: python\nvirtualenv: {selfvenv}\nproject_name: moontwist\n{pip_env}"
    svc = await start(tmp_path, config(tmp, section, moonraker=moontwist))
    try:
        ws = await svc.ws()
        um = await ready(svc)
        um.distro.id, um.distro.like = "debian", []
        info = (await ws.call("machine.update.status"))["version_info"]
        tiny = info["tinypkg"]
        assert tiny["configured_type"] == "python" and tiny["detected_type"] == "python_package"
        assert (tiny["version"], tiny["remote_version"], tiny["remote_hash"]) == ("1.0", "1.0", "not-specified")
        assert (tiny["owner"], tiny["repo_name"]) == ("example", "tinypkg")
        assert tiny["changelog_url"] == "https://example.invalid/changes" and tiny["is_valid"] is True
        assert info["moonraker"]["configured_type"] == "python" and info["moonraker"]["version"] == "0.1.0"
        build_wheel(index, "tinypkg", "1.1.dev2", URLS, release_info={"system_dependencies": {"debian": ["libtiny", "libnew"]}})
        build_wheel(index, "moontwist", "0.2.0")
        tiny = (await ws.call("machine.update.refresh", {"name": "tinypkg"}))["version_info"]["tinypkg"]
        assert tiny["remote_version"] == "1.0"  # a dev release is not stable
        build_wheel(index, "tinypkg", "1.1", URLS, release_info={"system_dependencies": {"debian": ["libtiny", "libnew"]}})
        tiny = (await ws.call("machine.update.refresh", {"name": "tinypkg"}))["version_info"]["tinypkg"]
        assert (tiny["remote_version"], tiny["remote_hash"]) == ("1.1", "update-available")
        assert await ws.call("machine.update.upgrade", {"name": "tinypkg"}) == "ok"
        texts = [m["message"] for m in await until_complete(ws)]
        assert texts[0] == "Updating Python Package tinypkg from PIP..." and texts[-1] == "Update Finished..."
        assert any("Successfully installed tinypkg-1.1" in t for t in texts)
        assert installed_version(python, "tinypkg") == "1.1"
        assert ("install", ["libnew"]) in um.updaters["system"].provider.commands
        tiny = (await ws.call("machine.update.status"))["version_info"]["tinypkg"]
        assert (tiny["version"], tiny["rollback_version"]) == ("1.1", "1.0")
        assert await ws.call("machine.update.rollback", {"name": "tinypkg"}) == "ok"
        messages = await until_complete(ws)
        assert messages[-1] == {**messages[-1], "application": "rollback_tinypkg", "message": "Rollback Complete"}
        assert installed_version(python, "tinypkg") == "1.0"
        # moontwist itself, pip-installed, through the 'moonraker' name
        await ws.call("machine.update.refresh", {"name": "moonraker"})
        machine = svc.server.lookup("machine_provider")
        before = len(machine.commands)
        assert await ws.call("machine.update.moonraker") == "ok"
        await until_complete(ws)
        assert installed_version(selfpython, "moontwist") == "0.2.0"
        from mtclient import wait_for

        await wait_for(lambda: len(machine.commands) > before)
        assert machine.commands[before:] == [("restart", machine.self_unit)]
        # a version the index doesn't have: pip's error, the installed version stays
        um.updaters["tinypkg"].upstream_version = type(um.updaters["tinypkg"].upstream_version)("9.9")
        um.updaters["tinypkg"].upstream_sha = "update-available"
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "tinypkg"})
        assert err.code == 500
        await until_complete(ws)
        assert installed_version(python, "tinypkg") == "1.0"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_status_shapes_match_moonraker(tmp_path, github):
    tmp = str(tmp_path)
    origin = make_origin(tmp)
    origin.commit("third")
    clone = origin.clone(os.path.join(tmp, "app"))
    from update_manager.gitrepos import git

    git(clone, "reset", "-q", "--hard", "HEAD~1")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "release_info.json"), "w") as f:
        json.dump({"project_name": "mainsail", "project_owner": "mainsail-crew", "version": "v1"}, f)
    github.add("mainsail-crew/mainsail", Release("v2", {"mainsail.zip": web_zip("v2")}))
    venv = os.path.join(tmp, "venv")
    make_venv(venv)
    sections = (
        git_section("app", clone, origin.bare)
        + f"[update_manager mainsail]\ntype: web\nrepo: mainsail-crew/mainsail\npath: {www}\n"
        + f"[update_manager zipapp]\ntype: zip\nrepo: a/b\npath: {www}\nis_system_service: False\n"
        + f"[update_manager exe]\ntype: executable\nrepo: a/c\npath: {www}\nis_system_service: False\n"
        + f"[update_manager pyapp]\ntype: python\nvirtualenv: {venv}\nis_system_service: False\n"
    )
    svc = await start(tmp_path, config(tmp, sections, manager=f"github_api_url: {github.url}\n"))
    try:
        ws = await svc.ws()
        await ready(svc)
        for status in (await ws.call("machine.update.status"), (await svc.get("/machine/update/status"))[1]["result"]):
            assert set(status) == shapes.STATUS
            info = status["version_info"]
            expected = {"system": shapes.SYSTEM, "klipper": shapes.ABSENT, "moonraker": shapes.ABSENT,
                        "app": shapes.GIT_REPO, "mainsail": shapes.RELEASE, "zipapp": shapes.RELEASE,
                        "exe": shapes.RELEASE, "pyapp": shapes.PYTHON}
            assert {name: set(value) for name, value in info.items()} == expected
            assert set(info["app"]["commits_behind"][0]) == shapes.COMMIT
            assert isinstance(info["app"]["info_tags"], list)
        refreshed = (await svc.post("/machine/update/refresh", json={"name": "app"}))[1]["result"]
        assert set(refreshed) == shapes.STATUS
        await ws.call("machine.update.upgrade", {"name": "app"})
        assert all(set(m) == shapes.RESPONSE for m in await until_complete(ws))
        note = await ws.next_notification("notify_update_refreshed")
        assert set(note["params"][0]) == shapes.STATUS
        ws.sendClose()
    finally:
        await svc.service.stopService()
