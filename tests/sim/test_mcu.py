"""The simulated ``mcu`` object carries ``last_stats`` as Klipper builds it (Mainsail's MCU load/frequency)."""

from __future__ import annotations

import json
import os

import pytest_twisted

from .klippy_client import sleep

# Klipper's mcu.stats(): "mcu_awake=%.03f mcu_task_avg=%.06f mcu_task_stddev=%.06f", then the
# serial queue's counters and the clock sync's "freq=%d"; values with a '.' become floats.
LAST_STATS = {
    "mcu_awake": float, "mcu_task_avg": float, "mcu_task_stddev": float,
    "bytes_write": int, "bytes_read": int, "bytes_retransmit": int, "bytes_invalid": int,
    "send_seq": int, "receive_seq": int, "retransmit_seq": int,
    "srtt": float, "rttvar": float, "rto": float, "ready_bytes": int, "upcoming_bytes": int,
    "freq": int,
}
RECORDED = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "klippy", "objects.json")


async def mcu(client) -> dict:
    return (await client.result("objects/query", {"objects": {"mcu": None}}))["status"]["mcu"]


@pytest_twisted.ensureDeferred
async def test_mcu_has_recorded_identity_and_klippers_last_stats(sim, client):
    status = await mcu(client)
    with open(RECORDED) as f:
        recorded = json.load(f)["objects"]["mcu"]
    for field, spec in recorded.items():
        assert status[field] == spec["example"], field
    stats = status["last_stats"]
    assert set(stats) == set(LAST_STATS)
    for field, kind in LAST_STATS.items():
        assert type(stats[field]) is kind, field
    assert abs(stats["freq"] - status["mcu_constants"]["CLOCK_FREQ"]) < 1000
    assert 0.0 < stats["mcu_awake"] < 1.0 and 0.0 < stats["mcu_task_avg"] < 0.0025


@pytest_twisted.ensureDeferred
async def test_last_stats_refresh_each_second_and_count_motion(sim, client):
    await client.result("objects/subscribe", {"objects": {"mcu": ["last_stats"], "toolhead": ["estimated_print_time"]}})
    first = (await mcu(client))["last_stats"]
    await sleep(1.1)
    idle = (await mcu(client))["last_stats"]
    assert idle["bytes_write"] > first["bytes_write"] and idle["send_seq"] > first["send_seq"]
    start = len(client.messages)
    await client.result("gcode/script", {"script": "G28\nG1 X200 Y200 F600"})
    await sleep(2.2)
    reports = [m["params"]["status"]["mcu"]["last_stats"] for m in client.messages[start:]
               if "id" not in m and "mcu" in m.get("params", {}).get("status", {})]
    assert reports, "no last_stats report while moving"
    assert reports[-1]["bytes_write"] - idle["bytes_write"] > 10 * (idle["bytes_write"] - first["bytes_write"])
    assert max(r["mcu_awake"] for r in reports) > idle["mcu_awake"]
    # a fresh report per second, not per 250 ms status tick
    pushes = [m["params"]["status"] for m in client.messages if "id" not in m and "status" in m.get("params", {})]
    assert sum("mcu" in p for p in pushes) < sum("toolhead" in p for p in pushes)
