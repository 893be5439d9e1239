"""``python -m moontwist.sim`` and SimulatorService."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import reactor

from moontwist.sim import KlippySimulator, SimulatorService
from moontwist.sim.cli import main

from .klippy_client import connect_ready


def test_cli_runs_until_sigterm(simdir):
    path = os.path.join(simdir, "cli.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moontwist.sim", "--socket", path,
         "--gcodes", os.path.join(simdir, "gcodes"), "--speed", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not os.path.exists(path)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_rejects_bad_speed(capsys):
    try:
        main(["--socket", "/tmp/x.sock", "--gcodes", "/tmp", "--speed", "0"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--speed must be positive" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_service_in_multiservice(simdir):
    sim = KlippySimulator(os.path.join(simdir, "svc.sock"), os.path.join(simdir, "gcodes"),
                          reactor=reactor, startup_delay=0.05)
    parent = MultiService()
    service = SimulatorService(sim)
    service.setServiceParent(parent)
    parent.startService()
    await service.listening
    client = await connect_ready(sim.socket_path)
    assert (await client.result("info", {}))["state"] == "ready"
    await parent.stopService()
    await client.closed
    assert not os.path.exists(sim.socket_path)
