"""core: GET /server/info at c=1 and c=32, websocket server.info sequential and 100 in flight, RSS.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import subprocess
import time

from bench.client.http import build_request, http_load
from bench.client.ws import ws_connect, ws_rpc_load
from bench.context import Context, SuiteError
from bench.measure import LoadResult
from bench.result import Result
from bench.server import http_get

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads

__all__ = ["TARGETS", "run"]

# Targets on the project's 2-core reference machine (see bench/README.md).
TARGETS = {
    "http_c32": 5000.0,  # req/s
    "rpc_seq": 6000.0,  # round trips/s
    "rpc_100": 20000.0,  # round trips/s
    "rss_start": 45.0,  # MB (10^6 bytes), at most
}

HTTP_PATH = "/server/info"
RPC_METHOD = "server.info"
MB = 1e6


def _load_rows(
    label: str, lr: LoadResult, unit: str, target: float | None = None, placement: str = ""
) -> list[Result]:
    lat = lr.latency()
    notes = []
    if lr.errors:
        notes.append(f"{lr.errors} error answers")
    if lr.aborted:
        notes.append(f"aborted: {lr.aborted}")
    extra = {
        "completed": lr.completed,
        "errors": lr.errors,
        "elapsed_s": round(lr.elapsed, 4),
        "client_us_per_op": lr.client_us_per_op,
        "placement": placement,
        "system_cpu": lr.system_cpu,
        "other_cpu": lr.other_cpu,
        "latency_ms": {k: (v * 1e3 if k != "count" else v) for k, v in lat.items()},
    }
    rows = [
        Result(
            label,
            lr.rate,
            unit,
            target=target,
            server_cpu=lr.server_cpu,
            client_cpu=lr.client_cpu,
            note="; ".join(notes),
            extra=extra,
        ),
        Result(f"{label} p50", lat["p50"] * 1e3, "ms", higher_is_better=False),
        Result(f"{label} p99", lat["p99"] * 1e3, "ms", higher_is_better=False),
    ]
    return rows


def _probe_http(ctx: Context) -> None:
    try:
        status, body = http_get(ctx.host, ctx.port, HTTP_PATH, headers=ctx.headers)
    except OSError as exc:
        raise SuiteError(f"GET {HTTP_PATH} failed: {exc}") from None
    if status != 200:
        raise SuiteError(f"GET {HTTP_PATH} answered HTTP {status}: {body[:200]!r}")
    try:
        doc = _loads(body)
    except ValueError:
        raise SuiteError(f"GET {HTTP_PATH} did not answer JSON: {body[:200]!r}") from None
    if not isinstance(doc, dict) or "result" not in doc:
        raise SuiteError(f"GET {HTTP_PATH} answer has no 'result': {body[:200]!r}")


async def _probe_ws(ctx: Context) -> None:
    try:
        client = await ws_connect(ctx.host, ctx.port, ctx.ws_path, ctx.headers)
    except (OSError, asyncio.TimeoutError, Exception) as exc:
        raise SuiteError(f"websocket {ctx.ws_path} failed: {exc!r}") from None
    try:
        msg = await client.call(RPC_METHOD)
    except asyncio.TimeoutError:
        raise SuiteError(f"no answer to websocket {RPC_METHOD}") from None
    finally:
        await client.close()
    if "result" not in msg:
        raise SuiteError(f"websocket {RPC_METHOD} answered {msg!r:.200}")


_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_PCT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(ctx: Context, connections: int) -> list[Result]:
    exe = shutil.which("wrk")
    if not exe or not ctx.use_wrk:
        return []
    seconds = max(1, round(ctx.duration))
    cmd = [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in ctx.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(ctx.base_url + HTTP_PATH)
    ctx.log(f"  wrk cross-check: {' '.join(cmd)}")
    server = ctx.server
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = server.cpu_seconds() if server else None
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        ctx.log(f"  wrk failed: {exc}")
        return []
    wall = time.perf_counter() - t0
    s1 = server.cpu_seconds() if server else None
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = _WRK_RATE.search(out)
    if not m:
        ctx.log(f"  wrk output not understood:\n{out}")
        return []
    pct = {p: float(v) * _UNIT_MS[u] for p, v, u in _WRK_PCT.findall(out)}
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    note = "cross-check"
    if "Non-2xx" in out or "Socket errors" in out:
        note += "; wrk reported errors"
    label = f"GET {HTTP_PATH} c={connections} (wrk)"
    return [
        Result(
            label,
            float(m.group(1)),
            "req/s",
            server_cpu=(s1 - s0) / wall if s0 is not None and s1 is not None else None,
            client_cpu=wrk_cpu,
            note=note,
            extra={"latency_ms": {f"p{k}": v for k, v in pct.items()}, "output": out},
        ),
    ]


def _rss_row(name: str, rss: int | None, target: float | None, note: str = "") -> Result:
    return Result(
        name,
        rss / MB if rss is not None else float("nan"),
        "MB",
        target=target,
        higher_is_better=False,
        note=note,
    )


def run(ctx: Context) -> list[Result]:
    results: list[Result] = []
    server = ctx.server
    warm, dur = ctx.warmup, ctx.duration

    _probe_http(ctx)
    ctx.run(_probe_ws(ctx))

    if server is not None:
        rss0 = ctx.rss_at_start if ctx.rss_at_start is not None else server.rss()
        results.append(
            _rss_row(ctx.rss_label, rss0, TARGETS["rss_start"] if ctx.rss_target else None)
        )

    request = build_request(ctx.host, ctx.port, HTTP_PATH, headers=ctx.headers)
    for conc, target in ((1, None), (32, TARGETS["http_c32"])):
        ctx.log(f"  GET {HTTP_PATH} at concurrency {conc} ...")
        with ctx.placement(sequential=conc == 1) as where:
            lr = ctx.run(http_load(ctx.host, ctx.port, request, conc, warm, dur, server))
        results += _load_rows(f"GET {HTTP_PATH} c={conc}", lr, "req/s", target, where)

    for inflight, label, target in (
        (1, f"ws {RPC_METHOD} sequential", TARGETS["rpc_seq"]),
        (100, f"ws {RPC_METHOD} 100 in flight", TARGETS["rpc_100"]),
    ):
        ctx.log(f"  websocket {RPC_METHOD} with {inflight} in flight ...")
        with ctx.placement(sequential=inflight == 1) as where:
            lr = ctx.run(
                ws_rpc_load(
                    ctx.host, ctx.port, ctx.ws_path, RPC_METHOD, inflight, warm, dur, server,
                    headers=ctx.headers,
                )
            )
        results += _load_rows(label, lr, "RPC/s", target, where)

    with ctx.placement(sequential=False):
        results += _wrk(ctx, 32)

    if server is not None:
        results.append(_rss_row("RSS after load", server.rss(), None))
        kids = server.descendants()
        if kids:
            results.append(
                _rss_row("RSS incl. child processes", server.rss(children=True), None,
                         note=f"{len(kids)} child process(es)")
            )
    return results
