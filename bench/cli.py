"""``python -m bench``: run benchmark suites against a Moonraker-compatible server."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from urllib.parse import urlsplit

from bench import __version__, suites
from bench.context import Context, SuiteError
from bench.report import format_table, to_json, warnings
from bench.result import Result
from bench.server import (
    DEFAULT_SERVER_CMD,
    STANDIN_CMD,
    ProcStats,
    ServerProcess,
    ServerStartError,
    find_listening_pid,
    set_affinity,
)

__all__ = ["main", "parse_args"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark a Moonraker-compatible API server (HTTP + websocket JSON-RPC).",
        epilog="Without --base-url the bench starts moontwist itself on a free loopback port in a "
        "temporary data path and measures it. See bench/README.md.",
    )
    p.add_argument("--base-url", help="server to measure, e.g. http://127.0.0.1:7125")
    p.add_argument(
        "--suite",
        action="append",
        help="suite(s) to run, repeatable or comma-separated (default: core); see --list",
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument(
        "--warmup", type=float, default=None,
        help="warm-up seconds before each measurement (default: min(1, duration/5))",
    )
    p.add_argument("--pid", type=int, help="pid of the server, for its RSS and CPU (with --base-url)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-': stdout)")
    p.add_argument("--ws-path", default="/websocket", help="websocket path (default /websocket)")
    p.add_argument("--api-key", help="send X-Api-Key with every request (servers that need auth)")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check even if wrk is installed")
    p.add_argument("--no-uvloop", action="store_true", help="drive the load with the stdlib asyncio loop")
    p.add_argument(
        "--standin", action="store_true",
        help="start the bench's own trivial raw-asyncio server instead of moontwist "
        "(measures the load generator's ceiling)",
    )
    p.add_argument(
        "--server-cmd", default=None,
        help=f"command template to start the server (default: {DEFAULT_SERVER_CMD!r}); "
        "placeholders {python} {datapath} {port} {host}",
    )
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG",
        help="extra argument appended to the server command (repeatable)",
    )
    p.add_argument(
        "--affinity", choices=("auto", "pin", "none"), default="auto",
        help="CPU placement: 'auto' pins a server the bench started to one CPU and runs sequential "
        "loads on that CPU, concurrent loads on the others; 'pin' does the same to a --pid server "
        "(its affinity is restored at exit); 'none' pins nothing (default: auto)",
    )
    p.add_argument(
        "--klippy-socket", metavar="PATH",
        help="the moontwist the bench starts connects to the Klippy listening on PATH (a real Klippy, "
        "e.g. in batch mode) instead of running its simulated printer in-process",
    )
    p.add_argument(
        "--klippy-pid", type=int, metavar="PID",
        help="pid of the Klippy the server is connected to (suite klippy_cost measures its CPU)",
    )
    p.add_argument("--keep-datapath", action="store_true", help="keep the temporary data path and server log")
    p.add_argument("--check", action="store_true", help="exit with status 3 when a target is missed")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.duration <= 0:
        p.error("--duration must be positive")
    if args.warmup is None:
        args.warmup = min(1.0, max(0.05, args.duration / 5))
    if args.base_url and args.standin:
        p.error("--standin starts a server: it cannot be combined with --base-url")
    if args.klippy_socket and (args.base_url or args.standin or args.server_cmd):
        p.error("--klippy-socket configures the moontwist the bench starts (not --base-url, --standin, --server-cmd)")
    names: list[str] = []
    for item in args.suite or ["core"]:
        names += [s.strip() for s in item.split(",") if s.strip()]
    args.suites = names
    return args


def _meta(ctx: Context, args: argparse.Namespace, server_desc: str) -> dict:
    return {
        "bench_version": __version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "base_url": ctx.base_url,
        "server": server_desc,
        "server_pid": ctx.pid,
        "suites": args.suites,
        "duration_s": ctx.duration,
        "warmup_s": ctx.warmup,
        "event_loop": ctx.loop_name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _pin(ctx: Context, pid: int, log):
    """Pin the server to one CPU and give the generator the others; returns an undo function."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        allowed = os.sched_getaffinity(0)
        before = os.sched_getaffinity(pid)
    except OSError:
        return None
    if len(allowed) < 2:
        return None
    server_cpu = max(allowed)
    if not set_affinity(pid, {server_cpu}):
        log(f"  could not pin pid {pid}; running unpinned")
        set_affinity(pid, before)
        return None
    ctx.server_cpus = {server_cpu}
    ctx.generator_cpus = allowed - {server_cpu}

    def undo() -> None:
        if ProcStats(pid).alive():
            set_affinity(pid, before)

    return undo


