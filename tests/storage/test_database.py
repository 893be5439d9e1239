"""The namespace store, table schemas and maintenance of moontwist.storage.Database."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from moontwist.api.errors import ServerError
from moontwist.storage.database import Database


async def error_of(d) -> ServerError:
    """The ServerError a Deferred fails with."""
    with pytest.raises(ServerError) as info:
        await d
    return info.value


@pytest_twisted.ensureDeferred
async def test_file_location_and_pragmas(db, tmp_path):
    assert db.db_path == str(tmp_path / "database" / "moontwist.db")
    modes = await db.run_read(
        lambda c: (
            c.execute("PRAGMA journal_mode").fetchone()[0],
            c.execute("PRAGMA synchronous").fetchone()[0],
        )
    )
    assert modes == ("wal", 2)


@pytest_twisted.ensureDeferred
async def test_nested_keys_create_parents(db):
    assert await db.insert_item("superclient", "settings.console.enable_autocomplete", True)
    await db.insert_item("superclient", ["theme", "background_color"], "black")
    assert await db.get_item("superclient") == {
        "settings": {"console": {"enable_autocomplete": True}},
        "theme": {"background_color": "black"},
    }
    assert await db.get_item("superclient", "settings.console") == {"enable_autocomplete": True}
    assert await db.get_item("superclient", ["settings", "console", "enable_autocomplete"])
    assert db.namespaces() == ["superclient", "moonraker"]  # moonraker always exists


@pytest_twisted.ensureDeferred
async def test_array_keys_keep_dots(db):
    await db.insert_item("fluidd", ["layout", "layouts", "dashboard.wide"], {"a": 1})
    await db.insert_item("gcode_metadata", ["cube.gcode"], {"size": 10})
    assert await db.get_item("fluidd", "layout") == {"layouts": {"dashboard.wide": {"a": 1}}}
    assert await db.get_item("gcode_metadata", ["cube.gcode", "size"]) == 10
    assert (await error_of(db.get_item("gcode_metadata", "cube.gcode"))).status == 404
    rows = await db.run_read(lambda c: c.execute("SELECT key FROM namespace_store").fetchall())
    assert sorted(r[0] for r in rows) == ["cube.gcode", "layout"]


@pytest_twisted.ensureDeferred
async def test_values_keep_their_types_and_survive_reopen(tmp_path):
    values = {"i": 600, "f": 1.0, "b": False, "s": "Drucker Süd ✓", "n": None, "l": [], "o": {}}
    database = Database(str(tmp_path))
    await database.open()
    for key, value in values.items():
        await database.insert_item("types", key, value)
    await database.close()
    database = Database(str(tmp_path))
    await database.open()
    stored = await database.get_item("types")
    await database.close()
    assert stored == values
    assert type(stored["f"]) is float and type(stored["i"]) is int and stored["b"] is False


@pytest_twisted.ensureDeferred
async def test_overwrite_and_returned_copies_are_independent(db):
    await db.insert_item("ns", "a", {"x": [1]})
    got = await db.get_item("ns", "a")
    got["x"].append(2)
    assert await db.get_item("ns", "a") == {"x": [1]}
    await db.insert_item("ns", "a.x", 5)
    assert await db.get_item("ns") == {"a": {"x": 5}}


@pytest_twisted.ensureDeferred
async def test_delete_returns_value_and_last_key_removes_namespace(db):
    await db.insert_item("ns", "a.b", 1)
    await db.insert_item("ns", "c", "two")
    assert await db.delete_item("ns", "a.b") == 1
    # as Moonraker: the record left empty went with its last key
    assert (await error_of(db.get_item("ns", "a"))).status == 404
    assert await db.delete_item("ns", ["c"]) == "two"
    assert "ns" not in db.namespaces()
    error = await error_of(db.get_item("ns"))
    assert error.status == 404 and "ns" in error.message
    count = await db.run_read(
        lambda c: c.execute("SELECT COUNT(*) FROM namespace_store").fetchone()
    )
    assert count[0] == 0


@pytest_twisted.ensureDeferred
async def test_missing_keys_and_namespaces_are_404(db):
    await db.insert_item("ns", "a.b", 1)
    for d in (
        db.get_item("nope"),
        db.get_item("nope", "a"),
        db.get_item("ns", "x"),
        db.get_item("ns", "a.c"),
        db.get_item("ns", "a.b.c"),
        db.delete_item("ns", "x"),
        db.delete_item("ns", "a.c"),
        db.delete_item("nope", "a"),
    ):
        error = await error_of(d)
        assert error.status == 404, error.message
        assert "not found" in error.message


@pytest_twisted.ensureDeferred
async def test_bad_arguments_are_400_and_name_the_argument(db):
    cases = [
        (db.get_item("", "a"), "namespace"),
        (db.get_item("bad ns/..", "a"), "namespace"),
        (db.get_item(5, "a"), "namespace"),
        (db.insert_item("ns", "", 1), "key"),
        (db.insert_item("ns", "a..b", 1), "key"),
        (db.insert_item("ns", [], 1), "key"),
        (db.insert_item("ns", ["a", 3], 1), "key"),
        (db.insert_item("ns", 7, 1), "key"),
        (db.insert_item("ns", "a", {1, 2}), "value"),
        (db.insert_item("ns", "a", object()), "value"),
        (db.delete_item("ns", None), "key"),
    ]
    for d, argument in cases:
        error = await error_of(d)
        assert error.status == 400
        assert f"'{argument}'" in error.message
    assert db.namespaces() == ["moonraker"]


@pytest_twisted.ensureDeferred
async def test_nested_write_below_a_scalar_is_400(db):
    await db.insert_item("ns", "a", 5)
    error = await error_of(db.insert_item("ns", "a.b.c", 1))
    assert error.status == 400
    assert await db.get_item("ns", "a") == 5


@pytest_twisted.ensureDeferred
async def test_value_size_limit(db):
    limit = db.max_value_size
    assert limit == 10 * 1024 * 1024
    error = await error_of(db.insert_item("ns", "big", "x" * limit))
    assert error.status == 400 and "too large" in error.message
    fits = "x" * (limit - 2)  # the two quotes make it exactly the limit
    assert await db.insert_item("ns", "big", fits) == fits
    assert len(await db.get_item("ns", "big")) == limit - 2


@pytest_twisted.ensureDeferred
async def test_reserved_namespaces(db):
    for ns in ("moonraker", "gcode_metadata", "history"):
        assert db.is_reserved(ns)
    assert not db.is_reserved("mainsail")
    db.reserve_namespace("announcements", "announcements")
    assert db.is_reserved("announcements")
    assert db.namespaces() == ["moonraker", "announcements"]
    assert await db.get_item("announcements") == {}
    assert (await error_of(db.get_item("history"))).status == 404
    await db.insert_item("moonraker", "file_manager.metadata_version", 3)
    assert await db.get_item("moonraker", "file_manager") == {"metadata_version": 3}


@pytest_twisted.ensureDeferred
async def test_failed_write_in_a_batch_does_not_undo_the_others(db):
    from twisted.internet.defer import DeferredList

    results = await DeferredList(
        [
            db.insert_item("ns", "a", 1),
            db.delete_item("ns", "missing"),
            db.insert_item("ns", "b", 2),
        ],
        consumeErrors=True,
    )
    assert [ok for ok, _ in results] == [True, False, True]
    assert await db.get_item("ns") == {"a": 1, "b": 2}


@pytest_twisted.ensureDeferred
async def test_run_write_commits_and_errors_roll_back(db):
    await db.register_table("things", "CREATE TABLE things (name TEXT PRIMARY KEY)")

    def bad(conn):
        conn.execute("INSERT INTO things VALUES ('half')")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await db.run_write(bad)
    await db.run_write(lambda c: c.execute("INSERT INTO things VALUES ('whole')"))
    rows = await db.run_read(lambda c: c.execute("SELECT name FROM things").fetchall())
    assert rows == [("whole",)]


@pytest_twisted.ensureDeferred
async def test_schema_upgrade_from_an_older_version(tmp_path):
    database = Database(str(tmp_path))
    await database.open()
    assert (
        await database.register_table("notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY)")
        is None
    )
    await database.run_write(lambda c: c.execute("INSERT INTO notes (id) VALUES (1)"))
    await database.close()

    calls = []

    def to_v3(conn):
        calls.append(3)
        conn.execute("UPDATE notes SET body = 'upgraded'")

    database = Database(str(tmp_path))
    await database.open()
    create_v3 = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, tag TEXT)"
    upgrades = {
        2: "ALTER TABLE notes ADD COLUMN body TEXT; ALTER TABLE notes ADD COLUMN tag TEXT",
        3: to_v3,
    }
    assert await database.register_table("notes", create_v3, 3, upgrades) == 1
    assert calls == [3]
    rows = await database.run_read(
        lambda c: c.execute("SELECT id, body, tag FROM notes").fetchall()
    )
    version = await database.run_read(
        lambda c: c.execute("SELECT version FROM schema_version WHERE name = 'notes'").fetchone()
    )
    assert rows == [(1, "upgraded", None)] and version == (3,)
    assert await database.register_table("notes", create_v3, 3, upgrades) == 3
    assert calls == [3]
    with pytest.raises(RuntimeError, match="newer"):
        await database.register_table("notes", create_v3, 2, upgrades)
    with pytest.raises(RuntimeError, match="no upgrade step"):
        await database.register_table("notes", create_v3, 4, upgrades)
    await database.close()


@pytest_twisted.ensureDeferred
async def test_compact_backup_restore(db):
    await db.insert_item("ns", "keep", "before")
    for i in range(200):
        await db.insert_item("bulk", f"k{i}", "x" * 1000)
    for i in range(200):
        await db.delete_item("bulk", f"k{i}")
    sizes = await db.compact()
    assert sizes["new_size"] < sizes["previous_size"]

    path = await db.backup("snap.db")
    assert path == os.path.join(db.data_path, "backup", "database", "snap.db")
    assert db.list_backups() == ["snap.db"]
    default = await db.backup()
    assert os.path.basename(default).startswith("sqldb-backup-")

    await db.insert_item("ns", "keep", "after")
    await db.insert_item("other", "x", 1)
    result = await db.restore("snap.db")
    assert "namespace_store" in result["restored_tables"]
    assert result["restored_namespaces"] == ["ns", "moonraker"]
    assert await db.get_item("ns", "keep") == "before"
    assert db.namespaces() == ["ns", "moonraker"]
    await db.insert_item("ns", "later", 1)

    assert await db.delete_backup("snap.db") == path
    assert not os.path.exists(path)


@pytest_twisted.ensureDeferred
async def test_backup_names_are_validated(db, tmp_path):
    for name in ("../escape.db", "a/b.db", "", ".hidden", "x" * 300):
        assert (await error_of(db.backup(name))).status == 400
    assert (await error_of(db.delete_backup("missing.db"))).status == 404
    assert (await error_of(db.restore("missing.db"))).status == 404
    os.makedirs(db.backup_dir, exist_ok=True)
    with open(os.path.join(db.backup_dir, "junk.db"), "wb") as fh:
        fh.write(b"not a database at all" * 100)
    assert (await error_of(db.restore("junk.db"))).status == 400
    plain = os.path.join(db.backup_dir, "plain.db")
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    assert (await error_of(db.restore("plain.db"))).status == 400


@pytest_twisted.ensureDeferred
async def test_calls_on_a_closed_database_fail_their_deferred(tmp_path):
    database = Database(str(tmp_path))
    await database.open()
    await database.close()
    for d in (
        database.insert_item("ns", "a", 1),
        database.delete_item("ns", "a"),
        database.run_write(lambda c: None),
        database.run_read(lambda c: None),
        database.compact(),
        database.backup("x.db"),
    ):
        with pytest.raises(RuntimeError, match="not open"):
            await d


@pytest_twisted.ensureDeferred
async def test_every_write_runs_on_the_one_writer_thread(db):
    def where(conn):
        return threading.get_ident(), threading.current_thread().name

    first = await gatherResults([db.run_write(where) for _ in range(50)])
    await gatherResults([db.insert_item("ns", f"k{i}", i) for i in range(20)])
    later = await db.run_write(where)
    assert set(first) == {later} and later[0] != threading.get_ident()
    assert later[1] == "moontwist-db-writer"
