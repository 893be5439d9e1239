"""The fault-injection switches of KlippySimulator."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from .klippy_client import connect, connect_ready, sleep


@pytest_twisted.ensureDeferred
async def test_never_answer_and_answer_again(client, sim):
    sim.never_answer("objects/query", "gcode/script")
    pending = client.request("objects/query", {"objects": {"webhooks": None}}, timeout=0.6)
    assert (await client.result("info", {}))["state"] == "ready"
    with pytest.raises(defer.TimeoutError):
        await pending
    sim.answer_again("objects/query")
    await client.result("objects/query", {"objects": {"webhooks": None}})
    with pytest.raises(defer.TimeoutError):
        await client.request("gcode/script", {"script": "M115"}, timeout=0.3)
    sim.answer_again()
    assert await client.result("gcode/script", {"script": "M115"}) == {}


@pytest_twisted.ensureDeferred
async def test_drop_connections(client, sim):
    await sim.drop_connections()
    await client.closed
    other = await connect_ready(sim.socket_path)
    assert len(sim.connections) == 1
    other.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_malformed_and_oversized_messages(client, sim):
    sim.send_malformed()
    await sleep(0.05)
    assert client.raw[-1] == b"{this is not json"
    assert (await client.result("info", {}))["state"] == "ready"
    sim.send_oversized(3 * 1024 * 1024)
    big = await client.wait_for(lambda m: m.get("method") == "oversized")
    assert len(big["params"]["pad"]) == 3 * 1024 * 1024
    assert (await client.result("info", {}))["state"] == "ready"


@pytest_twisted.ensureDeferred
async def test_start_in_error_then_switch_states(make_sim):
    sim = await make_sim(start_state="error", start_message="mcu 'mcu': Unable to connect")
    client = await connect(sim.socket_path)
    await sleep(0.1)
    info = await client.result("info", {})
    assert (info["state"], info["state_message"]) == ("error", "mcu 'mcu': Unable to connect")
    reply = await client.script("G28")
    assert reply["error"]["message"] == "mcu 'mcu': Unable to connect"
    assert "query_endstops/status" not in (await client.result("list_endpoints", {}))["endpoints"]
    sim.set_state("ready")
    assert (await client.result("info", {}))["state_message"] == "Printer is ready"
    sim.set_state("shutdown", "MCU 'mcu' shutdown: Timer too close")
    info = await client.result("info", {})
    assert info["state"] == "shutdown"
    assert info["state_message"].startswith("MCU 'mcu' shutdown: Timer too close\nOnce the")
    sim.set_state("startup")
    assert (await client.result("info", {}))["state"] == "startup"
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_start_in_startup_stays_there(make_sim):
    sim = await make_sim(start_state="startup")
    client = await connect(sim.socket_path)
    await sleep(0.2)
    assert (await client.result("info", {}))["state"] == "startup"
    sim.set_state("ready")
    assert (await client.result("info", {}))["state"] == "ready"
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_restart_repeatedly(make_sim):
    sim = await make_sim(speed=100.0)
    client = await connect_ready(sim.socket_path)
    await sim.restart_repeatedly(3, interval=0.05)
    await client.closed
    assert sim.restart_count == 3
    again = await connect_ready(sim.socket_path)
    assert (await again.result("info", {}))["state"] == "ready"
    again.transport.loseConnection()
