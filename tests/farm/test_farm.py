"""A farm: several moontwist instances in one process, and the fleet view across them."""

from __future__ import annotations

import os
import socket
import time

import pytest
import pytest_twisted
from farm.farming import free_ports, start_farm
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from moontwist.api.registry import Endpoint
from moontwist.hookspecs import hookimpl
from mtclient import RPCError, sleep, wait_for

SUMMARY_KEYS = {"name", "port", "datapath", "klippy_state", "print_state", "progress", "filename", "temperatures"}


@pytest_twisted.async_yield_fixture
async def farm3(tmp_path):
    base = free_ports(4)
    farm = await start_farm(
        "--simulate-farm", "3", "--datapath", str(tmp_path / "farm"), "--port", str(base + 1),
        "--farm-port", str(base), "--sim-speed", "20",
    )
    yield farm
    await farm.stop()


async def _farm_event(ws, printer: str, method: str, timeout: float = 10.0) -> dict:
    deadline = reactor.seconds() + timeout
    while True:
        note = await ws.next_notification("notify_farm_event", timeout=max(0.1, deadline - reactor.seconds()))
        event = note["params"][0]
        if event["printer"] == printer and event["method"] == method:
            return event


@pytest_twisted.ensureDeferred
async def test_simulated_farm_serves_every_printer_and_the_fleet(farm3, tmp_path):
    assert [i.name for i in farm3.instances] == ["printer-01", "printer-02", "printer-03"]
    # heaters are listed once Klippy names them, their values once their subscription answered
    await wait_for(lambda: all(
        (temps := i.member.summary()["temperatures"]) and all(t["target"] is not None for t in temps.values())
        for i in farm3.instances
    ))
    code, body = await farm3.fleet.get("/farm/printers")
    assert code == 200
    printers = body["result"]["printers"]
    assert [p["name"] for p in printers] == ["printer-01", "printer-02", "printer-03"]
    for p in printers:
        assert set(p) == SUMMARY_KEYS
        assert p["datapath"] == str(tmp_path / "farm" / p["name"])
        assert p["klippy_state"] == "ready" and p["print_state"] == "standby"
        assert set(p["temperatures"]) >= {"extruder", "heater_bed"}
    assert len({p["port"] for p in printers}) == 3
    for p in printers:  # each printer is a whole moontwist on its own port
        printer = farm3.running(p["name"])
        assert printer.port == p["port"]
        info = (await printer.get("/server/info"))[1]["result"]
        assert info["klippy_state"] == "ready" and info["failed_components"] == []
        # as with --simulate, the simulated printer's printer.cfg is in the instance's config root
        config_file = (await printer.get("/printer/info"))[1]["result"]["config_file"]
        assert config_file == str(tmp_path / "farm" / p["name"] / "config" / "printer.cfg")
        assert os.path.isfile(config_file)
    # the simulators run in other processes: the farm process has no simulator in it
    assert all(i.server.plugins.pm.get_plugin("klippy_apis").simulator is None for i in farm3.instances)

    ws = await farm3.fleet.ws()
    assert [p["name"] for p in (await ws.call("farm.printers"))["printers"]] == [p["name"] for p in printers]
    printer2 = farm3.running("printer-02")
    await printer2.post("/printer/gcode/script?script=M118 hello from two")
    event = await _farm_event(ws, "printer-02", "notify_gcode_response")
    assert "hello from two" in event["params"][0]
    await printer2.post("/printer/gcode/script?script=M104 S180")
    while True:
        event = await _farm_event(ws, "printer-02", "notify_status_update")
        if (event["params"][0].get("extruder") or {}).get("target") == 180.0:
            break
    listed = {p["name"]: p for p in (await ws.call("farm.printers"))["printers"]}
    assert listed["printer-02"]["temperatures"]["extruder"]["target"] == 180.0
    assert listed["printer-01"]["temperatures"]["extruder"]["target"] == 0.0
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_instances_are_isolated(farm3):
    one, two = farm3.running("printer-01"), farm3.running("printer-02")
    ws_two = await two.ws()
    # files and database belong to their instance
    code, _ = await one.post("/server/database/item", json={"namespace": "farmtest", "key": "k", "value": 1})
    assert code == 200
    assert (await two.get("/server/database/item?namespace=farmtest&key=k"))[0] == 404
    await one.post("/printer/gcode/script?script=G28")
    assert (await one.get("/server/files/list"))[0] == 200
    # restarting one instance leaves the others alone: no close, notifications keep coming
    assert (await one.post("/server/restart"))[0] == 200
    await wait_for(lambda: one.server.restarting)
    info = (await two.get("/server/info"))[1]["result"]
    assert info["klippy_state"] == "ready"
    await ws_two.next_notification("notify_proc_stat_update", timeout=5)
    await wait_for(lambda: not one.server.restarting and one.server.klippy_state == "ready", timeout=20)
    assert not ws_two.closed.called
    assert (await ws_two.call("server.info"))["klippy_state"] == "ready"
    ws_two.sendClose()


