"""``off_when_idle: MINUTES``: switch a device off once the printer has been idle that long.

Moonraker issue #167.  The printer is busy while a print runs or is paused and
while Klippy's ``idle_timeout`` reports ``Printing`` (it is executing commands:
heating, moving).  The countdown starts when the printer becomes idle or the
device is switched on while it is idle, and starts over after each busy spell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moontwist.plugins.power.device import PowerDevice
    from moontwist.plugins.power.plugin import PowerPlugin

__all__ = ["IdleWatch", "SUBSCRIPTION"]

SUBSCRIPTION = {"idle_timeout": ["state"]}


class IdleWatch:
    """Countdowns of the devices that have ``off_when_idle``."""

    def __init__(self, plugin: PowerPlugin) -> None:
        self.plugin = plugin
        self.server = plugin.server
        self.log = plugin.log
        self.timers: dict[str, Any] = {}

    @property
    def devices(self) -> list[PowerDevice]:
        return [d for d in self.plugin.devices.values() if d.off_when_idle is not None]

    def busy(self) -> bool:
        if self.server.printing:
            return True
        klippy = self.server.klippy
        if klippy is None or not klippy.connected:
            return False
        return (klippy.status.get("idle_timeout") or {}).get("state") == "Printing"

    def update(self) -> None:
        """Something changed (a print, Klippy, a device): start or cancel countdowns."""
        busy = self.busy()
        for device in self.devices:
            self.check(device, busy)

    def check(self, device: PowerDevice, busy: bool | None = None) -> None:
        if device.off_when_idle is None:
            return
        if busy is None:
            busy = self.busy()
        timer = self.timers.get(device.name)
        if busy or device.state != "on":
            if timer is not None and timer.active():
                timer.cancel()
            self.timers.pop(device.name, None)
        elif timer is None or not timer.active():
            self.timers[device.name] = self.server.reactor.callLater(device.off_when_idle * 60.0, self._expired, device)

    def _expired(self, device: PowerDevice) -> None:
        self.timers.pop(device.name, None)
        if self.busy() or device.state != "on":
            return
        self.log.info(
            "Power device {name}: printer idle for {minutes:g} min, powering off",
            name=device.name, minutes=device.off_when_idle,
        )
        self.plugin.set_device_power(device.name, "off")

    def stop(self) -> None:
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
