"""``uhubctl``: a USB port whose power is switched by the ``uhubctl`` program.

Options: ``location`` (the hub, ``-l``), ``port`` (``-p``; all ports when
omitted).  The program runs as a child process (never blocking the reactor)
and is killed when it outlives the device's ``timeout``.
"""

from __future__ import annotations

import re
from typing import Any

from moontwist.config import ConfigError, ConfigSection
from moontwist.machine.commands import find_executable, run_command
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver

__all__ = ["UHubCtlDriver", "parse_status"]

_PORT_LINE = re.compile(
    r"^\s*Port\s(?P<port>\d+):\s(?P<bits>[0-9a-f]{4})\s(?P<pstate>power|off)"
    r"(?P<flags>(?:\s[0-9a-z.]+)*)?(?:\s\[(?P<desc>.+)\])?\s*$",
    re.IGNORECASE,
)


def parse_status(output: str, location: str, port: int | None, changed: bool) -> dict[str, Any]:
    """The first matching port of hub ``location`` in uhubctl's output (the new status after a change)."""
    prefix = f"{'New' if changed else 'Current'} status for hub {location} "
    in_hub = False
    for line in output.splitlines():
        if line.startswith(("Current status for hub", "New status for hub")):
            in_hub = line.startswith(prefix)
            continue
        match = _PORT_LINE.match(line) if in_hub else None
        if match is None or (port is not None and int(match["port"]) != port):
            continue
        return {
            "port": int(match["port"]),
            "status_bits": int(match["bits"], 16),
            "state": "on" if match["pstate"].lower() == "power" else "off",
            "flags": (match["flags"] or "").split(),
            "desc": match["desc"],
        }
    raise DeviceError(f"uhubctl reported no status for hub {location}" + (f" port {port}" if port is not None else ""))


class UHubCtlDriver(PowerDriver):
    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.location = section.get("location")
        self.port = section.getint("port", None, minval=1)
        if find_executable("uhubctl") is None:
            raise ConfigError(
                f"Config error in section [{section.name}]: the 'uhubctl' program is not installed (not on PATH)"
            )

    async def _run(self, action: str | None) -> str:
        argv = ["uhubctl", "-l", self.location]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if action is not None:
            argv += ["-a", action]
        try:
            result = await run_command(argv, timeout=self.device.timeout, reactor=self.device.reactor)
        except DeviceError:
            raise
        except Exception as exc:
            stderr = getattr(getattr(exc, "result", None), "stderr", "")
            raise DeviceError(f"{exc}" + (f": {stderr.strip()[:200]}" if stderr else "")) from None
        return parse_status(result.stdout, self.location, self.port, changed=action is not None)["state"]

    async def read_state(self) -> str:
        return await self._run(None)

    async def set_state(self, state: str) -> str:
        return await self._run(state)
