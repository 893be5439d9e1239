"""[sensor NAME] type mqtt: values from a real broker, the server.sensors API, notifications, history fields."""

from __future__ import annotations

import json

import pytest_twisted
from history.printing import write_gcodes
from mqtt.broker import wait_until
from twisted.logger import Logger

from mtclient import start_service

TOPIC = "shelly/status/switch:0"
SENSOR = """
[sensor meter]
type: mqtt
name: Power meter
state_topic: shelly/status/switch:0
qos: 1
state_response_template:
  {% set data = payload|fromjson %}
  {set_result("power", data["apower"]|float)}
  {set_result("energy", data["aenergy"]["total"] / 1000)}
  {log_debug("meter updated")}
parameter_power:
  units=W
parameter_energy:
  units=kWh
history_field_energy_used:
  parameter=energy
  desc=Printer energy
  strategy=delta
  units=kWh
  report_total=true
  precision=3
history_field_peak_power:
  parameter=power
  strategy=maximum
  units=W
"""


def config(port: int, extra: str = "", sim: bool = False) -> str:
    text = f"[server]\nhost: 127.0.0.1\n[mqtt]\naddress: 127.0.0.1\nport: {port}\ninstance_name: p1\n" + SENSOR + extra
    return text + ("[simulator]\nspeed: 50\n" if sim else "")


def reading(power: float, energy_wh: float) -> str:
    return json.dumps({"id": 0, "apower": power, "aenergy": {"total": energy_wh}})


async def start(tmp_path, port: int, extra: str = "", **kwargs):
    svc = await start_service(str(tmp_path / "data"), config(port, extra, kwargs.get("simulate", False)), **kwargs)
    await wait_until(lambda: svc.server.lookup("mqtt").is_connected())
    return svc


