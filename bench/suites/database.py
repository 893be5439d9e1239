"""database: websocket post_item/get_item (sequential, 100 in flight), history list p99 and start-up at 100k jobs.

The post/get figures are measured against the server under test.  The history
figures need a data path holding 100,000 jobs, so this suite writes one (with
the same schema code as ``HistoryStore``) and starts its own moontwist on it:
start-up time is process spawn -> first ``200`` from ``/server/info``.  The
list p99 goes through the real endpoint: ``server.history.list`` over the
websocket, one call at a time, limit 50, newest first, oldest first and from
the middle of the history (start 50,000).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import sqlite3
import tempfile
import time

from bench.client.ws import ws_connect, ws_rpc_load
from bench.context import Context, SuiteError
from bench.result import Result
from bench.server import DEFAULT_SERVER_CMD, ServerProcess
from bench.suites.core import _load_rows

__all__ = ["TARGETS", "run", "make_history_datapath"]

TARGETS = {
    "get_per_s": 5000.0,  # get_item round trips/s (100 in flight)
    "post_per_s": 1500.0,  # durable post_item round trips/s (100 in flight)
    "history_p99_ms": 20.0,  # at most
    "startup_s": 2.0,  # at most, with 100k jobs
}

JOBS = 100_000
NAMESPACE = "bench_db"
POST = {"namespace": NAMESPACE, "key": "settings.counter", "value": {"a": 1, "b": [1, 2, 3]}}
GET = {"namespace": NAMESPACE, "key": "settings.counter"}
# label -> server.history.list params
HISTORY_LISTS = {
    "desc": {"limit": 50, "start": 0, "order": "desc"},
    "asc": {"limit": 50, "start": 0, "order": "asc"},
    "desc, start 50,000": {"limit": 50, "start": 50_000, "order": "desc"},
}


async def _probe(ctx: Context) -> bool:
    """Seeds the item read by get_item; returns whether server.history.list exists."""
    try:
        client = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
    except Exception as exc:  # noqa: BLE001 - any failure means the suite can't run
        raise SuiteError(f"websocket {ctx.ws_path} failed: {exc!r}") from None
    try:
        msg = await client.call("server.database.post_item", POST)
        if "result" not in msg:
            raise SuiteError(f"server.database.post_item answered {msg!r:.200}")
        msg = await client.call("server.history.list", {"limit": 1})
        return "result" in msg
    finally:
        await client.close()


def make_history_datapath(datapath: str, jobs: int = JOBS, seed: int = 1) -> None:
    """Write ``jobs`` finished jobs into ``<datapath>/database/moontwist.db``."""
    from moontwist.storage.database import DB_FILENAME, SCHEMA_VERSION_SQL, ensure_table
    from moontwist.storage.history import (
        JOB_HISTORY_SQL,
        JOB_HISTORY_VERSION,
        JOB_TOTALS_SQL,
        insert_jobs,
    )

    os.makedirs(os.path.join(datapath, "database"), exist_ok=True)
    conn = sqlite3.connect(os.path.join(datapath, "database", DB_FILENAME), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA_VERSION_SQL)
        conn.execute("BEGIN")
        ensure_table(conn, "job_history", JOB_HISTORY_SQL, JOB_HISTORY_VERSION, {})
        ensure_table(conn, "job_totals", JOB_TOTALS_SQL, 1, {})
        rng = random.Random(seed)
        t = 1_600_000_000.0
        batch = []
        for i in range(jobs):
            t += rng.uniform(600, 7200)
            duration = rng.uniform(300, 36000)
            batch.append(
                {
                    "filename": f"folder{i % 20}/part_{i}.gcode",
                    "status": rng.choice(("completed", "completed", "cancelled", "error")),
                    "start_time": t,
                    "end_time": t + duration,
                    "print_duration": duration * 0.9,
                    "total_duration": duration,
                    "filament_used": rng.uniform(100, 20000),
                    "metadata": {"size": 1234567, "slicer": "PrusaSlicer", "layer_height": 0.2,
                                 "estimated_time": int(duration), "filament_total": 5000.0},
                    "auxiliary_data": [],
                }
            )
            if len(batch) == 5000:
                insert_jobs(conn, batch)
                batch.clear()
        insert_jobs(conn, batch)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _history_rows(ctx: Context) -> list[Result]:
    tmp = tempfile.mkdtemp(prefix="moontwist-bench-history-")
    datapath = os.path.join(tmp, "data")
    try:
        ctx.log(f"  writing {JOBS} jobs into {datapath} ...")
        t0 = time.perf_counter()
        make_history_datapath(datapath)
        ctx.log(f"  ... {time.perf_counter() - t0:.1f} s")
        results: list[Result] = []
        template = DEFAULT_SERVER_CMD.replace("{datapath}", shlex.quote(datapath))
        proc = ServerProcess(cmd_template=template)
        t0 = time.perf_counter()
        proc.start()
        startup = time.perf_counter() - t0
        try:
            results.append(
                Result("start-up with 100k jobs", startup, "s", target=TARGETS["startup_s"],
                       higher_is_better=False,
                       note="spawn -> first 200 from /server/info (includes the interpreter)")
            )
            if not ctx.run(_has_history(proc.host, proc.port, ctx)):
                raise SuiteError("server.history.list is not served")
            for label, params in HISTORY_LISTS.items():
                ctx.log(f"  websocket server.history.list ({label}), sequential ...")
                lr = ctx.run(
                    ws_rpc_load(proc.host, proc.port, ctx.ws_path, "server.history.list", 1,
                                ctx.warmup, ctx.duration, None, params=params,
                                headers=ctx.headers)
                )
                rows = _load_rows(f"ws server.history.list (100k jobs, {label}) sequential",
                                  lr, "RPC/s")
                rows[2].target = TARGETS["history_p99_ms"]
                results += rows
        finally:
            proc.stop()
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _has_history(host: str, port: int, ctx: Context) -> bool:
    client = await ws_connect(host, port, ctx.ws_path, ctx.headers)
    try:
        msg = await client.call("server.history.list", {"limit": 1})
        return "result" in msg
    finally:
        await client.close()


def run(ctx: Context) -> list[Result]:
    results: list[Result] = []
    ctx.run(_probe(ctx))
    server = ctx.server
    for method, params, target_key in (
        ("server.database.get_item", GET, "get_per_s"),
        ("server.database.post_item", POST, "post_per_s"),
    ):
        for inflight in (1, 100):
            label = f"ws {method} " + ("sequential" if inflight == 1 else f"{inflight} in flight")
            ctx.log(f"  {label} ...")
            with ctx.placement(sequential=inflight == 1) as where:
                lr = ctx.run(
                    ws_rpc_load(ctx.host, ctx.port, ctx.ws_path, method, inflight, ctx.warmup,
                                ctx.duration, server, params=params, headers=ctx.headers)
                )
            target = TARGETS[target_key] if inflight > 1 else None
            results += _load_rows(label, lr, "RPC/s", target, where)
    results += _history_rows(ctx)
    return results
