"""Declared argument types hold for list items too, and deep JSON is refused before anything recurses."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest_twisted

from moontwist.api.limits import MAX_JSON_DEPTH
from mtclient import RPCError, connect_ws


def _nested(depth: int) -> str:
    """JSON text of arrays nested ``depth`` deep (built as text: encoders recurse)."""
    return "[" * depth + "1" + "]" * depth


@pytest_twisted.ensureDeferred
async def test_list_items_are_checked(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, extra="[announcements]\n")
    try:
        key = {"X-Api-Key": kit.api_key(svc)}
        for bad in ([None], [{}], [["moonraker"]]):
            code, body = await svc.post("/server/announcements/update", json={"subscriptions": bad}, headers=key)
            assert code == 400 and "'subscriptions'" in body["error"]["message"] and "item 0" in body["error"]["message"]
        ws = await connect_ws(svc.ws_url, headers=key)
        try:
            await ws.call("server.announcements.update", {"subscriptions": ["moonraker", None]})
        except RPCError as exc:
            assert exc.code == -32602 and "item 1" in exc.message
        else:
            raise AssertionError("a null feed name was accepted")
        ws.sendClose()
        # the schema says so too
        code, doc = await svc.get("/server/openapi.json")
        schema = doc["paths"]["/server/announcements/update"]["post"]["requestBody"]["content"]["application/json"]
        assert schema["schema"]["properties"]["subscriptions"]["items"] == {"type": "string"}
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_every_list_argument_declares_its_items(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, extra="[announcements]\n[job_queue]\n")
    try:
        lists = [(e.method, a.name) for e in svc.server.registry for a in e.args if a.type == "list"]
        assert lists
        assert [(m, a) for e in svc.server.registry for a in e.args if a.type == "list" and a.items is None
                for m in [e.method]] == []
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_deep_json_is_refused_on_every_transport(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        key = {"X-Api-Key": kit.api_key(svc)}
        deep = _nested(970)
        json_key = {**key, "Content-Type": "application/json"}
        body_text = '{"namespace": "n", "key": "k", "value": ' + deep + "}"
        code, body = await svc.post("/server/database/item", data=body_text.encode(), headers=json_key)
        assert code == 400 and "nested deeper" in body["error"]["message"]
        code, body = await svc.post(f"/server/database/item?namespace=n&key=k&value:json={quote(deep)}", headers=key)
        assert code == 400 and "'value'" in body["error"]["message"]
        message = '{"jsonrpc": "2.0", "method": "server.database.post_item", "id": 7, "params": ' + body_text + "}"
        ws = await connect_ws(svc.ws_url, headers=key)
        ws.sendMessage(message.encode())
        reply = await ws.raw.get()
        assert reply["error"]["code"] == 400 and reply["id"] == 7
        # as deep as the limit allows still works, and is stored
        fine = json.loads(_nested(MAX_JSON_DEPTH - 3))  # the message and params objects are levels too
        assert (await ws.call("server.database.post_item", {"namespace": "n", "key": "k", "value": fine}))["value"] == fine
        ws.sendClose()
        code, body = await svc.post("/server/jsonrpc", headers=json_key, data=message.encode())
        assert body["error"]["code"] == 400 and body["id"] == 7
        code, body = await svc.get("/server/info", headers=key)
        assert code == 200
    finally:
        await svc.service.stopService()
