"""Heaters and temperature sensors with a first-order thermal model."""

from __future__ import annotations

import random

from .errors import GCodeError
from .gcode import GCodeCommand

AMBIENT = 23.0
_STEP = 0.25  # integration step in simulated seconds


class Heater:
    """A heater whose temperature approaches its target (simulated seconds).

    ``gain`` is the heating rate in degC/s at full power, ``loss`` the fraction
    of the excess over ambient lost per second.
    """

    def __init__(self, name: str, gcode_id: str, max_temp: float, gain: float, loss: float,
                 rng: random.Random) -> None:
        self.name = name
        self.gcode_id = gcode_id
        self.max_temp = max_temp
        self.gain = gain
        self.loss = loss
        self.rng = rng
        self.temperature = AMBIENT + rng.uniform(-0.5, 0.5)
        self.target = 0.0
        self.power = 0.0
        self._last: float | None = None

    def set_target(self, target: float) -> None:
        """Set the target; Klippy's range check and wording."""
        if target and not 0.0 <= target <= self.max_temp:
            raise GCodeError(
                f"Requested temperature ({target:.1f}) out of range (0.0:{self.max_temp:.1f})")
        self.target = float(target)

    def update(self, now: float) -> None:
        """Integrate the model up to simulated time ``now``."""
        if self._last is None:
            self._last = now
            return
        remaining = min(now - self._last, 600.0)
        self._last = now
        while remaining > 1e-9:
            dt = min(_STEP, remaining)
            remaining -= dt
            excess = self.temperature - AMBIENT
            if self.target > 0.0:
                hold = excess * self.loss / self.gain
                self.power = min(1.0, max(0.0, hold + (self.target - self.temperature) * 0.15))
            else:
                self.power = 0.0
            self.temperature += (self.power * self.gain - excess * self.loss) * dt

    def is_settled(self) -> bool:
        """True when within 1 degC of the target (or no target)."""
        return self.target <= 0.0 or abs(self.temperature - self.target) <= 1.0

    def get_status(self) -> dict:
        """Status fields ``temperature`` (with sensor noise), ``target``, ``power``."""
        noisy = self.temperature + self.rng.uniform(-0.05, 0.05)
        return {"temperature": round(noisy, 2), "target": self.target,
                "power": round(self.power, 3)}


class TemperatureSensor:
    """A passive sensor warmed a little by the bed (the ``chamber`` sensor)."""

    def __init__(self, source: Heater, coupling: float) -> None:
        self.source = source
        self.coupling = coupling
        self.temperature = AMBIENT
        self.min_temp = 99999999.0
        self.max_temp = 0.0

    def get_status(self) -> dict:
        """Status fields of a ``temperature_sensor``."""
        self.temperature = AMBIENT + (self.source.temperature - AMBIENT) * self.coupling
        self.min_temp = min(self.min_temp, self.temperature)
        self.max_temp = max(self.max_temp, self.temperature)
        return {"temperature": round(self.temperature, 2),
                "measured_min_temp": round(self.min_temp, 2),
                "measured_max_temp": round(self.max_temp, 2)}


