"""The context a suite runs in: where the server is, how long to measure, how to run the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.loop import loop_name, new_event_loop
from bench.server import ProcStats

__all__ = ["Context", "SuiteError"]

T = TypeVar("T")


class SuiteError(RuntimeError):
    """A suite cannot run against this server (wrong answers, refused connections...)."""


@dataclass
class Context:
    host: str
    port: int
    duration: float = 5.0
    warmup: float = 1.0
    ws_path: str = "/websocket"
    pid: int | None = None
    api_key: str | None = None
    use_wrk: bool = True
    use_uvloop: bool = True
    rss_at_start: int | None = None  # bytes, measured before any load
    rss_label: str = "RSS at start"
    started_by_bench: bool = False
    rss_target: bool = False  # the RSS at start is comparable with the target (no simulator in-process)
    verbose: bool = True
    klippy_pid: int | None = None  # the Klippy behind the server (suite klippy_cost)
    meta: dict[str, Any] = field(default_factory=dict)
    # CPU placement (see README "CPU placement"): the CPUs the server is pinned to, and the
    # CPUs the generator uses for concurrent loads; None = no pinning
    server_cpus: set[int] | None = None
    generator_cpus: set[int] | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def server(self) -> ProcStats | None:
        """RSS/CPU reader of the server process, when its pid is known."""
        return ProcStats(self.pid) if self.pid else None

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key} if self.api_key else {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = new_event_loop(self.use_uvloop)
        return self._loop

    @property
    def loop_name(self) -> str:
        return loop_name(self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the bench's event loop (one loop for the whole run)."""
        return self.loop.run_until_complete(coro)

    @contextlib.contextmanager
    def placement(self, sequential: bool) -> Iterator[str]:
        """Pin the generator for one measurement; yields a description of the placement.

        Sequential loads (one request at a time) run on the server's CPU: the two processes
        alternate and every wake-up stays on one CPU, which is far cheaper than a cross-CPU
        wake-up (on VMs by 3-5x). Concurrent loads run on the other CPUs so that generator and
        server do not compete. Without a pinned server nothing is changed.
        """
        if not self.server_cpus or not self.generator_cpus or not hasattr(os, "sched_setaffinity"):
            yield "unpinned"
            return
        cpus = self.server_cpus if sequential else self.generator_cpus
        before = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            yield "unpinned"
            return
        try:
            yield "same CPU as server" if sequential else "other CPU than server"
        finally:
            os.sched_setaffinity(0, before)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            self._loop = None
