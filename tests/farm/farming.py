"""Helpers for farm tests: start a farm in this process from a command line."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList

from moontwist.farm import make_farm
from moontwist.tap import Options
from mtclient import Running, wait_for


def free_ports(count: int) -> int:
    """A base port with ``count`` consecutive free ports (checked by binding them)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65000:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


@dataclass
class Farm:
    service: Any

    @property
    def instances(self) -> list[Any]:
        return self.service.instances

    def instance(self, name: str) -> Any:
        return next(i for i in self.instances if i.name == name)

    def running(self, name: str) -> Running:
        """The instance as the single-instance test client knows it."""
        inst = self.instance(name)
        return Running(inst.service, inst.server, inst.service.listening_port.getHost().port)

    @property
    def fleet(self) -> Running:
        farm = self.service.farm
        return Running(farm, farm.server, farm.listening_port.getHost().port)

    async def stop(self) -> None:
        await self.service.stopService()


async def start_farm(*argv: str, ready: bool = True, plugins: dict[str, dict[str, Any]] | None = None,
                     wait: bool = True) -> Farm:
    """Parse ``argv`` as ``twistd moontwist`` would, start the farm, wait for the instances.

    ``plugins`` adds plugin objects to the named instances; with ``wait`` False
    nothing waits for the instances to start.
    """
    options = Options()
    options.parseOptions(["--host", "127.0.0.1", *argv])
    service = make_farm(options, reactor)
    for name, extra in (plugins or {}).items():
        server = next(i for i in service.instances if i.name == name).server
        server.options.extra_plugins = {**(server.options.extra_plugins or {}), **extra}
    service.startService()
    if not wait:
        return Farm(service)
    starts = [i.service._started for i in service.instances if i.service is not None]
    if service.farm is not None:
        starts.append(service.farm._started)
    await DeferredList(starts)
    farm = Farm(service)
    if ready:
        await wait_for(
            lambda: all(i.server.klippy_state == "ready" for i in farm.instances if i.error is None),
            timeout=20,
        )
    return farm
