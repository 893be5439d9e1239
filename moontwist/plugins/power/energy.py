"""Energy per print (Moonraker issue #445): devices with a meter and ``record_energy``.

Each such device adds the history field ``energy`` (provider ``power NAME``,
kWh, strategy ``delta``) to every job's ``auxiliary_data``, with totals.  The
meter is read every ``energy_interval`` seconds, and at once when a print is
requested or starts, so a job's value is exact to within one interval at its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall

from moontwist.history_fields import HistoryField

if TYPE_CHECKING:
    from moontwist.plugins.power.device import PowerDevice
    from moontwist.plugins.power.plugin import PowerPlugin

__all__ = ["EnergyRecorder"]


class EnergyRecorder:
    """Reads the meters into the history fields."""

    def __init__(self, plugin: PowerPlugin) -> None:
        self.plugin = plugin
        self.log = plugin.log
        self.loops: list[LoopingCall] = []

    @property
    def devices(self) -> list[PowerDevice]:
        return [d for d in self.plugin.devices.values() if d.record_energy]

    def register_fields(self, register: Any) -> None:
        for device in self.devices:
            device.energy_field = register(
                HistoryField(
                    provider=f"power {device.name}",
                    name="energy",
                    description=f"Energy used by power device {device.name}",
                    strategy="delta",
                    units="kWh",
                    precision=4,
                    report_total=True,
                    report_maximum=True,
                )
            )

    def start(self) -> None:
        for device in self.devices:
            loop = LoopingCall(self.read, device)
            loop.clock = self.plugin.server.reactor
            loop.start(device.energy_interval, now=True)
            self.loops.append(loop)

    def read_all(self) -> None:
        for device in self.devices:
            self.read(device)

    def read(self, device: PowerDevice) -> Any:
        async def read() -> None:
            value = await device.read_energy()
            if value is not None and device.energy_field is not None:
                device.energy_field.update(value)

        return ensureDeferred(read()).addErrback(
            lambda f: self.log.failure("Power device {name}: energy reading failed", f, name=device.name)
        )

    def stop(self) -> None:
        for loop in self.loops:
            if loop.running:
                loop.stop()
        self.loops.clear()
