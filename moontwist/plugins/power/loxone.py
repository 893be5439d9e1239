"""``loxonev1``: an output of a Loxone Miniserver (Gen 1), through ``/jdev/sps/io/NAME``.

Options: ``address`` (``host:port`` works), ``user`` (admin), ``password``
(admin), ``output_id`` (the output, virtual input or virtual output name).
"""

from __future__ import annotations

from urllib.parse import quote

from moontwist.config import ConfigSection
from moontwist.plugins.power.device import PowerDevice
from moontwist.plugins.power.httpclient import HTTPDriver

__all__ = ["LoxoneDriver"]


class LoxoneDriver(HTTPDriver):
    default_user = "admin"
    default_password = "admin"

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.output_id = section.get("output_id", "")

    async def _io(self, command: str = "") -> str:
        path = f"/jdev/sps/io/{quote(self.output_id)}" + (f"/{command}" if command else "")
        answer = await self.get_json(path, auth=self.basic_auth)
        return "on" if int(float(answer["LL"]["value"])) == 1 else "off"

    async def read_state(self) -> str:
        return await self._io()

    async def set_state(self, state: str) -> str:
        return await self._io(state)
