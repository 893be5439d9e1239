"""ProcStatsSampler over a fixture /proc tree with a fake clock, plus a real-reactor run."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor, task

from moontwist.machine.procstats import (
    ProcStatsSampler,
    cpu_usage,
    decode_throttled,
    parse_get_throttled,
    parse_net_dev,
    parse_proc_stat,
)

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0
 wlan0: {rx} 20 1 2 0 0 0 0 {tx} 30 3 4 0 0 0 0
"""


def write(root, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc_stat(busy: int, idle: int) -> str:
    return (
        f"cpu  {busy * 2} 0 0 {idle * 2} 0 0 0 0 0 0\n"
        f"cpu0 {busy} 0 0 {idle} 0 0 0 0 0 0\n"
        f"cpu1 {busy} 0 0 {idle} 0 0 0 0 0 0\nintr 1 2 3\n"
    )


def make_tree(root) -> None:
    write(root, "/proc/self/status", "Name:\tpython\nVmRSS:\t   24732 kB\n")
    write(root, "/proc/stat", proc_stat(100, 900))
    write(root, "/proc/net/dev", NET_DEV.format(lo=1000, rx=5000, tx=7000))
    write(root, "/proc/meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\n")
    write(root, "/proc/uptime", "1234.56 4000.00\n")
    write(root, "/sys/class/thermal/thermal_zone0/temp", "45622\n")


def test_throttled_bits() -> None:
    assert decode_throttled(0) == {"bits": 0, "flags": []}
    assert parse_get_throttled("throttled=0x50005\n") == 0x50005
    assert decode_throttled(0x50005)["flags"] == [
        "Under-Voltage Detected",
        "Currently Throttled",
        "Previously Under-Volted",
        "Previously Throttled",
    ]
    assert decode_throttled(0xF000F)["flags"][-1] == "Previously Temperature Limited"
    assert len(decode_throttled(0xF000F)["flags"]) == 8


def test_parsers() -> None:
    before = parse_proc_stat(proc_stat(100, 900))
    after = parse_proc_stat(proc_stat(150, 950))
    assert cpu_usage(before, after) == {"cpu": 50.0, "cpu0": 50.0, "cpu1": 50.0}
    net = parse_net_dev(NET_DEV.format(lo=1, rx=2, tx=3))
    assert net["wlan0"] == {"rx_bytes": 2, "tx_bytes": 3, "rx_packets": 20, "tx_packets": 30,
                            "rx_errs": 1, "tx_errs": 3, "rx_drop": 2, "tx_drop": 4}


def test_sampling_with_fake_clock(tmp_path) -> None:
    make_tree(tmp_path)
    clock = task.Clock()
    cpu = iter([10.0, 10.0, 10.2, 10.3, 10.3, 10.3, 10.3])
    sampler = ProcStatsSampler(
        clock, root=str(tmp_path), websocket_count=lambda: 3, path_env=str(tmp_path),
        wall_clock=lambda: 1_600_000_000.0 + clock.seconds(), cpu_clock=lambda: next(cpu),
    )
    updates: list[dict] = []
    sampler.add_update_listener(updates.append)
    sampler.start()
    write(tmp_path, "/proc/stat", proc_stat(150, 950))
    write(tmp_path, "/proc/net/dev", NET_DEV.format(lo=1000, rx=6000, tx=8000))
    clock.advance(1.0)
    write(tmp_path, "/proc/net/dev", NET_DEV.format(lo=1500, rx=6000, tx=8000))
    clock.advance(1.0)
    sampler.stop()
    assert len(updates) == 2
    first, second = updates
    assert first["moonraker_stats"] == {"time": 1_600_000_001.0, "cpu_usage": 20.0,
                                        "memory": 24732, "mem_units": "kB"}
    assert second["moonraker_stats"]["cpu_usage"] == 10.0
    assert first["system_cpu_usage"] == {"cpu": 50.0, "cpu0": 50.0, "cpu1": 50.0}
    assert first["system_memory"] == {"total": 1000, "available": 600, "used": 400}
    assert first["cpu_temp"] == 45.622 and first["websocket_connections"] == 3
    assert second["network"]["lo"]["bandwidth"] == 1000.0  # 500 rx + 500 tx over 1 s
    assert second["network"]["wlan0"]["bandwidth"] == 0.0
    stats = sampler.proc_stats()
    assert [s["time"] for s in stats["moonraker_stats"]] == [1_600_000_001.0, 1_600_000_002.0]
    assert stats["throttled_state"] is None  # no vcgencmd in the fixture PATH
    assert stats["system_uptime"] == 1234.56


def test_queue_is_bounded_and_missing_files_are_null(tmp_path) -> None:
    clock = task.Clock()
    sampler = ProcStatsSampler(clock, root=str(tmp_path), path_env=str(tmp_path))
    sampler.start()
    clock.pump([1.0] * 35)
    stats = sampler.proc_stats()
    sampler.stop()
    assert len(stats["moonraker_stats"]) == 30
    assert stats["moonraker_stats"][-1]["memory"] is None
    assert stats["cpu_temp"] is None and stats["network"] == {}
    assert stats["system_cpu_usage"] == {} and stats["system_memory"] == {}


@pytest_twisted.ensureDeferred
async def test_vcgencmd_throttled_notifications(tmp_path) -> None:
    bits = tmp_path / "bits"
    bits.write_text("0x0")
    script = tmp_path / "vcgencmd"
    script.write_text(f'#!/bin/sh\nread b < "{bits}"\necho "throttled=$b"\n')
    script.chmod(0o755)
    sampler = ProcStatsSampler(reactor, root=str(tmp_path), path_env=str(tmp_path))
    changes: list[dict] = []
    sampler.add_throttled_listener(changes.append)
    await sampler.check_throttled()
    assert sampler.proc_stats()["throttled_state"] == {"bits": 0, "flags": []}
    bits.write_text("0x50000")
    await sampler.check_throttled()
    await sampler.check_throttled()  # unchanged: no second notification
    assert changes == [{"bits": 0x50000, "flags": ["Previously Under-Volted", "Previously Throttled"]}]


@pytest_twisted.ensureDeferred
async def test_real_sampling_for_two_seconds() -> None:
    sampler = ProcStatsSampler(reactor, interval=0.5)
    updates: list[dict] = []
    sampler.add_update_listener(updates.append)
    sampler.start()
    await task.deferLater(reactor, 2.1, lambda: None)
    sampler.stop()
    assert 3 <= len(updates) <= 5
    last = updates[-1]
    assert last["moonraker_stats"]["memory"] > 0 and last["moonraker_stats"]["mem_units"] == "kB"
    assert "cpu" in last["system_cpu_usage"] and last["system_memory"]["total"] > 0
    assert "lo" in last["network"]
    stats = sampler.proc_stats()
    assert stats["system_uptime"] > 0
    assert set(stats) == {"moonraker_stats", "throttled_state", "cpu_temp", "network",
                          "system_cpu_usage", "system_memory", "system_uptime",
                          "websocket_connections"}
