"""Shutdown, FIRMWARE_RESTART / RESTART, reconnecting."""

from __future__ import annotations

import socket

import pytest_twisted

from .klippy_client import connect, connect_ready, sleep

SHUTDOWN = ("Shutdown due to webhooks request\nOnce the underlying issue is corrected, use the\n"
            "\"FIRMWARE_RESTART\" command to reset the firmware, reload the\nconfig, and restart"
            " the host software.\nPrinter is shutdown\n")


async def refused(path: str) -> bool:
    """True once a connect gets ECONNREFUSED (the socket file exists but nobody accepts)."""
    for _ in range(20):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            return True
        except FileNotFoundError:
            await sleep(0.005)
        else:
            return False
        finally:
            sock.close()
    return False


@pytest_twisted.ensureDeferred
async def test_emergency_stop_shutdown_then_firmware_restart(sim, client):
    await client.result("gcode/subscribe_output", {"response_template": {"method": "out"}})
    await client.result("objects/subscribe", {"objects": {"webhooks": None}})
    await client.result("gcode/script", {"script": "G28"})
    start = len(client.messages)
    assert await client.result("emergency_stop", {}) == {}
    assert client.messages[start]["params"] == {"response": "// Klipper state: Shutdown"}
    push = await client.wait_for(lambda m: "status" in m.get("params", {}), since=start)
    assert push["params"]["status"]["webhooks"] == {"state": "shutdown",
                                                     "state_message": SHUTDOWN}
    info = await client.result("info", {})
    assert (info["state"], info["state_message"]) == ("shutdown", SHUTDOWN)
    reply = await client.script("G28")
    assert reply["error"] == {"error": "WebRequestError", "message": SHUTDOWN}
    assert client.outputs()[-2:] == [
        "// Shutdown due to webhooks request\n// Once the underlying issue is corrected, use the"
        "\n// \"FIRMWARE_RESTART\" command to reset the firmware, reload the\n// config, and "
        "restart the host software.\n// Printer is shutdown",
        "!! Shutdown due to webhooks request"]
    reply = await client.script("FOOBAR_UNKNOWN")
    assert reply["error"]["message"] == SHUTDOWN
    assert await client.result("gcode/script", {"script": "M118 still talking"}) == {}
    assert client.outputs()[-1] == "// still talking"
    status = (await client.result("objects/query", {"objects": {"toolhead": ["homed_axes"]}}))
    assert status["status"]["toolhead"]["homed_axes"] == "xyz"
    eventtime = status["eventtime"]
    start = len(client.messages)
    assert await client.result("gcode/script", {"script": "FIRMWARE_RESTART"}) == {}
    await client.closed
    assert client.messages[start + 1:] == [
        {"method": "out", "params": {"response": "// Klipper state: Disconnect"}}]
    assert await refused(sim.socket_path)
    again = await connect_ready(sim.socket_path)
    status = await again.result("objects/query", {"objects": {"webhooks": None,
                                                              "toolhead": ["homed_axes"]}})
    assert status["status"]["webhooks"] == {"state": "ready", "state_message": "Printer is ready"}
    assert status["status"]["toolhead"]["homed_axes"] == ""
    assert status["eventtime"] > eventtime
    again.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_restart_endpoint_closes_every_connection(make_sim):
    sim = await make_sim(speed=100.0, startup_delay=0.2)
    first = await connect_ready(sim.socket_path)
    second = await connect_ready(sim.socket_path)
    await first.result("register_remote_method", {"response_template": {"method": "cb"},
                                                   "remote_method": "moonraker_test"})
    assert await first.result("gcode/restart", {}) == {}
    await first.closed
    await second.closed
    third = None
    for _ in range(100):
        try:
            third = await connect(sim.socket_path)
            break
        except Exception:
            await sleep(0.02)
    info = await third.result("info", {})
    assert info["state"] == "startup"
    await sleep(0.3)
    assert (await third.result("info", {}))["state"] == "ready"
    # remote methods registered before the restart are gone
    await third.result("gcode/script", {"script": "TEST_REMOTE_METHOD"})
    assert not [m for m in third.messages if m.get("method") == "cb"]
    assert sim.restart_count == 1
    third.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_m112_shutdown_message(client):
    await client.result("gcode/script", {"script": "M112"})
    info = await client.result("info", {})
    assert info["state"] == "shutdown"
    assert info["state_message"].startswith("Shutdown due to M112 command\nOnce the underlying")
    reply = await client.script("STATUS")
    assert reply["error"]["message"].endswith("Printer is shutdown\nKlipper state: Not ready")
