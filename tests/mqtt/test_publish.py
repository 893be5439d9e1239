"""server.mqtt.publish|subscribe over HTTP and the websocket, publish_mqtt_topic, the service other plugins use."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from mqtt.broker import wait_until

from mtclient import RPCError, sleep

INSTANCE = "printer1"


@pytest_twisted.async_yield_fixture
async def svc(tmp_path, broker, kit):
    running = await kit.start_mqtt(tmp_path, broker.port, "default_qos: 1")
    await wait_until(running.server.lookup("mqtt").is_connected)
    yield running
    await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_publish_over_http_every_payload_kind(svc, peer):
    await peer.subscribe("t/#")
    cases = [
        ("hello", b"hello"),
        ({"a": [1, 2]}, b'{"a":[1,2]}'),
        ([1, "x"], b'[1,"x"]'),
        (True, b"true"),
        (12.5, b"12.5"),
        (None, b""),
    ]
    for i, (payload, wire) in enumerate(cases):
        code, body = await svc.post("/server/mqtt/publish", json={"topic": f"t/{i}", "payload": payload})
        assert (code, body) == (200, {"result": {"topic": f"t/{i}"}})
        got, retained = await peer.next(f"t/{i}")
        assert got == wire and not retained
    code, _ = await svc.post("/server/mqtt/publish", json={"topic": "t/kept", "payload": "v", "retain": True, "qos": 2})
    assert code == 200
    assert await peer.next("t/kept") == (b"v", False)


@pytest_twisted.ensureDeferred
async def test_publish_and_subscribe_errors(svc):
    for body, word in (
        ({}, "topic"),
        ({"topic": "a/b", "qos": 3}, "qos"),
        ({"topic": "a/b", "qos": "high"}, "qos"),
        ({"topic": "a/+"}, "wildcards"),
        ({"topic": "a/#", "payload": 1}, "wildcards"),
        ({"topic": ""}, "topic"),
        ({"topic": "a/b", "timeout": -1}, "timeout"),
    ):
        code, reply = await svc.post("/server/mqtt/publish", json=body)
        assert code == 400 and word in reply["error"]["message"], (body, reply)
    code, reply = await svc.post("/server/mqtt/subscribe", json={"topic": "a/#", "timeout": 1})
    assert code == 400 and "wildcards" in reply["error"]["message"]
    code, reply = await svc.post("/server/mqtt/subscribe", json={"topic": "quiet/topic", "timeout": 0.2})
    assert code == 504 and reply["error"]["message"] == "MQTT Subscribe Timed Out"
    # the timed-out subscription is gone
    assert "quiet/topic" not in svc.server.lookup("mqtt")._subs


@pytest_twisted.ensureDeferred
async def test_subscribe_over_http_and_websocket(svc, peer):
    await peer.publish("kept/json", json.dumps({"temp": 21.5}), qos=1, retain=True)
    code, body = await svc.post("/server/mqtt/subscribe", json={"topic": "kept/json", "timeout": 5})
    assert (code, body) == (200, {"result": {"topic": "kept/json", "payload": {"temp": 21.5}}})

    ws = await svc.ws()
    try:
        waiting = ws.call("server.mqtt.subscribe", {"topic": "live/text", "qos": 1})
        await wait_until(lambda: "live/text" in svc.server.lookup("mqtt")._subs)
        await peer.publish("live/text", b"not json \xff", qos=1)
        assert await waiting == {"topic": "live/text", "payload": "not json \ufffd"}
        assert await ws.call("server.mqtt.publish", {"topic": "ws/out", "payload": {"k": 1}}) == {"topic": "ws/out"}
        with pytest.raises(RPCError) as err:
            await ws.call("server.mqtt.subscribe", {"topic": "never", "timeout": 0.1})
        assert err.value.code == 504
    finally:
        ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_batch_over_websocket(svc, peer):
    await peer.subscribe("batch/+")
    ws = await svc.ws()
    try:
        ws.sendMessage(json.dumps([
            {"jsonrpc": "2.0", "method": "server.mqtt.publish", "params": {"topic": "batch/1", "payload": 1}, "id": 1},
            {"jsonrpc": "2.0", "method": "server.mqtt.publish", "params": {"topic": "batch/2", "qos": 7}, "id": 2},
        ]).encode())
        replies = await ws.raw.get()
        by_id = {r["id"]: r for r in replies}
        assert by_id[1]["result"] == {"topic": "batch/1"}
        assert by_id[2]["error"]["code"] == -32602
        assert await peer.next("batch/1") == (b"1", False)
    finally:
        ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_pending_subscribe_fails_with_503_at_shutdown(tmp_path, broker, kit):
    running = await kit.start_mqtt(tmp_path, broker.port)
    await wait_until(running.server.lookup("mqtt").is_connected)
    pending = running.post("/server/mqtt/subscribe", json={"topic": "nobody/publishes"})
    await sleep(0.2)
    restarted = running.server.restart()
    code, body = await pending
    assert code == 503, body
    await restarted
    await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_publish_mqtt_topic_from_a_klipper_macro(tmp_path, broker, peer, kit):
    await peer.subscribe("#")
    running = await kit.start_mqtt(tmp_path, broker.port, simulate=True)
    try:
        await wait_until(lambda: running.server.klippy_state == "ready" and running.server.lookup("mqtt").is_connected())
        sim = running.server.plugins.pm.get_plugin("klippy_apis").simulator
        sim.call_remote_method("publish_mqtt_topic", {"topic": "klipper/alert", "payload": {"msg": "hot"}, "use_prefix": True})
        payload, retained = await peer.next(f"{INSTANCE}/klipper/alert")
        assert json.loads(payload) == {"msg": "hot"} and not retained
        sim.call_remote_method("publish_mqtt_topic", {"topic": "plain/topic", "payload": 3, "retain": True, "qos": 1})
        assert await peer.next("plain/topic") == (b"3", False)
        code, body = await running.post("/server/mqtt/subscribe", json={"topic": "plain/topic", "timeout": 2})
        assert body["result"]["payload"] == 3  # retained by the broker
    finally:
        await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_service_other_plugins_use(svc, peer):
    mqtt = svc.server.lookup("mqtt")
    assert mqtt.is_connected() and mqtt.get_instance_name() == INSTANCE
    got: list[bytes] = []
    other: list[bytes] = []
    first = mqtt.subscribe_topic("svc/in", got.append)
    second = mqtt.subscribe_topic("svc/in", other.append, qos=1)
    await sleep(0.2)
    await peer.publish("svc/in", b"one", qos=1)
    await wait_until(lambda: got == [b"one"] and other == [b"one"])
    mqtt.unsubscribe(first)
    await peer.publish("svc/in", b"two", qos=1)
    await wait_until(lambda: other == [b"one", b"two"])
    assert got == [b"one"]
    mqtt.unsubscribe(second)
    mqtt.unsubscribe(second)  # twice is harmless
    await peer.subscribe("svc/out")
    await mqtt.publish_topic("svc/out", {"x": 1}, qos=1, retain=False)
    assert await peer.next("svc/out") == (b'{"x":1}', False)
    with pytest.raises(Exception, match="wildcards"):
        mqtt.subscribe_topic("svc/+", got.append)
    with pytest.raises(Exception, match="not JSON encodable"):
        await mqtt.publish_topic("svc/out", object())
