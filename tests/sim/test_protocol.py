"""Framing, ids, errors and endpoint basics against the recorded Klippy behaviour."""

from __future__ import annotations

import json

import pytest_twisted

from .klippy_client import connect, sleep


def _ids(client):
    return [m.get("id") for m in client.messages if "id" in m]


@pytest_twisted.ensureDeferred
async def test_info_startup_then_ready(make_sim):
    sim = await make_sim(startup_delay=0.3)
    c = await connect(sim.socket_path)
    first = await c.result("info", {"client_info": {"program": "test"}})
    assert first["state"] == "startup"
    assert first["state_message"].startswith("\nPrinter is not ready")
    assert first["software_version"] == "v0.13.0-730-g84104bbbd"
    assert isinstance(first["process_id"], int)
    endpoints = (await c.result("list_endpoints", {}))["endpoints"]
    assert "query_endstops/status" not in endpoints
    err = await c.request("query_endstops/status", {})
    assert err["error"]["message"] == (
        "webhooks: No registered callback for path 'query_endstops/status'")
    await sleep(0.35)
    assert (await c.result("info", {}))["state"] == "ready"
    assert await c.result("query_endstops/status", {}) == {
        "stepper_x": "open", "stepper_y": "open", "stepper_z": "open"}
    endpoints = (await c.result("list_endpoints", {}))["endpoints"]
    assert endpoints[:4] == ["list_endpoints", "info", "emergency_stop", "register_remote_method"]
    assert len(endpoints) == 19
    c.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_framing_several_messages_in_one_write_and_split_writes(client):
    client.write_raw(b'{"id": 1, "method": "info"}\x03{"id": 2, "method": "objects/list"}\x03')
    await client.wait_for(lambda m: m.get("id") == 2)
    data = json.dumps({"id": 3, "method": "info", "params": {}}).encode() + b"\x03"
    for i in range(0, len(data), 5):
        client.write_raw(data[i:i + 5])
        await sleep(0.005)
    await client.wait_for(lambda m: m.get("id") == 3)
    assert [i for i in _ids(client) if i in (1, 2, 3)] == [1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_id_variants_and_dropped_requests(client):
    for req_id in ("req-abc", 7.5, {"a": [1, 2]}):
        reply = await client.request("info", {}, req_id=req_id)
        assert reply["id"] == req_id and reply["result"]["state"] == "ready"
    before = len(client.messages)
    client.send({"id": None, "method": "info", "params": {}})
    client.send({"method": "info", "params": {}})
    client.write_raw(b"this is not json\x03")
    client.send({"id": 900, "params": {}})
    client.send({"id": 901, "method": "info", "params": []})
    reply = await client.request("info", req_id=20)  # no params key at all
    assert reply["result"]["state"] == "ready"
    assert [m.get("id") for m in client.messages[before:]] == [20]
    # the float id comes back as a float, not an int
    assert b'"id":7.5' in client.raw[1] or any(b'"id":7.5' in r for r in client.raw)


@pytest_twisted.ensureDeferred
async def test_error_replies(client):
    cases = [
        ("objects/query", {"objects": ["toolhead"]}, "Invalid Argument Type [objects]"),
        ("objects/query", {"objects": {"toolhead": "position"}}, "Invalid argument"),
        ("objects/query", {}, "Missing Argument [objects]"),
        ("gcode/script", {}, "Missing Argument [script]"),
        ("gcode/script", {"script": 5}, "Invalid Argument Type [script]"),
        ("no/such_endpoint", {},
         "webhooks: No registered callback for path 'no/such_endpoint'"),
    ]
    for method, params, message in cases:
        reply = await client.request(method, params)
        assert reply["error"] == {"error": "WebRequestError", "message": message}


@pytest_twisted.ensureDeferred
async def test_query_edge_cases_and_info_overtakes_query(client):
    client.send({"id": 910, "method": "objects/query", "params": {"objects": {"webhooks": None}}})
    client.send({"id": 911, "method": "info", "params": {}})
    await client.wait_for(lambda m: m.get("id") == 910)
    assert [i for i in _ids(client) if i in (910, 911)] == [911, 910]
    result = await client.result("objects/query", {"objects": {
        "toolhead": ["position", "homed_axes", "no_such_field"], "no_such_object": None,
        "webhooks": []}})
    assert isinstance(result["eventtime"], float)
    assert result["status"] == {
        "toolhead": {"position": [0.0, 0.0, 0.0, 0.0], "homed_axes": "", "no_such_field": None},
        "no_such_object": {}, "webhooks": {}}


@pytest_twisted.ensureDeferred
async def test_gcode_help_list_and_bed_mesh(client):
    helps = await client.result("gcode/help", {})
    assert helps["SDCARD_PRINT_FILE"] and len(helps) == 76
    objects = (await client.result("objects/list", {}))["objects"]
    assert objects[0] == "gcode" and "toolhead" in objects and len(objects) == 46
    mesh = await client.result("bed_mesh/dump_mesh", {})
    assert mesh["current_mesh"] == {}


@pytest_twisted.ensureDeferred
async def test_gcode_output_forms(client):
    await client.result("gcode/subscribe_output",
                        {"response_template": {"method": "process_gcode_response", "tag": "out"}})
    start = len(client.messages)
    await client.result("gcode/script", {"script": "M118 hello"})
    # the output push arrives before the reply
    assert client.messages[start] == {"method": "process_gcode_response", "tag": "out",
                                      "params": {"response": "// hello"}}
    await client.result("gcode/script", {"script": 'RESPOND MSG="hi"'})
    await client.result("gcode/script", {"script": 'RESPOND TYPE=error MSG="an error echo"'})
    await client.result("gcode/script", {"script": "M115"})
    await client.result("gcode/script", {"script": "STATUS"})
    assert await client.result("gcode/script", {"script": "FOOBAR_UNKNOWN"}) == {}
    await client.result("gcode/script", {"script": "M104 S200\nM140 S60\nM105"})
    out = client.outputs()
    assert out[:6] == ["// hello", "// hi", "!! an error echo",
                       "// FIRMWARE_NAME:Klipper FIRMWARE_VERSION:v0.13.0-730-g84104bbbd",
                       "// Klipper state: Ready", '// Unknown command:"FOOBAR_UNKNOWN"']
    assert out[6].startswith("B:") and "/60.0 T0:" in out[6] and out[6].endswith("/200.0")


@pytest_twisted.ensureDeferred
async def test_move_errors(client):
    await client.result("gcode/subscribe_output", {})
    reply = await client.script("G1 X10")
    assert reply["error"]["message"] == "Must home axis first: 10.000 0.000 0.000 [0.000]"
    await client.result("gcode/script", {"script": "G28\nG90\nG1 X10 Y10 Z5 F3000"})
    reply = await client.script("G1 X500")
    assert reply["error"] == {"error": "WebRequestError",
                              "message": "Move out of range: 500.000 10.000 5.000 [0.000]"}
    assert client.outputs()[-1] == "!! Move out of range: 500.000 10.000 5.000 [0.000]"
    await client.result("gcode/script", {"script": "M114"})
    assert client.outputs()[-1] == "X:10.000 Y:10.000 Z:5.000 E:0.000"
    # a failing line stops the rest of the script
    reply = await client.script("G1 X20\nG1 X900\nG1 X30")
    assert "error" in reply
    await client.result("gcode/script", {"script": "M114"})
    assert client.outputs()[-1].startswith("X:20.000")


@pytest_twisted.ensureDeferred
async def test_remote_method(client):
    assert await client.result("gcode/script", {"script": "TEST_REMOTE_METHOD"}) == {}
    await client.result("register_remote_method", {
        "response_template": {"method": "moonraker_test_cb", "tag": "rpc"},
        "remote_method": "moonraker_test"})
    start = len(client.messages)
    await client.result("gcode/script", {"script": "TEST_REMOTE_METHOD"})
    call = client.messages[start]
    assert call == {"params": {"result": "test"}, "method": "moonraker_test_cb", "tag": "rpc"}
    assert list(call) == ["params", "method", "tag"]
