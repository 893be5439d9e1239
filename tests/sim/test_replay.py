"""Replay the recorded direct Klippy session (conn 1, up to the SD prints) and compare."""

from __future__ import annotations

import json
import os
import re

import pytest_twisted

from .klippy_client import connect_ready
from .test_status import LIVE_ONLY

SESSION = os.path.join(os.path.dirname(__file__), "..", "data", "klippy", "klippy_session.jsonl")
VARIABLE_OUTPUT = re.compile(r"^B:\d+\.\d /60\.0 T0:\d+\.\d /200\.0$")


def load_steps() -> list[dict]:
    """conn-1 requests from ``list_endpoints`` up to the first SD print, with their replies."""
    with open(SESSION) as handle:
        lines = [json.loads(line) for line in handle]
    conn1 = [entry for entry in lines if entry["conn"] == 1]
    steps, active = [], False
    for index, entry in enumerate(conn1):
        if entry["dir"] != "send":
            continue
        if entry.get("step") == "list_endpoints":
            active = True
        if "SDCARD_PRINT_FILE" in entry.get("step", ""):
            break
        if not active:
            continue
        msg = entry["msg"]
        step = {"msg": msg, "reply": None, "outputs": []}
        if isinstance(msg, dict) and msg.get("id") is not None and "method" in msg \
                and isinstance(msg.get("params", {}), dict):
            for later in conn1[index + 1:]:
                got = later["msg"]
                if later["dir"] != "recv" or not isinstance(got, dict):
                    continue
                if got.get("id") == msg["id"] and ("result" in got or "error" in got):
                    step["reply"] = got
                    break
                if "response" in got.get("params", {}) and "id" not in got:
                    step["outputs"].append(got["params"]["response"])
        steps.append(step)
    return steps


def same_shape(ours, recorded, method: str) -> None:
    if method in ("objects/query", "objects/subscribe"):
        assert ours["status"].keys() == recorded["status"].keys()
        for name, fields in recorded["status"].items():
            assert list(ours["status"][name]) == list(fields) + LIVE_ONLY.get(name, []), name
    elif method in ("list_endpoints", "gcode/help", "objects/list", "query_endstops/status",
                    "bed_mesh/dump_mesh") or not isinstance(recorded, dict):
        assert ours == recorded
    else:
        assert list(ours) == list(recorded)


@pytest_twisted.ensureDeferred
async def test_replay_recorded_session(sim):
    client = await connect_ready(sim.socket_path)
    steps = load_steps()
    assert len(steps) > 40
    for step in steps:
        msg = step["msg"]
        start = len(client.messages)
        if isinstance(msg, list):
            client.write_raw(b"".join(json.dumps(m).encode() + b"\x03" for m in msg))
            for m in msg:
                await client.wait_for(lambda r, i=m["id"]: r.get("id") == i, since=start)
            continue
        if "__raw__" in msg:
            client.write_raw(msg["__raw__"].encode() + b"\x03")
            continue
        client.send(msg)
        recorded = step["reply"]
        if recorded is None:
            continue
        reply = await client.wait_for(
            lambda r, i=msg["id"]: r.get("id") == i and ("result" in r or "error" in r),
            since=start)
        assert ("error" in reply) == ("error" in recorded), (msg, reply)
        if "error" in recorded:
            assert reply["error"] == recorded["error"]
        else:
            same_shape(reply["result"], recorded["result"], msg["method"])
        if msg["method"] == "gcode/script":
            index = client.messages.index(reply)
            ours = [m["params"]["response"] for m in client.messages[start:index]
                    if "id" not in m and "response" in m.get("params", {})]
            assert len(ours) == len(step["outputs"]), (msg, ours, step["outputs"])
            for got, expected in zip(ours, step["outputs"]):
                assert got == expected or (VARIABLE_OUTPUT.match(got)
                                           and VARIABLE_OUTPUT.match(expected)), (got, expected)
    client.transport.loseConnection()


MOONRAKER = os.path.join(os.path.dirname(__file__), "..", "data", "klippy",
                         "moonraker_to_klippy.jsonl")


@pytest_twisted.ensureDeferred
async def test_replay_moonraker_startup_sequence(sim):
    """Moonraker's connect sequence (reused ids, requests in flight together) works."""
    with open(MOONRAKER) as handle:
        lines = [json.loads(line) for line in handle]
    client = await connect_ready(sim.socket_path)
    requests, replies = [], {}
    for entry in lines:
        if entry["dir"] == "event" and "upload" in entry["msg"].get("step", ""):
            break
        if entry["dir"] == "moonraker->klippy":
            requests.append(entry["msg"])
    assert len(requests) > 15
    for msg in requests:
        start = len(client.messages)
        client.send(msg)
        reply = await client.wait_for(
            lambda r, i=msg["id"]: r.get("id") == i and ("result" in r or "error" in r),
            since=start)
        assert "result" in reply, (msg, reply)
        replies.setdefault(msg["method"], []).append(reply["result"])
    assert replies["register_remote_method"] == [{}] * 5
    assert client.outputs()[-1] == "// x"
    status = replies["objects/subscribe"][-1]["status"]
    assert status["webhooks"]["state"] == "ready"
    assert "print_stats" in status and "extruder" in status
    client.transport.loseConnection()
