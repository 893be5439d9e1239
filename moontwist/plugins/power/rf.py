"""``rf``: a 433 MHz power socket behind an RF transmitter on a GPIO line.

Options: ``pin`` (as for ``gpio``), ``on_code`` and ``off_code`` (binary
codes, padded to 24 bits), ``timer``.  A code is sent ten times, each bit a
high and a low pulse (1: 3+1 pulse lengths, 0: 1+3) followed by a sync
(1+31), pulse length 350 µs, as Moonraker does.  The waveform is played in a
thread (it takes about half a second), never on the reactor.  RF sockets
can't report their state: it is what was last sent.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.threads import deferToThread

from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import PowerDevice
from moontwist.plugins.power.gpio import GpioDriver, OutputLine

__all__ = ["RFDriver", "waveform", "PULSE_LENGTH", "REPEATS"]

PULSE_LENGTH = 0.00035
REPEATS = 10
_ONE, _ZERO, _SYNC = (3, 1), (1, 3), (1, 31)


def waveform(code: str) -> list[tuple[int, float]]:
    """The (level, seconds) steps that send ``code`` ``REPEATS`` times."""
    steps: list[tuple[int, float]] = []
    for _ in range(REPEATS):
        for bit in (*(_ONE if c == "1" else _ZERO for c in code), _SYNC):
            steps.append((1, bit[0] * PULSE_LENGTH))
            steps.append((0, bit[1] * PULSE_LENGTH))
    return steps


def _play(line: OutputLine, steps: list[tuple[int, float]], sleep: Any = time.sleep) -> None:
    for level, seconds in steps:
        line.set(bool(level))
        sleep(seconds)


class RFDriver(GpioDriver):
    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.on = False  # the transmitter idles low whatever the socket's state
        self.codes: dict[str, str] = {}
        for state in ("on", "off"):
            code = section.get(f"{state}_code").strip()
            if not code or set(code) - {"0", "1"} or len(code) > 24:
                raise ConfigError(
                    f"Config error in section [{section.name}], option '{state}_code': "
                    f"{code!r} is not a binary code of at most 24 bits"
                )
            self.codes[state] = code.zfill(24)
        self.socket_state = "off"

    async def start(self) -> None:
        line = await self._line()
        if self.device.initial_state is None:  # as Moonraker: make "off" true rather than assume it
            await self.send(line, self.codes["off"])

    async def read_state(self) -> str:
        await self._line()
        return self.socket_state

    async def set_state(self, state: str) -> str:
        line = await self._line()
        await self.send(line, self.codes[state])
        self.socket_state = state
        return state

    def send(self, line: OutputLine, code: str) -> Any:
        return deferToThread(_play, line, waveform(code), self.sleep)

    sleep = staticmethod(time.sleep)
