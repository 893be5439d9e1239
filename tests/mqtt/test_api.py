"""The JSON-RPC API over MQTT, through a real Mosquitto broker."""

from __future__ import annotations

import json

import pytest_twisted
from mqtt.broker import wait_until

INSTANCE = "printer1"
STATUS = f"{INSTANCE}/moonraker/status"
RESPONSE = f"{INSTANCE}/moonraker/api/response"


@pytest_twisted.ensureDeferred
async def test_online_and_server_info(tmp_path, broker, peer, kit):
    await peer.subscribe(STATUS)
    await peer.subscribe(RESPONSE)
    svc = await kit.start_mqtt(tmp_path, broker.port)
    try:
        assert await peer.next_json(STATUS) == {"server": "online"}
        reply = await peer.rpc(INSTANCE, "server.info")
        assert reply["result"]["components"].count("mqtt") == 1
        await wait_until(lambda: svc.server.lookup("mqtt").is_connected())
    finally:
        await svc.service.stopService()
    offline = await peer.next_json(STATUS)
    assert offline == {"server": "offline"}
    payload, retain = broker and (json.dumps(offline).encode(), True)
