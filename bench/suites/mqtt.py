"""mqtt: JSON-RPC server.info over MQTT (sequential, 100 in flight) and Klippy status → MQTT publication delay.

Self-contained: starts a Mosquitto broker (``apt-get install mosquitto``) and its own moontwist
(simulated printer, ``[mqtt]`` pointing at that broker); the server under ``--base-url`` is
not used. The delay is measured from Klippy's ``eventtime`` of a status change (CLOCK_MONOTONIC
of the simulator, the same clock as this process's ``time.monotonic()``) to the arrival of its
publication on ``INSTANCE/klipper/status`` (``status_interval`` 0).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time

from bench.client.mqtt import mqtt_connect, mqtt_rpc_load
from bench.context import Context, SuiteError
from bench.result import Result
from bench.server import ProcStats, ServerProcess, free_port, set_affinity
from bench.stats import percentile
from bench.suites.core import _load_rows

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads

__all__ = ["TARGETS", "run"]

TARGETS = {
    "rpc_seq": None,
    "rpc_100": 5000.0,  # round trips/s with 100 in flight
    "status_p99": 20.0,  # ms from Klippy's status change to the MQTT publication
}
INSTANCE = "bench"
STATUS_TOPIC = f"{INSTANCE}/klipper/status"


def _mosquitto() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if path is None:
        raise SuiteError("mosquitto is not installed (apt-get install -y mosquitto)")
    return path


class _Broker:
    def __init__(self, folder: str) -> None:
        self.port = free_port()
        self.config = os.path.join(folder, "mosquitto.conf")
        with open(self.config, "w") as f:
            f.write(f"user root\npersistence false\nlog_dest none\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc = subprocess.Popen([_mosquitto(), "-c", self.config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _config(folder: str, broker_port: int) -> str:
    path = os.path.join(folder, "moontwist.conf")
    with open(path, "w") as f:
        f.write(
            "[server]\nhost: 127.0.0.1\n"
            f"[mqtt]\naddress: 127.0.0.1\nport: {broker_port}\ninstance_name: {INSTANCE}\n"
            "status_objects:\n  extruder=temperature,target\n  heater_bed=temperature,target\n"
        )
    return path


async def _wait_connected(ctx: Context, port: int) -> None:
    """The server's MQTT client is connected once server.info answers over MQTT."""
    client = await mqtt_connect("127.0.0.1", port)
    try:
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        client.on_message = lambda topic, payload: got.done() or got.set_result(payload)
        await client.subscribe(f"{INSTANCE}/moonraker/api/response")
        deadline = time.monotonic() + 30
        while not got.done():
            if time.monotonic() > deadline:
                raise SuiteError("moontwist never answered over MQTT")
            client.publish(f"{INSTANCE}/moonraker/api/request", b'{"jsonrpc":"2.0","method":"server.info","id":0}')
            await asyncio.wait([got], timeout=0.5)
    finally:
        await client.close()


async def _status_delays(port: int, seconds: float) -> list[float]:
    """Milliseconds from each status change's eventtime to its publication arriving here."""
    delays: list[float] = []
    client = await mqtt_connect("127.0.0.1", port)

    def on_message(topic: bytes, payload: bytes) -> None:
        now = time.monotonic()
        delays.append((now - _loads(payload)["eventtime"]) * 1e3)

    client.on_message = on_message
    await client.subscribe(STATUS_TOPIC)
    await asyncio.sleep(seconds)
    await client.close()
    return delays


def run(ctx: Context) -> list[Result]:
    folder = tempfile.mkdtemp(prefix="moontwist-bench-mqtt-")
    broker = _Broker(folder)
    server = ServerProcess(extra_args=["--config", _config(folder, broker.port)])
    results: list[Result] = []
    try:
        server.start()
        if ctx.server_cpus:
            set_affinity(server.pid, ctx.server_cpus)
        stats = ProcStats(server.pid)
        ctx.run(_wait_connected(ctx, broker.port))
        for label, inflight, target in (
            ("mqtt server.info sequential", 1, TARGETS["rpc_seq"]),
            ("mqtt server.info 100 in flight", 100, TARGETS["rpc_100"]),
        ):
            ctx.log(f"  {label} ...")
            with ctx.placement(sequential=inflight == 1) as where:
                lr = ctx.run(mqtt_rpc_load("127.0.0.1", broker.port, INSTANCE, "server.info", inflight, ctx.warmup, ctx.duration, stats))
            results += _load_rows(label, lr, "RPC/s", target, where)
        ctx.log("  status change → MQTT publication ...")
        # two heaters at Klippy's 4 ticks a second: ~8 publications a second
        delays = ctx.run(_status_delays(broker.port, max(ctx.duration * 2, 10.0)))
        if not delays:
            raise SuiteError(f"no publication on {STATUS_TOPIC}")
        delays.sort()
        results.append(Result("status → MQTT p50", percentile(delays, 50), "ms", higher_is_better=False, note=f"{len(delays)} publications"))
        results.append(Result("status → MQTT p99", percentile(delays, 99), "ms", TARGETS["status_p99"], higher_is_better=False))
    finally:
        server.stop()
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return results
