"""``homeassistant``: an entity of Home Assistant, through its REST API with a long-lived token.

Options: ``address`` (``host:port`` works), ``port`` (8123), ``protocol``,
``device`` (the entity id), ``token`` (template, required), ``domain`` (the
service domain: ``switch``, ``light``, ``fan``, ``input_boolean``...),
``status_delay`` (seconds before reading the state back when the service call
didn't report it), ``energy_sensor`` (an energy sensor entity: Wh, kWh or MWh,
for ``record_energy``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.task import deferLater

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["HomeAssistantDriver"]

_TO_KWH = {"wh": 0.001, "kwh": 1.0, "mwh": 1000.0}


class HomeAssistantDriver(HTTPDriver):
    default_port = 8123
    credentials = False

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.entity = section.get("device")
        self.token = device.templates.rendered(section, "token")
        self.domain = section.get("domain", "switch")
        self.status_delay = section.getfloat("status_delay", 1.0, minval=0.0)
        self.energy_sensor = section.get("energy_sensor", None)
        self.reports_energy = self.energy_sensor is not None
        self.headers = {"Authorization": f"Bearer {self.token}"}

    async def _entity(self, entity: str) -> dict[str, Any]:
        answer = await self.get_json(f"/api/states/{quote(entity)}", headers=self.headers)
        if not isinstance(answer, dict) or "state" not in answer:
            raise DeviceError(f"answered no state for {entity}")
        return answer

    async def read_state(self) -> str:
        return str((await self._entity(self.entity))["state"]).lower()

    async def set_state(self, state: str) -> str:
        response = await self.http(
            "POST", f"/api/services/{quote(self.domain)}/turn_{state}", json={"entity_id": self.entity},
            headers=self.headers,
        )
        changed = response.check().json()
        # the service call answers with the states it changed; ours is there when it changed at once
        for entry in changed if isinstance(changed, list) else []:
            if isinstance(entry, dict) and entry.get("entity_id") == self.entity:
                return str(entry.get("state")).lower()
        await deferLater(self.device.reactor, self.status_delay, lambda: None)
        return await self.read_state()

    async def read_energy(self) -> float:
        assert self.energy_sensor is not None
        sensor = await self._entity(self.energy_sensor)
        unit = str((sensor.get("attributes") or {}).get("unit_of_measurement", "kWh")).lower()
        if unit not in _TO_KWH:
            raise DeviceError(f"{self.energy_sensor} measures {unit!r}, not Wh, kWh or MWh")
        try:
            return float(sensor["state"]) * _TO_KWH[unit]
        except ValueError:
            raise DeviceError(f"{self.energy_sensor} reads {sensor['state']!r}") from None
