"""The client's connection: broker restarts, credentials, TLS, QoS 1 across a reconnect, a hanging broker."""

from __future__ import annotations

import json
import socket

import pytest_twisted
from mqtt.broker import Mosquitto, Peer, wait_until
from mqtt.certs import make_certificates

INSTANCE = "printer1"
STATUS = f"{INSTANCE}/moonraker/status"
RESPONSE = f"{INSTANCE}/moonraker/api/response"


def _client(svc):
    return svc.server.lookup("mqtt")


@pytest_twisted.ensureDeferred
async def test_broker_restart_reconnects_resubscribes_and_is_online_again(tmp_path, broker, kit):
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        client = _client(svc)
        await wait_until(client.is_connected, what="first connect")
        got: list[bytes] = []
        client.subscribe_topic("plugin/in", got.append)
        await broker.restart(down_for=0.3)
        peer = Peer(broker.port)
        await peer.connect()
        await peer.subscribe(STATUS)
        await peer.subscribe(RESPONSE)
        assert await peer.next_json(STATUS, timeout=15) == {"server": "online"}
        await wait_until(client.is_connected, what="reconnect")
        # the API topic and the plugin's topic were subscribed again
        reply = await peer.rpc(INSTANCE, "server.info")
        assert "result" in reply
        await peer.publish("plugin/in", b"after restart", qos=1)
        await wait_until(lambda: got == [b"after restart"], what="plugin subscription renewed")
        peer.close()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_qos1_publish_while_the_broker_is_down_is_delivered_after_reconnect(tmp_path, broker, kit):
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        client = _client(svc)
        await wait_until(client.is_connected)
        await broker.stop()
        await wait_until(lambda: not client.is_connected(), what="disconnect noticed")
        # QoS 0 can't be delivered now: a clear 503
        code, body = await svc.post("/server/mqtt/publish", json={"topic": "q/zero", "payload": "x", "qos": 0})
        assert code == 503, body
        # QoS 1 waits in the queue; the request answers once the broker has acknowledged it
        pending = svc.post("/server/mqtt/publish", json={"topic": "q/one", "payload": {"n": 1}, "qos": 1, "retain": True})
        await broker.start()
        code, body = await pending
        assert (code, body) == (200, {"result": {"topic": "q/one"}})
        peer = Peer(broker.port)
        await peer.connect()
        await peer.subscribe("q/one")
        payload, retained = await peer.next("q/one")
        assert json.loads(payload) == {"n": 1} and retained
        peer.close()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_refused_credentials_are_reported_and_nothing_is_published(tmp_path, kit):
    broker = Mosquitto(str(tmp_path / "broker"), users={"printer": "right"})
    await broker.start()
    try:
        svc = await kit.start_mqtt(tmp_path, broker.port, "username: printer\npassword: wrong")
        try:
            code, body = await svc.get("/server/info")
            await wait_until(lambda: any("refused" in w for w in svc.server.warnings), what="refusal warning")
            code, body = await svc.get("/server/info")
            assert any("refused the connection: Not authorized" in w for w in body["result"]["warnings"]), body
            assert not _client(svc).is_connected()
            code, body = await svc.post("/server/mqtt/publish", json={"topic": "a/b", "payload": "x"})
            assert code == 503
        finally:
            await svc.service.stopService()
        # an anonymous peer is refused too: the broker really checks
        anonymous = Peer(broker.port)
        anonymous.client.connect("127.0.0.1", broker.port)
        anonymous.client.loop_start()
        rc = await anonymous._connected
        assert rc.is_failure
        anonymous.client.loop_stop()
    finally:
        await broker.stop()


@pytest_twisted.ensureDeferred
async def test_credentials_from_the_secrets_file(tmp_path, kit):
    broker = Mosquitto(str(tmp_path / "broker"), users={"printer": "s3cret pass"})
    await broker.start()
    secrets = tmp_path / "moonraker.secrets"
    secrets.write_text("[mqtt_credentials]\nusername: printer\npassword: s3cret pass\n")
    try:
        peer = Peer(broker.port, "printer", "s3cret pass")
        await peer.connect()
        await peer.subscribe(STATUS)
        svc = await kit.start_mqtt(
            tmp_path, broker.port,
            "username: {secrets.mqtt_credentials.username}\npassword: {secrets.mqtt_credentials.password}",
            extra=f"[secrets]\nsecrets_path: {secrets}\n",
        )
        try:
            assert await peer.next_json(STATUS) == {"server": "online"}
            assert _client(svc).is_connected()
        finally:
            await svc.service.stopService()
        peer.close()
    finally:
        await broker.stop()


