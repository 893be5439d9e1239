"""``gpio``: a line of a Linux GPIO character device, driven through libgpiod (``gpiod``).

Options: ``pin`` (Moonraker's format: ``[!][gpiochipN/]gpioM``; ``!`` inverts,
the chip defaults to gpiochip0), ``timer`` (seconds: switch off again after
switching on).  The line is requested as an output at start-up with the
``initial_state`` (off when not given) and held until the server stops;
moontwist keeps exclusive control of it, so the state is what was last written.
A chip that is missing (or a line another program holds) puts the device in
``error`` and is tried again on the next request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet.threads import deferToThread

from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver

__all__ = ["GpioDriver", "Pin", "OutputLine", "parse_pin", "CONSUMER"]

CONSUMER = "moontwist"
_PIN = re.compile(r"^(?P<bias>[~^])?(?P<inverted>!)?(?:(?P<chip>gpiochip\d+)/)?gpio(?P<line>\d+)$")


@dataclass(frozen=True)
class Pin:
    chip: str  # /dev/gpiochipN
    line: int
    inverted: bool

    def __str__(self) -> str:
        return f"{'!' if self.inverted else ''}{self.chip}/gpio{self.line}"


def parse_pin(section: ConfigSection, option: str = "pin") -> Pin:
    raw = section.get(option).strip()
    match = _PIN.match(raw)
    if match is None:
        raise ConfigError(
            f"Config error in section [{section.name}], option '{option}': {raw!r} is not "
            "[!][gpiochipN/]gpioM (for example gpio26, !gpiochip0/gpio16)"
        )
    if match["bias"]:
        raise ConfigError(
            f"Config error in section [{section.name}], option '{option}': bias flag {match['bias']!r} "
            "is for inputs, not output pins"
        )
    return Pin(f"/dev/{match['chip'] or 'gpiochip0'}", int(match["line"]), bool(match["inverted"]))


class OutputLine:
    """One requested output line (blocking calls: run them in a thread)."""

    def __init__(self, pin: Pin, on: bool) -> None:
        import gpiod
        from gpiod.line import Direction, Value

        self.pin = pin
        self._value = Value
        if not gpiod.is_gpiochip_device(pin.chip):
            raise DeviceError(f"{pin.chip} is not a GPIO chip (is the chip there, and readable?)")
        settings = gpiod.LineSettings(
            direction=Direction.OUTPUT,
            output_value=Value.ACTIVE if on else Value.INACTIVE,
            active_low=pin.inverted,
        )
        try:
            self.request = gpiod.request_lines(pin.chip, consumer=CONSUMER, config={pin.line: settings})
        except OSError as exc:
            raise DeviceError(f"can't request line {pin.line} of {pin.chip}: {exc.strerror or exc}") from None

    def set(self, on: bool) -> None:
        self.request.set_value(self.pin.line, self._value.ACTIVE if on else self._value.INACTIVE)

    def release(self) -> None:
        self.request.release()


class GpioDriver(PowerDriver):
    can_poll = False
    local_timer = True

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.pin = parse_pin(section)
        self.line: OutputLine | None = None
        self.on = bool(device.initial_state)

    async def _line(self) -> OutputLine:
        if self.line is None:
            self.line = await deferToThread(OutputLine, self.pin, self.on)
        return self.line

    async def start(self) -> None:
        await self._line()

    async def stop(self) -> None:
        line, self.line = self.line, None
        if line is not None:
            await deferToThread(line.release)

    async def read_state(self) -> str:
        await self._line()
        return "on" if self.on else "off"

    async def set_state(self, state: str) -> str:
        line = await self._line()
        await deferToThread(line.set, state == "on")
        self.on = state == "on"
        return state