class Heaters:
    """The extruder and bed heaters, the chamber sensor and their G-code commands."""

    def __init__(self, printer) -> None:
        self.printer = printer
        rng = random.Random(1407)
        self.extruder = Heater("extruder", "T0", 305.0, gain=6.0, loss=0.02, rng=rng)
        self.bed = Heater("heater_bed", "B", 125.0, gain=1.5, loss=0.012, rng=rng)
        self.chamber = TemperatureSensor(self.bed, 0.05)
        self.by_name = {"extruder": self.extruder, "heater_bed": self.bed}
        g = printer.gcode
        g.register("M104", self.cmd_m104)
        g.register("M109", self.cmd_m109)
        g.register("M140", self.cmd_m140)
        g.register("M190", self.cmd_m190)
        g.register("M105", self.cmd_m105)
        g.register("SET_HEATER_TEMPERATURE", self.cmd_set_heater_temperature)
        g.register("TEMPERATURE_WAIT", self.cmd_temperature_wait)
        g.register("TURN_OFF_HEATERS", self.cmd_turn_off_heaters)

    def update(self) -> None:
        """Advance both heaters to the current simulated time."""
        now = self.printer.clock.sim()
        self.extruder.update(now)
        self.bed.update(now)

    def temp_line(self) -> str:
        """The M105 report, e.g. ``B:60.0 /60.0 T0:200.0 /200.0``."""
        self.update()
        return " ".join(f"{h.gcode_id}:{h.temperature:.1f} /{h.target:.1f}"
                        for h in (self.bed, self.extruder))

    def turn_off(self) -> None:
        """Set every target to 0."""
        self.update()
        for heater in self.by_name.values():
            heater.target = 0.0

    async def wait_for(self, heater: Heater, minimum: float | None = None,
                       maximum: float | None = None) -> None:
        """Wait (reporting temperatures each second) until the heater settles."""
        def done() -> bool:
            if minimum is not None or maximum is not None:
                lo = minimum if minimum is not None else float("-inf")
                hi = maximum if maximum is not None else float("inf")
                return lo <= heater.temperature <= hi
            return heater.is_settled()
        last_report = self.printer.clock.eventtime()
        while True:
            self.update()
            if self.printer.state != "ready":
                raise GCodeError(self.printer.state_message)
            if done():
                return
            if self.printer.clock.eventtime() - last_report >= 1.0:
                last_report = self.printer.clock.eventtime()
                self.printer.toolhead.sync_print_time()
                self.printer.gcode.respond_raw(self.temp_line())
            await self.printer.clock.sleep(0.05)

    def _set(self, heater: Heater, cmd: GCodeCommand) -> Heater:
        self.update()
        self.printer.toolhead.sync_print_time()
        heater.set_target(cmd.get_float("S", 0.0))
        return heater

    def cmd_m104(self, cmd: GCodeCommand) -> None:
        """Set the extruder temperature."""
        self._set(self.extruder, cmd)

    async def cmd_m109(self, cmd: GCodeCommand) -> None:
        """Set the extruder temperature and wait for it."""
        await self.wait_for(self._set(self.extruder, cmd))

    def cmd_m140(self, cmd: GCodeCommand) -> None:
        """Set the bed temperature."""
        self._set(self.bed, cmd)

    async def cmd_m190(self, cmd: GCodeCommand) -> None:
        """Set the bed temperature and wait for it."""
        await self.wait_for(self._set(self.bed, cmd))

    def cmd_m105(self, cmd: GCodeCommand) -> None:
        """Report temperatures."""
        self.printer.gcode.respond_raw(self.temp_line())

    def _heater(self, cmd: GCodeCommand, key: str) -> Heater:
        name = cmd.get(key)
        heater = self.by_name.get(name)
        if heater is None:
            raise GCodeError(f"Heater {name} not configured")
        return heater

    def cmd_set_heater_temperature(self, cmd: GCodeCommand) -> None:
        """SET_HEATER_TEMPERATURE HEATER=<name> TARGET=<degC>."""
        heater = self._heater(cmd, "HEATER")
        self.update()
        self.printer.toolhead.sync_print_time()
        heater.set_target(cmd.get_float("TARGET", 0.0))

    async def cmd_temperature_wait(self, cmd: GCodeCommand) -> None:
        """TEMPERATURE_WAIT SENSOR=<name> [MINIMUM=] [MAXIMUM=]."""
        heater = self._heater(cmd, "SENSOR")
        lo = cmd.get_float("MINIMUM", None)
        hi = cmd.get_float("MAXIMUM", None)
        if lo is None and hi is None:
            raise GCodeError("Error on 'TEMPERATURE_WAIT': missing MINIMUM or MAXIMUM.")
        await self.wait_for(heater, lo, hi)

    def cmd_turn_off_heaters(self, cmd: GCodeCommand) -> None:
        """Turn off all heaters."""
        self.turn_off()

    def get_status(self, name: str) -> dict:
        """Status of ``extruder``, ``heater_bed`` or ``temperature_sensor chamber``."""
        self.update()
        if name == "temperature_sensor chamber":
            return self.chamber.get_status()
        return self.by_name[name].get_status()
