"""``FarmService``: many moontwist instances in one process, the fleet server, simulators."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from moontwist.config import ConfigError
from moontwist.farm.fleet import FleetPlugin
from moontwist.farm.instances import Instance
from moontwist.server import Server, ServerOptions

__all__ = ["FarmService", "SimulatorProcess"]

log = Logger()

FARM_CONFIG = """\
# The fleet view of a moontwist farm: who may see it (read-only).
[server]

[authorization]
trusted_clients:
    10.0.0.0/8
    127.0.0.0/8
    169.254.0.0/16
    172.16.0.0/12
    192.168.0.0/16
    fe80::/10
    ::1/128
"""
FARM_PLUGINS = {
    "database": "moontwist.plugins.database:DatabasePlugin",
    "authorization": "moontwist.plugins.authorization:AuthorizationPlugin",
}


class SimulatorProcess(ProcessProtocol):
    """The launcher of ``--simulate-farm``'s simulators (moontwist.farm.simulators)."""

    def __init__(self) -> None:
        self.ended: Deferred = Deferred()

    def errReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        log.warn("simulators: {text}", text=data.decode(errors="replace").rstrip())

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.ended.callback(None)


class FarmService(service.MultiService):
    """Starts every instance on its own (one failing never stops another) and the fleet server."""

    def __init__(
        self,
        fleet: FleetPlugin,
        instances: list[Instance],
        reactor: Any,
        *,
        farm_port: int | None = None,
        farm_host: str | None = None,
        farm_datapath: str | None = None,
        simulators: list[str] | None = None,
        sim_speed: float = 1.0,
    ) -> None:
        super().__init__()
        from moontwist.tap import MoontwistService

        self.reactor = reactor
        self.instances = instances
        self.fleet = fleet
        fleet.instances = instances
        self.simulators = simulators or []
        self.sim_speed = sim_speed
        self._sim: SimulatorProcess | None = None
        self._sim_transport: Any = None
        for instance in instances:
            if instance.server is not None:
                instance.service = MoontwistService(instance.server, reactor, on_failure=self._failure_of(instance))
                instance.service.setServiceParent(self)
        self.farm: Any = None
        if farm_port is not None:
            datapath = os.path.abspath(os.path.expanduser(farm_datapath or "~/printer_farm"))
            os.makedirs(os.path.join(datapath, "config"), exist_ok=True)
            config = os.path.join(datapath, "config", "moontwist.conf")
            if not os.path.exists(config):
                with open(config, "w", encoding="utf-8") as f:
                    f.write(FARM_CONFIG)
            server = Server(
                ServerOptions(
                    datapath=datapath,
                    host=farm_host,
                    port=farm_port,
                    simulate=False,
                    use_entry_points=False,
                    builtins=FARM_PLUGINS,
                    extra_plugins={"farm": self.fleet},
                ),
                reactor,
            )
            server.check_config()
            self.farm = MoontwistService(server, reactor, unix_socket=False)
            self.farm.setServiceParent(self)

    def _failure_of(self, instance: Instance) -> Any:
        def failed(failure: Failure) -> None:
            # told in the instance's own log (its file, and stdout under its name), as a lone server would
            instance_log = instance.server.logger(__name__)
            if failure.check(ConfigError):
                instance.fail(f"Instance {instance.name}: configuration error: {failure.getErrorMessage()}")
                instance_log.error("{message}", message=instance.error)
            else:
                instance.fail(f"Instance {instance.name}: failed to start: {failure.getErrorMessage()}")
                instance_log.failure("{message}", failure, message=instance.error)

        return failed

    def startService(self) -> None:  # noqa: N802 - Twisted API
        for instance in self.instances:
            if instance.error is not None:
                log.error("{message}", message=instance.error)
        if self.simulators:
            self._sim = SimulatorProcess()
            argv = [sys.executable, "-m", "moontwist.farm.simulators", "--speed", str(self.sim_speed)]
            argv += self.simulators
            self._sim_transport = self.reactor.spawnProcess(self._sim, sys.executable, argv, env=dict(os.environ))
        super().startService()
        services = [i.service for i in self.instances if i.service is not None]
        if self.farm is not None:
            services.append(self.farm)
        # fires once every instance (and the fleet server) started or failed
        self._started = DeferredList([s._started for s in services], consumeErrors=True)

    def stopService(self) -> Deferred:  # noqa: N802
        waits = [super().stopService()]
        if self._sim is not None and self._sim_transport is not None:
            try:
                self._sim_transport.signalProcess("TERM")
            except Exception:  # already gone
                pass
            waits.append(self._sim.ended)
        return DeferredList(waits)
