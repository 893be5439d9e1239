"""klippy_cost: Klippy's own CPU before and after the server was asked about 50 more objects (needs --klippy-pid).

A server that keeps queried objects subscribed (moontwist's live query cache) makes Klippy
compute and diff those objects on every 250 ms tick. This suite measures Klippy's CPU
(``/proc/PID/task/*/schedstat``) over the measurement window, then queries up to 50 objects once each
through ``GET /printer/objects/query`` (objects the server does not already subscribe to are
then subscribed by moontwist, not by Moonraker), lets the subscription settle and measures
again. Run Klippy in batch mode with a config that has enough objects (see bench/README.md).
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote

from bench.client.ws import ws_connect
from bench.context import Context, SuiteError
from bench.result import Result
from bench.server import ProcStats, http_get

__all__ = ["run"]

EXTRA = 50
SKIP = {"configfile", "gcode", "webhooks", "print_stats"}  # huge, or already subscribed by every server


def _cpu_seconds(stats: ProcStats) -> float | None:
    """CPU time of all the process's threads: nanoseconds from schedstat, else clock ticks from stat."""
    try:
        tids = os.listdir(f"/proc/{stats.pid}/task")
        total = 0
        for tid in tids:
            with open(f"/proc/{stats.pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        return stats.cpu_seconds(children=False)


def _cpu_rate(stats: ProcStats, seconds: float) -> float:
    c0, t0 = _cpu_seconds(stats), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = _cpu_seconds(stats), time.perf_counter()
    if c0 is None or c1 is None:
        raise SuiteError("Klippy went away during the measurement")
    return (c1 - c0) / (t1 - t0)


async def _objects(ctx: Context) -> list[str]:
    client = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
    try:
        msg = await client.call("printer.objects.list")
    finally:
        await client.close()
    return [n for n in msg.get("result", {}).get("objects", []) if n not in SKIP]


def run(ctx: Context) -> list[Result]:
    if not ctx.klippy_pid:
        raise SuiteError("pass --klippy-pid PID (the Klippy the server is connected to)")
    klippy = ProcStats(ctx.klippy_pid)
    if not klippy.alive():
        raise SuiteError(f"no process with pid {ctx.klippy_pid}")
    names = ctx.run(_objects(ctx))[:EXTRA]
    window = ctx.duration
    time.sleep(1.0)
    ctx.log(f"  Klippy CPU for {window:.0f} s before ...")
    before = _cpu_rate(klippy, window)
    ctx.log(f"  querying {len(names)} objects once each ...")
    for name in names:
        status, body = http_get(ctx.host, ctx.port, f"/printer/objects/query?{quote(name)}", headers=ctx.headers)
        if status != 200:
            raise SuiteError(f"query of {name} answered HTTP {status}: {body[:200]!r}")
    time.sleep(1.0)  # the subscription now includes them (moontwist)
    ctx.log(f"  Klippy CPU for {window:.0f} s after ...")
    after = _cpu_rate(klippy, window)
    note = f"{len(names)} objects queried"
    return [
        Result("Klippy CPU, objects not queried", before * 100, "% of a core", higher_is_better=False),
        Result("Klippy CPU, after querying them", after * 100, "% of a core", higher_is_better=False, note=note),
        Result("Klippy CPU difference", (after - before) * 100, "% of a core", higher_is_better=False, note=note),
    ]

