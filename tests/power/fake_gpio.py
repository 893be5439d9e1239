"""A stand-in for the kernel's GPIO character device, behind libgpiod's Python API.

gpio-sim and gpio-mockup can't be loaded here (no kernel modules, no configfs
in this VM), and libgpiod's bindings have no test double of their own.  So the
tests replace the two libgpiod entry points moontwist calls,
``gpiod.is_gpiochip_device`` and ``gpiod.request_lines``, with this chip: it
checks the request as the kernel would (known chip, line offset in range, line
not already held) and records the settings and every value written.
"""

from __future__ import annotations

import threading
from typing import Any

import gpiod
from gpiod.line import Direction, Value


class FakeLineRequest:
    def __init__(self, chip: FakeChip, offset: int, settings: gpiod.LineSettings, consumer: str) -> None:
        self.chip, self.offset, self.settings, self.consumer = chip, offset, settings, consumer
        self.released = False

    def set_value(self, line: int, value: Value) -> None:
        assert not self.released and line == self.offset
        self.chip.record(line, value)

    def release(self) -> None:
        self.released = True
        self.chip.held.discard(self.offset)


class FakeChip:
    def __init__(self, path: str = "/dev/gpiochip0", lines: int = 32) -> None:
        self.path, self.lines = path, lines
        self.held: set[int] = set()
        self.requests: list[FakeLineRequest] = []
        self.writes: list[tuple[int, int]] = []  # (offset, physical level)
        self.lock = threading.Lock()

    def record(self, offset: int, value: Value) -> None:
        request = next(r for r in self.requests if r.offset == offset and not r.released)
        level = (value == Value.ACTIVE) != request.settings.active_low
        with self.lock:
            self.writes.append((offset, int(level)))

    def level(self, offset: int) -> int | None:
        with self.lock:
            levels = [lv for off, lv in self.writes if off == offset]
        return levels[-1] if levels else None

    def install(self, monkeypatch: Any) -> FakeChip:
        def is_gpiochip_device(path: str) -> bool:
            return path == self.path

        def request_lines(path: str, config: dict, consumer: str | None = None, **kwargs: Any) -> FakeLineRequest:
            if path != self.path:
                raise FileNotFoundError(2, "No such file or directory")
            ((offset, settings),) = config.items()
            if not 0 <= offset < self.lines:
                raise ValueError(f"invalid offset {offset}")
            if offset in self.held:
                raise OSError(16, "Device or resource busy")
            assert settings.direction == Direction.OUTPUT
            self.held.add(offset)
            request = FakeLineRequest(self, offset, settings, consumer or "")
            self.requests.append(request)
            level = (settings.output_value == Value.ACTIVE) != settings.active_low
            with self.lock:
                self.writes.append((offset, int(level)))
            return request

        monkeypatch.setattr(gpiod, "is_gpiochip_device", is_gpiochip_device)
        monkeypatch.setattr(gpiod, "request_lines", request_lines)
        return self
