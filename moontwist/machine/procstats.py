"""``machine.proc_stats``: a once-a-second sampler of our process and the host.

Files are opened once and re-read with ``os.pread`` so a sample costs a few small reads;
``vcgencmd get_throttled`` (Raspberry Pi) runs every ``throttle_every`` samples as a child
process and never blocks the reactor.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from moontwist.machine.commands import CommandError, find_executable, run_command
from moontwist.machine.hostfs import host_path, read_line

THROTTLED_FLAGS = (
    (1 << 0, "Under-Voltage Detected"),
    (1 << 1, "Frequency Capped"),
    (1 << 2, "Currently Throttled"),
    (1 << 3, "Temperature Limit Active"),
    (1 << 16, "Previously Under-Volted"),
    (1 << 17, "Previously Frequency Capped"),
    (1 << 18, "Previously Throttled"),
    (1 << 19, "Previously Temperature Limited"),
)
HWMON_CPU_SENSORS = ("coretemp", "k10temp", "cpu_thermal")
Listener = Callable[[dict[str, Any]], None]


def decode_throttled(bits: int) -> dict[str, Any]:
    """The ``throttled_state`` object for a ``get_throttled`` bit mask."""
    return {"bits": bits, "flags": [name for bit, name in THROTTLED_FLAGS if bits & bit]}


def parse_get_throttled(text: str) -> int:
    """The bit mask from ``vcgencmd get_throttled`` output (``throttled=0x50005``)."""
    return int(text.strip().rpartition("=")[2], 16)


def parse_proc_stat(text: str) -> dict[str, tuple[int, int]]:
    """``{cpu name: (total jiffies, idle jiffies)}`` from /proc/stat (idle includes iowait)."""
    times: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            break
        parts = line.split()
        values = [int(v) for v in parts[1:]]
        # guest time is already counted in user/nice; skip it to avoid double counting
        total = sum(values[:8])
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        times[parts[0]] = (total, idle)
    return times


def cpu_usage(prev: dict[str, tuple[int, int]], cur: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Percent busy per CPU between two /proc/stat readings."""
    usage: dict[str, float] = {}
    for name, (total, idle) in cur.items():
        if name not in prev:
            continue
        d_total = total - prev[name][0]
        d_idle = idle - prev[name][1]
        usage[name] = round(100.0 * (d_total - d_idle) / d_total, 2) if d_total > 0 else 0.0
    return usage


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """Per-interface byte, packet, error and drop counters from /proc/net/dev."""
    stats: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 12:
            continue
        stats[name.strip()] = {
            "rx_bytes": int(fields[0]),
            "tx_bytes": int(fields[8]),
            "rx_packets": int(fields[1]),
            "tx_packets": int(fields[9]),
            "rx_errs": int(fields[2]),
            "tx_errs": int(fields[10]),
            "rx_drop": int(fields[3]),
            "tx_drop": int(fields[11]),
        }
    return stats


def parse_memory(text: str) -> dict[str, int]:
    """``total``/``available``/``used`` kB from /proc/meminfo; empty when fields are missing."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0])
            if len(values) == 2:
                total, avail = values["MemTotal"], values["MemAvailable"]
                return {"total": total, "available": avail, "used": total - avail}
    return {}


def parse_rss(text: str) -> tuple[int | None, str | None]:
    """Resident set size and its units from /proc/<pid>/status (``VmRSS:``)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            return int(parts[1]), parts[2] if len(parts) > 2 else "kB"
    return None, None


class CachedFile:
    """A file kept open and re-read from offset 0 (procfs/sysfs regenerate content per read)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def read(self, size: int = 65536) -> str | None:
        """The current content, or None when the file cannot be read."""
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(self.fd, size, 0).decode("ascii", errors="replace")
        except OSError:
            self.close()
            return None

    def close(self) -> None:
        """Release the descriptor."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def find_temperature_file(root: str = "/") -> str:
    """thermal_zone0 when present, else a known CPU hwmon sensor, else thermal_zone0 anyway."""
    zone = host_path(root, "/sys/class/thermal/thermal_zone0/temp")
    if os.path.exists(zone):
        return zone
    hwmon = host_path(root, "/sys/class/hwmon")
    try:
        entries = sorted(os.listdir(hwmon))
    except OSError:
        return zone
    for entry in entries:
        if read_line(root, f"/sys/class/hwmon/{entry}/name") in HWMON_CPU_SENSORS:
            return os.path.join(hwmon, entry, "temp1_input")
    return zone


