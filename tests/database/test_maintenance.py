"""server.database.list / compact / post_backup / delete_backup / restore."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

from mtclient import RPCError, sleep, start_service


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")
    yield running
    await running.service.stopService()


async def wait_restarted(svc, old_db) -> None:
    for _ in range(100):
        await sleep(0.05)
        if svc.server.running and svc.server.lookup("database") is not old_db:
            return
    raise TimeoutError("server did not restart")


@pytest_twisted.ensureDeferred
async def test_backup_list_restore_delete_round_trip(svc):
    ws = await svc.ws()
    await ws.call("server.database.post_item", {"namespace": "mainsail", "key": "a", "value": 1})
    await ws.call("server.database.post_item", {"namespace": "fluidd", "key": "b", "value": [1]})
    history = svc.server.lookup("history_store")
    await history.add_job({"filename": "a.gcode", "status": "completed", "start_time": 1.0})

    reply = await ws.call("server.database.post_backup", {"filename": "mine.db"})
    backup_dir = os.path.join(svc.server.datapath, "backup", "database")
    assert reply == {"backup_path": os.path.join(backup_dir, "mine.db")}
    assert os.path.isfile(reply["backup_path"])
    code, body = await svc.post("/server/database/backup")  # default name
    assert code == 200
    default_name = os.path.basename(body["result"]["backup_path"])
    assert default_name.startswith("sqldb-backup-") and default_name.endswith(".db")
    listed = await ws.call("server.database.list")
    assert sorted(listed["backups"]) == sorted(["mine.db", default_name])
    assert {"mainsail", "fluidd"} <= set(listed["namespaces"])

    # change things after the backup
    await ws.call("server.database.post_item", {"namespace": "mainsail", "key": "a", "value": 2})
    await ws.call("server.database.post_item", {"namespace": "later", "key": "x", "value": 0})
    await ws.call("server.database.delete_item", {"namespace": "fluidd", "key": "b"})
    await history.delete_all()

    compacted = await ws.call("server.database.compact")
    assert set(compacted) == {"previous_size", "new_size"}
    assert compacted["new_size"] > 0

    old_db = svc.server.lookup("database")
    restored = await ws.call("server.database.restore", {"filename": "mine.db"})
    assert {"namespace_store", "job_history", "schema_version"} <= set(restored["restored_tables"])
    assert {"fluidd", "mainsail", "moonraker"} <= set(restored["restored_namespaces"])
    assert "database" not in restored["restored_namespaces"] and "later" not in restored["restored_namespaces"]
    # the server restarts after a restore, as Moonraker does
    code, _reason = await ws.closed
    assert code == 1001
    await wait_restarted(svc, old_db)
    ws = await svc.ws()
    assert (await ws.call("server.database.get_item", {"namespace": "mainsail"}))["value"] == {"a": 1}
    assert (await ws.call("server.database.get_item", {"namespace": "fluidd"}))["value"] == {"b": [1]}
    assert "later" not in (await ws.call("server.database.list"))["namespaces"]
    count, jobs = await svc.server.lookup("history_store").list_jobs()
    assert count == 1 and jobs[0]["filename"] == "a.gcode"

    deleted = await ws.call("server.database.delete_backup", {"filename": default_name})
    assert deleted == {"backup_path": os.path.join(backup_dir, default_name)}
    code, body, _ = await svc.request("DELETE", "/server/database/backup?filename=mine.db")
    assert code == 200
    assert (await ws.call("server.database.list"))["backups"] == []
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_backup_errors(svc):
    ws = await svc.ws()
    for method, params, code in (
        ("server.database.delete_backup", {"filename": "missing.db"}, 404),
        ("server.database.restore", {"filename": "missing.db"}, 404),
        ("server.database.post_backup", {"filename": "../escape.db"}, 400),
        ("server.database.delete_backup", {"filename": "../../database/moontwist.db"}, 400),
        ("server.database.restore", {"filename": "/etc/passwd"}, 400),
    ):
        with pytest.raises(RPCError) as info:
            await ws.call(method, params)
        assert info.value.code == code, (method, params, info.value.message)
    with pytest.raises(RPCError) as info:
        await ws.call("server.database.restore", {})
    assert "'filename'" in info.value.message
    # a file that isn't a moontwist database is refused and nothing changes
    backup_dir = os.path.join(svc.server.datapath, "backup", "database")
    os.makedirs(backup_dir, exist_ok=True)
    with open(os.path.join(backup_dir, "junk.db"), "wb") as fh:
        fh.write(b"not a database" * 100)
    await ws.call("server.database.post_item", {"namespace": "keep", "key": "a", "value": 1})
    with pytest.raises(RPCError) as info:
        await ws.call("server.database.restore", {"filename": "junk.db"})
    assert info.value.code == 400
    assert (await ws.call("server.database.get_item", {"namespace": "keep"}))["value"] == {"a": 1}
    ws.sendClose()


class PrintingKlippy:
    connected = True
    state = "ready"

    def __init__(self, state: str) -> None:
        self.status = {"print_stats": {"state": state}}


@pytest_twisted.ensureDeferred
async def test_compact_backup_restore_refused_while_printing(svc):
    saved = svc.server.klippy
    svc.server.klippy = PrintingKlippy("printing")
    try:
        for path, body in (
            ("/server/database/compact", None),
            ("/server/database/backup", {"filename": "x.db"}),
            ("/server/database/restore", {"filename": "x.db"}),
        ):
            code, reply = await (svc.post(path, json=body) if body else svc.post(path))
            assert code == 400 and "printing" in reply["error"]["message"], path
        svc.server.klippy.status["print_stats"]["state"] = "paused"
        code, _ = await svc.post("/server/database/compact")
        assert code == 400
        svc.server.klippy.status["print_stats"]["state"] = "complete"
        code, _ = await svc.post("/server/database/compact")
        assert code == 200
    finally:
        svc.server.klippy = saved


@pytest_twisted.ensureDeferred
async def test_database_section_options_are_accepted_without_warnings(tmp_path):
    running = await start_service(
        str(tmp_path / "data"),
        "[server]\nhost: 127.0.0.1\n[database]\ndatabase_path: ~/.moonraker_database\n"
        "enable_database_debug: False\n",
    )
    try:
        code, body = await running.get("/server/info")
        assert code == 200
        assert not [w for w in body["result"]["warnings"] if "database" in w]
        assert "database" in body["result"]["components"]
    finally:
        await running.service.stopService()