class SlowPlugin:
    """A plugin whose ``startup`` finishes only when the test says so."""

    def __init__(self) -> None:
        self.release: Deferred = Deferred()

    @hookimpl
    def register_endpoints(self, register):
        register(Endpoint("slow.ping", lambda request: {"pong": True}, "/slow/ping", ("GET",)))

    @hookimpl
    def startup(self, server):
        return self.release


@pytest_twisted.ensureDeferred
async def test_a_slow_plugin_holds_only_its_own_instance(tmp_path):
    base = free_ports(3)
    slow = SlowPlugin()
    farm = await start_farm(
        "--simulate-farm", "2", "--datapath", str(tmp_path / "farm"), "--port", str(base + 1),
        "--farm-port", str(base), "--sim-speed", "20", plugins={"printer-02": {"slow": slow}}, wait=False,
    )
    try:
        held = farm.instance("printer-02")
        await farm.service.farm._started
        await farm.instance("printer-01").service._started
        fast = farm.running("printer-01")
        await wait_for(lambda: fast.server.klippy_state == "ready", timeout=20)
        ws = await fast.ws()
        await ws.call("printer.objects.subscribe", {"objects": {"extruder": ["target"]}})
        assert (await ws.call("printer.gcode.script", {"script": "M104 S50"})) == "ok"
        await ws.next_notification("notify_status_update", timeout=5)
        # the held instance isn't listening yet; the fleet lists it without its state
        assert held.service.listening_port is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", base + 2), timeout=2).close()
        listed = {p["name"]: p for p in (await farm.fleet.get("/farm/printers"))[1]["result"]["printers"]}
        assert set(listed) == {"printer-01", "printer-02"}
        assert listed["printer-01"]["klippy_state"] == "ready"
        slow.release.callback(None)
        await held.service._started
        code, body = await farm.running("printer-02").get("/slow/ping")
        assert (code, body) == (200, {"result": {"pong": True}})
        assert (await ws.call("server.info"))["klippy_state"] == "ready"
        ws.sendClose()
    finally:
        if not slow.release.called:
            slow.release.callback(None)
        await farm.stop()


class SilentKlippy(Protocol):
    """Accepts Klippy's socket connection and never answers."""


