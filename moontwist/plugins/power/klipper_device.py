"""``klipper_device``: an ``output_pin``, ``led`` or ``gcode_macro`` object of Klipper.

Options: ``object_name`` (``output_pin NAME``, ``led NAME`` (also ``neopixel``,
``dotstar``, ``pca9533``, ``pca9632``) or ``gcode_macro NAME``), ``timer``
(seconds: switch off again after switching on), ``led_color`` (the RED,
GREEN, BLUE, WHITE values for "on", default ``1, 1, 1, 1``).  The state
follows Klipper's status updates; switching runs ``SET_PIN PIN=NAME VALUE=1``,
``SET_LED LED=NAME RED=..`` or ``NAME VALUE=1`` (a macro that keeps a
``value`` variable, as Moonraker documents).  While Klippy is shut down the
device is in ``error`` and can't be switched.
"""

from __future__ import annotations

from typing import Any

from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver

__all__ = ["KlipperDeviceDriver"]

LED_KINDS = ("led", "neopixel", "dotstar", "pca9533", "pca9632")


class KlipperDeviceDriver(PowerDriver):
    can_poll = False
    starts_ready = False
    local_timer = True
    refused_options = ("off_when_shutdown", "restart_klipper_when_powered")

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.object_name = section.get("object_name").strip()
        kind, _, target = self.object_name.partition(" ")
        target = target.strip()
        if not target or (kind not in ("output_pin", "gcode_macro") and kind not in LED_KINDS):
            raise ConfigError(
                f"Config error in section [{section.name}], option 'object_name': {self.object_name!r} "
                "is not 'output_pin NAME', 'led NAME' or 'gcode_macro NAME'"
            )
        self.kind, self.target = kind, target
        color = section.getlist("led_color", ["1", "1", "1", "1"], separator=",", count=4)
        try:
            self.color = [min(1.0, max(0.0, float(c))) for c in color]
        except ValueError:
            raise ConfigError(
                f"Config error in section [{section.name}], option 'led_color': {color!r} is not four numbers"
            ) from None
        self.is_shutdown = False
        self.owner = f"power {device.name}"

    def info(self) -> dict[str, Any]:
        return {"is_shutdown": self.is_shutdown}

    async def start(self) -> None:
        klippy = self.device.server.klippy
        if klippy is not None:
            # kept by the subscription manager across reconnects; values arrive through status_update
            klippy.add_subscription(self.owner, {self.object_name: None}).addErrback(lambda f: None)
            if klippy.state == "ready":
                self.klippy_state_changed("ready")

    async def stop(self) -> None:
        klippy = self.device.server.klippy
        if klippy is not None:
            klippy.subscriptions.drop(self.owner)

    def _state_from(self, values: dict[str, Any] | None) -> str | None:
        if not values:
            return None
        if self.kind in LED_KINDS:
            data = values.get("color_data")
            if not isinstance(data, list):
                return None
            return "on" if any(isinstance(c, (int, float)) and c > 0 for px in data for c in px) else "off"
        value = values.get("value")
        if not isinstance(value, (int, float)):
            return None
        return "on" if value else "off"

    def klippy_state_changed(self, state: str) -> None:
        if state == "ready":
            self.is_shutdown = False
            self.device.initialize()
        elif state == "shutdown":
            self.is_shutdown = True
            self.device.report("error")
        elif state in ("disconnected", "startup", "error"):
            self.is_shutdown = False
            self.device.report("init")

    def status_update(self, status: dict[str, Any]) -> None:
        if self.object_name not in status or self.is_shutdown:
            return
        klippy = self.device.server.klippy
        state = self._state_from(klippy.status.get(self.object_name) if klippy is not None else None)
        if state is not None:
            self.device.report(state)

    async def _query(self) -> str:
        klippy = self.device.server.klippy
        if klippy is None or not klippy.connected:
            raise DeviceError("Klippy is not connected")
        if self.is_shutdown:
            raise DeviceError("Klippy is shut down")
        reply = await klippy.query({self.object_name: None})
        state = self._state_from((reply.get("status") or {}).get(self.object_name))
        if state is None:
            raise DeviceError(f"Klipper has no object '{self.object_name}' with a value")
        return state

    async def read_state(self) -> str:
        return await self._query()

    async def set_state(self, state: str) -> str:
        klippy = self.device.server.klippy
        if self.is_shutdown or klippy is None or not klippy.connected:
            raise DeviceError("Klippy is shut down" if self.is_shutdown else "Klippy is not connected")
        on = state == "on"
        if self.kind == "output_pin":
            script = f"SET_PIN PIN={self.target} VALUE={int(on)}"
        elif self.kind == "gcode_macro":
            script = f"{self.target} VALUE={int(on)}"
        else:
            color = self.color if on else [0.0] * 4
            channels = " ".join(f"{n}={v:g}" for n, v in zip(("RED", "GREEN", "BLUE", "WHITE"), color))
            script = f"SET_LED LED={self.target} {channels}"
        await klippy.gcode(script)
        return await self._query()
