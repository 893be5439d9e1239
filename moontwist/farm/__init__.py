"""Many printers in one moontwist process (a farm), and the fleet view across them.

Each instance is exactly a single moontwist (its own data path, config, port,
Klippy socket, database, plugins, authorization and log); they share only the
reactor, its thread pool and the loaded code.  ``--farm-port`` adds the fleet
view: ``farm.printers`` (``GET /farm/printers``), every instance's notifications
relayed as ``notify_farm_event`` on its websocket, and a live page at ``/``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["make_farm"]


def make_farm(options: Any, reactor: Any = None) -> Any:
    """The FarmService for ``twistd moontwist --instance ... | --simulate-farm N``."""
    if reactor is None:
        from twisted.internet import reactor
    from moontwist.farm.fleet import FleetPlugin
    from moontwist.farm.instances import plan_instances
    from moontwist.farm.service import FarmService

    fleet = FleetPlugin([])
    reserved = {options["farm-port"]} if options["farm-port"] else set()
    simulators: list[str] = []  # data paths of simulated printers
    farm_datapath = options["farm-datapath"]
    if options["simulate-farm"] is not None:
        base = os.path.abspath(os.path.expanduser(options["datapath"]))
        count = options["simulate-farm"]
        first = options["port"] if options["port"] is not None else 7125
        datapaths = [os.path.join(base, f"printer-{i:02d}") for i in range(1, count + 1)]
        for path in datapaths:
            for sub in ("comms", "gcodes", "config"):
                os.makedirs(os.path.join(path, sub), exist_ok=True)
            simulators.append(path)
        instances = plan_instances(
            datapaths, fleet.relay, host=options["host"], ports=[first + i for i in range(count)],
            simulate=False, debug=bool(options["debug"]), reserved_ports=reserved,
        )
        farm_datapath = farm_datapath or base
    else:
        simulate = True if options["simulate"] else (False if options["no-simulate"] else None)
        instances = plan_instances(
            options["instance"], fleet.relay, host=options["host"], simulate=simulate,
            debug=bool(options["debug"]), reserved_ports=reserved,
        )
    return FarmService(
        fleet,
        instances,
        reactor,
        farm_port=options["farm-port"],
        farm_host=options["host"],
        farm_datapath=farm_datapath,
        simulators=simulators,
        sim_speed=options["sim-speed"],
    )