@pytest_twisted.ensureDeferred
async def test_broken_instances_never_stop_the_others(tmp_path):
    base = free_ports(4)
    root = tmp_path / "farm"

    def datapath(name: str, config: str | None) -> str:
        path = root / name
        (path / "config").mkdir(parents=True)
        if config is not None:
            (path / "config" / "moontwist.conf").write_text(config)
        return str(path)

    good = datapath("good", f"[server]\nport: {base + 1}\n")
    twin = datapath("twin", f"[server]\nport: {base + 1}\n")  # same port as good
    broken = datapath("broken", "[server]\nport: not-a-number\n")
    silent_sock = str(tmp_path / "silent.sock")
    hanging = datapath("hanging", f"[server]\nport: {base + 2}\nklippy_uds_address: {silent_sock}\n")
    listener = reactor.listenUNIX(silent_sock, Factory.forProtocol(SilentKlippy))
    farm = await start_farm(
        "--instance", good, "--instance", twin, "--instance", broken, "--instance", str(root / "missing"),
        "--instance", good, "--instance", hanging, "--farm-port", str(base), "--no-simulate", ready=False,
    )
    try:
        errors = {i.name: i.error for i in farm.instances}
        assert errors["good"] is None and errors["hanging"] is None
        assert errors["twin"] == f"Instance twin: port {base + 1} is already used by instance good"
        assert errors["broken"].startswith("Instance broken: configuration error:")
        assert "option 'port'" in errors["broken"]
        assert errors["missing"] == f"Instance missing: data path {root / 'missing'} does not exist"
        assert errors["good-2"] == f"Instance good-2: data path {good} is already used by instance good"
        ok = farm.running("good")
        assert (await ok.get("/server/info"))[0] == 200
        stuck = farm.running("hanging")
        code, body = await stuck.get("/server/info")
        assert code == 200 and body["result"]["klippy_state"] in ("disconnected", "startup")
        code, body = await stuck.get("/printer/info")
        assert code in (503, 504)
        listed = {p["name"]: p for p in (await farm.fleet.get("/farm/printers"))[1]["result"]["printers"]}
        assert listed["broken"]["klippy_state"] == "error" and listed["broken"]["error"] == errors["broken"]
        assert listed["good"]["klippy_state"] in ("disconnected", "startup", "ready")
    finally:
        await farm.stop()
        await listener.stopListening()


def test_command_line_errors():
    from twisted.python import usage

    from moontwist.tap import Options

    for argv in (
        ["--instance", "a", "--simulate-farm", "2"],
        ["--simulate-farm", "0"],
        ["--farm-port", "7100"],
        ["--instance", "a", "--port", "7125"],
        ["--instance", "a", "--config", "x.conf"],
    ):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(argv)


@pytest_twisted.ensureDeferred
async def test_a_printer_that_fails_to_listen_is_reported(tmp_path):
    base = free_ports(3)
    taken = socket.socket()
    taken.bind(("127.0.0.1", base + 2))
    taken.listen()
    try:
        farm = await start_farm(
            "--simulate-farm", "2", "--datapath", str(tmp_path / "f"), "--port", str(base + 1),
            "--farm-port", str(base), ready=False,
        )
        try:
            await wait_for(lambda: farm.instance("printer-02").error is not None, timeout=10)
            assert "printer-02" in farm.instance("printer-02").error
            await wait_for(lambda: farm.instance("printer-01").server.klippy_state == "ready", timeout=20)
            with pytest.raises(RPCError):
                ws = await farm.fleet.ws()
                await ws.call("farm.nothing")
            ws.sendClose()
        finally:
            await farm.stop()
    finally:
        taken.close()
    await sleep(0)
    assert not os.path.exists(str(tmp_path / "f" / "printer-01" / "comms" / "moonraker.sock"))


