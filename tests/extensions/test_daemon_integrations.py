"""The four integrations load and work in a real ``moontwist`` process (imports, config, peers)."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from spoolman.fakespoolman import FakeSpoolman
from twisted.internet.threads import deferToThread

from mtclient import Daemon, sleep, wait_for_json

MOVES = 100


def post_json(daemon: Daemon, path: str, body: dict) -> tuple[int, Any]:
    request = urllib.request.Request(daemon.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest_twisted.ensureDeferred
async def test_integrations_in_the_daemon(tmp_path):
    fake = FakeSpoolman()
    port = fake.listen()
    datapath = str(tmp_path / "data")
    os.makedirs(os.path.join(datapath, "config"))
    os.makedirs(os.path.join(datapath, "gcodes"))
    with open(os.path.join(datapath, "gcodes", "cube.gcode"), "w") as f:
        f.write("G28\nM83\n" + "".join(f"G1 X{10 + i % 2 * 20} Y10 E0.5 F6000\n" for i in range(MOVES)))
    config = os.path.join(datapath, "config", "moontwist.conf")
    with open(config, "w") as f:
        f.write(f"[server]\n[octoprint_compat]\n[notifier phone]\nurl: json://127.0.0.1:9/x\nevents: complete\n"
                f"[spoolman]\nserver: http://127.0.0.1:{port}\nsync_rate: 1\n[simulator]\nspeed: 20\n")
    daemon = Daemon(datapath, "--config", config, "--simulate")
    await deferToThread(daemon.start)
    try:
        info = (await deferToThread(daemon.get_json, "/server/info"))[1]["result"]
        assert info["failed_components"] == [] and info["warnings"] == []
        for name in ("extensions", "octoprint_compat", "notifier", "spoolman"):
            assert name in info["components"]
        code, version = await deferToThread(daemon.get_json, "/api/version")
        assert code == 200 and version["text"].startswith("OctoPrint")
        notifiers = (await deferToThread(daemon.get_json, "/server/notifiers/list"))[1]["result"]["notifiers"]
        assert [n["name"] for n in notifiers] == ["phone"]
        status = await deferToThread(wait_for_json, daemon, "/server/spoolman/status",
                                     lambda body: body["result"]["spoolman_connected"])
        assert status["result"]["pending_reports"] == []
        assert ("GET", "/api/v1/setting/currency", None) in fake.requests
        assert (await deferToThread(daemon.get_json, "/server/extensions/list"))[1]["result"] == {"agents": []}

        # usage printed while Spoolman is away survives the daemon's exit (SIGTERM) and arrives later
        spool = fake.add_spool()
        code, body = await deferToThread(post_json, daemon, "/server/spoolman/spool_id", {"spool_id": spool})
        assert code == 200, body
        await fake.stop()
        await deferToThread(wait_for_json, daemon, "/server/spoolman/status",
                            lambda body: not body["result"]["spoolman_connected"])
        await deferToThread(wait_for_json, daemon, "/server/info", lambda body: body["result"]["klippy_state"] == "ready")
        await sleep(1.0)  # Spoolman's plugin reads the extruder position once Klippy is ready
        code, body = await deferToThread(post_json, daemon, "/printer/print/start", {"filename": "cube.gcode"})
        assert code == 200, body
        await deferToThread(wait_for_json, daemon, "/printer/objects/query?print_stats",
                            lambda body: body["result"]["status"]["print_stats"]["state"] == "complete", 60)
        pending = (await deferToThread(wait_for_json, daemon, "/server/spoolman/status",
                                       lambda body: body["result"]["pending_reports"]))["result"]["pending_reports"]
        assert await deferToThread(daemon.stop) in (0, -signal.SIGTERM)
        daemon = Daemon(datapath, "--config", config, "--simulate")
        await deferToThread(daemon.start)
        kept = (await deferToThread(daemon.get_json, "/server/spoolman/status"))[1]["result"]
        assert kept["spool_id"] == spool and kept["pending_reports"][0]["spool_id"] == spool
        assert kept["pending_reports"][0]["filament_used"] >= pending[0]["filament_used"]
        fake.listen(port)
        await deferToThread(wait_for_json, daemon, "/server/spoolman/status",
                            lambda body: body["result"]["spoolman_connected"] and not body["result"]["pending_reports"])
        assert sum(length for sid, length in fake.uses() if sid == spool) == pytest.approx(MOVES * 0.5, abs=0.6)
    finally:
        assert await deferToThread(daemon.stop) in (0, -signal.SIGTERM)
        await fake.stop()
