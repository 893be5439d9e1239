"""``tasmota``: a relay running Tasmota firmware, through its HTTP command API (``/cm?cmnd=``).

Options: ``address`` (``host:port`` works), ``user`` (admin), ``password``,
``output_id`` (relay number, 1), ``timer`` (seconds: "off" becomes a delayed off).
The energy meter (``Status 8``: ``StatusSNS.ENERGY.Total``, kWh) serves ``record_energy``.
"""

from __future__ import annotations

from typing import Any

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["TasmotaDriver"]


class TasmotaDriver(HTTPDriver):
    default_user = "admin"

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.output_id = section.getint("output_id", 1, minval=1)
        self.timer = section.get("timer", "")
        self.reports_energy = True

    async def command(self, cmnd: str) -> dict[str, Any]:
        query = {"user": self.user, "password": self.password, "cmnd": cmnd}
        answer = (await self.http("GET", "/cm", query)).check().json()
        if not isinstance(answer, dict):
            raise DeviceError(f"answered {cmnd!r} with {answer!r}")
        if "WARNING" in answer:
            raise DeviceError(f"refused the command: {answer['WARNING']}")
        if answer.get("Command") == "Unknown":
            raise DeviceError(f"does not know the command {cmnd!r}")
        return answer

    def _state(self, answer: dict[str, Any]) -> str:
        key = f"POWER{self.output_id}"
        if key not in answer and self.output_id == 1:
            key = "POWER"  # single relay without SetOption26
        return str(answer[key]).lower()

    async def read_state(self) -> str:
        return self._state(await self.command(f"Power{self.output_id}"))

    async def set_state(self, state: str) -> str:
        command = f"Power{self.output_id} {state}"
        if self.timer and state == "off":
            await self.command(f"Backlog Delay {self.timer}0; {command}")  # Delay counts tenths of a second
            return "off"
        return self._state(await self.command(command))

    async def read_energy(self) -> float:
        answer = await self.command("Status 8")
        try:
            return float(answer["StatusSNS"]["ENERGY"]["Total"])
        except (KeyError, TypeError, ValueError):
            raise DeviceError("has no energy meter (no StatusSNS.ENERGY.Total in 'Status 8')") from None
