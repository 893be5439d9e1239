"""The daemon as users run it: twistd with embedded defaults, logs, restart."""

from __future__ import annotations

import os
import signal

import pytest_twisted

from mtclient import PYTHON, Daemon, connect_ws, daemon_env, sleep, start_service, wait_for_json


@pytest_twisted.ensureDeferred
async def test_defaults_create_the_data_path_and_answer_http_and_websocket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = daemon_env(HOME=str(home))
    d = Daemon("~/printer_data", env=env).start()
    try:
        datapath = home / "printer_data"
        for sub in ("config", "gcodes", "logs", "database", "comms"):
            assert (datapath / sub).is_dir()
        assert (datapath / "config" / "moontwist.conf").exists()
        code, body = d.get_json("/server/info")
        assert code == 200 and body["result"]["klippy_state"] in ("disconnected", "startup", "ready")
        ws = await connect_ws(f"ws://127.0.0.1:{d.port}/websocket")
        assert (await ws.call("server.info"))["websocket_count"] == 1
        ws.sendClose()
        assert (datapath / "comms" / "moonraker.sock").exists()
        log = (datapath / "logs" / "moontwist.log").read_text()
        assert "moontwist" in log and "starting" in log
    finally:
        # twistd re-raises the signal it stopped on, after a clean shutdown
        assert d.stop() in (0, -signal.SIGTERM)
        assert "Main loop terminated" in d.output()


def test_bad_config_value_stops_start_up_with_a_clear_message(tmp_path):
    datapath = tmp_path / "data"
    (datapath / "config").mkdir(parents=True)
    (datapath / "config" / "moontwist.conf").write_text("[server]\nmax_upload_size: huge\n")
    d = Daemon(str(datapath)).start(wait=False)
    assert d.proc.wait(20) == 1
    out = d.output()
    assert "max_upload_size" in out and "'huge'" in out and "[server]" in out and "an integer" in out
    assert "moontwist.conf" in out


@pytest_twisted.ensureDeferred
async def test_restart_reloads_config_and_drops_clients(tmp_path):
    svc = await start_service(str(tmp_path / "d"), "[server]\nhost: 127.0.0.1\n")
    try:
        ws = await svc.ws()
        cfg = os.path.join(svc.server.datapath, "config", "moontwist.conf")
        with open(cfg, "a") as f:
            f.write("[new_section]\nkey: 1\n")
        assert await ws.call("server.restart") == "ok"
        code, _reason = await ws.closed
        assert code == 1001
        for _ in range(50):
            await sleep(0.05)
            if svc.server.running:
                break
        warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
        assert any("[new_section]" in w for w in warnings)
        ws2 = await svc.ws()
        assert (await ws2.call("server.info"))["websocket_count"] == 1
        ws2.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_log_rollover(running):
    log_path = os.path.join(running.server.datapath, "logs", "moontwist.log")
    code, body = await running.post("/server/logs/rollover", json={"application": "moonraker"})
    assert code == 200
    assert body["result"] == {"rolled_over": ["moonraker"], "failed": {}}
    assert os.path.exists(log_path + ".1")
    code, body = await running.post("/server/logs/rollover")
    assert body["result"]["rolled_over"] == ["moonraker"]
    assert "klipper" in body["result"]["failed"]
    code, body = await running.post("/server/logs/rollover", json={"application": "nginx"})
    assert code == 400 and "'application'" in body["error"]["message"]


def test_twistd_moontwist_runs_the_same_service(tmp_path):
    """``twistd -n moontwist`` (the twistd plugin) serves as the ``moontwist`` command does."""
    daemon = Daemon(str(tmp_path / "data"), "--simulate")
    twistd = "from twisted.scripts.twistd import run; run()"
    daemon.argv = [PYTHON, "-c", twistd, "--nodaemon", "--pidfile=", "moontwist", *daemon.argv[3:]]
    daemon.start()
    try:
        body = wait_for_json(daemon, "/server/info", lambda b: b["result"]["klippy_state"] == "ready")
        assert "file_manager" in body["result"]["components"]
    finally:
        assert daemon.stop() in (0, -signal.SIGTERM)
