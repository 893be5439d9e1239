"""Klipper status publishing: status_objects, status_interval, publish_split_status, one Klippy subscription."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest
import pytest_twisted
from mqtt.broker import wait_until
from twisted.internet import reactor
from twisted.logger import Logger

from moontwist.config import Config, ConfigError
from moontwist.plugins.mqtt import MQTTPlugin
from mtclient import sleep

INSTANCE = "printer1"
STATUS_TOPIC = f"{INSTANCE}/klipper/status"
OBJECTS = "status_objects:\n  webhooks\n  extruder=target,temperature\n  toolhead=homed_axes\n"


async def _ready(svc):
    await wait_until(lambda: svc.server.klippy_state == "ready" and svc.server.lookup("mqtt").is_connected(), timeout=15)


@pytest_twisted.ensureDeferred
async def test_status_objects_published_on_change(tmp_path, broker, peer, kit):
    await peer.subscribe(STATUS_TOPIC)
    svc = await kit.start_mqtt(tmp_path, broker.port, OBJECTS, simulate=True)
    try:
        await _ready(svc)
        first = await peer.next_json(STATUS_TOPIC, skip=lambda m: "webhooks" not in m["status"])
        assert first["status"]["webhooks"]["state"] == "ready"
        assert set(first["status"]["extruder"]) <= {"target", "temperature"}
        # only the fields asked for, and the Klippy subscription is the merged one
        ws = await svc.ws()
        await ws.call("printer.objects.subscribe", {"objects": {"extruder": ["power"]}})
        sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
        assert sim is not None
        await ws.call("printer.gcode.script", {"script": "M104 S215"})
        change = await peer.next_json(STATUS_TOPIC, skip=lambda m: m["status"].get("extruder", {}).get("target") != 215.0)
        assert "power" not in change["status"]["extruder"]
        assert isinstance(change["eventtime"], float)
        subs = svc.server.klippy.subscriptions
        assert set(subs.owners) >= {"mqtt", "klippy"}
        assert subs.live["extruder"] is None or {"target", "temperature", "power"} <= subs.live["extruder"]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_split_status_retained_per_field(tmp_path, broker, peer, kit):
    svc = await kit.start_mqtt(tmp_path, broker.port, OBJECTS + "publish_split_status: True", simulate=True)
    try:
        await _ready(svc)
        ws = await svc.ws()
        await ws.call("printer.gcode.script", {"script": "M104 S190"})
        topic = f"{INSTANCE}/klipper/state/extruder/target"
        await peer.subscribe(topic)
        value = await peer.next_json(topic, skip=lambda m: m["value"] != 190.0)
        assert set(value) == {"eventtime", "value"}
        # retained: a late subscriber gets the last value at once
        late = kit.Peer(broker.port)
        await late.connect()
        await late.subscribe(f"{INSTANCE}/klipper/state/webhooks/state")
        payload, retained = await late.next(f"{INSTANCE}/klipper/state/webhooks/state")
        assert retained and json.loads(payload)["value"] == "ready"
        late.close()
        assert not [m for m in peer.messages if m[0] == STATUS_TOPIC]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_status_interval_limits_the_rate(tmp_path, broker, peer, kit):
    await peer.subscribe(STATUS_TOPIC)
    svc = await kit.start_mqtt(tmp_path, broker.port, "status_objects:\n  extruder=temperature\nstatus_interval: 1.0", simulate=True)
    try:
        await _ready(svc)
        ws = await svc.ws()
        await ws.call("printer.gcode.script", {"script": "M104 S250"})  # the temperature changes every tick now
        await peer.next_json(STATUS_TOPIC, timeout=5)
        before = len([m for m in peer.messages if m[0] == STATUS_TOPIC])
        await sleep(2.5)
        during = len([m for m in peer.messages if m[0] == STATUS_TOPIC]) - before
        assert 1 <= during <= 3
        ws.sendClose()
    finally:
        await svc.service.stopService()


def test_bad_options_name_the_option(tmp_path):
    server = SimpleNamespace(reactor=reactor, logger=Logger)
    for options, word in (
        ("status_interval: 0.1", "status_interval"),
        ("default_qos: 3", "default_qos"),
        ("api_qos: -1", "api_qos"),
        ("mqtt_protocol: v4", "mqtt_protocol"),
        ("instance_name: a/#", "instance_name"),
        ("port: 0", "port"),
        (f"password_file: {tmp_path}/missing", "password_file"),
        (f"enable_tls: True\ntls_ca_file: {tmp_path}/missing.pem", "tls_ca_file"),
        ("status_objects:\n  =x", "status_objects"),
    ):
        config = Config.from_string(f"[mqtt]\naddress: 127.0.0.1\n{options}\n")
        with pytest.raises(ConfigError, match=word):
            MQTTPlugin().configure(server=server, config=config)
    with pytest.raises(ConfigError, match="address"):
        MQTTPlugin().configure(server=server, config=Config.from_string("[mqtt]\n"))


def test_password_file_and_defaults(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    plugin = MQTTPlugin()
    plugin.configure(server=SimpleNamespace(reactor=reactor, logger=Logger), config=Config.from_string(
        f"[mqtt]\naddress: broker.lan\nusername: me\npassword_file: {tmp_path}/pw\n"
    ))
    assert plugin.client.paho._password == b"from-file"
    assert plugin.client.port == 1883 and plugin.api_qos == 0 and plugin.api_enabled
    assert plugin.instance == socket.gethostname()
