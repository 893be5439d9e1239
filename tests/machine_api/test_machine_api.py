"""``machine.*`` through HTTP and the websocket, against a running service; the host is never touched."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.logger import Logger

from moontwist.config import Config, ConfigError
from moontwist.plugins.machine import MachinePlugin
from mtclient import RPCError, sleep, start_service, wait_for

RECORDING = "[server]\n\n[machine]\nprovider: recording\n"


def make_script(folder, name: str, text: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A folder first on PATH for fake host commands; ``sudo`` just runs its command."""
    folder = tmp_path / "bin"
    folder.mkdir()
    make_script(folder, "sudo", 'while [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return folder


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), RECORDING)
    yield running
    await running.service.stopService()


def provider_of(svc):
    return svc.server.lookup("machine_provider")


@pytest_twisted.ensureDeferred
async def test_system_info(svc):
    code, body = await svc.get("/machine/system_info")
    assert code == 200
    info = body["result"]["system_info"]
    for key in ("cpu_info", "sd_info", "distribution", "virtualization", "network", "canbus", "python",
                "available_services", "service_state", "instance_ids"):
        assert key in info, key
    assert info["provider"] == "recording"
    assert isinstance(info["sd_info"], dict)
    assert info["virtualization"]["virt_type"] in ("none", "container", "vm")
    assert info["python"]["version"][0] == 3
    assert set(info["instance_ids"]) == {"moonraker", "klipper"}
    assert "klipper" in info["available_services"]
    assert info["service_state"]["klipper"] == {"active_state": "active", "sub_state": "running"}
    for intf in info["network"].values():
        assert "mac_address" in intf and all("address" in a for a in intf["ip_addresses"])
    ws = await svc.ws()
    assert (await ws.call("machine.system_info"))["system_info"]["provider"] == "recording"
    info = (await svc.get("/server/info"))[1]["result"]
    assert {"machine", "proc_stats"} <= set(info["components"])
    assert not any("[machine]" in w for w in info["warnings"])
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_service_actions_are_recorded_and_notified(svc):
    provider = provider_of(svc)
    ws = await svc.ws()
    code, body = await svc.post("/machine/services/restart?service=klipper")
    assert (code, body) == (200, {"result": "ok"})
    assert await ws.call("machine.services.stop", {"service": "klipper"}) == "ok"
    note = await ws.next_notification("notify_service_state_changed", timeout=2)
    assert note["params"] == [{"klipper": {"active_state": "inactive", "sub_state": "dead"}}]
    assert await ws.call("machine.services.start", {"service": "klipper.service"}) == "ok"
    note = await ws.next_notification("notify_service_state_changed", timeout=2)
    assert note["params"] == [{"klipper": {"active_state": "active", "sub_state": "running"}}]
    assert provider.commands == [("restart", "klipper"), ("stop", "klipper"), ("start", "klipper")]
    # a state change seen by the provider's own tracking is broadcast too
    provider.set_state("klipper", "failed", "failed")
    note = await ws.next_notification("notify_service_state_changed", timeout=2)
    assert note["params"] == [{"klipper": {"active_state": "failed", "sub_state": "failed"}}]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_restarting_ourselves_replies_first(svc):
    provider = provider_of(svc)
    own = (await svc.get("/machine/system_info"))[1]["result"]["system_info"]["instance_ids"]["moonraker"]
    code, body = await svc.post(f"/machine/services/restart?service={own}")
    assert (code, body) == (200, {"result": "ok"})
    assert ("restart", own) not in provider.commands
    await sleep(0.4)
    assert provider.commands[-1] == ("restart", own)


