"""Importing the real Moonraker database in tests/data/moonraker_db, compared to expected.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import pytest
import pytest_twisted

from moontwist.storage.database import Database
from moontwist.storage.history import HistoryStore
from moontwist.storage.moonraker_import import (
    API_KEY_SCHEME,
    MOONRAKER_HASH_SCHEME,
    decode_record,
    import_moonraker_db,
    select_api_key,
    verify_moonraker_password,
)

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "moonraker_db")
TYPES = {
    "int64": int,
    "float64": float,
    "bool": bool,
    "str": str,
    "json-object": dict,
    "json-array": list,
}


@pytest.fixture(scope="module")
def expected() -> dict:
    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture
def source(tmp_path) -> str:
    """A private copy of the Moonraker database in its own folder."""
    folder = tmp_path / "moonraker" / "database"
    folder.mkdir(parents=True)
    path = folder / "moonraker-sql.db"
    shutil.copyfile(os.path.join(DATA, "moonraker-sql.db"), path)
    return str(path)


@pytest_twisted.async_yield_fixture
async def stores(tmp_path):
    db = Database(str(tmp_path / "moontwist"))
    await db.open()
    history = HistoryStore(db)
    await history.open()
    yield db, history
    await db.close()


def fingerprint(path: str) -> tuple[str, list[str]]:
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return digest, sorted(os.listdir(os.path.dirname(path)))


def test_decode_record_examples():
    assert decode_record(bytes.fromhex("715802000000000000")) == 600
    assert decode_record(bytes.fromhex("71FDFFFFFFFFFFFFFF")) == -3
    assert decode_record(bytes.fromhex("649A9999999999B93F")) == 0.1
    one = decode_record(bytes.fromhex("64000000000000F03F"))
    assert one == 1.0 and type(one) is float
    assert decode_record(b"?\x01") is True and decode_record(b"?\x00") is False
    assert decode_record(bytes.fromhex("73447275636B65722053C3BC6420E29C93")) == "Drucker Süd ✓"
    assert decode_record(b'{"a":"\\u00fc","b":"\xc3\xbc"}') == {"a": "ü", "b": "ü"}
    assert decode_record(b"[]") == [] and decode_record(b"\x00") is None
    with pytest.raises(ValueError):
        decode_record(b"Zjunk")


@pytest_twisted.ensureDeferred
async def test_import_matches_expected(stores, source, expected):
    db, history = stores
    before = fingerprint(source)
    summary = await import_moonraker_db(source, db, history)
    assert fingerprint(source) == before

    namespaces = {ns: v for ns, v in expected["namespaces"].items() if ns != "database"}
    assert summary["skipped"] is False and summary["failed"] == []
    assert summary["namespaces"] == len(namespaces)
    assert summary["namespace_keys"] == sum(len(v) for v in namespaces.values())
    assert summary["skipped_namespaces"] == ["database"]
    assert (summary["jobs"], summary["users"], summary["api_key"]) == (6, 2, True)

    # every namespace, every value, with its type
    for namespace, items in namespaces.items():
        stored = await db.get_item(namespace)
        assert stored == items, namespace
        for key, kind in expected["namespace_value_types"][namespace].items():
            assert type(stored[key]) is TYPES[kind], (namespace, key)
    assert "database" not in db.namespaces()
    assert await db.get_item(
        "klipperscreen", ["displayed_macros.Printer", "UNLOAD_FILAMENT"]
    ) == items_at(namespaces, "klipperscreen", "displayed_macros.Printer", "UNLOAD_FILAMENT")

    # the API key: the reserved auth_users row, in no namespace
    api_key = expected["users"]["api_key"]
    assert await db.run_read(select_api_key) == api_key
    for namespace in db.namespaces():
        assert api_key not in json.dumps(await db.get_item(namespace)), namespace
    key_row = await db.run_read(
        lambda c: c.execute(
            "SELECT hash_scheme, source, created_on, extra FROM auth_users WHERE username = ?",
            ("_API_KEY_USER_",),
        ).fetchone()
    )
    want_key_user = next(
        u for u in expected["users"]["rows"] if u["username"] == "_API_KEY_USER_"
    )
    assert tuple(key_row[:3]) == (API_KEY_SCHEME, "moonraker", want_key_user["created_on"])
    assert json.loads(key_row[3]) == {"jwt_secret": None, "jwk_id": None, "groups": ["admin"]}

    # every job, ids kept
    count, jobs = await history.list_jobs(limit=0, order="asc")
    assert count == expected["history"]["count"]
    for got, want in zip(jobs, expected["history"]["jobs"], strict=True):
        want = dict(want)
        want.pop("instance_id")
        want["job_id"] = want.pop("job_id_hex")
        assert got == want
    snapshot = expected["api_snapshot"]["history_list"]["jobs"]
    assert [j["job_id"] for j in jobs] == [j["job_id"] for j in snapshot]

    # totals
    totals = await history.totals()
    assert totals["job_totals"] == expected["totals"]["job_totals"]
    assert totals["auxiliary_totals"] == expected["totals"]["auxiliary_totals"]
    assert totals["job_totals"]["total_jobs"] == 6

    # users, and their passwords still work
    rows = await db.run_read(
        lambda c: c.execute(
            "SELECT username, password_hash, salt, hash_scheme, source, created_on, extra "
            "FROM auth_users WHERE username != '_API_KEY_USER_' ORDER BY username"
        ).fetchall()
    )
    want_users = [u for u in expected["users"]["rows"] if u["username"] != "_API_KEY_USER_"]
    assert [r[0] for r in rows] == expected["users"]["usernames"]
    for row, want in zip(rows, want_users, strict=True):
        username, password_hash, salt, scheme, origin, created_on, extra = row
        assert (password_hash, salt, origin, created_on) == (
            want["password"],
            want["salt"],
            want["source"],
            want["created_on"],
        )
        assert scheme == MOONRAKER_HASH_SCHEME
        assert json.loads(extra) == {
            "jwt_secret": want["jwt_secret"],
            "jwk_id": want["jwk_id"],
            "groups": want["groups"],
        }
        assert verify_moonraker_password(want["fixture_password"], salt, password_hash)
        assert not verify_moonraker_password(
            "wrong-" + want["fixture_password"], salt, password_hash
        )


def items_at(namespaces: dict, namespace: str, *path: str):
    value = namespaces[namespace]
    for part in path:
        value = value[part]
    return value


@pytest_twisted.ensureDeferred
async def test_import_happens_once(stores, source, tmp_path):
    db, history = stores
    first = await import_moonraker_db(source, db, history)
    await db.insert_item("mainsail", "initVersion", "changed since")
    await history.delete_job(1)
    await db.close()

    db = Database(str(tmp_path / "moontwist"))
    await db.open()
    history = HistoryStore(db)
    try:
        second = await import_moonraker_db(source, db, history)
        assert second["skipped"] is True and second["previous"] == first
        assert await db.get_item("mainsail", "initVersion") == "changed since"
        count, _ = await history.list_jobs(limit=0)
        assert count == 5
    finally:
        await db.close()


@pytest_twisted.ensureDeferred
async def test_wal_mode_source_is_read_from_a_copy(stores, source):
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    before = fingerprint(source)
    summary = await import_moonraker_db(source, *stores)
    assert fingerprint(source) == before
    assert summary["jobs"] == 6


@pytest_twisted.ensureDeferred
async def test_not_a_moonraker_database(stores, tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ValueError, match="not a Moonraker"):
        await import_moonraker_db(str(other), *stores)
    with pytest.raises(FileNotFoundError):
        await import_moonraker_db(str(tmp_path / "missing.db"), *stores)
