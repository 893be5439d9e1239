"""Restarts release what the file manager and database hold (inotify instances and watches,
descriptors, threads), and no Deferred of theirs is dropped with an unobserved error."""

from __future__ import annotations

import gc
import os
import threading

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from mtclient import sleep, start_service, wait_for


def inotify_usage(pid: str = "self") -> tuple[int, int]:
    """(inotify instances, inotify watches) held by process ``pid``, from /proc/PID/fdinfo."""
    instances = watches = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                watches += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
        instances += 1
    return instances, watches


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def timers() -> int:
    return len(reactor.getDelayedCalls())


def own_threads() -> list[str]:
    """Threads other than the reactor's pool (which grows on demand and is reused)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("PoolThread-"))


class Unhandled:
    """Collects "Unhandled error in Deferred" (and other failures) logged while it is installed."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        text = str(event.get("log_format", ""))
        if "Unhandled error in Deferred" in text or "log_failure" in event and event.get("isError"):
            self.events.append(event)

    def __enter__(self) -> Unhandled:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)

    def messages(self) -> list[str]:
        return [str(e.get("log_failure") or e.get("log_format")) for e in self.events]


@pytest_twisted.ensureDeferred
async def test_twenty_restarts_release_every_watch_and_descriptor(tmp_path):
    data = tmp_path / "data"
    (data / "gcodes" / "a" / "b").mkdir(parents=True)
    (data / "config").mkdir(parents=True)
    os.symlink(data / "gcodes", data / "gcodes" / "a" / "loop")  # a symlink loop must not break watching
    os.symlink(tmp_path, data / "gcodes" / "out")  # nor a symlink out of the root be watched
    svc = await start_service(str(data), "[server]\nhost: 127.0.0.1\n", simulate=True)
    try:
        await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
        await sleep(0.3)
        base_inotify, base_fds, base_threads, base_timers = inotify_usage(), open_fds(), own_threads(), timers()
        assert base_inotify[0] >= 1 and base_inotify[1] >= 4  # gcodes and config (one shared instance)
        for _ in range(20):
            code, _body = await svc.post("/server/restart")
            assert code == 200
            await wait_for(lambda: svc.server.running and not svc.server.restarting, timeout=10)
        await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
        await sleep(0.3)
        assert inotify_usage() == base_inotify
        assert open_fds() <= base_fds + 2  # a client socket or two may still be closing
        assert own_threads() == base_threads  # one database writer and reader, no more
        assert timers() <= base_timers + 2  # a Klippy request's timeout may be pending
        ws = await svc.ws()  # and the tree is still watched
        (data / "gcodes" / "a" / "b" / "x.gcode").write_text("G28\n")
        note = await ws.next_notification("notify_filelist_changed")
        assert note["params"][0]["item"]["path"] == "a/b/x.gcode"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_server_then_printer_restart_drops_no_deferred(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n", simulate=True)
    try:
        with Unhandled() as unhandled:
            for _ in range(3):
                await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
                code, _body = await svc.post("/server/restart")
                assert code == 200
                await wait_for(lambda: svc.server.running and not svc.server.restarting, timeout=10)
                code, _body = await svc.post("/printer/restart")
                assert code == 200
                await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
            gc.collect()
            await sleep(0.1)
            gc.collect()
        assert unhandled.messages() == []
    finally:
        await svc.service.stopService()
