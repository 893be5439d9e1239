"""Job history and totals in moontwist.storage.HistoryStore."""

from __future__ import annotations

import pytest
import pytest_twisted

from moontwist.api.errors import ServerError
from moontwist.storage.database import Database
from moontwist.storage.history import HistoryStore, insert_jobs


@pytest_twisted.async_yield_fixture
async def history(db):
    store = HistoryStore(db)
    await store.open()
    yield store


def job(n: int, **fields) -> dict:
    """A finished job number ``n`` that started at 1000 + 10 n and ran 5 s."""
    base = {
        "user": "alice",
        "filename": f"part{n}.gcode",
        "status": "completed",
        "start_time": 1000.0 + 10 * n,
        "end_time": 1005.0 + 10 * n,
        "print_duration": 4.0,
        "total_duration": 5.0,
        "filament_used": 100.0,
        "metadata": {"size": n, "slicer": "PrusaSlicer"},
        "auxiliary_data": [],
    }
    base.update(fields)
    return base


@pytest_twisted.ensureDeferred
async def test_add_get_update_delete(history):
    job_id = await history.add_job(job(1, status="in_progress", end_time=None))
    assert job_id == 1
    got = await history.get_job(job_id)
    assert got["job_id"] == "000001" and got["status"] == "in_progress"
    assert got["metadata"] == {"size": 1, "slicer": "PrusaSlicer"}
    updated = await history.update_job("000001", {"status": "completed", "end_time": 1015.0})
    assert updated["status"] == "completed" and updated["end_time"] == 1015.0
    assert await history.get_job("000001") == updated
    with pytest.raises(ServerError) as info:
        await history.update_job(1, {"colour": "red"})
    assert info.value.status == 400
    assert await history.delete_job("000001") == ["000001"]
    for d in (history.get_job(1), history.delete_job(1), history.update_job(1, {})):
        with pytest.raises(ServerError) as info:
            await d
        assert info.value.status == 404
    with pytest.raises(ServerError) as info:
        await history.get_job("zz")
    assert info.value.status == 400


@pytest_twisted.ensureDeferred
async def test_ids_are_not_reused_and_given_ids_are_kept(history):
    assert await history.add_job(job(1, job_id=10)) == 10
    assert await history.add_job(job(2)) == 11
    await history.delete_job(11)
    assert await history.add_job(job(3)) == 12
    assert await history.delete_all() == ["00000A", "00000C"]
    assert await history.list_jobs() == (0, [])


@pytest_twisted.ensureDeferred
async def test_list_paging_order_since_before(history):
    for n in range(1, 11):
        await history.add_job(job(n))
    count, jobs = await history.list_jobs()
    assert count == 10 and [j["job_id"] for j in jobs][:3] == ["00000A", "000009", "000008"]
    count, jobs = await history.list_jobs(start=2, limit=3, order="asc")
    assert count == 3 and [j["job_id"] for j in jobs] == ["000003", "000004", "000005"]
    # started after 1050 (job 5 starts at 1050 exactly: excluded)
    _, jobs = await history.list_jobs(since=1050.0, order="asc")
    assert [j["job_id"] for j in jobs] == ["000006", "000007", "000008", "000009", "00000A"]
    # ended before 1035 (job 3 ends at 1035: excluded)
    _, jobs = await history.list_jobs(before=1035.0, order="asc")
    assert [j["job_id"] for j in jobs] == ["000001", "000002"]
    _, jobs = await history.list_jobs(since=1020.0, before=1065.0, limit=0)
    assert [j["job_id"] for j in jobs] == ["000005", "000004", "000003"]
    # limit 0: every match, start ignored (as Moonraker)
    count, _ = await history.list_jobs(start=5, limit=0)
    assert count == 10
    with pytest.raises(ServerError):
        await history.list_jobs(order="sideways")


@pytest_twisted.ensureDeferred
async def test_list_orders_by_job_id_not_start_time(history):
    # a clock set back (e.g. before NTP sync) must not reorder the list
    await history.add_job(job(1, start_time=5000.0, end_time=5005.0))
    await history.add_job(job(2, start_time=100.0, end_time=105.0))
    _, jobs = await history.list_jobs(order="asc")
    assert [j["job_id"] for j in jobs] == ["000001", "000002"]
    _, jobs = await history.list_jobs()
    assert [j["job_id"] for j in jobs] == ["000002", "000001"]


