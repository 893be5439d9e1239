"""objects/subscribe and objects/query semantics; object fields and JSON types."""

from __future__ import annotations

import json
import os

import pytest_twisted

from .klippy_client import connect_ready, sleep

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "klippy", "objects.json")
# fields a live printer has that the batch-mode recording (no MCU) lacks
LIVE_ONLY = {"mcu": ["last_stats"]}


def json_type(value) -> str:
    """Type names as used in objects.json."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    inner = sorted({json_type(v) for v in value})
    return "array[" + "|".join(inner) + "]"


def pushes(client, since=0):
    return [m for m in client.messages[since:] if "id" not in m and "status" in m.get("params", {})]


@pytest_twisted.ensureDeferred
async def test_every_object_field_and_type_matches_recording(client):
    with open(DATA) as handle:
        recorded = json.load(handle)
    names = (await client.result("objects/list", {}))["objects"]
    assert names == recorded["objects_list"]
    status = (await client.result("objects/query",
                                  {"objects": {name: None for name in names}}))["status"]
    for name in names:
        fields = recorded["objects"][name]
        assert list(status[name]) == list(fields) + LIVE_ONLY.get(name, []), name
        for field, spec in fields.items():
            got = json_type(status[name][field])
            assert got in spec["types_seen_in_session"], (name, field, got)


@pytest_twisted.ensureDeferred
async def test_subscribe_reply_then_only_changes_and_push_before_query_reply(client):
    template = {"method": "process_status_update", "tag": "status"}
    reply = await client.result("objects/subscribe", {
        "objects": {"toolhead": ["position", "homed_axes"], "webhooks": None,
                    "gcode_move": None},
        "response_template": template})
    assert reply["status"]["webhooks"] == {"state": "ready", "state_message": "Printer is ready"}
    assert set(reply["status"]["gcode_move"]) >= {"speed", "position", "gcode_position"}
    start = len(client.messages)
    await client.result("gcode/script", {"script": "SET_KINEMATIC_POSITION X=0 Y=0 Z=0\n"
                                                   "G1 X10 Y10 Z5 F3000"})
    query = client.request("objects/query", {"objects": {"webhooks": ["state"]}})
    answer = await query
    before = pushes(client, start)
    assert before, "expected a push in the tick of the query reply"
    push = before[-1]
    assert client.messages.index(push) < client.messages.index(answer)
    assert push["params"]["eventtime"] == answer["result"]["eventtime"]
    assert list(push)[:2] == ["method", "tag"]
    status = push["params"]["status"]
    assert status["toolhead"] == {"position": [10.0, 10.0, 5.0, 0.0], "homed_axes": "xyz"}
    assert "webhooks" not in status
    assert status["gcode_move"]["speed"] == 3000.0
    assert "axis_map" not in status["gcode_move"]


@pytest_twisted.ensureDeferred
async def test_no_push_without_changes_and_ticks_are_250ms(client):
    await client.result("objects/subscribe", {"objects": {"webhooks": None}})
    start = len(client.messages)
    await sleep(0.6)
    assert pushes(client, start) == []
    await client.result("objects/subscribe", {"objects": {"extruder": ["temperature"]}})
    await client.result("gcode/script", {"script": "M104 S200"})
    start = len(client.messages)
    await sleep(1.1)
    times = [p["params"]["eventtime"] for p in pushes(client, start)]
    assert len(times) >= 3
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.2 < g < 0.35 for g in gaps), gaps


@pytest_twisted.ensureDeferred
async def test_template_merge_and_resubscribe_replaces(sim, client):
    other = await connect_ready(sim.socket_path)
    await other.result("objects/subscribe", {
        "objects": {"toolhead": ["position"], "webhooks": ["state"]},
        "response_template": {"key": 345, "params": {"will": "be replaced"}}})
    await client.result("objects/subscribe", {"objects": {"toolhead": ["position"]}})
    await client.result("gcode/script", {"script": "G28"})
    push = await other.wait_for(lambda m: m.get("key") == 345)
    assert list(push) == ["key", "params"]
    assert push["params"]["status"] == {"toolhead": {"position": [131.0, 108.0, 0.8, 0.0]}}
    plain = await client.wait_for(lambda m: "id" not in m and "params" in m)
    assert list(plain) == ["params"]
    await other.result("objects/subscribe", {"objects": {"gcode_move": ["gcode_position"]},
                                             "response_template": {"key": 346}})
    start = len(other.messages)
    await client.result("gcode/script", {"script": "G1 X30 Y30 F6000"})
    push = await other.wait_for(lambda m: m.get("key") == 346, since=start)
    assert push["params"]["status"] == {"gcode_move": {"gcode_position": [30.0, 30.0, 0.8, 0.0]}}
    await sleep(0.3)
    assert not [m for m in other.messages[start:] if m.get("key") == 345]
    other.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_heaters_follow_targets(client):
    await client.result("gcode/script", {"script": "M140 S60\nM109 S200"}, timeout=10)
    status = (await client.result("objects/query", {"objects": {
        "extruder": None, "heater_bed": None, "heater_fan nozzle_cooling_fan": None}}))["status"]
    assert abs(status["extruder"]["temperature"] - 200.0) <= 1.2
    assert 0.0 < status["extruder"]["power"] < 1.0
    assert status["heater_bed"]["target"] == 60.0
    assert status["heater_fan nozzle_cooling_fan"]["speed"] == 1.0
    await client.result("gcode/script", {"script": "M190 S60\nTURN_OFF_HEATERS"}, timeout=10)
    status = (await client.result("objects/query", {"objects": {"heater_bed": None}}))["status"]
    assert abs(status["heater_bed"]["temperature"] - 60.0) <= 1.2
    assert status["heater_bed"]["target"] == 0.0


@pytest_twisted.ensureDeferred
async def test_gcode_move_state(client):
    await client.result("gcode/script", {"script": "G28\nSET_GCODE_OFFSET Z=0.1\nG1 Z5\n"
                                                   "M220 S150\nM221 S90\nG91\nG92 E0\n"
                                                   "M106 S128\nM117 status message"})
    status = (await client.result("objects/query", {"objects": {
        "gcode_move": None, "fan": None, "display_status": None, "toolhead": None}}))["status"]
    move = status["gcode_move"]
    assert move["homing_origin"] == [0.0, 0.0, 0.1, 0.0]
    assert move["position"][2] == 5.1 and abs(move["gcode_position"][2] - 5.0) < 1e-9
    assert move["speed_factor"] == 1.5 and move["extrude_factor"] == 0.9
    assert move["absolute_coordinates"] is False
    assert status["fan"]["speed"] == 128 / 255
    assert status["display_status"]["message"] == "status message"
    assert status["toolhead"]["homed_axes"] == "xyz"
