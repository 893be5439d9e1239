"""Namespaces as Moonraker keeps them: an emptied namespace disappears, ``moonraker`` always
exists and is read-only, ``database`` is the server's own, and the debug endpoints
(``enable_database_debug``) reach everything except secrets."""

from __future__ import annotations

import json
import os
import re

import pytest_twisted

from mtclient import start_service

DEBUG_CONFIG = (
    "[server]\nhost: 127.0.0.1\n[database]\nenable_database_debug: True\n"
    "[authorization]\ntrusted_clients:\n  127.0.0.0/8\n"
)


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")
    yield running
    await running.service.stopService()


class HTTPItems:
    """server.database.* over HTTP, shaped like the websocket calls (result or (code, message))."""

    def __init__(self, svc, prefix="/server/database") -> None:
        self.svc = svc
        self.prefix = prefix

    async def call(self, method, params=None):
        verb, path = {
            "list": ("GET", "/list"),
            "get_item": ("GET", "/item"),
            "post_item": ("POST", "/item"),
            "delete_item": ("DELETE", "/item"),
            "table": ("GET", "/table"),
        }[method.rsplit(".", 1)[1]]
        code, body, _ = await self.svc.request(verb, self.prefix + path, json=params or {})
        if code != 200:
            return code, body["error"]["message"]
        return body["result"]


class WSItems:
    def __init__(self, ws) -> None:
        self.ws = ws

    async def call(self, method, params=None):
        reply = await self.ws.rpc(method, params)
        if "error" in reply:
            return reply["error"]["code"], reply["error"]["message"]
        return reply["result"]


@pytest_twisted.ensureDeferred
async def test_deleting_the_last_key_removes_the_namespace_over_http_and_websocket(svc):
    ws = await svc.ws()
    for client, ns in ((HTTPItems(svc), "over_http"), (WSItems(ws), "over_ws")):
        # a nested key: its record is left empty and goes with it
        await client.call("server.database.post_item", {"namespace": ns, "key": "settings.theme", "value": "dark"})
        assert ns in (await client.call("server.database.list"))["namespaces"]
        deleted = await client.call("server.database.delete_item", {"namespace": ns, "key": "settings.theme"})
        assert deleted == {"namespace": ns, "key": "settings.theme", "value": "dark"}
        assert ns not in (await client.call("server.database.list"))["namespaces"]
        code, message = await client.call("server.database.get_item", {"namespace": ns})
        assert code == 404 and ns in message
        # a key array naming one top-level key, then a second namespace key left behind
        await client.call("server.database.post_item", {"namespace": ns, "key": ["a"], "value": 1})
        await client.call("server.database.post_item", {"namespace": ns, "key": "b.c", "value": 2})
        await client.call("server.database.delete_item", {"namespace": ns, "key": ["a"]})
        assert ns in (await client.call("server.database.list"))["namespaces"]
        await client.call("server.database.delete_item", {"namespace": ns, "key": ["b", "c"]})
        assert ns not in (await client.call("server.database.list"))["namespaces"]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_moonraker_namespace_always_exists_and_refuses_client_writes(svc):
    ws = await svc.ws()
    for client in (HTTPItems(svc), WSItems(ws)):
        assert "moonraker" in (await client.call("server.database.list"))["namespaces"]
        value = (await client.call("server.database.get_item", {"namespace": "moonraker"}))["value"]
        assert re.fullmatch(r"[0-9a-f]{32}", value["instance_id"])
        with open(os.path.join(svc.server.datapath, ".moonraker.uuid")) as f:  # Moonraker's id file
            assert f.read().strip() == value["instance_id"]
        assert value["file_manager"]["metadata_version"] == 3
        got = await client.call("server.database.get_item", {"namespace": "moonraker", "key": "instance_id"})
        assert got["value"] == value["instance_id"]
        for method, params in (
            ("server.database.post_item", {"namespace": "moonraker", "key": "instance_id", "value": "mine"}),
            ("server.database.post_item", {"namespace": "moonraker", "key": "new", "value": 1}),
            ("server.database.delete_item", {"namespace": "moonraker", "key": "instance_id"}),
        ):
            code, message = await client.call(method, params)
            assert code == 403 and "moonraker" in message, (method, message)
    instance = value["instance_id"]
    ws.sendClose()
    await svc.server.restart()
    ws = await svc.ws()
    again = await ws.call("server.database.get_item", {"namespace": "moonraker", "key": "instance_id"})
    assert again["value"] == instance  # one installation, one id
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_database_namespace_is_the_servers_own(svc):
    ws = await svc.ws()
    await svc.server.restart()  # one clean stop wrote the unsafe shutdown count back
    ws = await svc.ws()
    for client in (HTTPItems(svc), WSItems(ws)):
        assert "database" not in (await client.call("server.database.list"))["namespaces"]
        for method, params in (
            ("server.database.get_item", {"namespace": "database"}),
            ("server.database.get_item", {"namespace": "database", "key": "unsafe_shutdowns"}),
            ("server.database.post_item", {"namespace": "database", "key": "unsafe_shutdowns", "value": 0}),
            ("server.database.delete_item", {"namespace": "database", "key": "unsafe_shutdowns"}),
        ):
            code, message = await client.call(method, params)
            assert code == 403 and "forbidden" in message, (method, message)
    # debug endpoints exist only with enable_database_debug
    code, _body, _ = await svc.request("GET", "/debug/database/list")
    assert code == 404
    reply = await ws.rpc("debug.database.list")
    assert reply["error"]["code"] == -32601
    ws.sendClose()


