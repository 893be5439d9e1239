"""``machine.proc_stats`` and the once-a-second ``notify_proc_stat_update``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from moontwist.api.registry import APIRequest, Endpoint
from moontwist.hookspecs import hookimpl
from moontwist.machine.procstats import ProcStatsSampler

if TYPE_CHECKING:
    from moontwist.server import Server


class ProcStatsPlugin:
    """Samples this process and the host every second; reports throttling changes."""

    sampler: ProcStatsSampler | None = None

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        register(
            Endpoint(
                "machine.proc_stats",
                self.proc_stats,
                "/machine/proc_stats",
                description="Recent process samples, CPU temperature and throttling, network, memory",
            )
        )

    @hookimpl
    def startup(self, server: Server) -> None:
        sampler = ProcStatsSampler(
            server.reactor,
            websocket_count=lambda: server.connections.count("websocket"),
            log=server.logger(ProcStatsSampler.__module__),
        )
        sampler.add_update_listener(lambda payload: server.notify("notify_proc_stat_update", payload))
        sampler.add_throttled_listener(lambda state: server.notify("notify_cpu_throttled", state))
        sampler.start()
        self.sampler = sampler

    @hookimpl
    def shutdown(self, server: Server) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def proc_stats(self, request: APIRequest) -> dict[str, Any]:
        assert self.sampler is not None
        return self.sampler.proc_stats()