@pytest_twisted.ensureDeferred
async def test_values_api_and_notifications(tmp_path, broker, peer):
    svc = await start(tmp_path, broker.port)
    try:
        ws = await svc.ws()
        await peer.publish(TOPIC, reading(120.5, 2000.0), qos=1)
        code, body = await svc.get("/server/sensors/info?sensor=meter")
        await wait_until(lambda: svc.server.plugins.pm.get_plugin("sensor").sensors["meter"].last_measurements)
        code, body = await svc.get("/server/sensors/info?sensor=meter")
        assert (code, body["result"]) == (200, {
            "id": "meter", "friendly_name": "Power meter", "type": "mqtt", "values": {"power": 120.5, "energy": 2.0}
        })
        note = await ws.next_notification("notify_sensor_update", timeout=3)
        assert note["params"] == [{"meter": {"power": 120.5, "energy": 2.0}}]
        listed = await ws.call("server.sensors.list", {"extended": True})
        meter = listed["sensors"]["meter"]
        assert meter["parameter_info"] == [{"units": "W", "name": "power"}, {"units": "kWh", "name": "energy"}]
        assert {f["field"]: f for f in meter["history_fields"]}["energy_used"] == {
            "field": "energy_used", "provider": "sensor meter", "description": "Printer energy", "strategy": "delta",
            "units": "kWh", "init_tracker": False, "exclude_paused": False, "report_total": True,
            "report_maximum": False, "precision": 3, "parameter": "energy",
        }
        plain = await ws.call("server.sensors.list")
        assert "parameter_info" not in plain["sensors"]["meter"]
        await peer.publish(TOPIC, reading(80.0, 2010.0), qos=1)
        note = await ws.next_notification("notify_sensor_update", timeout=3)
        assert note["params"] == [{"meter": {"power": 80.0, "energy": 2.01}}]
        measured = await ws.call("server.sensors.measurements", {"sensor": "meter"})
        assert measured["meter"]["power"][-1] == 80.0 and 120.5 in measured["meter"]["power"]
        every = await ws.call("server.sensors.measurements")
        assert set(every) == {"meter"}
        code, body = await svc.get("/server/sensors/info?sensor=nope")
        assert code == 404 and "nope" in body["error"]["message"]
        code, body = await svc.get("/server/sensors/info")
        assert code == 400 and "sensor" in body["error"]["message"]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_bad_payloads_and_the_sandbox(tmp_path, broker, peer):
    sandbox = (
        "[sensor escape]\ntype: mqtt\nstate_topic: escape/in\nstate_response_template:\n"
        "  {set_result('n', ''.__class__.__mro__[1].__subclasses__()|length)}\n"
    )
    svc = await start(tmp_path, broker.port, sandbox)
    try:
        plugin = svc.server.plugins.pm.get_plugin("sensor")
        await peer.publish(TOPIC, reading(10.0, 1.0), qos=1)
        await wait_until(lambda: plugin.sensors["meter"].last_measurements.get("power") == 10.0)
        await peer.publish(TOPIC, b"not json", qos=1)
        await wait_until(lambda: plugin.sensors["meter"].error_state is not None)
        assert plugin.sensors["meter"].last_measurements["power"] == 10.0  # the last good values stay
        await peer.publish("escape/in", b"x", qos=1)
        await wait_until(lambda: plugin.sensors["escape"].error_state is not None)
        assert "unsafe" in plugin.sensors["escape"].error_state
        assert plugin.sensors["escape"].last_measurements == {}
        # still works afterwards
        await peer.publish(TOPIC, reading(11.0, 1.0), qos=1)
        await wait_until(lambda: plugin.sensors["meter"].error_state is None)
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_broker_loss_clears_values_and_reconnect_resubscribes(tmp_path, broker, peer):
    svc = await start(tmp_path, broker.port)
    try:
        meter = svc.server.plugins.pm.get_plugin("sensor").sensors["meter"]
        await peer.publish(TOPIC, reading(5.0, 1.0), qos=1)
        await wait_until(lambda: meter.last_measurements.get("power") == 5.0)
        peer.close()
        await broker.restart(down_for=0.2)
        await wait_until(lambda: meter.error_state == "MQTT Disconnected" or meter.last_measurements.get("power") == 6.0)
        await wait_until(lambda: svc.server.lookup("mqtt").is_connected(), timeout=15)
        again = type(peer)(broker.port)
        await again.connect()
        await again.publish(TOPIC, reading(6.0, 1.5), qos=1)
        await wait_until(lambda: meter.last_measurements.get("power") == 6.0)
        again.close()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_history_fields_reach_the_job(tmp_path, broker, peer):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"short.gcode": 80})
    svc = await start(tmp_path, broker.port, simulate=True)
    try:
        meter = svc.server.plugins.pm.get_plugin("sensor").sensors["meter"]
        await wait_until(lambda: svc.server.klippy_state == "ready", timeout=15)
        await peer.publish(TOPIC, reading(50.0, 1000.0), qos=1)
        await wait_until(lambda: meter.last_measurements.get("energy") == 1.0)
        ws = await svc.ws()
        await ws.call("printer.print.start", {"filename": "short.gcode"})
        note = await ws.next_notification("notify_history_changed", timeout=15)
        assert note["params"][0]["action"] == "added"
        await peer.publish(TOPIC, reading(230.0, 1100.0), qos=1)
        await peer.publish(TOPIC, reading(90.0, 1250.0), qos=1)
        await wait_until(lambda: meter.last_measurements.get("energy") == 1.25)
        note = await ws.next_notification("notify_history_changed", timeout=30)
        job = note["params"][0]["job"]
        fields = {f["name"]: f for f in job["auxiliary_data"]}
        assert fields["energy_used"] == {
            "provider": "sensor meter", "name": "energy_used", "value": 0.25, "description": "Printer energy", "units": "kWh"
        }
        assert fields["peak_power"]["value"] == 230.0 and fields["peak_power"]["description"] == "power tracker"
        totals = await ws.call("server.history.totals")
        assert {"provider": "sensor meter", "field": "energy_used", "maximum": None, "total": 0.25} in totals["auxiliary_totals"]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_sensor_options_errors(tmp_path, broker):
    from types import SimpleNamespace

    import pytest

    from moontwist.config import Config, ConfigError
    from moontwist.plugins.sensors import SensorsPlugin

    base = "[sensor s]\ntype: mqtt\nstate_topic: a/b\n"
    for text, word in (
        (base, "state_response_template"),
        (base + "state_response_template: {% if %}\n", "state_response_template"),
        (base + "state_response_template: x\nhistory_field_f:\n  strategy=basic\n", "parameter"),
        (base + "state_response_template: x\nhistory_field_f:\n  parameter=p\n  strategy=median\n", "strategy"),
        (base + "state_response_template: x\nhistory_field_f:\n  parameter=p\n  colour=red\n", "colour"),
        (base + "state_response_template: x\nhistory_field_f:\n  parameter=p\n  precision=two\n", "precision"),
        ("[sensor s]\nstate_topic: a/b\n", "type"),
    ):
        with pytest.raises(ConfigError, match=word):
            SensorsPlugin().configure(server=SimpleNamespace(logger=Logger), config=Config.from_string(text))
    config = Config.from_string("[sensor t]\ntype: http\n")
    plugin = SensorsPlugin()
    plugin.configure(server=SimpleNamespace(logger=Logger), config=config)
    assert plugin.sensors == {} and any("unsupported sensor type 'http'" in w for w in config.warnings())