def test_farm_daemon_runs_simulators_in_their_own_processes(tmp_path):
    """``moontwist --simulate-farm 2 --farm-port N``: a real process; its simulators are other processes."""
    import json
    import signal
    import urllib.request

    from mtclient import Daemon

    base = free_ports(3)
    daemon = Daemon(str(tmp_path / "farm"), "--simulate-farm", "2", "--farm-port", str(base), port=base + 1)
    daemon.start(wait=False)
    try:
        deadline = time.monotonic() + 30
        printers: list = []
        while time.monotonic() < deadline:
            assert daemon.proc.poll() is None, daemon.output()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{base}/farm/printers", timeout=2) as resp:
                    printers = json.loads(resp.read())["result"]["printers"]
                if len(printers) == 2 and all(p["klippy_state"] == "ready" for p in printers):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert [p["port"] for p in printers] == [base + 1, base + 2], printers
        assert daemon.get_json("/server/info")[0] == 200
        children = _children(daemon.proc.pid)
        assert len(children) == 1 and "moontwist.farm.simulators" in _cmdline(children[0])
        simulators = _children(children[0])
        assert len(simulators) == 2
    finally:
        assert daemon.stop() in (0, -signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in simulators):
        time.sleep(0.1)
    assert not [pid for pid in simulators if os.path.exists(f"/proc/{pid}") and _state(pid) != "Z"]


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest_twisted.ensureDeferred
async def test_the_fleet_view_needs_credentials_when_its_config_trusts_nobody(tmp_path):
    base = free_ports(3)
    fleet_data = tmp_path / "fleet"
    (fleet_data / "config").mkdir(parents=True)
    (fleet_data / "config" / "moontwist.conf").write_text("[server]\n\n[authorization]\n")
    farm = await start_farm(
        "--simulate-farm", "2", "--datapath", str(tmp_path / "farm"), "--port", str(base + 1),
        "--farm-port", str(base), "--farm-datapath", str(fleet_data), "--sim-speed", "20",
    )
    try:
        fleet = farm.fleet
        key = fleet.server.lookup("identify_credentials").__self__.auth.api_key
        assert (await fleet.get("/farm/printers"))[0] == 401
        code, body = await fleet.get("/farm/printers", headers={"X-Api-Key": key})
        assert code == 200 and len(body["result"]["printers"]) == 2
        stranger = await fleet.ws()
        assert (await stranger.rpc("farm.printers"))["error"]["code"] == 401
        watcher = await fleet.ws(headers={"X-Api-Key": key})
        # a printer's event reaches the authenticated client, never the stranger
        await farm.running("printer-01").post("/printer/gcode/script?script=M118 fleet")
        await _farm_event(watcher, "printer-01", "notify_gcode_response")
        await stranger.rpc("access.info")
        assert not [n for n in stranger.notifications.pending if n["method"] == "notify_farm_event"]
        with pytest.raises(ConnectionError):
            await fleet.ws(origin="http://evil.example", headers={"X-Api-Key": key})
        for ws in (stranger, watcher):
            ws.sendClose()
    finally:
        await farm.stop()


def _api_key(server) -> str:
    return server.lookup("identify_credentials").__self__.auth.api_key


@pytest_twisted.ensureDeferred
async def test_a_private_printer_stays_private_on_the_fleet_view(tmp_path):
    """The fleet trusts the LAN by default; a printer whose own config trusts nobody is shown
    only to clients holding the fleet's credentials, not to every trusted address."""
    base = free_ports(3)
    private = tmp_path / "farm" / "printer-02" / "config"
    private.mkdir(parents=True)
    (private / "moontwist.conf").write_text("[server]\n\n[authorization]\n")
    farm = await start_farm(
        "--simulate-farm", "2", "--datapath", str(tmp_path / "farm"), "--port", str(base + 1),
        "--farm-port", str(base), "--sim-speed", "20",
    )
    try:
        fleet, two = farm.fleet, farm.running("printer-02")
        key = _api_key(fleet.server)
        listed = (await fleet.get("/farm/printers"))[1]["result"]["printers"]
        assert [p["name"] for p in listed] == ["printer-01"]
        listed = (await fleet.get("/farm/printers", headers={"X-Api-Key": key}))[1]["result"]["printers"]
        assert [p["name"] for p in listed] == ["printer-01", "printer-02"]
        neighbour = await fleet.ws()  # trusted by its address, as the fleet's default config says
        operator = await fleet.ws(headers={"X-Api-Key": key})
        assert [p["name"] for p in (await neighbour.call("farm.printers"))["printers"]] == ["printer-01"]
        code, _ = await two.post("/printer/gcode/script?script=M118 secret", headers={"X-Api-Key": _api_key(two.server)})
        assert code == 200
        await _farm_event(operator, "printer-02", "notify_gcode_response")
        await farm.running("printer-01").post("/printer/gcode/script?script=M118 public")
        seen = set()
        while True:  # everything the neighbour got until printer-01's answer
            event = (await neighbour.next_notification("notify_farm_event", timeout=10))["params"][0]
            seen.add(event["printer"])
            if event["printer"] == "printer-01" and event["method"] == "notify_gcode_response":
                break
        await neighbour.call("farm.printers")
        seen.update(n["params"][0]["printer"] for n in neighbour.notifications.pending if n["method"] == "notify_farm_event")
        assert seen == {"printer-01"}
        for ws in (neighbour, operator):
            ws.sendClose()
    finally:
        await farm.stop()
