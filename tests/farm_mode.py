"""``MOONTWIST_TEST_FARM=1`` (mtclient.FARM_ENV): ``start_service`` starts an instance of a farm in this process.

Next to it runs a busy neighbour instance, started once per test process: its own
simulated printer printing a long file (again whenever it finishes), two websocket
clients subscribed to its status, a client polling its HTTP API, and the farm's
fleet server relaying every instance's notifications to a client of its own. The
instances share the reactor, its thread pool and the loaded code, as in a farm.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import tempfile
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import DeferredLock, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from moontwist.farm import make_farm
from moontwist.farm.instances import Instance
from moontwist.farm.member import FarmMember
from moontwist.server import Server, ServerOptions
from moontwist.tap import MoontwistService, Options
from mtclient import Running, WSClient, connect_ws, wait_for

__all__ = ["start_instance"]

NEIGHBOUR_CONFIG = "[server]\nport: 0\n[simulator]\nspeed: 1\n"
NEIGHBOUR_FILE = "neighbour.gcode"
STATUS_OBJECTS = {"toolhead": None, "extruder": None, "print_stats": None}


class CountingClient(WSClient):
    """A websocket client that counts its notifications instead of keeping them (it runs all session)."""

    received = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        msg = json.loads(payload)
        if isinstance(msg, dict) and "method" in msg and "id" not in msg:
            self.received += 1
        else:
            super().onMessage(payload, isBinary)


class InstanceService(MoontwistService):
    """A farm instance started for one test; stopping it takes it out of the farm and checks the logs."""

    instance: Instance
    farm: TestFarm

    def stopService(self) -> Any:  # noqa: N802
        d = super().stopService()

        def gone(result: Any) -> Any:
            self.farm.remove(self.instance)
            return result

        return d.addBoth(gone)


class TestFarm:
    """The farm of this test process: the fleet, the neighbour, and the instances tests add."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="moontwist-test-farm-")
        atexit.register(shutil.rmtree, self.root, True)
        self.names = itertools.count(1)
        self.clients: list[CountingClient] = []
        self.loops: list[LoopingCall] = []
        self.service: Any = None
        self.neighbour: Running | None = None
        self.neighbour_log = os.path.join(self.root, "neighbour", "logs", "moontwist.log")
        self.log_checked = 0  # how much of the neighbour's log was checked

    async def start(self) -> None:
        path = os.path.join(self.root, "neighbour")
        for sub in ("config", "gcodes"):
            os.makedirs(os.path.join(path, sub))
        with open(os.path.join(path, "config", "moontwist.conf"), "w") as f:
            f.write(NEIGHBOUR_CONFIG)
        with open(os.path.join(path, "gcodes", NEIGHBOUR_FILE), "w") as f:
            f.write(_long_gcode(3000))
        options = Options()
        options.parseOptions([
            "--host", "127.0.0.1", "--instance", path, "--simulate", "--farm-port", "0",
            "--farm-datapath", os.path.join(self.root, "fleet"),
        ])
        self.service = make_farm(options, reactor)
        self.service.startService()
        await self.service._started
        inst = self.service.instances[0]
        if inst.error is not None:
            raise RuntimeError(inst.error)
        self.neighbour = Running(inst.service, inst.server, inst.service.listening_port.getHost().port)
        await wait_for(lambda: inst.server.klippy_state == "ready", timeout=20)
        for _ in range(2):
            ws = await connect_ws(self.neighbour.ws_url, protocol=CountingClient)
            await ws.call("printer.objects.subscribe", {"objects": STATUS_OBJECTS})
            self.clients.append(ws)
        fleet_port = self.service.farm.listening_port.getHost().port
        self.clients.append(await connect_ws(f"ws://127.0.0.1:{fleet_port}/websocket", protocol=CountingClient))
        self._loop(self._keep_printing, 2.0)
        self._loop(self._poll, 0.5)

    def _loop(self, fn: Any, interval: float) -> None:
        # a failed round (the neighbour restarting, a slow answer) is skipped, never ends the loop
        loop = LoopingCall(lambda: ensureDeferred(fn()).addErrback(lambda f: None))
        loop.start(interval)
        self.loops.append(loop)

    async def _keep_printing(self) -> None:
        neighbour = self.neighbour
        if neighbour is not None and neighbour.server.klippy_state == "ready" and not neighbour.server.printing:
            await neighbour.post(f"/printer/print/start?filename={NEIGHBOUR_FILE}")

    async def _poll(self) -> None:
        base = self.neighbour.base
        for path in ("/server/info", "/printer/objects/query?print_stats&toolhead"):
            resp = await treq.get(base + path, timeout=5)
            await resp.content()

    async def add(self, datapath: str, config_file: str | None, options: dict[str, Any]) -> Running:
        """Start a server for ``datapath`` as an instance of this farm (what ``start_service`` does alone)."""
        name = f"{os.path.basename(os.path.normpath(datapath))}-{next(self.names)}"
        member = FarmMember(name, self.service.fleet.relay)
        instance = Instance(name, os.path.abspath(datapath), member)
        extra = {**(options.pop("extra_plugins", None) or {}), "farm": member}
        server = Server(ServerOptions(
            datapath=datapath, config_file=config_file, host="127.0.0.1", port=0, extra_plugins=extra,
            shared_process=True, instance_name=name, **options,
        ))
        failures: list[Failure] = []
        service = InstanceService(server, reactor, on_failure=failures.append)
        service.instance, service.farm = instance, self
        instance.server, instance.service = server, service
        self.service.instances.append(instance)
        service.startService()
        await service._started
        if failures:
            await service.stopService()
            failures[0].raiseException()
        instance.port = service.listening_port.getHost().port
        return Running(service, server, instance.port)

    def remove(self, instance: Instance) -> None:
        """A test's instance stopped: out of the farm, and neither log may hold the other's lines."""
        if instance not in self.service.instances:
            return
        self.service.instances.remove(instance)
        with open(self.neighbour_log, encoding="utf-8", errors="replace") as f:
            f.seek(self.log_checked)
            new = f.read()
            self.log_checked = f.tell()
        assert instance.datapath not in new, f"the neighbour's log has lines of {instance.name}"
        own = os.path.join(instance.datapath, "logs", "moontwist.log")
        if os.path.exists(own):
            with open(own, encoding="utf-8", errors="replace") as f:
                assert self.root not in f.read(), f"{instance.name}'s log has lines of the neighbour"


# The one farm of this test process, started with its first instance.
_farm: TestFarm | None = None
_starting = DeferredLock()


async def start_instance(datapath: str, config_file: str | None, options: dict[str, Any]) -> Running:
    """``start_service`` in farm mode: the service as an instance of this process's farm."""
    global _farm
    await _starting.acquire()
    try:
        if _farm is None:
            farm = TestFarm()
            await farm.start()
            _farm = farm
    finally:
        _starting.release()
    return await _farm.add(datapath, config_file, options)


def _long_gcode(moves: int) -> str:
    """A file that keeps the simulated printer busy for a long time: short moves at real speed."""
    lines = ["G28", "G90", "M83", "M104 S200", "G1 Z0.3 F600"]
    for i in range(moves):
        lines.append(f"G1 X{10 + (i % 2) * 40} Y{10 + i % 50} E0.5 F1500")
    return "\n".join(lines) + "\n"
