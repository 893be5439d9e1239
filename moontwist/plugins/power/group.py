"""``[power_group NAME]``: several devices switched as one (Moonraker issue #583).

A group is listed and switched like a device (type ``group``).  Its status is
``on`` only when every member is on, ``error`` when a member is in error,
``init`` while a member is initializing, else ``off``, so ``toggle`` switches a
partly-on group on.  Members are switched at the same time; each keeps its own
rules (``locked_while_printing``...), and a member that refuses makes the
request fail with its reason after the others have switched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import DeferredList, ensureDeferred

from moontwist.api.errors import ServerError
from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import ACTIONS, PowerDevice

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["PowerGroup", "GROUP_TYPE"]

GROUP_TYPE = "group"


class PowerGroup:
    """One group of power devices."""

    type = GROUP_TYPE

    def __init__(self, server: Server, name: str, section: ConfigSection, devices: dict[str, PowerDevice]) -> None:
        self.server = server
        self.name = name
        names: list[str] = []
        for line in section.getlist("devices"):
            names.extend(part.strip() for part in line.split(",") if part.strip())
        if not names:
            raise ConfigError(f"Config error in section [{section.name}], option 'devices': no device named")
        unknown = [n for n in names if n not in devices]
        if unknown:
            raise ConfigError(
                f"Config error in section [{section.name}], option 'devices': "
                f"no [power ...] device named {', '.join(unknown)}"
            )
        self.members = [devices[n] for n in dict.fromkeys(names)]
        self.published: str | None = None

    @property
    def state(self) -> str:
        states = [m.state for m in self.members]
        if all(s == "on" for s in states):
            return "on"
        for state in ("error", "init"):
            if state in states:
                return state
        return "off"

    @property
    def locked_while_printing(self) -> bool:
        return any(m.locked_while_printing for m in self.members)

    def info(self) -> dict[str, Any]:
        return {
            "device": self.name,
            "status": self.state,
            "locked_while_printing": self.locked_while_printing,
            "type": self.type,
            "devices": [m.name for m in self.members],
        }

    def publish(self) -> None:
        """Tell clients the group's state if it changed (a member changed)."""
        state = self.state
        if state != self.published:
            self.published = state
            self.server.notify("notify_power_changed", self.info())

    async def request(self, action: str, force: bool = False) -> str:
        if action not in ("status", *ACTIONS):
            raise ServerError(f"Unsupported power request: {action}", 400)
        if action == "toggle":
            await self._all("status", force)
            action = "on" if self.state != "on" else "off"
        failures = await self._all(action, force)
        self.publish()
        if failures:
            raise ServerError(f"Power group {self.name}: " + "; ".join(failures), 400)
        return self.state

    async def _all(self, action: str, force: bool) -> list[str]:
        results = await DeferredList(
            [ensureDeferred(m.request(action, force)) for m in self.members], consumeErrors=True
        )
        failures = []
        for member, (ok, result) in zip(self.members, results):
            if not ok:
                error = result.value
                failures.append(error.message if isinstance(error, ServerError) else f"{member.name}: {error}")
        return failures
