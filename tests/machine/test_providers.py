"""Allow-list, the recording/none providers, and systemctl/supervisorctl against fake scripts."""

from __future__ import annotations

import os
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from moontwist.api.errors import ServerError
from moontwist.machine.commands import CommandError, CommandTimeout, run_command
from moontwist.machine.providers import (
    RecordingProvider,
    ServiceProvider,
    SupervisordProvider,
    SystemctlProvider,
    make_provider,
    parse_systemctl_show,
)
from moontwist.machine.services import DEFAULT_ALLOWED, AllowedServices, parse_allow_list

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "{log}"
case "$1" in
  list-units)
    echo "klipper.service loaded active running Klipper"
    echo "moonraker-obico.service loaded inactive dead Obico"
    echo "sshd.service loaded active running SSH"
    ;;
  show)
    echo "Id=klipper.service"; echo "ActiveState=$(cat "{state}")"; echo "SubState=running"; echo
    echo "Id=moonraker-obico.service"; echo "ActiveState=inactive"; echo "SubState=dead"
    ;;
  restart) {restart} ;;
  stop) echo "Failed to stop $3: Access denied" >&2; exit 4 ;;
esac
exit 0
"""


def make_script(folder, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def fake_systemctl(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    state = tmp_path / "state"
    state.write_text("active")

    def install(restart: str = "true") -> tuple[str, object, object]:
        make_script(bindir, "systemctl", FAKE_SYSTEMCTL.format(log=log, state=state, restart=restart))
        return f"{bindir}:/usr/bin:/bin", log, state

    return install


def test_allow_list_parsing(tmp_path) -> None:
    assert parse_allow_list("klipper_mcu\n  webcamd.service \n# comment\n\nwebcamd\nsonar # x\n") == [
        "klipper_mcu", "webcamd", "sonar"
    ]
    assert AllowedServices.from_data_path(str(tmp_path)).names == list(DEFAULT_ALLOWED)
    (tmp_path / "moonraker.asvc").write_text("crowsnest\n")
    allowed = AllowedServices.from_data_path(str(tmp_path))
    assert allowed.names == ["crowsnest"]
    for ok in ("crowsnest", "klipper", "klipper-2", "moonraker_1", "moontwist", "klipper.service"):
        assert allowed.is_allowed(ok)
    assert not allowed.is_allowed("webcamd") and not allowed.is_allowed("klipperx")
    assert allowed.check("klipper.service") == "klipper"
    with pytest.raises(ServerError) as err:
        allowed.check("sshd")
    assert err.value.status == 400 and "not allowed" in err.value.message
    with pytest.raises(ServerError) as err:
        allowed.check("--now")
    assert err.value.status == 400


@pytest_twisted.ensureDeferred
async def test_recording_provider() -> None:
    clock = task.Clock()
    provider = RecordingProvider(reactor=clock, self_unit="moontwist")
    changes: list[dict] = []
    provider.add_state_listener(changes.append)
    provider.set_state("klipper", "active", "running")
    provider.set_state("moontwist", "active", "running")
    await provider.stop("klipper")
    await provider.start("klipper.service")
    await provider.restart("moontwist")
    assert provider.commands == [("stop", "klipper"), ("start", "klipper")]
    clock.advance(1)  # our own restart is deferred so the reply goes out first
    assert provider.commands[-1] == ("restart", "moontwist")
    await provider.shutdown()
    await provider.reboot()
    assert provider.commands[-2:] == [("shutdown",), ("reboot",)]
    assert changes[0] == {"klipper": {"active_state": "active", "sub_state": "running"}}
    assert {"klipper": {"active_state": "inactive", "sub_state": "dead"}} in changes
    assert provider.available_services() == ["klipper", "moontwist"]
    with pytest.raises(ServerError, match="not available for moontwist"):
        await provider.stop("moontwist")
    with pytest.raises(ServerError, match="not installed"):
        await provider.start("webcamd")
    with pytest.raises(ServerError, match="not allowed"):
        await provider.start("sshd")


@pytest_twisted.ensureDeferred
async def test_recording_provider_in_container_refuses_power() -> None:
    provider = RecordingProvider(container_id="docker")
    with pytest.raises(ServerError, match="within a docker container"):
        await provider.reboot()
    assert provider.commands == []


@pytest_twisted.ensureDeferred
async def test_none_provider() -> None:
    provider = make_provider("none", container_id="docker")
    assert type(provider) is ServiceProvider and provider.name == "none"
    await provider.refresh()
    assert provider.available_services() == [] and provider.service_state() == {}
    for action in (provider.start, provider.stop, provider.restart):
        with pytest.raises(ServerError) as err:
            await action("klipper")
        assert err.value.status == 503 and "not available" in err.value.message
    with pytest.raises(ServerError, match="not available"):
        await provider.shutdown()
    with pytest.raises(ValueError):
        make_provider("bogus")


def test_parse_systemctl_show() -> None:
    text = "Id=klipper.service\nActiveState=active\nSubState=running\n\nId=x.service\nActiveState=failed\n"
    assert parse_systemctl_show(text) == {
        "klipper": {"active_state": "active", "sub_state": "running"},
        "x": {"active_state": "failed", "sub_state": "unknown"},
    }


@pytest_twisted.ensureDeferred
async def test_systemctl_provider(fake_systemctl) -> None:
    path_env, log, state = fake_systemctl()
    provider = SystemctlProvider(path_env=path_env, sudo=(), timeout=5.0)
    changes: list[dict] = []
    provider.add_state_listener(changes.append)
    await provider.refresh()
    assert provider.available_services() == ["klipper", "moonraker-obico"]
    assert provider.service_state()["klipper"] == {"active_state": "active", "sub_state": "running"}
    await provider.restart("klipper")
    assert "restart -- klipper.service" in log.read_text()
    with pytest.raises(CommandError) as err:
        await provider.stop("klipper")
    assert err.value.status == 500 and "Access denied" in err.value.message
    with pytest.raises(ServerError, match="not installed"):
        await provider.start("webcamd")
    state.write_text("failed")
    await provider.refresh()
    assert changes[-1] == {"klipper": {"active_state": "failed", "sub_state": "running"}}
    await provider.reboot()  # goes to the fake script only
    assert log.read_text().splitlines()[-1] == "reboot"


@pytest_twisted.ensureDeferred
async def test_systemctl_that_hangs_times_out(fake_systemctl) -> None:
    path_env, log, _ = fake_systemctl(restart="exec sleep 30")
    provider = SystemctlProvider(path_env=path_env, sudo=(), timeout=0.5)
    await provider.refresh()
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        await provider.restart("klipper")
    assert time.monotonic() - started < 3
    assert "timed out" in err.value.message


@pytest_twisted.ensureDeferred
async def test_systemctl_polling_notifies(fake_systemctl) -> None:
    path_env, _, state = fake_systemctl()
    provider = SystemctlProvider(path_env=path_env, sudo=(), reactor=reactor)
    changes: list[dict] = []
    provider.add_state_listener(changes.append)
    provider.start_polling(0.1)
    try:
        await task.deferLater(reactor, 0.3, lambda: None)
        state.write_text("deactivating")
        for _ in range(30):
            await task.deferLater(reactor, 0.1, lambda: None)
            if changes and changes[-1].get("klipper", {}).get("active_state") == "deactivating":
                break
    finally:
        provider.stop_polling()
    assert {"klipper": {"active_state": "active", "sub_state": "running"}} in changes
    assert changes[-1] == {"klipper": {"active_state": "deactivating", "sub_state": "running"}}


@pytest_twisted.ensureDeferred
async def test_supervisord_provider(tmp_path) -> None:
    log = tmp_path / "calls.log"
    make_script(tmp_path, "supervisorctl", f"""#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = status ]; then
  echo "klipper                          RUNNING   pid 12, uptime 0:10:00"
  echo "moonraker                        STOPPED   Not started"
  echo "other                            FATAL     Exited too quickly"
  exit 3
fi
exit 0
""")
    provider = SupervisordProvider(path_env=str(tmp_path))
    await provider.refresh()
    assert provider.service_state() == {
        "klipper": {"active_state": "active", "sub_state": "running"},
        "moonraker": {"active_state": "inactive", "sub_state": "stopped"},
    }
    await provider.stop("klipper")
    assert "stop klipper" in log.read_text()
    with pytest.raises(ServerError) as err:
        await provider.shutdown()
    assert err.value.status == 503


@pytest_twisted.ensureDeferred
async def test_run_command_errors(tmp_path) -> None:
    with pytest.raises(CommandError, match="not found"):
        await run_command(("definitely-not-a-command",), path_env=str(tmp_path))
    result = await run_command(("sh", "-c", "echo out; echo err >&2"), path_env=os.environ["PATH"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out\n", "err\n")
