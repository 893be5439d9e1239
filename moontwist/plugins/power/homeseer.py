"""``homeseer``: a device managed by HomeSeer, through its JSON API (``/JSON?request=``).

Options: ``address`` (``host:port`` works), ``port``, ``device`` (the device
reference number), ``user`` (admin), ``password``.
"""

from __future__ import annotations

from typing import Any

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["HomeSeerDriver"]


class HomeSeerDriver(HTTPDriver):
    default_user = "admin"

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.device_ref = section.getint("device")

    async def _request(self, request: str, **extra: Any) -> Any:
        query = {"user": self.user, "pass": self.password, "request": request, "ref": self.device_ref, **extra}
        return await self.get_json("/JSON", query, auth=self.basic_auth)

    async def read_state(self) -> str:
        answer = await self._request("getstatus")
        return str(answer["Devices"][0]["status"]).lower()

    async def set_state(self, state: str) -> str:
        await self._request("controldevicebylabel", label=state.capitalize())
        return state
