"""The API key lives in the reserved ``_API_KEY_USER_`` row of ``auth_users``, never in a
namespace clients can read through ``server.database.*``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
import pytest_twisted

from moontwist import apikey
from moontwist.storage.database import Database
from moontwist.storage.moonraker_import import API_KEY_SCHEME, AUTH_USERS_SQL

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "moonraker_db")


@pytest.fixture(scope="module")
def expected() -> dict:
    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as fh:
        return json.load(fh)


async def assert_not_readable(svc, key: str, *others: str) -> None:
    """No namespace, read whole over HTTP and the websocket with API key ``key``, holds
    ``key`` or any of ``others``."""
    secrets = (key, *others)
    headers = {"X-Api-Key": key}
    code, body, _ = await svc.request("GET", "/server/database/list", headers=headers)
    assert code == 200
    namespaces = set(body["result"]["namespaces"]) | {"moonraker"}
    ws = await svc.ws(headers=headers)
    try:
        for namespace in sorted(namespaces):
            code, body, _ = await svc.request(
                "GET", f"/server/database/item?namespace={namespace}", headers=headers
            )
            assert code in (200, 404), namespace
            reply = await ws.rpc("server.database.get_item", {"namespace": namespace})
            assert "result" in reply or reply["error"]["code"] == 404, namespace
            for text in (json.dumps(body), json.dumps(reply)):
                assert not any(secret in text for secret in secrets), namespace
    finally:
        ws.sendClose()


def key_rows(datapath: str) -> list[tuple]:
    path = os.path.join(datapath, "database", "moontwist.db")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT username, password_hash, hash_scheme FROM auth_users "
            "WHERE username = '_API_KEY_USER_'"
        ).fetchall()
    finally:
        conn.close()


def printed_key(capsys, datapath: str) -> str:
    assert apikey.main(["--datapath", datapath]) == 0
    return capsys.readouterr().out.strip()


@pytest_twisted.ensureDeferred
async def test_generated_key_is_in_the_table_only(tmp_path, kit, capsys):
    svc = await kit.start_auth(tmp_path, "force_logins: true\n")
    datapath = svc.server.datapath
    try:
        key = kit.api_key(svc)
        assert key and key_rows(datapath) == [("_API_KEY_USER_", key, API_KEY_SCHEME)]
        await assert_not_readable(svc, key)
        assert printed_key(capsys, datapath) == key
        # not a user: not listed, can't log in, doesn't make logins required
        code, body, _ = await svc.request("GET", "/access/users/list", headers={"X-Api-Key": key})
        assert code == 200 and body["result"] == {"users": []}
        code, body, _ = await svc.request("GET", "/access/info")
        assert body["result"]["login_required"] is False
        code, _, _ = await svc.request(
            "POST", "/access/login", json={"username": "_API_KEY_USER_", "password": key}
        )
        assert code == 401
        code, _, _ = await svc.request(
            "DELETE", "/access/user", json={"username": "_API_KEY_USER_"}, headers={"X-Api-Key": key}
        )
        assert code in (400, 404) and key_rows(datapath)
        # rotation replaces the row; the old key stops working
        code, body, _ = await svc.request("POST", "/access/api_key", headers={"X-Api-Key": key})
        new_key = body["result"]
        assert code == 200 and new_key != key
        assert key_rows(datapath) == [("_API_KEY_USER_", new_key, API_KEY_SCHEME)]
        assert (await svc.request("GET", "/server/info", headers={"X-Api-Key": key}))[0] == 401
        await assert_not_readable(svc, new_key)
        assert printed_key(capsys, datapath) == new_key
    finally:
        await svc.service.stopService()
    svc = await kit.start_auth(tmp_path)
    try:
        assert kit.api_key(svc) == new_key
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_imported_moonraker_key(tmp_path, kit, capsys, expected):
    (tmp_path / "data" / "database").mkdir(parents=True)
    shutil.copyfile(
        os.path.join(DATA, "moonraker-sql.db"), tmp_path / "data" / "database" / "moonraker-sql.db"
    )
    key = expected["users"]["api_key"]
    svc = await kit.start_auth(tmp_path)
    try:
        assert kit.api_key(svc) == key
        code, body, _ = await svc.request("GET", "/server/info", headers={"X-Api-Key": key})
        assert code == 200 and "klippy_state" in body["result"]
        await assert_not_readable(svc, key)
        assert printed_key(capsys, svc.server.datapath) == key
        code, body, _ = await svc.request("GET", "/access/users/list", headers={"X-Api-Key": key})
        assert sorted(u["username"] for u in body["result"]["users"]) == expected["users"]["usernames"]
        alice = next(u for u in expected["users"]["rows"] if u["username"] == "alice")
        code, body, _ = await svc.request(
            "POST", "/access/login", json={"username": "alice", "password": alice["fixture_password"]}
        )
        assert code == 200 and body["result"]["action"] == "user_logged_in"
    finally:
        await svc.service.stopService()
    log = open(os.path.join(svc.server.datapath, "logs", "moontwist.log")).read()
    assert key not in log


async def old_layout(datapath: str, namespace_key: str, table_key: str | None = None) -> None:
    """A database as earlier builds left it: the key in namespace ``moonraker``."""
    db = Database(datapath)
    await db.open()
    try:
        await db.insert_item("moonraker", ["authorization", "api_key"], namespace_key)
        await db.insert_item("moonraker", "instance_id", "abc")
        if table_key is not None:
            await db.register_table("auth_users", AUTH_USERS_SQL)
            await db.run_write(
                lambda conn: conn.execute(
                    "INSERT INTO auth_users (username, password_hash, hash_scheme) VALUES (?, ?, ?)",
                    ("_API_KEY_USER_", table_key, API_KEY_SCHEME),
                )
            )
    finally:
        await db.close()


@pytest_twisted.ensureDeferred
async def test_key_in_the_namespace_is_moved(tmp_path, kit, capsys):
    datapath = str(tmp_path / "data")
    legacy = "0123456789abcdef0123456789abcdef"
    await old_layout(datapath, legacy)
    svc = await kit.start_auth(tmp_path)
    try:
        assert kit.api_key(svc) == legacy
        assert key_rows(datapath) == [("_API_KEY_USER_", legacy, API_KEY_SCHEME)]
        await assert_not_readable(svc, legacy)
        code, body, _ = await svc.request(
            "GET", "/server/database/item?namespace=moonraker", headers={"X-Api-Key": legacy}
        )
        # the key left; what Moonraker keeps there stays (file_manager adds its metadata version)
        assert code == 200 and body["result"]["value"]["instance_id"] == "abc"
        assert set(body["result"]["value"]) == {"instance_id", "file_manager"}
        assert printed_key(capsys, datapath) == legacy
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_key_in_the_table_wins_over_the_namespace(tmp_path, kit, capsys):
    datapath = str(tmp_path / "data")
    legacy, current = "1" * 32, "2" * 32
    await old_layout(datapath, legacy, current)
    svc = await kit.start_auth(tmp_path)
    try:
        assert kit.api_key(svc) == current
        assert (await svc.request("GET", "/server/info", headers={"X-Api-Key": legacy}))[0] == 401
        await assert_not_readable(svc, current, legacy)
        assert printed_key(capsys, datapath) == current
    finally:
        await svc.service.stopService()
