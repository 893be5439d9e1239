"""The JSON-RPC API over MQTT, through a real Mosquitto broker."""

from __future__ import annotations

import json

import pytest_twisted
from mqtt.broker import Peer, wait_until

from mtclient import Daemon, sleep, start_service

INSTANCE = "printer1"
STATUS = f"{INSTANCE}/moonraker/status"
REQUEST = f"{INSTANCE}/moonraker/api/request"
RESPONSE = f"{INSTANCE}/moonraker/api/response"


async def _listening_peer(broker) -> Peer:
    peer = Peer(broker.port)
    await peer.connect()
    await peer.subscribe(STATUS)
    await peer.subscribe(RESPONSE)
    return peer


@pytest_twisted.ensureDeferred
async def test_presence_topic_online_retained_and_offline_at_exit(tmp_path, broker, peer, kit):
    await peer.subscribe(STATUS)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        assert await peer.next_json(STATUS) == {"server": "online"}
        late = Peer(broker.port)
        await late.connect()
        await late.subscribe(STATUS)
        payload, retained = await late.next(STATUS)
        assert json.loads(payload) == {"server": "online"} and retained
        late.close()
    finally:
        await svc.service.stopService()
    assert await peer.next_json(STATUS) == {"server": "offline"}


@pytest_twisted.ensureDeferred
async def test_last_will_says_offline_when_the_connection_dies(tmp_path, broker, peer, kit):
    await peer.subscribe(STATUS)
    svc = await kit.start_mqtt(tmp_path, broker.port, "keepalive: 5")
    try:
        assert await peer.next_json(STATUS) == {"server": "online"}
        client = svc.server.lookup("mqtt")
        client.paho._sock.shutdown(2)  # the TCP connection breaks without a DISCONNECT
        assert await peer.next_json(STATUS) == {"server": "offline"}
        # ...and the client comes back by itself
        assert await peer.next_json(STATUS) == {"server": "online"}
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_request_reply_and_errors(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        await peer.next_json(STATUS)
        reply = await peer.rpc(INSTANCE, "server.info")
        assert "mqtt" in reply["result"]["components"] and reply["jsonrpc"] == "2.0"
        # unknown method, bad params, an endpoint that isn't offered over MQTT
        assert (await peer.rpc(INSTANCE, "no.such.method"))["error"]["code"] == -32601
        bad = await peer.rpc(INSTANCE, "server.database.get_item", {"namespace": [1]})
        assert bad["error"]["code"] == -32602 and "namespace" in bad["error"]["message"]
        assert (await peer.rpc(INSTANCE, "server.mqtt.publish", {"topic": "a/b"}))["error"]["code"] == -32601
        # bad JSON gets a parse error and nothing breaks
        parse = await peer.rpc(INSTANCE, "", raw=b"{not json")
        assert parse == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
        invalid = await peer.rpc(INSTANCE, "", raw=b'"just a string"')
        assert invalid["error"]["code"] == -32600
        # too deep for the parser, and too big: errors, and the next request still works
        deep = await peer.rpc(INSTANCE, "", raw=b"[" * 5000 + b"]" * 5000)
        assert deep["error"]["code"] in (-32700, -32600)
        huge = await peer.rpc(INSTANCE, "", raw=b'{"jsonrpc":"2.0","method":"server.info","params":{"x":"' + b"x" * (17 << 20) + b'"},"id":1}', timeout=20)
        assert huge["error"]["code"] == -32600 and "larger than" in huge["error"]["message"]
        assert (await peer.rpc(INSTANCE, "server.info"))["result"]["klippy_state"] == "disconnected"
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_batch_over_mqtt(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        await peer.next_json(STATUS)
        batch = [
            {"jsonrpc": "2.0", "method": "server.info", "id": "a"},
            {"jsonrpc": "2.0", "method": "server.database.list", "id": "b"},
            {"jsonrpc": "2.0", "method": "no.such", "id": "c"},
            {"jsonrpc": "2.0", "method": "server.info"},  # a notification: no reply
        ]
        await peer.publish(REQUEST, json.dumps(batch))
        replies = await peer.next_json(RESPONSE, skip=lambda m: isinstance(m, dict))
        by_id = {r["id"]: r for r in replies}
        assert set(by_id) == {"a", "b", "c"}
        assert "components" in by_id["a"]["result"]
        assert "namespaces" in by_id["b"]["result"]
        assert by_id["c"]["error"]["code"] == -32601
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_duplicate_mqtt_timestamp_is_refused(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        await peer.next_json(STATUS)
        params = {"mqtt_timestamp": 1700000000123456, "namespace": "moonraker"}
        first = await peer.rpc(INSTANCE, "server.database.get_item", params)
        assert "error" not in first or first["error"]["code"] != -10000
        again = await peer.rpc(INSTANCE, "server.database.get_item", params)
        assert again["error"] == {"code": -10000, "message": "Duplicate MQTT Request"}
        other = await peer.rpc(INSTANCE, "server.info", {"mqtt_timestamp": 1700000000999999})
        assert "result" in other
        # the timestamp is not passed on as an argument (printer.objects.query would take it as an object)
        svc_objects = await peer.rpc(INSTANCE, "printer.objects.query", {"mqtt_timestamp": 5, "objects": {}})
        assert svc_objects["error"]["code"] == 503  # Klippy is not connected, not "unknown object"
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_deep_json_is_refused_on_both_paths(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        await peer.next_json(STATUS)
        deep = "[" * 500 + "1" + "]" * 500
        for stamp in ("", '"mqtt_timestamp": 7, '):
            raw = ('{"jsonrpc": "2.0", "method": "server.database.post_item", "id": 1, "params": {'
                   + stamp + '"namespace": "n", "key": "k", "value": ' + deep + "}}").encode()
            reply = await peer.rpc(INSTANCE, "", raw=raw)
            assert reply["error"]["code"] == 400 and "nested deeper" in reply["error"]["message"], stamp
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_notifications_are_published_on_the_response_topic(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        await peer.next_json(STATUS)
        code, _ = await svc.post("/server/webcams/item", json={"name": "cam", "stream_url": "/webcam/?action=stream"})
        assert code == 200
        note = await peer.next_json(RESPONSE, skip=lambda m: m.get("method") != "notify_webcams_changed")
        assert note["jsonrpc"] == "2.0" and "id" not in note
        assert note["params"][0]["webcams"][0]["name"] == "cam"
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_api_disabled(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port, "enable_moonraker_api: False")
    try:
        await peer.next_json(STATUS)
        await peer.publish(REQUEST, json.dumps({"jsonrpc": "2.0", "method": "server.info", "id": 1}))
        await sleep(0.5)
        assert not [m for m in peer.messages if m[0] == RESPONSE]
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_mqtt_is_trusted_where_http_needs_credentials(tmp_path, broker, kit):
    """With [authorization] and no trusted clients HTTP answers 401; the broker guards MQTT."""
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port, extra="[authorization]\n")
    try:
        await peer.next_json(STATUS)
        code, _ = await svc.post("/server/mqtt/publish", json={"topic": "x/y", "payload": "hi"})
        assert code == 401
        code, _ = await svc.post("/server/mqtt/subscribe", json={"topic": "x/y", "timeout": 0.1})
        assert code == 401
        code, _ = await svc.get("/server/sensors/list")
        assert code in (401, 404)
        reply = await peer.rpc(INSTANCE, "server.database.list")
        assert "namespaces" in reply["result"]
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_requests_during_server_restart(tmp_path, broker, kit):
    peer = await _listening_peer(broker)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        await peer.next_json(STATUS)
        restarted = svc.server.restart(0.2)
        # published while the restart is pending: answered (perhaps 503) or lost with the connection
        await peer.publish(REQUEST, json.dumps({"jsonrpc": "2.0", "method": "server.info", "id": "during"}))
        await restarted
        assert await peer.next_json(STATUS, timeout=10, skip=lambda m: m != {"server": "online"}) == {"server": "online"}
        for topic, payload, _ in peer.messages:
            if topic == RESPONSE and b'"during"' in payload:
                reply = json.loads(payload)
                assert "result" in reply or reply["error"]["code"] == 503
        reply = await peer.rpc(INSTANCE, "server.info")
        assert "result" in reply
        await wait_until(lambda: svc.server.lookup("mqtt") is not None and svc.server.lookup("mqtt").is_connected())
    finally:
        peer.close()
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_no_mqtt_section_no_plugin(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")
    try:
        code, body = await svc.get("/server/info")
        assert "mqtt" not in body["result"]["components"]
        assert svc.server.lookup("mqtt") is None
        code, _ = await svc.post("/server/mqtt/publish", json={"topic": "a"})
        assert code == 404
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_daemon_over_mqtt(tmp_path, broker):
    """``twistd -n moontwist`` as a child process: online, a request, offline at SIGTERM."""
    peer = await _listening_peer(broker)
    datapath = tmp_path / "daemon"
    (datapath / "config").mkdir(parents=True)
    config = datapath / "config" / "moontwist.conf"
    config.write_text(f"[server]\n[mqtt]\naddress: 127.0.0.1\nport: {broker.port}\ninstance_name: {INSTANCE}\n")
    daemon = Daemon(str(datapath), "--config", str(config), "--no-simulate")
    daemon.start(wait=False)
    try:
        assert await peer.next_json(STATUS, timeout=30) == {"server": "online"}
        reply = await peer.rpc(INSTANCE, "server.info")
        assert "mqtt" in reply["result"]["components"]
    finally:
        daemon.stop()
    assert await peer.next_json(STATUS, timeout=10) == {"server": "offline"}
    peer.close()
