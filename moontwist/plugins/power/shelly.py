"""``shelly``: a Shelly relay, Gen1 (``/relay/N``) or Gen2+ (``/rpc/Switch.*``).

Options: ``address`` (``host:port`` works), ``user`` (admin when a password is
set), ``password`` (Gen1 HTTP basic authentication), ``output_id`` (0),
``timer`` (seconds: as in Moonraker, "off" turns the relay on for that long),
``generation`` (``auto``: asks ``/shelly``, ``1`` or ``2``).  The energy meter
(Gen1 ``/meter/N`` ``total`` in watt-minutes, Gen2 ``aenergy.total`` in Wh)
serves ``record_energy``.
"""

from __future__ import annotations

from typing import Any

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["ShellyDriver"]


class ShellyDriver(HTTPDriver):
    default_user = "admin"

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        if not self.password:
            self.user = ""
        self.output_id = section.getint("output_id", 0, minval=0)
        self.timer = section.get("timer", "")
        generation = section.get("generation", "auto", choices=("auto", "1", "2"))
        self.generation: int | None = None if generation == "auto" else int(generation)
        self.reports_energy = True

    async def _generation(self) -> int:
        if self.generation is None:
            info = await self.get_json("/shelly", auth=self.basic_auth)
            gen = info.get("gen", 1) if isinstance(info, dict) else 1
            self.generation = 2 if isinstance(gen, int) and gen >= 2 else 1
        return self.generation

    async def _gen1(self, query: dict[str, Any] | None = None) -> str:
        answer = await self.get_json(f"/relay/{self.output_id}", query, auth=self.basic_auth)
        remaining = answer.get("timer_remaining", 0) if self.timer else 0
        return "on" if answer["ison"] and not remaining else "off"

    async def _rpc(self, method: str, query: dict[str, Any]) -> Any:
        response = await self.http("GET", f"/rpc/{method}", query)
        if response.code == 401:
            raise DeviceError("asks for Gen2 digest authentication, which moontwist does not support; turn it off")
        return response.check().json()

    async def _gen2_state(self) -> str:
        status = await self._rpc("Switch.GetStatus", {"id": self.output_id})
        if self.timer and status.get("timer_duration"):
            return "off"
        return "on" if status["output"] else "off"

    async def read_state(self) -> str:
        if await self._generation() == 1:
            return await self._gen1()
        return await self._gen2_state()

    async def set_state(self, state: str) -> str:
        if await self._generation() == 1:
            query: dict[str, Any] = {"turn": state}
            if state == "off" and self.timer:
                query = {"turn": "on", "timer": self.timer}
            return await self._gen1(query)
        query = {"id": self.output_id, "on": "true" if state == "on" else "false"}
        if state == "off" and self.timer:
            query = {"id": self.output_id, "on": "true", "toggle_after": self.timer}
        await self._rpc("Switch.Set", query)
        return await self._gen2_state()

    async def read_energy(self) -> float:
        try:
            if await self._generation() == 1:
                meter = await self.get_json(f"/meter/{self.output_id}", auth=self.basic_auth)
                return float(meter["total"]) / 60000.0  # watt-minutes
            status = await self._rpc("Switch.GetStatus", {"id": self.output_id})
            return float(status["aenergy"]["total"]) / 1000.0  # Wh
        except (KeyError, TypeError, ValueError):
            raise DeviceError("has no energy meter") from None
