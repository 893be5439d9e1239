"""klippy: 200 clients subscribing, status fan-out to 200 clients, printer.objects.query (subscribed, first, once seen).

Needs a printer: run it against moontwist started with ``--simulate`` (the default when the
bench starts moontwist itself), with ``--klippy-socket`` (a real Klippy), or against any server
connected to a Klippy.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

from bench.client.http import build_request, http_load, parse_response
from bench.client.ws import ws_connect
from bench.context import Context, SuiteError
from bench.result import Result
from bench.stats import percentile
from bench.suites.core import _load_rows

__all__ = ["TARGETS", "run"]

TARGETS = {
    "subscribe_200": 2.0,  # seconds for 200 clients to connect and subscribe, at most
    "fanout_p99": 20.0,  # ms until all 200 clients have a status change, at most
    "query_cached": 3000.0,  # req/s at c=32
    "query_seen_p50": 5.0,  # ms at c=1, at most, for objects queried before
    "query_seen_c256": 5000.0,  # req/s at c=256, for objects queried before
}
CLIENTS = 200
OBJECTS = {"extruder": None, "toolhead": None}
CACHED_PATH = "/printer/objects/query?extruder&toolhead"
# Objects no client of this suite subscribes to (Home Assistant-style polling).
SEEN_PATH = "/printer/objects/query?gcode_move&motion_report&system_stats"
FIRST_QUERIES = 8  # objects queried for the first time, one after another


async def _subscribe_storm(ctx: Context) -> tuple[list, float]:
    """Connect and subscribe CLIENTS websockets at once; seconds until the last reply."""
    t0 = time.perf_counter()

    async def one():
        client = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
        # Moonraker answers these one Klippy tick after another: ~50 s for all 200.
        msg = await client.call("printer.objects.subscribe", {"objects": OBJECTS}, timeout=120)
        if "result" not in msg:
            raise SuiteError(f"printer.objects.subscribe answered {msg!r:.200}")
        return client

    clients = await asyncio.gather(*(one() for _ in range(CLIENTS)))
    return list(clients), time.perf_counter() - t0


async def _fanout(ctx: Context, clients: list, seconds: float) -> dict:
    """Record when each client receives each eventtime; spread from first to last receipt."""
    seen: dict[float, list[float]] = {}
    per_client: list[set[float]] = [set() for _ in clients]

    def listener(index: int):
        def on_notification(msg: dict) -> None:
            if msg.get("method") != "notify_status_update":
                return
            eventtime = msg["params"][1]
            per_client[index].add(eventtime)
            seen.setdefault(eventtime, []).append(time.perf_counter())

        return on_notification

    for i, client in enumerate(clients):
        client.on_notification = listener(i)
    control = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
    await control.call("printer.gcode.script", {"script": "M104 S210"}, timeout=10)
    await asyncio.sleep(seconds)
    await control.call("printer.gcode.script", {"script": "M104 S0"}, timeout=10)
    await control.close()
    await asyncio.sleep(0.5)
    for client in clients:
        client.on_notification = None
    # the last change may still be arriving when we stop: judge complete ones only
    complete = [e for e in sorted(seen)[:-1]]
    spreads = [(max(seen[e]) - min(seen[e])) * 1e3 for e in complete]
    missed = sum(1 for e in complete for got in per_client if e not in got)
    return {"changes": len(complete), "spreads": spreads, "missed": missed}


def run(ctx: Context) -> list[Result]:
    results: list[Result] = []
    info = ctx.run(_probe(ctx))
    if info != "ready":
        raise SuiteError(f"klippy_state is {info!r}: this suite needs a printer (moontwist --simulate)")

    clients, took = ctx.run(_subscribe_storm(ctx))
    results.append(
        Result(f"{CLIENTS} clients connect + subscribe", took, "s", TARGETS["subscribe_200"], higher_is_better=False)
    )
    ctx.log(f"  fan-out to {CLIENTS} clients for {ctx.duration:.0f} s ...")
    fan = ctx.run(_fanout(ctx, clients, ctx.duration))
    spreads = fan["spreads"]
    if spreads:
        results.append(
            Result(
                f"fan-out to {CLIENTS} clients p50", percentile(sorted(spreads), 50), "ms", higher_is_better=False,
                note=f"{fan['changes']} status changes",
            )
        )
        results.append(
            Result(f"fan-out to {CLIENTS} clients p99", percentile(sorted(spreads), 99), "ms", TARGETS["fanout_p99"], higher_is_better=False)
        )
    results.append(Result("missed status updates", fan["missed"], "updates", 0, higher_is_better=False))

    # the clients stay subscribed, so extruder and toolhead are in the live subscription
    ctx.log(f"  GET {CACHED_PATH} at concurrency 32 ...")
    request = build_request(ctx.host, ctx.port, CACHED_PATH, headers=ctx.headers)
    with ctx.placement(sequential=False) as where:
        lr = ctx.run(http_load(ctx.host, ctx.port, request, 32, ctx.warmup, ctx.duration, ctx.server))
    results += _load_rows("objects.query subscribed fields c=32", lr, "req/s", TARGETS["query_cached"], where)
    ctx.run(_close_all(clients))
    results += _query_rows(ctx)
    return results


def _query_rows(ctx: Context) -> list[Result]:
    """Objects nobody subscribes to: the first query of each, then repeated queries of some."""
    results: list[Result] = []
    names = ctx.run(_first_query_candidates(ctx))
    ctx.log(f"  first queries of {len(names)} objects, one after another ...")
    took = [ctx.run(_timed_get(ctx, f"/printer/objects/query?{quote(n)}")) for n in names]
    if took:
        results.append(
            Result(
                "objects.query first query p50", percentile(sorted(took), 50) * 1e3, "ms", higher_is_better=False,
                note=f"{len(took)} objects; max {max(took) * 1e3:.0f} ms",
            )
        )
    ctx.run(_timed_get(ctx, SEEN_PATH))  # seen once: from now on a live cache may answer
    time.sleep(0.6)
    request = build_request(ctx.host, ctx.port, SEEN_PATH, headers=ctx.headers)
    for conc, target in ((1, None), (256, TARGETS["query_seen_c256"])):
        ctx.log(f"  GET {SEEN_PATH} at concurrency {conc} (objects seen before) ...")
        with ctx.placement(sequential=conc == 1) as where:
            lr = ctx.run(http_load(ctx.host, ctx.port, request, conc, ctx.warmup, ctx.duration, ctx.server))
        rows = _load_rows(f"objects.query once seen c={conc}", lr, "req/s", target, where)
        if conc == 1:
            rows[1].target = TARGETS["query_seen_p50"]
        results += rows
    return results


async def _first_query_candidates(ctx: Context) -> list[str]:
    """Objects this run has not queried or subscribed yet."""
    client = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
    try:
        msg = await client.call("printer.objects.list")
    finally:
        await client.close()
    used = set(OBJECTS) | set(SEEN_PATH.split("?")[1].split("&")) | {"webhooks", "print_stats", "configfile", "gcode"}
    names = [n for n in msg.get("result", {}).get("objects", []) if n not in used]
    return names[:FIRST_QUERIES]


async def _timed_get(ctx: Context, path: str) -> float:
    """Seconds for one GET on a fresh connection (status 200 required)."""
    reader, writer = await asyncio.open_connection(ctx.host, ctx.port)
    try:
        t0 = time.perf_counter()
        writer.write(build_request(ctx.host, ctx.port, path, headers=ctx.headers))
        await writer.drain()
        buf = b""
        while (parsed := parse_response(buf)) is None:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                raise SuiteError(f"GET {path}: connection closed before the answer was complete")
            buf += chunk
        if parsed[0] != 200:
            raise SuiteError(f"GET {path} answered HTTP {parsed[0]}: {buf[:200]!r}")
        return time.perf_counter() - t0
    finally:
        writer.close()


async def _probe(ctx: Context) -> str:
    client = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
    try:
        for _ in range(50):
            msg = await client.call("server.info")
            state = msg.get("result", {}).get("klippy_state")
            if state == "ready":
                return state
            await asyncio.sleep(0.2)
        return state
    finally:
        await client.close()


async def _close_all(clients: list) -> None:
    await asyncio.gather(*(c.close() for c in clients))