@pytest_twisted.async_yield_fixture
async def debug_svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), DEBUG_CONFIG)
    yield running
    await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_debug_endpoints_reach_every_namespace_and_table_but_no_secret(debug_svc):
    svc = debug_svc
    auth = svc.server.lookup("identify_credentials").__self__.auth
    headers = {"X-Api-Key": auth.api_key}
    code, body, _ = await svc.request(
        "POST", "/access/user", json={"username": "alice", "password": "s3cret!"}, headers=headers
    )
    assert code == 200, body
    await svc.server.lookup("history_store").add_job({"filename": "a.gcode", "status": "completed", "start_time": 1.0})
    ws = await svc.ws(headers=headers)
    for client in (HTTPItems(svc, "/debug/database"), WSItems(ws)):
        listed = await client.call("debug.database.list")
        assert {"moonraker", "database"} <= set(listed["namespaces"])
        assert {"namespace_store", "job_history", "job_totals", "auth_users"} <= set(listed["tables"])
        assert listed["backups"] == []
        got = await client.call("debug.database.get_item", {"namespace": "database", "key": "unsafe_shutdowns"})
        assert got["value"] == 1  # this very run, until it stops cleanly
        posted = await client.call("debug.database.post_item", {"namespace": "moonraker", "key": "x.y", "value": [1]})
        assert posted == {"namespace": "moonraker", "key": "x.y", "value": [1]}
        deleted = await client.call("debug.database.delete_item", {"namespace": "moonraker", "key": "x.y"})
        assert deleted["value"] == [1]
        jobs = await client.call("debug.database.table", {"table": "job_history"})
        assert jobs["table_name"] == "job_history"
        assert [(r["job_id"], r["filename"], r["auxiliary_data"]) for r in jobs["rows"]] == [(1, "a.gcode", [])]
        code, message = await client.call("debug.database.table", {"table": "nope"})
        assert code == 404 and "nope" in message
        code, _message = await client.call("debug.database.table", {"table": "sqlite_master"})
        assert code == 404
        users = await client.call("debug.database.table", {"table": "auth_users"})
        text = json.dumps(users)
        assert auth.api_key not in text
        rows = {r["username"]: r for r in users["rows"]}
        assert rows["alice"]["password_hash"] == rows["alice"]["salt"] == "<redacted>"
        assert rows["_API_KEY_USER_"]["password_hash"] == "<redacted>"
        assert all(r["extra"] in (None, "<redacted>") for r in users["rows"])
        namespaces = await client.call("debug.database.table", {"table": "namespace_store"})
        assert {"namespace": "moonraker", "key": "file_manager", "value": {"metadata_version": 3}} in namespaces["rows"]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_backups_never_leave_the_data_path(svc, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.db").write_bytes(b"precious")
    backup = os.path.join(svc.server.datapath, "backup")
    os.makedirs(backup, exist_ok=True)
    os.symlink(outside, os.path.join(backup, "database"))
    ws = await svc.ws()
    for method, params in (
        ("server.database.post_backup", {"filename": "snap.db"}),
        ("server.database.delete_backup", {"filename": "keep.db"}),
    ):
        reply = await ws.rpc(method, params)
        assert reply["error"]["code"] == 403 and "outside" in reply["error"]["message"], reply
    assert sorted(os.listdir(outside)) == ["keep.db"]
    assert (outside / "keep.db").read_bytes() == b"precious"
    ws.sendClose()
