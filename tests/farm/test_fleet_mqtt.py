"""A fleet across hosts: each instance under its own instance_name on one shared MQTT broker."""

from __future__ import annotations

import json

import pytest_twisted
from farm.farming import free_ports, start_farm
from mqtt.broker import Mosquitto, Peer


@pytest_twisted.ensureDeferred
async def test_every_instance_answers_and_publishes_under_its_own_name(tmp_path):
    broker = Mosquitto(str(tmp_path / "broker"))
    await broker.start()
    base = free_ports(3)
    paths = []
    for i, name in enumerate(("printer-a", "printer-b"), start=1):
        path = tmp_path / "hosts" / name
        (path / "config").mkdir(parents=True)
        (path / "config" / "moontwist.conf").write_text(
            f"[server]\nport: {base + i}\n[simulator]\nspeed: 20\n"
            f"[mqtt]\naddress: 127.0.0.1\nport: {broker.port}\ninstance_name: {name}\n"
            "status_objects:\n  extruder=target\n"
        )
        paths.append(str(path))
    peer = Peer(broker.port)
    await peer.connect()
    farm = await start_farm("--instance", paths[0], "--instance", paths[1], "--simulate")
    try:
        for name in ("printer-a", "printer-b"):
            await peer.subscribe(f"{name}/moonraker/status")
            await peer.subscribe(f"{name}/moonraker/api/response")
            await peer.subscribe(f"{name}/klipper/status")
        for name in ("printer-a", "printer-b"):
            assert await peer.next_json(f"{name}/moonraker/status") == {"server": "online"}
        # JSON-RPC to one printer by its name reaches that printer only
        await peer.publish("printer-b/moonraker/api/request", json.dumps(
            {"jsonrpc": "2.0", "method": "printer.gcode.script", "params": {"script": "M104 S190"}, "id": 7}))
        reply = await peer.next_json("printer-b/moonraker/api/response", skip=lambda m: m.get("id") != 7)
        assert reply["result"] == "ok"
        status = await peer.next_json(
            "printer-b/klipper/status", skip=lambda m: (m.get("status", {}).get("extruder") or {}).get("target") != 190.0,
            timeout=10)
        assert status["status"]["extruder"]["target"] == 190.0
        assert farm.instance("printer-a").server.klippy.status["extruder"]["target"] == 0.0
        await peer.publish("printer-a/moonraker/api/request", json.dumps(
            {"jsonrpc": "2.0", "method": "server.info", "id": 8}))
        reply = await peer.next_json("printer-a/moonraker/api/response", skip=lambda m: m.get("id") != 8)
        assert "mqtt" in reply["result"]["components"]
    finally:
        await farm.stop()
        peer.close()
        await broker.stop()
