"""Starting the server under test and reading a process's RSS and CPU time from /proc."""

from __future__ import annotations

import http.client
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_SERVER_CMD",
    "STANDIN_CMD",
    "ProcStats",
    "ServerProcess",
    "ServerStartError",
    "find_listening_pid",
    "free_port",
    "http_get",
    "repo_root",
    "self_cpu_seconds",
    "set_affinity",
    "system_busy_seconds",
]

# The README's run command (``moontwist``, i.e. ``twistd -n moontwist``), with the simulated printer.
DEFAULT_SERVER_CMD = (
    "{python} -m moontwist.cli --datapath {datapath} --host {host} --port {port} --simulate"
)
STANDIN_CMD = "{python} -m bench.standin --host {host} --port {port}"
_KLIPPY_SERVER_CMD = DEFAULT_SERVER_CMD.replace(" --simulate", " --no-simulate")

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ServerStartError(RuntimeError):
    """The server under test did not start or never answered."""


def repo_root() -> Path:
    """The checkout holding ``bench/`` (and ``twisted/plugins``): the server's working directory."""
    return Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def self_cpu_seconds() -> float:
    """User + system CPU seconds used by this process so far (all its threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def system_busy_seconds() -> float | None:
    """CPU seconds all CPUs of the machine spent busy (not idle/iowait) so far, from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    vals = [int(x) for x in fields[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already included in user/nice
    busy = sum(vals[:8]) - idle
    return busy / _CLK_TCK


def http_get(
    host: str, port: int, path: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One plain GET (stdlib client): for probes, not for load."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- /proc readers


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = _children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) + int(fields[12])


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class ProcStats:
    """RSS and CPU time of a process (and optionally its descendants), read from /proc."""

    pid: int

    def alive(self) -> bool:
        return os.path.exists(f"/proc/{self.pid}/stat")

    def name(self) -> str:
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return "?"

    def rss(self, children: bool = False) -> int | None:
        """Resident set size in bytes (with ``children``: summed over all descendants too)."""
        total = _rss_bytes(self.pid)
        if total is None:
            return None
        if children:
            for p in _descendants(self.pid):
                total += _rss_bytes(p) or 0
        return total

    def cpu_seconds(self, children: bool = True) -> float | None:
        """User + system CPU seconds so far (with ``children``: plus live descendants)."""
        ticks = _cpu_ticks(self.pid)
        if ticks is None:
            return None
        if children:
            for p in _descendants(self.pid):
                ticks += _cpu_ticks(p) or 0
        return ticks / _CLK_TCK

    def descendants(self) -> list[int]:
        return _descendants(self.pid)


def set_affinity(pid: int, cpus: set[int]) -> bool:
    """Pin every thread of ``pid`` to ``cpus``; ``False`` if not permitted or not supported."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    ok = True
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            ok = False
    return ok


def find_listening_pid(port: int) -> int | None:
    """The pid listening on TCP ``port`` (needs psutil and permission); ``None`` if unknown."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


# --------------------------------------------------------------------------- starting a server


@dataclass
class ServerProcess:
    """A server started by the bench in a temporary data path, stopped by :meth:`stop`."""

    cmd_template: str = DEFAULT_SERVER_CMD
    host: str = "127.0.0.1"
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    ready_path: str = "/server/info"
    ready_timeout: float = 60.0
    klippy_socket: str | None = None
    proc: subprocess.Popen | None = None
    tmpdir: str | None = None
    log_path: str | None = None
    command: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def use_klippy(self, socket_path: str) -> None:
        """Connect the server to the Klippy at ``socket_path`` (moontwist's command line and config)."""
        self.klippy_socket = os.path.abspath(socket_path)
        self.cmd_template = _KLIPPY_SERVER_CMD

    def _config(self) -> str:
        """moontwist's config: its generated defaults for loopback, room for the klippy suite's 200 websockets."""
        text = "[server]\nmax_websocket_connections: 300\n"
        if self.klippy_socket:
            text += f"klippy_uds_address: {self.klippy_socket}\n"
        return text + "\n[authorization]\ntrusted_clients:\n    127.0.0.0/8\n    ::1/128\n"

    def wait_klippy_ready(self, timeout: float = 20.0) -> bool:
        """Wait until ``server.info`` reports ``klippy_state: ready``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = http_get(self.host, self.port, "/server/info", timeout=2.0)
                if status == 200 and json.loads(body)["result"].get("klippy_state") == "ready":
                    return True
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        return False

    def start(self) -> ServerProcess:
        if not self.port:
            self.port = free_port(self.host)
        self.tmpdir = tempfile.mkdtemp(prefix="moontwist-bench-")
        datapath = os.path.join(self.tmpdir, "data")
        os.makedirs(datapath)
        if self.cmd_template in (DEFAULT_SERVER_CMD, _KLIPPY_SERVER_CMD):
            os.makedirs(os.path.join(datapath, "config"))
            with open(os.path.join(datapath, "config", "moontwist.conf"), "w") as f:
                f.write(self._config())
        self.log_path = os.path.join(self.tmpdir, "server.log")
        fmt = {
            "python": shlex.quote(sys.executable),
            "datapath": shlex.quote(datapath),
            "port": str(self.port),
            "host": self.host,
        }
        self.command = shlex.split(self.cmd_template.format(**fmt)) + list(self.extra_args)
        env = dict(os.environ)
        root = str(repo_root())
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        env.setdefault("MOONTWIST_OFFLINE", "1")  # the server under test reaches nothing off this machine
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path or "", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        last_err = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"server exited with status {self.proc.returncode}: {' '.join(self.command)}\n"
                    f"--- log tail ---\n{self._log_tail()}"
                )
            try:
                status, _ = http_get(self.host, self.port, self.ready_path, timeout=2.0)
                if status == 200:
                    return
                last_err = f"HTTP {status}"
            except OSError as exc:
                last_err = str(exc)
            time.sleep(0.1)
        raise ServerStartError(
            f"server not ready after {self.ready_timeout:.0f}s ({last_err}): {' '.join(self.command)}\n"
            f"--- log tail ---\n{self._log_tail()}"
        )

    def stop(self, keep_dir: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self.tmpdir and not keep_dir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
