"""web, zip and executable updaters against a local GitHub releases API."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import pytest_twisted

from update_manager.conftest import config, ready, rpc_error, start, until_complete
from update_manager.github_server import Release, web_zip


def install_web(path: str, version: str) -> None:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "release_info.json"), "w") as f:
        json.dump({"project_name": "mainsail", "project_owner": "mainsail-crew", "version": version}, f)
    with open(os.path.join(path, "index.html"), "w") as f:
        f.write(f"<html>mainsail {version}</html>")
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write('{"mine": true}')


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def zip_with(entries: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return out.getvalue()


@pytest_twisted.ensureDeferred
async def test_web_client_update_rollback_and_bad_assets(tmp_path, github):
    tmp = str(tmp_path)
    path = os.path.join(tmp, "www", "mainsail")
    install_web(path, "v2.0.0")
    with open(os.path.join(tmp, "www", "beside.txt"), "w") as f:
        f.write("not mine")
    github.add("mainsail-crew/mainsail", Release("v2.0.0", {"mainsail.zip": web_zip("v2.0.0")}))
    github.add("mainsail-crew/mainsail", Release("v2.1.0", {"mainsail.zip": web_zip("v2.1.0", files={"new.js": "x"})}))
    github.add("mainsail-crew/mainsail", Release("v2.2.0-beta", {"mainsail.zip": web_zip("v2.2.0-beta")}, prerelease=True))
    section = (
        f"[update_manager mainsail]\ntype: web\nrepo: mainsail-crew/mainsail\npath: {path}\n"
        "persistent_files:\n  config.json\ninfo_tags:\n  desc=Mainsail\n"
    )
    svc = await start(tmp_path, config(tmp, section, manager=f"github_api_url: {github.url}\n"))
    try:
        ws = await svc.ws()
        await ready(svc)
        status = await ws.call("machine.update.status")
        web = status["version_info"]["mainsail"]
        assert web == {
            "channel": "stable", "debug_enabled": False, "channel_invalid": False, "is_valid": True,
            "configured_type": "web", "info_tags": ["desc=Mainsail"], "name": "mainsail", "repo_name": "mainsail",
            "owner": "mainsail-crew", "version": "v2.0.0", "remote_version": "v2.1.0", "rollback_version": "v2.0.0",
            "last_error": "", "warnings": [], "anomalies": [],
        }
        assert status["github_rate_limit"] == 60 and status["github_requests_remaining"] == 59
        assert status["github_limit_reset_time"] == github.reset
        assert await ws.call("machine.update.upgrade", {"name": "mainsail"}) == "ok"
        messages = await until_complete(ws)
        texts = [m["message"] for m in messages]
        assert texts[:2] == ["Updating...", "Downloading Release..."]
        assert any(t.startswith("Downloading mainsail: ") and t.endswith("[100%]") for t in texts)
        assert texts[-1] == "Update Finished..."
        assert read(os.path.join(path, "index.html")) == "<html>mainsail v2.1.0</html>"
        assert read(os.path.join(path, "new.js")) == "x"
        assert read(os.path.join(path, "config.json")) == '{"mine": true}'
        web = (await ws.call("machine.update.status"))["version_info"]["mainsail"]
        assert (web["version"], web["rollback_version"]) == ("v2.1.0", "v2.0.0")
        # an asset that is not a zip, then one that writes outside its folder: refused, nothing changes
        for bad in (b"<html>an error page</html>", zip_with({"../evil.txt": "pwned", "index.html": "bad"})):
            github.add("mainsail-crew/mainsail", Release("v2.3.0", {"mainsail.zip": bad}))
            await ws.call("machine.update.refresh", {"name": "mainsail"})
            err = await rpc_error(ws, "machine.update.upgrade", {"name": "mainsail"})
            assert err.code == 400 and "the installed version v2.1.0 is unchanged" in err.message
            assert "not a zip file" in err.message or "outside its folder: '../evil.txt'" in err.message
            messages = await until_complete(ws)
            assert messages[-1]["message"].startswith("Error updating mainsail: ")
            assert read(os.path.join(path, "index.html")) == "<html>mainsail v2.1.0</html>"
            assert not os.path.exists(os.path.join(tmp, "www", "evil.txt"))
            github.releases["mainsail-crew/mainsail"].pop(0)
        assert read(os.path.join(tmp, "www", "beside.txt")) == "not mine"
        # rollback reinstalls the release tagged with the previous version
        await ws.call("machine.update.refresh", {"name": "mainsail"})
        assert await ws.call("machine.update.rollback", {"name": "mainsail"}) == "ok"
        messages = await until_complete(ws)
        assert {m["application"] for m in messages} == {"rollback_mainsail"}
        assert messages[-1]["message"] == "Rollback Complete"
        assert read(os.path.join(path, "index.html")) == "<html>mainsail v2.0.0</html>"
        assert read(os.path.join(path, "config.json")) == '{"mine": true}'
        assert "/repos/mainsail-crew/mainsail/releases/tags/v2.0.0" in github.requests
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_beta_channel_rate_limit_and_unreachable_api(tmp_path, github):
    tmp = str(tmp_path)
    path = os.path.join(tmp, "fluidd")
    install_web(path, "v1.0.0")
    with open(os.path.join(path, "release_info.json"), "w") as f:
        json.dump({"project_name": "fluidd", "project_owner": "fluidd-core", "version": "v1.0.0"}, f)
    github.add("fluidd-core/fluidd", Release("v1.0.0", {"fluidd.zip": web_zip("v1.0.0", "fluidd", "fluidd-core")}))
    github.add("fluidd-core/fluidd", Release("v1.1.0-rc1", {"fluidd.zip": web_zip("v1.1.0-rc1", "fluidd", "fluidd-core")}, prerelease=True))
    section = (
        f"[update_manager fluidd]\ntype: web\nchannel: beta\nrepo: someone/else\npath: {path}\n"
        f"[update_manager broken]\ntype: web\nchannel: dev\nrepo: x/y\npath: {tmp}/nowhere\n"
    )
    svc = await start(tmp_path, config(tmp, section, manager=f"github_api_url: {github.url}\n"))
    try:
        ws = await svc.ws()
        um = await ready(svc)
        info = (await ws.call("machine.update.status"))["version_info"]
        assert info["fluidd"]["remote_version"] == "v1.1.0-rc1"
        assert info["fluidd"]["anomalies"] == [
            "Value at option 'repo: someone/else' does not match detected repo 'fluidd-core/fluidd', "
            "falling back to detected version."
        ]
        # 'dev' is not a channel of web clients: flagged, stable used
        assert info["broken"]["channel_invalid"] is True and info["broken"]["channel"] == "stable"
        assert info["broken"]["is_valid"] is False and "Failed to validate installation" in info["broken"]["warnings"]
        warnings = (await ws.call("server.info"))["warnings"]
        assert any("Invalid value 'dev' for option 'channel'" in w for w in warnings)
        # the rate limit is exhausted: the next refresh sends nothing and says why
        github.remaining = 0
        um.github.remaining = 0
        sent = len(github.requests)
        await ws.call("machine.update.refresh", {"name": "fluidd"})
        assert len(github.requests) == sent
        assert "Rate Limit" in (await ws.call("machine.update.status"))["version_info"]["fluidd"]["last_error"]
        # the API goes away: a clear last_error, the installed version stays
        um.github.remaining = None
        um.github.base_url = "http://127.0.0.1:9"
        await ws.call("machine.update.refresh", {"name": "fluidd"})
        fluidd = (await ws.call("machine.update.status"))["version_info"]["fluidd"]
        assert "failed" in fluidd["last_error"] and fluidd["version"] == "v1.0.0"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_executable_and_zip_types(tmp_path, github):
    tmp = str(tmp_path)
    exe_dir = os.path.join(tmp, "estimator")
    os.makedirs(exe_dir)
    with open(os.path.join(exe_dir, "release_info.json"), "w") as f:
        json.dump({"project_name": "est", "project_owner": "annex", "version": "v3.0.0", "asset_name": "est_linux"}, f)
    with open(os.path.join(exe_dir, "est_linux"), "w") as f:
        f.write("#!/bin/sh\necho 3.0.0\n")
    with open(os.path.join(exe_dir, "notes.txt"), "w") as f:
        f.write("kept: executables only replace their binary")
    github.add("annex/est", Release("v3.1.0", {"est_linux": b"#!/bin/sh\necho 3.1.0\n", "est_mac": b"no"}))
    app_dir = os.path.join(tmp, "spoolman")
    os.makedirs(app_dir)
    with open(os.path.join(app_dir, "release_info.json"), "w") as f:
        json.dump({"project_name": "spoolman", "project_owner": "donkie", "version": "v0.1.0"}, f)
    release = zip_with({"release_info.json": json.dumps({"project_name": "spoolman", "project_owner": "donkie", "version": "v0.2.0"}),
                        "app.py": "print(2)"})
    github.add("donkie/spoolman", Release("v0.2.0", {"spoolman.zip": release}))
    sections = (
        f"[update_manager estimator]\ntype: executable\nrepo: annex/est\npath: {exe_dir}\nis_system_service: False\n"
        f"[update_manager spoolman]\ntype: zip\nrepo: donkie/spoolman\npath: {app_dir}\nmanaged_services: klipper\n"
    )
    svc = await start(tmp_path, config(tmp, sections, manager=f"github_api_url: {github.url}\n"))
    try:
        ws = await svc.ws()
        await ready(svc)
        info = (await ws.call("machine.update.status"))["version_info"]
        assert info["estimator"]["configured_type"] == "executable" and info["estimator"]["remote_version"] == "v3.1.0"
        assert info["spoolman"]["configured_type"] == "zip" and info["spoolman"]["remote_version"] == "v0.2.0"
        assert await ws.call("machine.update.upgrade", {"name": "estimator"}) == "ok"
        await until_complete(ws)
        binary = os.path.join(exe_dir, "est_linux")
        assert read(binary) == "#!/bin/sh\necho 3.1.0\n" and os.stat(binary).st_mode & stat.S_IXUSR
        assert json.loads(read(os.path.join(exe_dir, "release_info.json")))["version"] == "v3.1.0"
        assert os.path.exists(os.path.join(exe_dir, "notes.txt"))
        machine = svc.server.lookup("machine_provider")
        before = len(machine.commands)
        assert await ws.call("machine.update.upgrade", {"name": "spoolman"}) == "ok"
        await until_complete(ws)
        assert read(os.path.join(app_dir, "app.py")) == "print(2)"
        assert machine.commands[before:] == [("restart", "klipper")]
        info = (await ws.call("machine.update.status"))["version_info"]
        assert info["spoolman"]["version"] == "v0.2.0" and info["estimator"]["version"] == "v3.1.0"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_download_that_stalls_fails_and_frees_the_update_manager(tmp_path, github):
    tmp = str(tmp_path)
    path = os.path.join(tmp, "www", "mainsail")
    install_web(path, "v2.0.0")
    github.add("mainsail-crew/mainsail", Release("v2.1.0", {"mainsail.zip": web_zip("v2.1.0", files={"big.js": "x" * 200_000})}))
    github.stalling.add("mainsail.zip")
    section = f"[update_manager mainsail]\ntype: web\nrepo: mainsail-crew/mainsail\npath: {path}\n"
    svc = await start(tmp_path, config(tmp, section, manager=f"github_api_url: {github.url}\n"))
    try:
        svc.server.plugins.pm.get_plugin("update_manager").github.timeout = 1.0
        ws = await svc.ws()
        await ready(svc)
        err = await rpc_error(ws, "machine.update.upgrade", {"name": "mainsail"})
        assert err.code == 503 and "the answer stalled: nothing for 1 s" in err.message, err.message
        messages = await until_complete(ws)
        assert messages[-1]["message"].startswith("Error updating mainsail: ")
        assert read(os.path.join(path, "index.html")) == "<html>mainsail v2.0.0</html>"
        assert github.stalled and github.stalled[0].channel is None  # moontwist hung up
        # nothing is left busy: the next download, which completes, updates
        github.stalling.clear()
        assert (await ws.call("machine.update.status"))["busy"] is False
        assert await ws.call("machine.update.upgrade", {"name": "mainsail"}) == "ok"
        await until_complete(ws)
        assert read(os.path.join(path, "index.html")) == "<html>mainsail v2.1.0</html>"
        ws.sendClose()
    finally:
        await svc.service.stopService()