def _placement_desc(ctx: Context) -> str:
    if not ctx.server_cpus:
        return "unpinned (scheduler decides; sequential figures vary with it)"
    s = ",".join(map(str, sorted(ctx.server_cpus)))
    g = ",".join(map(str, sorted(ctx.generator_cpus or ())))
    return (f"server pinned to CPU {s}; generator on CPU {s} for sequential loads, "
            f"on CPU {g} for concurrent loads")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, doc in sorted(suites.available().items()):
            print(f"{name:12} {doc}")
        return 0
    mods = {}
    for name in args.suites:
        try:
            mods[name] = suites.load(name)
        except KeyError:
            print(f"unknown suite {name!r}; available: {', '.join(sorted(suites.available()))}",
                  file=sys.stderr)
            return 2

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    proc: ServerProcess | None = None
    restore_affinity = None
    try:
        if args.base_url:
            u = urlsplit(args.base_url)
            if u.scheme != "http" or not u.hostname:
                print("--base-url must look like http://HOST:PORT", file=sys.stderr)
                return 2
            host, port = u.hostname, u.port or 80
            pid = args.pid
            pid_note = "given" if pid else ""
            if pid is None and host in _LOOPBACK:
                pid = find_listening_pid(port)
                pid_note = "auto-detected from the listening socket" if pid else ""
            server_desc = "external server"
            rss_label = "RSS before load"
            started = False
            simulated = False
        else:
            host = "127.0.0.1"
            template = args.server_cmd or (STANDIN_CMD if args.standin else DEFAULT_SERVER_CMD)
            proc = ServerProcess(cmd_template=template, host=host, extra_args=args.server_arg)
            if args.klippy_socket:
                proc.use_klippy(args.klippy_socket)
            log(f"starting server: {proc.cmd_template}")
            proc.start()
            log(f"  pid {proc.pid} on {proc.base_url}, data path {proc.tmpdir}")
            port, pid, pid_note = proc.port, proc.pid, "started by bench"
            server_desc = "bench stand-in (raw asyncio)" if args.standin else "moontwist (started by bench)"
            if args.server_cmd:
                server_desc = f"started by bench: {args.server_cmd}"
            rss_label = "RSS at start"
            simulated = not (args.standin or args.server_cmd or args.klippy_socket)
            if args.klippy_socket:
                server_desc += f", Klippy at {args.klippy_socket}"
                rss_label = "RSS at start (real Klippy)"
                if not proc.wait_klippy_ready():
                    log("  warning: Klippy did not become ready within 20 s")
            elif simulated:
                rss_label += " (simulated printer in-process)"
            started = True
            time.sleep(0.5)  # let start-up work settle before reading RSS

        ctx = Context(
            host=host,
            port=port,
            duration=args.duration,
            warmup=args.warmup,
            ws_path=args.ws_path,
            pid=pid,
            api_key=args.api_key,
            use_wrk=not args.no_wrk,
            use_uvloop=not args.no_uvloop,
            rss_label=rss_label,
            started_by_bench=started,
            rss_target=started and not simulated,
            verbose=not args.quiet,
            klippy_pid=args.klippy_pid,
        )
        if pid is not None:
            if not ProcStats(pid).alive():
                print(f"no process with pid {pid}", file=sys.stderr)
                return 2
            ctx.rss_at_start = ProcStats(pid).rss()
            if args.affinity == "pin" or (args.affinity == "auto" and started):
                restore_affinity = _pin(ctx, pid, log)
        meta = _meta(ctx, args, server_desc)
        meta["cpu_placement"] = _placement_desc(ctx)
        meta["server_pid_source"] = pid_note or "unknown (no RSS/CPU figures; pass --pid)"
        if pid is not None:
            meta["server_cmdline"] = ProcStats(pid).name()
        log(f"server {ctx.base_url}, pid {pid if pid else 'unknown'}; generator on {ctx.loop_name}")

        collected: list[tuple[str, Result]] = []
        failed = False
        try:
            for name, mod in mods.items():
                log(f"suite {name}:")
                t0 = time.perf_counter()
                try:
                    results = mod.run(ctx)
                except SuiteError as exc:
                    print(f"suite {name} failed: {exc}", file=sys.stderr)
                    failed = True
                    continue
                except Exception as exc:  # the server misbehaved: report it, keep the other suites' results
                    print(f"suite {name} failed: {exc!r}", file=sys.stderr)
                    failed = True
                    continue
                collected += [(name, r) for r in results]
                log(f"  done in {time.perf_counter() - t0:.1f}s")
        finally:
            ctx.close()

        print(f"# {server_desc} at {ctx.base_url}, pid {pid or 'unknown'}"
              + (f" ({pid_note})" if pid_note else ""))
        print(f"# {meta['duration_s']:g}s per measurement after {meta['warmup_s']:g}s warm-up; "
              f"generator: Python {meta['python']} on {meta['event_loop']}, {meta['cpu_count']} CPUs")
        print(f"# CPU placement: {meta['cpu_placement']}")
        print("# CPU columns: CPU seconds per wall second (1.00 = one core busy); "
              "gen = this load generator (wrk row: wrk)")
        print(format_table(collected))
        for w in warnings(collected):
            print(f"warning: {w}")
        if args.json:
            doc = to_json(collected, meta)
            if args.json == "-":
                print(doc)
            else:
                with open(args.json, "w") as f:
                    f.write(doc + "\n")
                log(f"JSON written to {args.json}")
        if failed:
            return 1
        if args.check and any(r.met is False for _, r in collected):
            return 3
        return 0
    except ServerStartError as exc:
        print(f"could not start the server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if restore_affinity is not None:
            restore_affinity()
        if proc is not None:
            proc.stop(keep_dir=args.keep_datapath)
            if args.keep_datapath and proc.tmpdir:
                log(f"kept data path and log in {proc.tmpdir}")
