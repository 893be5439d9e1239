"""Clocks of the simulator: Klippy's eventtime and the scaled simulation time."""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater


class SimClock:
    """Real (reactor) time plus a simulated time running ``speed`` times faster."""

    def __init__(self, reactor, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.reactor = reactor
        self.speed = float(speed)
        self._r0 = reactor.seconds()
        self._mono0 = time.monotonic()

    def eventtime(self) -> float:
        """Klippy's eventtime: a CLOCK_MONOTONIC-like value in seconds."""
        return self._mono0 + (self.reactor.seconds() - self._r0)

    def sim(self) -> float:
        """Simulated seconds since the simulator was created."""
        return (self.reactor.seconds() - self._r0) * self.speed

    def sleep(self, seconds: float) -> Deferred:
        """Fire after ``seconds`` of real time."""
        return deferLater(self.reactor, max(0.0, seconds), lambda: None)

    def sleep_sim(self, seconds: float) -> Deferred:
        """Fire after ``seconds`` of simulated time."""
        return self.sleep(seconds / self.speed)
