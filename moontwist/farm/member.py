"""The plugin each farm instance runs: its printer's summary, and its events for the fleet."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moontwist.hookspecs import hookimpl
from moontwist.klippy.subscriptions import normalize, pick

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["FarmMember", "SUMMARY_OBJECTS"]

OWNER = "farm"
# What the fleet view shows of each printer; heaters are added once Klippy lists them.
SUMMARY_OBJECTS: dict[str, list[str]] = {
    "print_stats": ["state", "filename"],
    "virtual_sdcard": ["progress"],
    "display_status": ["progress"],
    "heaters": ["available_heaters"],
}
HEATER_FIELDS = ["temperature", "target"]

Relay = Callable[[str, str, Any], None]


class FarmMember:
    """One instance's part of the fleet: summary subscription, notification relay."""

    def __init__(self, name: str, relay: Relay) -> None:
        self.name = name
        self._relay = relay
        self.server: Server | None = None
        self.error: str | None = None
        self._heaters: tuple[str, ...] = ()

    @hookimpl
    def configure(self, server: Server) -> None:
        self.server = server
        self.log = server.logger(__name__)

    @hookimpl
    def klippy_state_changed(self, server: Server, state: str) -> None:
        if state == "ready":
            self._subscribe(self._heaters)

    @hookimpl
    def status_update(self, server: Server, status: dict[str, Any]) -> None:
        self._check_heaters(status)
        picked = pick(status, normalize(self._wanted()), fill=False)
        if picked:
            self._relay(self.name, "notify_status_update", [picked])

    @hookimpl
    def notification(self, server: Server, method: str, params: list[Any] | None) -> None:
        self._relay(self.name, method, params)

    def _wanted(self) -> dict[str, list[str] | None]:
        return {**SUMMARY_OBJECTS, **{name: HEATER_FIELDS for name in self._heaters}}

    def _check_heaters(self, status: dict[str, Any]) -> None:
        heaters = (status.get("heaters") or {}).get("available_heaters")
        if heaters is not None and tuple(heaters) != self._heaters:
            self._heaters = tuple(heaters)
            self._subscribe(self._heaters)

    def _subscribe(self, heaters: tuple[str, ...]) -> None:
        klippy = self.server.klippy if self.server is not None else None
        if klippy is None:
            return

        def failed(failure: Any) -> None:
            self.log.info("Farm member {name}: subscription failed: {e}", name=self.name, e=failure.getErrorMessage())

        d = klippy.add_subscription(OWNER, self._wanted())
        d.addCallback(lambda reply: self._subscribed(reply, klippy.status))
        d.addErrback(failed)

    def _subscribed(self, reply: dict[str, Any], status: dict[str, Any]) -> None:
        # Values first seen in a subscription reply never arrive as changes: send them once.
        snapshot = reply.get("status") or {}
        if snapshot:
            self._relay(self.name, "notify_status_update", [snapshot])
        self._check_heaters(status)

    def summary(self) -> dict[str, Any]:
        """This printer as the fleet view lists it (name, port and datapath are added by the farm)."""
        server = self.server
        klippy = server.klippy if server is not None else None
        status = klippy.status if klippy is not None else {}
        stats = status.get("print_stats") or {}
        progress = (status.get("virtual_sdcard") or {}).get("progress")
        if progress is None:
            progress = (status.get("display_status") or {}).get("progress")
        temperatures = {
            name: {field: (status.get(name) or {}).get(field) for field in HEATER_FIELDS} for name in self._heaters
        }
        return {
            "klippy_state": server.klippy_state if server is not None else "disconnected",
            "print_state": stats.get("state"),
            "progress": progress if progress is not None else 0.0,
            "filename": stats.get("filename") or "",
            "temperatures": temperatures,
        }
