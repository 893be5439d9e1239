"""The measurement window shared by the load drivers: warm-up, timed window, CPU accounting."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.server import ProcStats, self_cpu_seconds, system_busy_seconds
from bench.stats import summarize

__all__ = ["LoadResult", "Window"]


@dataclass
class LoadResult:
    """What one load run measured inside its window."""

    completed: int
    errors: int
    elapsed: float
    latencies: list[float] = field(repr=False)
    client_cpu: float  # generator CPU seconds per wall second during the window
    server_cpu: float | None  # server CPU seconds per wall second (None: pid unknown)
    system_cpu: float | None = None  # whole machine's busy CPU seconds per wall second
    aborted: str | None = None  # why the run stopped early, if it did

    @property
    def other_cpu(self) -> float | None:
        """CPU s/s used by everything except server and generator (noise from other work)."""
        if self.system_cpu is None or self.server_cpu is None:
            return None
        return max(0.0, self.system_cpu - self.server_cpu - self.client_cpu)

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def client_us_per_op(self) -> float | None:
        """Generator CPU microseconds per completed operation."""
        if not self.completed:
            return None
        return self.client_cpu * self.elapsed / self.completed * 1e6

    def latency(self) -> dict[str, float]:
        return summarize(self.latencies)


class Window:
    """Warm-up for ``warmup`` seconds, then a window of ``duration`` seconds.

    Load drivers call :meth:`record` for every completed operation; only those completing
    while the window is open count. ``finished`` resolves when the window closes, the
    operation cap is hit, or :meth:`abort` is called. The window also takes CPU snapshots of
    this process and of the server pid (if known) at its edges.
    """

    def __init__(
        self,
        warmup: float,
        duration: float,
        server: ProcStats | None = None,
        max_ops: int = 20_000_000,
        stall_timeout: float = 10.0,
    ) -> None:
        if duration <= 0:
            raise ValueError("duration must be positive")
        self.warmup = max(0.0, warmup)
        self.duration = duration
        self.server = server
        self.max_ops = max_ops
        self.stall_timeout = stall_timeout
        self.open = False
        self.closed = False
        self.completed = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.aborted: str | None = None
        self.last_progress = time.perf_counter()
        self._t0 = self._t1 = 0.0
        self._c0 = self._c1 = 0.0
        self._s0: float | None = None
        self._s1: float | None = None
        self._y0: float | None = None
        self._y1: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handles: list[asyncio.TimerHandle] = []
        self.finished: asyncio.Future[None] | None = None

    # -- driven by the load driver

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        self.last_progress = time.perf_counter()
        self._handles.append(loop.call_later(self.warmup, self._open))
        self._handles.append(loop.call_later(1.0, self._watchdog))

    def record(self, latency: float) -> None:
        """One operation completed successfully, ``latency`` seconds after it was sent."""
        self.last_progress = time.perf_counter()
        if self.open:
            self.latencies.append(latency)
            self.completed += 1
            if self.completed >= self.max_ops:
                self._close()

    def error(self) -> None:
        """One operation completed with an error answer."""
        self.last_progress = time.perf_counter()
        if self.open:
            self.errors += 1

    def abort(self, reason: str) -> None:
        if self.aborted is None:
            self.aborted = reason
        self._close()

    @property
    def sending(self) -> bool:
        """Whether drivers should keep issuing new operations."""
        return not self.closed

    def result(self) -> LoadResult:
        elapsed = self._t1 - self._t0 if self._t1 else 0.0
        client = (self._c1 - self._c0) / elapsed if elapsed > 0 else 0.0
        server = None
        if self._s0 is not None and self._s1 is not None and elapsed > 0:
            server = (self._s1 - self._s0) / elapsed
        system = None
        if self._y0 is not None and self._y1 is not None and elapsed > 0:
            system = (self._y1 - self._y0) / elapsed
        return LoadResult(
            completed=self.completed,
            errors=self.errors,
            elapsed=elapsed,
            latencies=self.latencies,
            client_cpu=client,
            server_cpu=server,
            system_cpu=system,
            aborted=self.aborted,
        )

    # -- internals

    def _server_cpu(self) -> float | None:
        return self.server.cpu_seconds() if self.server is not None else None

    def _open(self) -> None:
        if self.closed:
            return
        assert self._loop is not None
        self._s0 = self._server_cpu()
        self._y0 = system_busy_seconds()
        self._c0 = self_cpu_seconds()
        self._t0 = time.perf_counter()
        self.open = True
        self._handles.append(self._loop.call_later(self.duration, self._close))

    def _close(self) -> None:
        if self.closed:
            return
        if self.open:
            self._t1 = time.perf_counter()
            self._c1 = self_cpu_seconds()
            self._s1 = self._server_cpu()
            self._y1 = system_busy_seconds()
        self.open = False
        self.closed = True
        for h in self._handles:
            h.cancel()
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def _watchdog(self) -> None:
        if self.closed:
            return
        assert self._loop is not None
        if time.perf_counter() - self.last_progress > self.stall_timeout:
            self.abort(f"no answer for {self.stall_timeout:.0f}s")
            return
        self._handles.append(self._loop.call_later(1.0, self._watchdog))