@pytest_twisted.ensureDeferred
async def test_job_history_v1_is_upgraded(tmp_path):
    v1 = (
        "CREATE TABLE job_history (job_id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, "
        "filename TEXT, status TEXT NOT NULL, start_time REAL NOT NULL, end_time REAL, "
        "print_duration REAL NOT NULL DEFAULT 0, total_duration REAL NOT NULL DEFAULT 0, "
        "filament_used REAL NOT NULL DEFAULT 0, metadata BLOB, "
        "auxiliary_data BLOB NOT NULL DEFAULT '[]');"
        "CREATE INDEX job_history_start_time ON job_history (start_time, job_id, end_time);"
    )
    db = Database(str(tmp_path))
    await db.open()
    await db.register_table("job_history", v1, 1)
    await db.run_write(lambda conn: insert_jobs(conn, [job(1)]))
    await db.close()
    db = Database(str(tmp_path))
    await db.open()
    try:
        store = HistoryStore(db)
        await store.open()
        indexes = await db.run_read(
            lambda conn: [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'job_history'"
            )]
        )
        assert "job_history_id_times" in indexes and "job_history_start_time" not in indexes
        version = await db.run_read(
            lambda conn: conn.execute(
                "SELECT version FROM schema_version WHERE name = 'job_history'"
            ).fetchone()[0]
        )
        assert version == 2
        assert (await store.get_job(1))["filename"] == "part1.gcode"
    finally:
        await db.close()


@pytest_twisted.ensureDeferred
async def test_totals_update_and_reset(history):
    empty = await history.totals()
    assert empty["job_totals"]["total_jobs"] == 0 and empty["auxiliary_totals"] == []
    await history.update_totals(job(1))
    totals = await history.update_totals(job(2, total_duration=9.0, print_duration=7.5))
    expected = {
        "total_jobs": 2,
        "total_time": 14.0,
        "total_print_time": 11.5,
        "total_filament_used": 200.0,
        "longest_job": 9.0,
        "longest_print": 7.5,
    }
    assert totals["job_totals"] == expected
    assert (await history.totals())["job_totals"] == expected
    assert isinstance(totals["job_totals"]["total_jobs"], int)
    last = await history.reset_totals()
    assert last == {"last_totals": expected, "last_auxiliary_totals": []}
    after = (await history.totals())["job_totals"]
    assert after["total_jobs"] == 0 and after["total_time"] == 0


@pytest_twisted.ensureDeferred
async def test_close_interrupted_jobs(history):
    await history.add_job(job(1))
    await history.add_job(job(2, status="in_progress", end_time=None))
    assert await history.close_interrupted_jobs() == ["000002"]
    assert (await history.get_job(2))["status"] == "interrupted"
    assert await history.close_interrupted_jobs() == []


@pytest_twisted.ensureDeferred
async def test_list_pages_through_100000_jobs(history, db):
    """Every query shape returns a full page from a large history (speed: bench suite 'database')."""
    metadata = {
        "size": 194058,
        "slicer": "PrusaSlicer",
        "filament_name": "Generic PLA",
        "thumbnails": [{"width": 32, "height": 32, "relative_path": ".thumbs/x.png"}],
        "padding": "m" * 400,
    }
    jobs = [job(n, metadata=metadata) for n in range(1, 100_001)]
    await db.run_write(lambda conn: insert_jobs(conn, jobs))
    queries = [
        {},
        {"order": "asc"},
        {"start": 99_950},
        {"start": 50_000, "order": "asc"},
        {"since": 1000.0 + 10 * 99_000},
        {"before": 1000.0 + 10 * 500, "order": "asc"},
        {"since": 1000.0 + 10 * 40_000, "before": 1000.0 + 10 * 40_100},
        {"since": 1000.0 + 10 * 10_000, "start": 80_000},
    ]
    for query in queries:
        _, result = await history.list_jobs(**query)
        assert len(result) == 50, query
