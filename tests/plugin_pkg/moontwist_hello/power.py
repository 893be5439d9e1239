"""A third-party power device type: a relay whose state is a file ("1" on, "0" off)."""

from twisted.internet.threads import deferToThread

from moontwist.hookspecs import hookimpl
from moontwist.plugins.power import DeviceError, PowerDriver


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class FileRelay(PowerDriver):
    """``type: file_relay`` with ``path:`` the file to keep the state in."""

    def __init__(self, device, section):
        super().__init__(device, section)
        self.path = section.get("path")

    async def read_state(self):
        try:
            text = await deferToThread(_read, self.path)
        except FileNotFoundError:
            return "off"
        if text not in ("0", "1"):
            raise DeviceError(f"{self.path} holds {text!r}, not 0 or 1")
        return "on" if text == "1" else "off"

    async def set_state(self, state):
        await deferToThread(_write, self.path, "1" if state == "on" else "0")
        return await self.read_state()


class HelloPowerPlugin:
    """Adds the ``file_relay`` power device type."""

    @hookimpl
    def register_power_device_types(self, register):
        register("file_relay", FileRelay)
