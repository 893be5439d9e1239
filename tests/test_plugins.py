"""A pip-installed third-party plugin is loaded like a built-in one."""

from __future__ import annotations

import os
import subprocess

import pytest
import pytest_twisted

from mtclient import PYTHON, REPO, Daemon, connect_ws, daemon_env

PKG = os.path.join(REPO, "tests", "plugin_pkg")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """Build and pip-install tests/plugin_pkg into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), PKG],
        check=True, cwd=str(build), env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    assert any(p.name.startswith("moontwist_hello-1.0.0.dist-info") for p in target.iterdir())
    return str(target)


@pytest.fixture
def daemon(plugin_site, tmp_path):
    datapath = tmp_path / "data"
    (datapath / "config").mkdir(parents=True)
    (datapath / "config" / "moontwist.conf").write_text("[server]\n\n[hello]\ngreeting: Ahoy\nrepeat: 2\n")
    env = daemon_env()
    env["PYTHONPATH"] = os.pathsep.join([plugin_site, env["PYTHONPATH"]])
    d = Daemon(str(datapath), env=env).start()
    yield d
    d.stop()


@pytest_twisted.ensureDeferred
async def test_third_party_plugin_section_endpoint_and_notification(daemon):
    code, info = daemon.get_json("/server/info")
    assert code == 200
    info = info["result"]
    assert "hello" in info["components"]
    assert info["failed_components"] == ["broken"]
    assert any("broken" in w and "broken on purpose" in w for w in info["warnings"])
    # its config section was read (typed), so it raises no "unparsed section" warning
    assert not any("[hello]" in w for w in info["warnings"])
    code, config = daemon.get_json("/server/config")
    assert config["result"]["config"]["hello"] == {"greeting": "Ahoy", "repeat": 2}

    ws = await connect_ws(f"ws://127.0.0.1:{daemon.port}/websocket")
    code, body = daemon.get_json("/hello/greet?name=Ada")
    assert code == 200 and body == {"result": {"text": "Ahoy, Ada! Ahoy, Ada!"}}
    note = await ws.next_notification("notify_hello_greeted")
    assert note["params"] == [{"name": "Ada", "text": "Ahoy, Ada! Ahoy, Ada!"}]

    assert await ws.call("hello.greet", {"name": "Bob"}) == {"text": "Ahoy, Bob! Ahoy, Bob!"}
    note = await ws.next_notification("notify_hello_greeted")
    assert note["params"][0]["name"] == "Bob"
    reply = await ws.rpc("hello.greet", {})
    assert reply["error"]["code"] == -32602 and "'name'" in reply["error"]["message"]
    doc = daemon.get_json("/server/openapi.json")[1]
    assert doc["paths"]["/hello/greet"]["get"]["parameters"][0]["description"] == "who to greet"
    ws.sendClose()


def test_plugins_can_be_disabled_by_environment(plugin_site, tmp_path):
    env = daemon_env(MOONTWIST_DISABLE_PLUGINS="broken,hello")
    env["PYTHONPATH"] = os.pathsep.join([plugin_site, env["PYTHONPATH"]])
    d = Daemon(str(tmp_path / "data"), env=env).start()
    try:
        info = d.get_json("/server/info")[1]["result"]
        assert "hello" not in info["components"] and info["failed_components"] == []
        assert d.get_json("/hello/greet?name=x")[0] == 404
    finally:
        d.stop()
