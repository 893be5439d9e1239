"""``hue``: a Philips Hue light or group, through the bridge's API (v1: ``/api/USER/...``).

Options: ``address`` (``host:port`` works), ``port``, ``protocol``, ``user``
(the bridge's API key; template), ``device_id``, ``device_type`` (``light`` or
``group``).  The bridge answers errors with HTTP 200 and a list of
``{"error": ...}`` objects; those become the device's error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["HueDriver"]


def _check(answer: Any) -> Any:
    if isinstance(answer, list):
        for item in answer:
            if isinstance(item, dict) and "error" in item:
                error = item["error"] if isinstance(item["error"], dict) else {}
                raise DeviceError(f"bridge error: {error.get('description', item['error'])}")
    return answer


class HueDriver(HTTPDriver):
    credentials = False

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.user = device.templates.rendered(section, "user")
        self.device_id = section.get("device_id")
        self.device_type = section.get("device_type", "light", choices=("light", "group"))
        group = self.device_type == "group"
        self.state_key, self.on_key = ("action", "all_on") if group else ("state", "on")
        self.path = f"/api/{quote(self.user)}/{self.device_type}s/{quote(self.device_id)}"

    async def read_state(self) -> str:
        answer = _check(await self.get_json(self.path))
        return "on" if answer["state"][self.on_key] else "off"

    async def set_state(self, state: str) -> str:
        response = await self.http("PUT", f"{self.path}/{self.state_key}", json={"on": state == "on"})
        answer = _check(response.check().json())
        key = f"/{self.device_type}s/{self.device_id}/{self.state_key}/on"
        for item in answer:
            if isinstance(item, dict) and key in (item.get("success") or {}):
                return "on" if item["success"][key] else "off"
        raise DeviceError(f"did not confirm {key}")