@pytest_twisted.ensureDeferred
async def test_bad_service_names(svc):
    for name, why in (("sshd", "not allowed"), ("webcamd", "not installed"), ("--now", "Invalid service name")):
        code, body = await svc.post(f"/machine/services/start?service={name}")
        assert code == 400, name
        assert why in body["error"]["message"] and name in body["error"]["message"]
    code, body = await svc.post("/machine/services/stop")
    assert code == 400 and "'service'" in body["error"]["message"]
    ws = await svc.ws()
    with pytest.raises(RPCError) as err:
        await ws.call("machine.services.restart", {"service": "sshd"})
    assert err.value.code == 400 and "sshd" in err.value.message
    assert provider_of(svc).commands == []
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_shutdown_and_reboot_are_recorded(svc):
    assert await svc.post("/machine/shutdown") == (200, {"result": "ok"})
    ws = await svc.ws()
    assert await ws.call("machine.reboot") == "ok"
    assert provider_of(svc).commands == [("shutdown",), ("reboot",)]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_provider_none(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\n\n[machine]\nprovider: none\n")
    try:
        info = (await svc.get("/machine/system_info"))[1]["result"]["system_info"]
        assert info["provider"] == "none" and info["available_services"] == []
        for path in ("/machine/services/restart?service=klipper", "/machine/reboot", "/machine/shutdown"):
            code, body = await svc.post(path)
            assert code == 503 and "not available" in body["error"]["message"], path
        rolled = (await svc.post("/server/logs/rollover?application=klipper"))[1]["result"]
        assert rolled["rolled_over"] == [] and "no system provider" in rolled["failed"]["klipper"]
    finally:
        await svc.service.stopService()


FAKE_SYSTEMCTL = """\
case "$1" in
  list-units) echo "klipper.service loaded active running Klipper" ;;
  show) printf 'Id=klipper.service\\nActiveState=active\\nSubState=running\\n' ;;
  restart) exec sleep 30 ;;
  stop) echo "Failed to stop $3: Access denied" >&2; exit 4 ;;
esac
"""


@pytest_twisted.ensureDeferred
async def test_hanging_and_failing_commands(tmp_path, fake_bin):
    make_script(fake_bin, "systemctl", FAKE_SYSTEMCTL)
    config = "[server]\n\n[machine]\nprovider: systemd_cli\ncommand_timeout: 1\n"
    svc = await start_service(str(tmp_path / "data"), config)
    try:
        started = time.monotonic()
        hanging = svc.post("/machine/services/restart?service=klipper")
        await sleep(0.2)
        code, _ = await svc.get("/server/info")
        assert code == 200 and time.monotonic() - started < 0.9  # the reactor is not blocked
        code, body = await hanging
        assert time.monotonic() - started < 3
        assert code == 504 and "timed out" in body["error"]["message"]
        code, body = await svc.post("/machine/services/stop?service=klipper")
        assert code == 500 and "Access denied" in body["error"]["message"]
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_proc_stats_and_notifications(tmp_path, fake_bin):
    make_script(fake_bin, "vcgencmd", "echo throttled=0x50005\n")
    svc = await start_service(str(tmp_path / "data"), RECORDING)
    try:
        ws = await svc.ws()
        started = time.monotonic()
        note = await ws.next_notification("notify_proc_stat_update", timeout=2)
        assert time.monotonic() - started < 2
        update = note["params"][0]
        assert set(update["moonraker_stats"]) == {"time", "cpu_usage", "memory", "mem_units"}
        assert update["websocket_connections"] == 1
        throttled = await ws.next_notification("notify_cpu_throttled", timeout=2)
        assert throttled["params"][0]["bits"] == 0x50005
        assert "Under-Voltage Detected" in throttled["params"][0]["flags"]
        stats = await ws.call("machine.proc_stats")
        for key in ("moonraker_stats", "throttled_state", "cpu_temp", "network", "system_cpu_usage",
                    "system_memory", "system_uptime", "websocket_connections"):
            assert key in stats, key
        assert 1 <= len(stats["moonraker_stats"]) <= 30
        assert stats["throttled_state"]["bits"] == 0x50005
        assert stats["system_uptime"] > 0 and "cpu" in stats["system_cpu_usage"]
        code, body = await svc.get("/machine/proc_stats")
        assert code == 200 and body["result"]["websocket_connections"] == 1
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_peripherals(svc):
    for kind, key in (("serial", "serial_devices"), ("usb", "usb_devices"), ("video", "v4l2_devices")):
        code, body = await svc.get(f"/machine/peripherals/{kind}")
        assert code == 200 and isinstance(body["result"][key], list), kind
    ws = await svc.ws()
    video = await ws.call("machine.peripherals.video")
    assert set(video) == {"v4l2_devices", "libcamera_devices"}
    code, body = await svc.get("/machine/peripherals/canbus?interface=nocan7")
    assert code == 400 and body["error"]["message"] == "Unable to bind socket to interface 'nocan7'"
    with pytest.raises(RPCError, match="can0"):
        await ws.call("machine.peripherals.canbus")
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_sudo_endpoints(svc):
    info = (await svc.get("/machine/sudo/info?check_access=true"))[1]["result"]
    assert info["linux_user"] and info["sudo_requested"] is False and info["request_messages"] == []
    assert info["sudo_access"] is True or os.geteuid() != 0
    assert (await svc.get("/machine/sudo/info"))[1]["result"]["sudo_access"] is None
    body = (await svc.post("/machine/sudo/password", json={"password": "x"}))[1]["result"]
    assert body["is_restarting"] is False and body["sudo_responses"]


@pytest_twisted.ensureDeferred
async def test_klipper_log_rollover(svc):
    provider = provider_of(svc)
    log = os.path.join(svc.server.datapath, "logs", "klippy.log")
    rolled = (await svc.post("/server/logs/rollover?application=klipper"))[1]["result"]
    assert rolled["rolled_over"] == [] and "No file at" in rolled["failed"]["klipper"]
    with open(log, "w") as f:
        f.write("old\n")
    svc.server.klippy = SimpleNamespace(status={"print_stats": {"state": "printing"}}, state="ready", connected=True)
    rolled = (await svc.post("/server/logs/rollover?application=klipper"))[1]["result"]
    assert rolled["rolled_over"] == [] and "printing" in rolled["failed"]["klipper"]
    assert provider.commands == []
    svc.server.klippy.status["print_stats"]["state"] = "standby"
    rolled = (await svc.post("/server/logs/rollover"))[1]["result"]
    assert rolled == {"rolled_over": ["moonraker", "klipper"], "failed": {}}
    await sleep(0.2)
    assert provider.commands == [("stop", "klipper"), ("start", "klipper")]
    assert not os.path.exists(log)
    assert [n for n in os.listdir(os.path.dirname(log)) if n.startswith("klippy.log.")]
    svc.server.klippy = None


@pytest_twisted.ensureDeferred
async def test_moonraker_machine_options(tmp_path):
    config = RECORDING + "sudo_password: secret\nvalidate_service: True\nshutdown_action: halt\n"
    svc = await start_service(str(tmp_path / "data"), config)
    try:
        info = (await svc.get("/server/info"))[1]["result"]
        assert not any("machine" in w for w in info["warnings"])
    finally:
        await svc.service.stopService()
    with pytest.raises(ConfigError, match="option 'provider': value 'systemd_magic'"):
        MachinePlugin().configure(server=SimpleNamespace(logger=Logger), config=Config.from_string("[machine]\nprovider: systemd_magic\n"))


@pytest_twisted.ensureDeferred
async def test_klipper_macros_shut_down_and_reboot_the_host(tmp_path):
    """``action_call_remote_method("shutdown_machine")`` and ``reboot_machine`` reach the provider."""
    running = await start_service(str(tmp_path / "data"), RECORDING, simulate=True)
    try:
        await wait_for(lambda: running.server.klippy_state == "ready")
        sim = running.server.plugins.pm.get_plugin("klippy_apis").simulator
        provider = provider_of(running)
        sim.call_remote_method("shutdown_machine", {})
        await wait_for(lambda: ("shutdown",) in provider.commands)
        sim.call_remote_method("reboot_machine", {})
        await wait_for(lambda: ("reboot",) in provider.commands)
    finally:
        await running.service.stopService()