class ProcStatsSampler:
    """Samples every ``interval`` seconds; keeps the last ``queue_size`` process samples.

    Listeners added with :meth:`add_update_listener` receive the ``notify_proc_stat_update``
    payload after every sample; those added with :meth:`add_throttled_listener` receive the
    ``throttled_state`` whenever the throttled bits change.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        root: str = "/",
        websocket_count: Callable[[], int] = lambda: 0,
        interval: float = 1.0,
        queue_size: int = 30,
        throttle_every: int = 10,
        path_env: str | None = None,
        wall_clock: Callable[[], float] = time.time,
        cpu_clock: Callable[[], float] = time.process_time,
        log: Logger | None = None,
    ) -> None:
        self.reactor = reactor
        self.log = log if log is not None else Logger(namespace=__name__)
        self.websocket_count = websocket_count
        self.interval = interval
        self.throttle_every = throttle_every
        self.path_env = path_env
        self.wall_clock = wall_clock
        self.cpu_clock = cpu_clock
        self.samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=queue_size)
        self.has_vcgencmd = find_executable("vcgencmd", path_env) is not None
        self.throttled_state: dict[str, Any] | None = None
        self.network: dict[str, dict[str, Any]] = {}
        self.system_cpu_usage: dict[str, float] = {}
        self.system_memory: dict[str, int] = {}
        self.sequence = 0
        self._files = {
            "status": CachedFile(host_path(root, "/proc/self/status")),
            "stat": CachedFile(host_path(root, "/proc/stat")),
            "net": CachedFile(host_path(root, "/proc/net/dev")),
            "meminfo": CachedFile(host_path(root, "/proc/meminfo")),
            "uptime": CachedFile(host_path(root, "/proc/uptime")),
            "temp": CachedFile(find_temperature_file(root)),
        }
        self._cpu_times: dict[str, tuple[int, int]] = {}
        self._last_time = reactor.seconds()
        self._last_cpu = cpu_clock()
        self._throttle_check: defer.Deferred[None] | None = None
        self._update_listeners: list[Listener] = []
        self._throttled_listeners: list[Listener] = []
        self._loop: task.LoopingCall | None = None

    def add_update_listener(self, listener: Listener) -> None:
        """Call ``listener(payload)`` after each sample (``notify_proc_stat_update``)."""
        self._update_listeners.append(listener)

    def add_throttled_listener(self, listener: Listener) -> None:
        """Call ``listener(throttled_state)`` when the throttled bits change (``notify_cpu_throttled``)."""
        self._throttled_listeners.append(listener)

    def start(self) -> None:
        """Begin sampling on the reactor."""
        if self._loop is not None:
            return
        self._last_time = self.reactor.seconds()
        self._last_cpu = self.cpu_clock()
        self._cpu_times = parse_proc_stat(self._files["stat"].read() or "")
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        """Stop sampling and close the cached files."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for f in self._files.values():
            f.close()

    def cpu_temp(self) -> float | None:
        """CPU temperature in °C, or None when the host does not report one."""
        raw = self._files["temp"].read(64)
        try:
            return round(int(raw.strip()) / 1000.0, 3) if raw else None
        except ValueError:
            return None

    def uptime(self) -> float:
        """Seconds since boot."""
        raw = self._files["uptime"].read(128)
        if raw:
            return float(raw.split()[0])
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def sample(self) -> dict[str, Any]:
        """Take one sample, notify listeners, and return the update payload."""
        now = self.reactor.seconds()
        cpu_now = self.cpu_clock()
        elapsed = now - self._last_time
        usage = round((cpu_now - self._last_cpu) / elapsed * 100.0, 2) if elapsed > 0 else 0.0
        self._last_time, self._last_cpu = now, cpu_now
        memory, units = parse_rss(self._files["status"].read() or "")
        stats = {"time": self.wall_clock(), "cpu_usage": usage, "memory": memory, "mem_units": units}
        self.samples.append(stats)

        cpu_times = parse_proc_stat(self._files["stat"].read() or "")
        self.system_cpu_usage = cpu_usage(self._cpu_times, cpu_times)
        self._cpu_times = cpu_times
        self.system_memory = parse_memory(self._files["meminfo"].read() or "")
        network = parse_net_dev(self._files["net"].read() or "")
        for name, counters in network.items():
            before = self.network.get(name)
            moved = counters["rx_bytes"] + counters["tx_bytes"]
            if before is not None and elapsed > 0:
                moved -= before["rx_bytes"] + before["tx_bytes"]
                counters["bandwidth"] = round(max(moved, 0) / elapsed, 2)
            else:
                counters["bandwidth"] = 0.0
        self.network = network

        payload = {
            "moonraker_stats": stats,
            "cpu_temp": self.cpu_temp(),
            "network": network,
            "system_cpu_usage": self.system_cpu_usage,
            "system_memory": self.system_memory,
            "websocket_connections": self.websocket_count(),
        }
        if self.has_vcgencmd and self.sequence % self.throttle_every == 0:
            self.check_throttled()
        self.sequence += 1
        for listener in list(self._update_listeners):
            try:
                listener(payload)
            except Exception:
                self.log.failure("proc_stat update listener failed")
        return payload

    def check_throttled(self) -> defer.Deferred[None]:
        """Run ``vcgencmd get_throttled`` (one at a time) and notify when the bits change."""
        if self._throttle_check is not None:
            return defer.succeed(None)

        def got(result: Any) -> None:
            try:
                bits = parse_get_throttled(result.stdout)
            except ValueError:
                self.log.warn("Unexpected vcgencmd output: {output!r}", output=result.stdout)
                return
            previous = self.throttled_state["bits"] if self.throttled_state else 0
            self.throttled_state = decode_throttled(bits)
            if bits != previous:
                for listener in list(self._throttled_listeners):
                    try:
                        listener(dict(self.throttled_state))
                    except Exception:
                        self.log.failure("cpu_throttled listener failed")

        def failed(reason: Any) -> None:
            reason.trap(CommandError)
            self.log.warn("vcgencmd get_throttled failed: {error}", error=reason.value)

        def done(_: Any) -> None:
            self._throttle_check = None

        d = run_command(
            ("vcgencmd", "get_throttled"), timeout=5.0, path_env=self.path_env, reactor=self.reactor
        )
        d.addCallbacks(got, failed)
        d.addBoth(done)
        if not d.called:
            self._throttle_check = d
        return d

    def proc_stats(self) -> dict[str, Any]:
        """The ``machine.proc_stats`` result."""
        return {
            "moonraker_stats": list(self.samples),
            "throttled_state": self.throttled_state,
            "cpu_temp": self.cpu_temp(),
            "network": self.network,
            "system_cpu_usage": self.system_cpu_usage,
            "system_memory": self.system_memory,
            "system_uptime": self.uptime(),
            "websocket_connections": self.websocket_count(),
        }
