"""Home Assistant discovery: retained configs for the printer's entities, their state, removal when turned off."""

from __future__ import annotations

import json

import pytest_twisted
from mqtt.broker import Peer, wait_until

from mtclient import sleep

INSTANCE = "printer1"
STATE = f"{INSTANCE}/moontwist/ha_state"
PREFIX = f"homeassistant/sensor/{INSTANCE}"


async def retained_configs(port: int, wait: float = 0.7) -> dict[str, dict]:
    """What a newly started Home Assistant would find on the broker."""
    await sleep(0.3)  # what moontwist has queued reaches the broker first
    peer = Peer(port)
    await peer.connect()
    await peer.subscribe("homeassistant/#")
    await sleep(wait)
    peer.close()
    return {topic: json.loads(payload) for topic, payload, retained in peer.messages if retained and payload}


@pytest_twisted.ensureDeferred
async def test_discovery_configs_state_and_removal(tmp_path, broker, peer, kit):
    # a config left by an earlier start for an entity that no longer exists, and another device's
    await peer.publish(f"{PREFIX}/old_thing/config", json.dumps({"name": "old"}), qos=1, retain=True)
    await peer.publish("homeassistant/sensor/other_printer/state/config", json.dumps({"name": "x"}), qos=1, retain=True)
    await peer.subscribe(STATE)
    svc = await kit.start_mqtt(tmp_path, broker.port, "home_assistant_discovery: True", simulate=True)
    try:
        await wait_until(lambda: svc.server.klippy_state == "ready" and svc.server.lookup("mqtt").is_connected(), timeout=15)
        await wait_until(lambda: "extruder_target" in (svc.server.plugins.pm.get_plugin("mqtt").discovery.last_state or {}))
        configs = await retained_configs(broker.port)
        ours = {t.split("/")[3] for t in configs if t.startswith(PREFIX + "/")}
        assert ours == {
            "state", "progress", "file", "eta",
            "extruder_temperature", "extruder_target", "heater_bed_temperature", "heater_bed_target",
        }
        assert "homeassistant/sensor/other_printer/state/config" in configs  # not ours: left alone
        temp = configs[f"{PREFIX}/extruder_temperature/config"]
        assert temp["state_topic"] == STATE
        assert temp["value_template"] == "{{ value_json.extruder_temperature }}"
        assert temp["device_class"] == "temperature" and temp["unit_of_measurement"] == "°C"
        assert temp["unique_id"] == f"moontwist_{INSTANCE}_extruder_temperature"
        assert temp["availability_topic"] == f"{INSTANCE}/moonraker/status"
        assert temp["payload_available"] == "online"
        assert temp["device"]["identifiers"] == [f"moontwist_{INSTANCE}"]
        assert configs[f"{PREFIX}/eta/config"]["device_class"] == "timestamp"

        state = await peer.next_json(STATE, timeout=5, skip=lambda s: s["state"] != "standby")
        assert state["state"] == "standby" and state["progress"] in (0.0, None) and state["eta"] is None
        ws = await svc.ws()
        await ws.call("printer.gcode.script", {"script": "M140 S60"})
        state = await peer.next_json(STATE, timeout=5, skip=lambda s: s["heater_bed_target"] != 60.0)
        assert isinstance(state["heater_bed_temperature"], float)
        ws.sendClose()
    finally:
        await svc.service.stopService()

    # turned off: every config of this printer is removed, the other device's stays
    svc = await kit.start_mqtt(tmp_path, broker.port, "home_assistant_discovery: False")
    try:
        await wait_until(svc.server.lookup("mqtt").is_connected)
        await sleep(0.5)
        configs = await retained_configs(broker.port)
        assert list(configs) == ["homeassistant/sensor/other_printer/state/config"]
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_eta_while_printing(tmp_path, broker, peer, kit):
    from history.printing import write_gcodes

    write_gcodes(str(tmp_path / "data"), {"long.gcode": 400})
    await peer.subscribe(STATE)
    svc = await kit.start_mqtt(tmp_path, broker.port, "home_assistant_discovery: True", extra="[simulator]\nspeed: 5\n", simulate=True)
    try:
        await wait_until(lambda: svc.server.klippy_state == "ready" and svc.server.lookup("mqtt").is_connected(), timeout=15)
        ws = await svc.ws()
        await ws.call("printer.print.start", {"filename": "long.gcode"})
        state = await peer.next_json(STATE, timeout=20, skip=lambda s: not s["eta"])
        assert state["state"] == "printing" and state["file"] == "long.gcode" and state["progress"] >= 0
        assert state["eta"].endswith("+00:00")
        await ws.call("printer.print.cancel")
        ws.sendClose()
    finally:
        await svc.service.stopService()
