"""The instances of a farm: which data paths, which ports, and which of them could not start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from moontwist.config import ConfigError
from moontwist.farm.member import FarmMember
from moontwist.server import Server, ServerOptions

__all__ = ["Instance", "plan_instances"]


@dataclass
class Instance:
    """One printer served by the farm process."""

    name: str
    datapath: str
    member: FarmMember
    server: Server | None = None
    error: str | None = None
    port: int | None = None
    service: Any = field(default=None, repr=False)

    def fail(self, message: str) -> None:
        self.error = message

    def describe(self) -> dict[str, Any]:
        summary = {"name": self.name, "port": self.port, "datapath": self.datapath, **self.member.summary()}
        if self.error is not None:
            summary["klippy_state"] = "error"
            summary["error"] = self.error
        return summary


def _name(datapath: str, taken: set[str]) -> str:
    base = os.path.basename(os.path.normpath(datapath)) or "printer"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def plan_instances(
    datapaths: list[str],
    relay: Any,
    *,
    host: str | None = None,
    ports: list[int | None] | None = None,
    simulate: bool | None = None,
    debug: bool = False,
    reserved_ports: set[int] | None = None,
) -> list[Instance]:
    """An Instance per data path, its Server built and its config read.

    Problems are recorded on the instance they belong to (``error``), never
    raised: a missing data path, a data path or port already used by an
    earlier instance, a config that doesn't parse.
    """
    instances: list[Instance] = []
    names: set[str] = set()
    seen_paths: dict[str, str] = {}
    used_ports = {p: "the farm" for p in reserved_ports or ()}
    for i, raw in enumerate(datapaths):
        datapath = os.path.abspath(os.path.expanduser(raw))
        name = _name(datapath, names)
        instance = Instance(name, datapath, FarmMember(name, relay))
        instances.append(instance)
        real = os.path.realpath(datapath)
        if not os.path.isdir(datapath):
            instance.fail(f"Instance {name}: data path {datapath} does not exist")
            continue
        if real in seen_paths:
            instance.fail(f"Instance {name}: data path {datapath} is already used by instance {seen_paths[real]}")
            continue
        seen_paths[real] = name
        port = ports[i] if ports is not None else None
        options = ServerOptions(
            datapath=datapath,
            host=host,
            port=port,
            simulate=simulate,
            debug=debug,
            extra_plugins={"farm": instance.member},
            shared_process=True,
            instance_name=name,
        )
        server = Server(options)
        try:
            server.check_config()
        except ConfigError as exc:
            instance.fail(f"Instance {name}: configuration error: {exc}")
            continue
        instance.port = server.port
        if server.port in used_ports:
            instance.fail(f"Instance {name}: port {server.port} is already used by {used_ports[server.port]}")
            continue
        if server.port:
            used_ports[server.port] = f"instance {name}"
        instance.server = server
    return instances
