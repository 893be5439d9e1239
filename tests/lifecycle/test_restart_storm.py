"""Restarts under load, in a real daemon: nothing leaks, nothing answers unauthenticated, nothing 500s.

Clients poll while authenticated clients POST ``/server/restart`` in racing pairs.
Afterwards the daemon must hold the same threads, file descriptors, inotify
instances and Klippy connections as after one restart, send one
``notify_proc_stat_update`` a second, and still refuse strangers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from moontwist.apikey import read_api_key
from mtclient import Daemon

CONFIG = """\
[server]
[authorization]
[machine]
provider: recording
[simulator]
speed: 20
"""

SECRET_PATHS = ("/access/api_key", "/server/config", "/server/database/list")
# Endpoints that answered 500 while their plugin was restarting (issue: they must say 503).
BUSY_PATHS = ("/machine/proc_stats", "/server/history/list", "/printer/objects/list", "/server/info")


def _status(base: str, path: str, method: str = "GET", key: str | None = None) -> int:
    req = urllib.request.Request(base + path, method=method, headers={"X-Api-Key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code
    except OSError:
        return -1  # the listener is never closed during a restart: count it as a failure


def _resources(pid: int) -> dict[str, int]:
    fds = os.listdir(f"/proc/{pid}/fd")
    inotify = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                inotify += 1
        except OSError:
            pass
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(fds), "inotify": inotify}


def _wait_running(daemon: Daemon, key: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    info: dict = {}
    while time.monotonic() < deadline:
        req = urllib.request.Request(daemon.base + "/server/info", headers={"X-Api-Key": key})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                info = json.loads(resp.read())["result"]
            if info["klippy_state"] == "ready" and "history" in info["components"]:
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"daemon not running again: {info}")


class Pollers:
    """Threads polling paths as fast as they can, recording every status code."""

    def __init__(self, base: str, paths: tuple[str, ...], key: str | None) -> None:
        self.codes: dict[str, list[int]] = {p: [] for p in paths}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(base, p, key), daemon=True) for p in paths]

    def _run(self, base: str, path: str, key: str | None) -> None:
        while not self._stop.is_set():
            self.codes[path].append(_status(base, path, key=key))

    def __enter__(self) -> Pollers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def _count_proc_stat_notifications(daemon: Daemon, key: str, seconds: float) -> int:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    sock.sendall(
        b"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + f"X-Api-Key: {key}\r\n\r\n".encode()
    )
    data = b""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    sock.close()
    assert b" 101 " in data.split(b"\r\n", 1)[0], data[:200]
    return data.count(b'"notify_proc_stat_update"')


@pytest.mark.timeout(240)
def test_restart_storm_leaks_nothing_and_never_opens_the_door(tmp_path):
    datapath = str(tmp_path / "data")
    os.makedirs(os.path.join(datapath, "config"))
    with open(os.path.join(datapath, "config", "moontwist.conf"), "w") as f:
        f.write(CONFIG)
    daemon = Daemon(datapath, "--simulate").start(wait=False)
    try:
        deadline = time.monotonic() + 30
        key = None
        while key is None and time.monotonic() < deadline:
            assert daemon.proc.poll() is None, daemon.output()
            try:
                key = read_api_key(datapath)
            except FileNotFoundError:
                time.sleep(0.1)
        assert key
        _wait_running(daemon, key)
        assert _status(daemon.base, "/server/restart", "POST", key) == 200
        _wait_running(daemon, key)
        time.sleep(1.5)
        before = _resources(daemon.proc.pid)

        with Pollers(daemon.base, SECRET_PATHS, None) as strangers, Pollers(daemon.base, BUSY_PATHS, key) as users:
            for _ in range(10):
                pair = [
                    threading.Thread(target=lambda: _status(daemon.base, "/server/restart", "POST", key))
                    for _ in range(2)
                ]
                pair[0].start()
                time.sleep(0.02)
                pair[1].start()
                for t in pair:
                    t.join(15)
                time.sleep(0.3)
            _wait_running(daemon, key)

        for path, codes in strangers.codes.items():
            assert codes and set(codes) <= {401, 503}, (path, sorted(set(codes)))
        for path, codes in users.codes.items():
            assert 200 in codes and set(codes) <= {200, 503}, (path, sorted(set(codes)))
            assert 503 in codes or path == "/server/info", path  # the storm was seen

        info = _wait_running(daemon, key)
        assert info["failed_components"] == [], info
        time.sleep(1.5)
        after = _resources(daemon.proc.pid)
        assert after["inotify"] <= before["inotify"], (before, after)
        assert after["fds"] <= before["fds"] + 4, (before, after)
        assert after["threads"] <= before["threads"] + 2, (before, after)
        assert _count_proc_stat_notifications(daemon, key, 3.2) <= 4
        for path in SECRET_PATHS:
            assert _status(daemon.base, path) == 401, path
    finally:
        daemon.stop()
    with open(os.path.join(datapath, "logs", "moontwist.log"), encoding="utf-8") as f:
        text = f.read()
    assert "Unhandled error in Deferred" not in text
    assert "Traceback" not in text, text[text.index("Traceback") - 2000 : text.index("Traceback") + 2000]
