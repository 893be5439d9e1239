"""``machine.system_info``: assemble the host description from the per-topic modules.

Static parts (CPU, SD card, distribution, virtualization, Python) are gathered once with
:func:`static_info`; :func:`system_info` adds the live parts (network, CAN, services).
"""

from __future__ import annotations

import sys
from typing import Any

from moontwist.machine.cpuinfo import cpu_info
from moontwist.machine.distro import distribution
from moontwist.machine.network import network_info
from moontwist.machine.providers import ServiceProvider
from moontwist.machine.sdcard import sd_info
from moontwist.machine.virt import virtualization


def python_info() -> dict[str, Any]:
    """The ``python`` object: version tuple and version string."""
    return {"version": list(sys.version_info), "version_string": sys.version.replace("\n", " ")}


async def static_info(
    root: str = "/", *, path_env: str | None = None, reactor: Any = None
) -> dict[str, Any]:
    """The parts of system_info that do not change while we run; gather once at startup."""
    return {
        "python": python_info(),
        "cpu_info": cpu_info(root),
        "sd_info": sd_info(root),
        "distribution": distribution(root),
        "virtualization": await virtualization(root, path_env=path_env, reactor=reactor),
    }


async def system_info(
    provider: ServiceProvider,
    *,
    instance_ids: dict[str, str] | None = None,
    static: dict[str, Any] | None = None,
    root: str = "/",
    path_env: str | None = None,
    reactor: Any = None,
) -> dict[str, Any]:
    """The object the endpoint returns under ``"system_info"``.

    ``static`` is a cached :func:`static_info` result (gathered now when None);
    ``instance_ids`` maps ``moonraker``/``klipper`` to their unit names.
    """
    info = dict(static) if static is not None else await static_info(
        root, path_env=path_env, reactor=reactor
    )
    network, canbus = await network_info(root, path_env=path_env, reactor=reactor)
    info.update(
        {
            "provider": provider.name,
            "network": network,
            "canbus": canbus,
            "available_services": provider.available_services(),
            "service_state": provider.service_state(),
            "instance_ids": dict(
                instance_ids or {"moonraker": provider.self_unit, "klipper": "klipper"}
            ),
        }
    )
    return info
