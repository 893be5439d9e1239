"""The instances of a farm share one inotify instance (the kernel allows 128 per user), each seeing its own roots."""

from __future__ import annotations

import os

import pytest_twisted
from farm.farming import free_ports, start_farm


def inotify_instances() -> int:
    fds = os.listdir("/proc/self/fd")
    count = 0
    for fd in fds:
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return count


async def _changed(ws, timeout: float = 5.0, quiet: float = 0.3) -> list[str]:
    """Paths of notify_filelist_changed: the first within ``timeout``, then any until ``quiet`` passes."""
    paths = []
    try:
        while True:
            note = await ws.next_notification("notify_filelist_changed", timeout=timeout)
            paths.append(note["params"][0]["item"]["path"])
            timeout = quiet
    except TimeoutError:
        return paths


@pytest_twisted.ensureDeferred
async def test_instances_share_one_inotify_instance(tmp_path):
    base = free_ports(3)
    paths = {}
    for i, name in enumerate(("one", "two")):
        (tmp_path / name / "config").mkdir(parents=True)
        (tmp_path / name / "config" / "moontwist.conf").write_text(f"[server]\nport: {base + 1 + i}\n")
        paths[name] = tmp_path / name
    before = inotify_instances()
    farm = await start_farm("--instance", str(paths["one"]), "--instance", str(paths["two"]), "--no-simulate",
                            ready=False)
    try:
        one, two = farm.running("one"), farm.running("two")
        watchers = [svc.server.plugins.pm.get_plugin("file_manager").watcher for svc in (one, two)]
        shared = {sub[0] for w in watchers for sub in w.subscriptions.values()}
        assert len(shared) == 1 and inotify_instances() <= before + 1  # (another test's farm may hold it already)
        ws_one, ws_two = await one.ws(), await two.ws()
        (paths["one"] / "gcodes" / "only_one.gcode").write_text("G28\n")
        (paths["two"] / "gcodes" / "only_two.gcode").write_text("G28\n")
        assert await _changed(ws_one) == ["only_one.gcode"]
        assert await _changed(ws_two) == ["only_two.gcode"]

        # both gcodes roots on one folder: each instance is told, and one leaving leaves the other watching
        common = tmp_path / "common"
        common.mkdir()
        for svc in (one, two):
            svc.server.plugins.pm.get_plugin("file_manager").set_root_path("gcodes", str(common))
        await _changed(ws_one, 0.3), await _changed(ws_two, 0.3)  # whatever moving the roots announced
        (common / "both.gcode").write_text("G28\n")
        assert await _changed(ws_one) == ["both.gcode"]
        assert await _changed(ws_two) == ["both.gcode"]
        ws_one.sendClose()
        await farm.instance("one").service.stopService()
        (common / "after.gcode").write_text("G28\n")
        assert await _changed(ws_two) == ["after.gcode"]
        ws_two.sendClose()
    finally:
        await farm.stop()
    assert inotify_instances() == before

