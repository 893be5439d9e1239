"""A power device type from a pip-installed plugin (tests/plugin_pkg), driven through the real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest
import pytest_twisted

from mtclient import PYTHON, REPO, Daemon, connect_ws, daemon_env

PKG = os.path.join(REPO, "tests", "plugin_pkg")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), PKG],
        check=True, cwd=str(tmp_path_factory.mktemp("build")), env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    return str(target)


def post(daemon: Daemon, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        daemon.base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest_twisted.ensureDeferred
async def test_pip_installed_device_type(plugin_site, tmp_path):
    datapath = tmp_path / "data"
    (datapath / "config").mkdir(parents=True)
    lamp = tmp_path / "lamp"
    (datapath / "config" / "moontwist.conf").write_text(
        f"[server]\n[power lamp]\ntype: file_relay\npath: {lamp}\n"
        "[power broken]\ntype: no_such_type\n"
    )
    env = daemon_env()
    env["PYTHONPATH"] = os.pathsep.join([plugin_site, env["PYTHONPATH"]])
    daemon = Daemon(str(datapath), env=env).start()
    try:
        info = daemon.get_json("/server/info")[1]["result"]
        assert {"power", "hello_power"} <= set(info["components"])
        assert any("[power broken]" in w and "file_relay" in w for w in info["warnings"])
        assert daemon.get_json("/machine/device_power/devices")[1]["result"]["devices"] == [
            {"device": "lamp", "status": "off", "locked_while_printing": False, "type": "file_relay"}
        ]
        ws = await connect_ws(f"ws://127.0.0.1:{daemon.port}/websocket")
        assert post(daemon, "/machine/device_power/device", {"device": "lamp", "action": "on"}) == (
            200, {"result": {"lamp": "on"}}
        )
        assert lamp.read_text() == "1"
        note = await ws.next_notification("notify_power_changed")
        assert note["params"][0]["type"] == "file_relay" and note["params"][0]["status"] == "on"
        assert await ws.call("machine.device_power.off", {"lamp": None}) == {"lamp": "off"}
        assert lamp.read_text() == "0"
        lamp.write_text("garbage")
        assert daemon.get_json("/machine/device_power/device?device=lamp")[1]["result"] == {"lamp": "error"}
        ws.sendClose()
    finally:
        daemon.stop()