@pytest_twisted.ensureDeferred
async def test_tls_with_a_self_signed_certificate(tmp_path, kit):
    certs = make_certificates(str(tmp_path / "certs"))
    broker = Mosquitto(str(tmp_path / "broker"), tls=(certs["server.pem"], certs["server.key"]))
    await broker.start()
    try:
        peer = Peer(broker.port, tls_ca=certs["ca.pem"])
        await peer.connect()
        await peer.subscribe(STATUS)
        await peer.subscribe(RESPONSE)
        svc = await kit.start_mqtt(tmp_path, broker.port, f"enable_tls: True\ntls_ca_file: {certs['ca.pem']}\nmqtt_protocol: v5")
        try:
            assert await peer.next_json(STATUS) == {"server": "online"}
            reply = await peer.rpc(INSTANCE, "server.info")
            assert "result" in reply
            # a big reply crosses several TLS records
            big = "x" * 200_000
            code, _ = await svc.post("/server/database/item", json={"namespace": "tls", "key": "big", "value": big})
            assert code == 200
            reply = await peer.rpc(INSTANCE, "server.database.get_item", {"namespace": "tls", "key": "big"})
            assert reply["result"]["value"] == big
        finally:
            await svc.service.stopService()
        peer.close()
    finally:
        await broker.stop()


@pytest_twisted.ensureDeferred
async def test_tls_with_an_untrusted_certificate_is_refused(tmp_path, kit):
    certs = make_certificates(str(tmp_path / "certs"))
    broker = Mosquitto(str(tmp_path / "broker"), tls=(certs["server.pem"], certs["server.key"]))
    await broker.start()
    try:
        svc = await kit.start_mqtt(tmp_path, broker.port, f"enable_tls: True\ntls_ca_file: {certs['other-ca.pem']}")
        try:
            client = _client(svc)
            await wait_until(lambda: client.last_error is not None, what="TLS failure")
            assert "TLS handshake failed" in client.last_error and "CERTIFICATE_VERIFY_FAILED" in client.last_error
            assert not client.is_connected()
        finally:
            await svc.service.stopService()
    finally:
        await broker.stop()


@pytest_twisted.ensureDeferred
async def test_a_broker_that_never_answers_stalls_nothing(tmp_path, kit):
    """TCP accepted, no CONNACK ever: the API keeps answering and shutdown doesn't wait for it."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    try:
        svc = await kit.start_mqtt(tmp_path, silent.getsockname()[1])
        try:
            client = _client(svc)
            code, body = await svc.get("/server/info")
            assert code == 200 and "mqtt" in body["result"]["components"]
            assert not client.is_connected()
            code, _ = await svc.post("/server/mqtt/publish", json={"topic": "a/b", "qos": 1, "timeout": 0.3})
            assert code == 504
        finally:
            await svc.service.stopService()
    finally:
        silent.close()


@pytest_twisted.ensureDeferred
async def test_a_broker_that_is_not_there(tmp_path, kit):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    svc = await kit.start_mqtt(tmp_path, port)
    try:
        client = _client(svc)
        await wait_until(lambda: client.last_error is not None)
        assert "Connection refused" in client.last_error or "ECONNREFUSED" in client.last_error
        code, _ = await svc.get("/server/info")
        assert code == 200
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_protocol_versions(tmp_path, broker, peer, kit):
    await peer.subscribe(STATUS)
    for i, version in enumerate(("v3.1", "v3.1.1", "v5")):
        svc = await kit.start_mqtt(tmp_path / str(i), broker.port, f"mqtt_protocol: {version}\nclient_id: moontwist-{i}")
        try:
            assert await peer.next_json(STATUS) == {"server": "online"}
        finally:
            await svc.service.stopService()
        assert await peer.next_json(STATUS) == {"server": "offline"}
    assert "moontwist-2" in broker.log()
