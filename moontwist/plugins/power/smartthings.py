"""``smartthings``: a Samsung SmartThings switch, through the SmartThings REST API (v1).

Options: ``address`` (api.smartthings.com), ``protocol`` (https), ``port``,
``token`` (template, required), ``device`` (the device id, required).
"""

from __future__ import annotations

from urllib.parse import quote

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["SmartThingsDriver"]


class SmartThingsDriver(HTTPDriver):
    default_protocol = "https"
    default_address = "api.smartthings.com"
    credentials = False

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.device_id = section.get("device")
        self.token = device.templates.rendered(section, "token")
        self.headers = {"Authorization": f"Bearer {self.token}"}

    async def read_state(self) -> str:
        path = f"/v1/devices/{quote(self.device_id)}/components/main/capabilities/switch/status"
        answer = await self.get_json(path, headers=self.headers)
        return str(answer["switch"]["value"]).lower()

    async def set_state(self, state: str) -> str:
        command = {"component": "main", "capability": "switch", "command": state}
        response = await self.http(
            "POST", f"/v1/devices/{quote(self.device_id)}/commands", json={"commands": [command]},
            headers=self.headers,
        )
        status = str(response.check().json()["results"][0]["status"]).lower()
        if status != "accepted":
            raise DeviceError(f"did not accept the command (status {status!r})")
        return state
