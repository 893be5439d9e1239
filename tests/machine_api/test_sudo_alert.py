"""notify_sudo_alert: a service action sudo refuses for want of a password is announced, and resolved later."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
import treq

from moontwist.machine import providers
from moontwist.machine.sudo import needs_password
from mtclient import RPCError, start_service

SYSTEMCTL = """#!/bin/sh
case "$1" in
  list-units) echo "klipper.service loaded active running Klipper" ;;
  show) echo "Id=klipper.service"; echo "ActiveState=active"; echo "SubState=running" ;;
  restart) echo "$@" >> "{log}" ;;
esac
exit 0
"""
# sudo -n as it behaves without a sudoers rule, until the file "allowed" exists
SUDO = """#!/bin/sh
[ "$1" = "-n" ] && shift
if [ -f "{allowed}" ]; then exec "$@"; fi
echo "sudo: a password is required" >&2
exit 1
"""


def _script(path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """systemctl and a password-wanting sudo first on PATH; moontwist acts as a non-root user."""
    folder = tmp_path / "bin"
    folder.mkdir()
    allowed, log = tmp_path / "allowed", tmp_path / "restarts.log"
    _script(folder / "systemctl", SYSTEMCTL.format(log=log))
    _script(folder / "sudo", SUDO.format(allowed=allowed))
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setattr(providers, "default_sudo_prefix", lambda: ("sudo", "-n"))
    return allowed, log


def test_sudo_password_messages():
    assert needs_password("sudo: a password is required\n")
    assert needs_password("sudo: a terminal is required to read the password; either use the -S option")
    assert not needs_password("Failed to restart klipper.service: Unit not found.")


@pytest_twisted.ensureDeferred
async def test_sudo_alert_is_sent_and_resolved(tmp_path, host):
    allowed, log = host
    svc = await start_service(str(tmp_path / "data"), "[server]\n[machine]\nprovider: systemd_cli\n")
    try:
        ws = await svc.ws()
        info = await ws.call("machine.sudo.info")
        assert info["sudo_requested"] is False and info["request_messages"] == []
        with pytest.raises(RPCError) as err:
            await ws.call("machine.services.restart", {"service": "klipper"})
        assert "sudo needs a password to restart the klipper service" in err.value.message
        alert = (await ws.next_notification("notify_sudo_alert"))["params"][0]
        assert alert["sudo_requested"] is True
        assert len(alert["sudo_messages"]) == 1 and "restart the klipper service" in alert["sudo_messages"][0]
        assert alert["request_messages"] == alert["sudo_messages"]
        info = await ws.call("machine.sudo.info")
        assert info["sudo_requested"] is True and info["request_messages"] == alert["request_messages"]
        page = (await (await treq.get(svc.base + "/")).content()).decode()
        assert "Waiting for sudo permission" in page and "restart the klipper service" in page
        # asking again while it is pending does not alert again
        with pytest.raises(RPCError):
            await ws.call("machine.services.restart", {"service": "klipper"})
        # the administrator allows it: the next restart runs and resolves the request
        allowed.write_text("")
        assert await ws.call("machine.services.restart", {"service": "klipper"}) == "ok"
        assert "restart -- klipper.service" in log.read_text()
        resolved = (await ws.next_notification("notify_sudo_alert"))["params"][0]
        assert resolved["sudo_requested"] is False and resolved["request_messages"] == []
        assert resolved["sudo_messages"] == ["Sudo permission granted: able to restart the klipper service"]
        assert (await ws.call("machine.sudo.info"))["sudo_requested"] is False
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_sudo_info_needs_credentials(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\n[machine]\nprovider: recording\n[authorization]\n")
    try:
        assert (await svc.get("/machine/sudo/info"))[0] == 401
    finally:
        await svc.service.stopService()
