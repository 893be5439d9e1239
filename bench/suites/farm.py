"""farm: one moontwist process serving 1, 10 and 50 simulated printers (memory, start-up, load).

Self-contained: starts ``moontwist --simulate-farm N`` itself for each size (the simulators run
in their own processes, so the RSS is the server's alone); the server under ``--base-url`` is
not used. Figures: RSS of the farm process after start-up and per added instance; seconds from
spawning the process to every printer ready; with 50 printers all printing and 4 websocket
clients each subscribed to toolhead, extruder and print_stats: status fan-out (from Klippy's
status change to each client's receipt, p99), missed updates, and ``GET /server/info`` latency
on the instances while that runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench.client.http import build_request, http_load
from bench.client.ws import ws_connect
from bench.context import Context, SuiteError
from bench.result import Result
from bench.server import ProcStats, repo_root
from bench.stats import percentile

__all__ = ["TARGETS", "run"]

TARGETS = {
    "per_instance_mb": 4.0,  # RSS added per instance, at most
    "startup_50": 10.0,  # seconds until 50 printers are ready, at most
    "fanout_p99": 50.0,  # ms, at most
    "info_p99": 20.0,  # ms, at most
}
SIZES = (1, 10, 50)
CLIENTS_PER_PRINTER = 4
OBJECTS = {"toolhead": None, "extruder": None, "print_stats": None}
SIM_SPEED = 5.0
GCODE = "G28\nG90\nM83\n" + "".join(f"G1 X{10 + (i % 2) * 50} Y{10 + i % 80} E0.4 F6000\n" for i in range(20000))


def _free_run(count: int) -> int:
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65000:
            continue
        socks = []
        try:
            for port in range(base, base + count + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SuiteError(f"no run of {count + 1} free ports")


class Farm:
    """``moontwist --simulate-farm N`` as a child process."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.tmpdir = tempfile.mkdtemp(prefix="moontwist-bench-farm-")
        self.farm_port = _free_run(count)
        self.base = self.farm_port + 1
        self.log = open(os.path.join(self.tmpdir, "farm.log"), "wb")
        env = dict(os.environ, PYTHONPATH=str(repo_root()), MOONTWIST_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moontwist.cli", "--simulate-farm", str(count), "--sim-speed", str(SIM_SPEED),
             "--datapath", os.path.join(self.tmpdir, "farm"), "--host", "127.0.0.1",
             "--port", str(self.base), "--farm-port", str(self.farm_port)],
            env=env, cwd=str(repo_root()), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def printers(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.farm_port}/farm/printers", timeout=5) as resp:
            return json.loads(resp.read())["result"]["printers"]

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from spawning the process until every printer's Klippy is ready."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SuiteError(f"the farm exited with status {self.proc.returncode}:\n{self.log_tail()}")
            try:
                printers = self.printers()
                if len(printers) == self.count and all(p["klippy_state"] == "ready" for p in printers):
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise SuiteError(f"{self.count} printers not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _upload(port: int, name: str, data: bytes) -> None:
    boundary = "benchfarmboundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/server/files/upload", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


async def _fanout(farm: Farm, seconds: float) -> dict:
    """Subscribe the clients, start every print, then record each update's delay and misses."""
    ports = [farm.base + i for i in range(farm.count)]
    clients: dict[int, list] = {}
    for port in ports:
        clients[port] = [await ws_connect("127.0.0.1", port, "/websocket") for _ in range(CLIENTS_PER_PRINTER)]
        for client in clients[port]:
            reply = await client.call("printer.objects.subscribe", {"objects": OBJECTS}, timeout=30)
            if "result" not in reply:
                raise SuiteError(f"subscribe answered {reply!r:.200}")
    for port in ports:
        reply = await clients[port][0].call("printer.print.start", {"filename": "bench.gcode"}, timeout=30)
        if "result" not in reply:
            raise SuiteError(f"printer.print.start answered {reply!r:.200}")
    received: dict[tuple[int, float], list[float]] = {}
    per_client: dict[tuple[int, int], set[float]] = {}

    def listener(port: int, index: int):
        seen = per_client.setdefault((port, index), set())

        def on_notification(msg: dict) -> None:
            if msg.get("method") == "notify_status_update":
                eventtime = msg["params"][1]
                seen.add(eventtime)
                received.setdefault((port, eventtime), []).append(time.perf_counter())

        return on_notification

    await asyncio.sleep(1.0)  # let every print get going
    for port, group in clients.items():
        for i, client in enumerate(group):
            client.on_notification = listener(port, i)
    await asyncio.sleep(seconds)
    for group in clients.values():
        for client in group:
            client.on_notification = None
    # Klippy's eventtime is its own clock: judge each update by the spread from the first to
    # the last of that printer's clients, as the klippy suite does, on complete updates only.
    last = {port: max((e for p, e in received if p == port), default=0.0) for port in ports}
    spreads, missed, updates = [], 0, 0
    for (port, eventtime), times in received.items():
        if eventtime >= last[port]:
            continue
        updates += 1
        spreads.append((max(times) - min(times)) * 1e3)
        missed += sum(1 for i in range(CLIENTS_PER_PRINTER) if eventtime not in per_client[(port, i)])
    for group in clients.values():
        for client in group:
            await client.close()
    return {"spreads": spreads, "missed": missed, "updates": updates}


def run(ctx: Context) -> list[Result]:
    results: list[Result] = []
    rss: dict[int, int] = {}
    for count in SIZES:
        ctx.log(f"  farm of {count} ...")
        farm = Farm(count)
        try:
            ready = farm.wait_ready()
            time.sleep(2.0)  # let start-up garbage settle
            stats = ProcStats(farm.proc.pid)
            rss[count] = stats.rss() or 0
            results.append(Result(f"farm {count}: RSS at start", rss[count] / 1e6, "MB", higher_is_better=False))
            results.append(
                Result(f"farm {count}: start-up to all ready", ready, "s",
                       TARGETS["startup_50"] if count == 50 else None, higher_is_better=False)
            )
            if count != SIZES[-1]:
                continue
            for i in range(count):
                _upload(farm.base + i, "bench.gcode", GCODE.encode())
            fan = ctx.run(_fanout(farm, max(ctx.duration, 5.0)))
            if not fan["spreads"]:
                raise SuiteError("no status updates reached the clients")
            fan["spreads"].sort()
            results.append(Result(f"farm {count}: status fan-out p99", percentile(fan["spreads"], 99), "ms",
                                  TARGETS["fanout_p99"], higher_is_better=False,
                                  note=f"{fan['updates']} updates x {CLIENTS_PER_PRINTER} clients"))
            results.append(Result(f"farm {count}: missed updates", fan["missed"], "", 0, higher_is_better=False))
            request = build_request("127.0.0.1", farm.base + count // 2, "/server/info")
            lr = ctx.run(http_load("127.0.0.1", farm.base + count // 2, request, 4, ctx.warmup, ctx.duration, stats))
            results.append(Result(f"farm {count}: GET /server/info p99 (printing)", lr.latency()["p99"] * 1e3, "ms",
                                  TARGETS["info_p99"], higher_is_better=False, server_cpu=lr.server_cpu))
        finally:
            farm.stop()
    if len(rss) == len(SIZES):
        for count in SIZES[1:]:
            per = (rss[count] - rss[1]) / (count - 1) / 1e6
            results.append(Result(f"RSS per added instance ({count})", per, "MB", TARGETS["per_instance_mb"],
                                  higher_is_better=False))
    return results
