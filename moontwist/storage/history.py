"""Job history and job totals, stored in the moontwist database.

Jobs come back in the API's shape: ``job_id`` is the 6-digit upper-case hex
string (``f"{id:06X}"``), ``metadata`` and ``auxiliary_data`` are decoded.
``exists`` is left to the caller, which knows the files.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail

from moontwist import jsonutil
from moontwist.api.errors import ServerError
from moontwist.storage.database import Database

__all__ = ["HistoryStore", "JOB_FIELDS", "TOTAL_FIELDS", "insert_jobs", "write_totals"]

HISTORY_PROVIDER = "history"
JOB_FIELDS = (
    "user",
    "filename",
    "status",
    "start_time",
    "end_time",
    "print_duration",
    "total_duration",
    "filament_used",
    "metadata",
    "auxiliary_data",
)
_JSON_FIELDS = ("metadata", "auxiliary_data")
# field -> "total" (accumulated) or "maximum"
TOTAL_FIELDS = {
    "total_jobs": "total",
    "total_time": "total",
    "total_print_time": "total",
    "total_filament_used": "total",
    "longest_job": "maximum",
    "longest_print": "maximum",
}

JOB_HISTORY_SQL = """
CREATE TABLE job_history (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    filename TEXT,
    status TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    print_duration REAL NOT NULL DEFAULT 0,
    total_duration REAL NOT NULL DEFAULT 0,
    filament_used REAL NOT NULL DEFAULT 0,
    metadata BLOB,
    auxiliary_data BLOB NOT NULL DEFAULT '[]'
);
-- covers the order and the filters of list_jobs, so paging never reads whole rows
CREATE INDEX job_history_id_times ON job_history (job_id, start_time, end_time);
CREATE INDEX job_history_in_progress ON job_history (status) WHERE status = 'in_progress';
"""
JOB_HISTORY_VERSION = 2
# v2: list_jobs orders by job_id (as Moonraker) instead of start_time
JOB_HISTORY_UPGRADES = {
    2: "DROP INDEX IF EXISTS job_history_start_time;"
    "CREATE INDEX job_history_id_times ON job_history (job_id, start_time, end_time);",
}
JOB_TOTALS_SQL = """
CREATE TABLE job_totals (
    provider TEXT NOT NULL,
    field TEXT NOT NULL,
    maximum REAL,
    total REAL,
    PRIMARY KEY (provider, field)
)
"""
_COLUMNS = "job_id, " + ", ".join(JOB_FIELDS)


def job_id_int(job_id: int | str) -> int:
    """The integer id of ``job_id`` given as int or as the API's hex string."""
    if isinstance(job_id, int) and not isinstance(job_id, bool) and job_id >= 0:
        return job_id
    if isinstance(job_id, str):
        try:
            value = int(job_id, 16)
        except ValueError:
            pass
        else:
            if value >= 0:
                return value
    raise ServerError(f"Argument 'uid' is not a valid job id: {job_id!r}", 400)


def _job_from_row(row: tuple) -> dict[str, Any]:
    job: dict[str, Any] = {"job_id": f"{row[0]:06X}"}
    for name, value in zip(JOB_FIELDS, row[1:], strict=True):
        if name in _JSON_FIELDS and value is not None:
            value = jsonutil.loads(value)
        job[name] = value
    return job


def _column_value(name: str, value: Any) -> Any:
    return jsonutil.dumpb(value) if name in _JSON_FIELDS else value


def insert_jobs(conn: sqlite3.Connection, jobs: list[dict[str, Any]]) -> list[int]:
    """Insert ``jobs`` (keeping a given ``job_id``) inside the caller's transaction."""
    ids = []
    for job in jobs:
        values = {
            "user": "No User",
            "filename": None,
            "status": "in_progress",
            "start_time": time.time(),
            "end_time": None,
            "print_duration": 0.0,
            "total_duration": 0.0,
            "filament_used": 0.0,
            "metadata": {},
            "auxiliary_data": [],
        }
        values.update((k, v) for k, v in job.items() if k in values)
        job_id = job.get("job_id")
        row = [None if job_id is None else job_id_int(job_id)]
        row.extend(_column_value(name, values[name]) for name in JOB_FIELDS)
        cursor = conn.execute(
            f"INSERT INTO job_history ({_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row
        )
        ids.append(cursor.lastrowid)
    return ids


def write_totals(
    conn: sqlite3.Connection, job_totals: dict[str, float], auxiliary: list[dict[str, Any]]
) -> None:
    """Replace every totals row inside the caller's transaction."""
    conn.execute("DELETE FROM job_totals")
    rows = [
        (
            HISTORY_PROVIDER,
            field,
            job_totals.get(field, 0) if kind == "maximum" else None,
            job_totals.get(field, 0) if kind == "total" else None,
        )
        for field, kind in TOTAL_FIELDS.items()
    ]
    rows.extend((a["provider"], a["field"], a.get("maximum"), a.get("total")) for a in auxiliary)
    conn.executemany(
        "INSERT INTO job_totals (provider, field, maximum, total) VALUES (?, ?, ?, ?)", rows
    )


def _read_totals(conn: sqlite3.Connection) -> dict[str, Any]:
    job_totals: dict[str, Any] = dict.fromkeys(TOTAL_FIELDS, 0.0)
    auxiliary = []
    for provider, field, maximum, total in conn.execute(
        "SELECT provider, field, maximum, total FROM job_totals ORDER BY rowid"
    ):
        if provider == HISTORY_PROVIDER and field in TOTAL_FIELDS:
            value = maximum if TOTAL_FIELDS[field] == "maximum" else total
            job_totals[field] = value or 0.0
        else:
            auxiliary.append(
                {"provider": provider, "field": field, "maximum": maximum, "total": total}
            )
    job_totals["total_jobs"] = int(job_totals["total_jobs"])
    return {"job_totals": job_totals, "auxiliary_totals": auxiliary}


class HistoryStore:
    """Print jobs (``job_history``) and running totals (``job_totals``) in a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _open(self) -> None:
        await self.db.register_table(
            "job_history", JOB_HISTORY_SQL, JOB_HISTORY_VERSION, JOB_HISTORY_UPGRADES
        )
        await self.db.register_table("job_totals", JOB_TOTALS_SQL)

    def open(self) -> Deferred:
        """Create or upgrade the tables (call after ``db.open()``)."""
        return Deferred.fromCoroutine(self._open())

    def add_job(self, job: dict[str, Any]) -> Deferred:
        """Store a new job; fires with its integer id (``job["job_id"]`` is kept if given)."""
        return self.db.run_write(lambda conn: insert_jobs(conn, [job])[0])

    def update_job(self, job_id: int | str, changes: dict[str, Any]) -> Deferred:
        """Change fields of a job; fires with the updated job.  Unknown fields are a 400."""
        try:
            uid = job_id_int(job_id)
            unknown = sorted(set(changes) - set(JOB_FIELDS))
            if unknown:
                raise ServerError(f"Unknown job fields: {', '.join(unknown)}", 400)
        except ServerError as exc:
            return fail(exc)
        names = list(changes)

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            if names:
                assignments = ", ".join(f"{name} = ?" for name in names)
                conn.execute(
                    f"UPDATE job_history SET {assignments} WHERE job_id = ?",
                    [_column_value(n, changes[n]) for n in names] + [uid],
                )
            return self._fetch(conn, uid)

        return self.db.run_write(write)

    @staticmethod
    def _fetch(conn: sqlite3.Connection, uid: int) -> dict[str, Any]:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM job_history WHERE job_id = ?", (uid,)
        ).fetchone()
        if row is None:
            raise ServerError(f"Job '{uid:06X}' not found", 404)
        return _job_from_row(row)

    def get_job(self, job_id: int | str) -> Deferred:
        """Fires with the job (404 if there is none)."""
        try:
            uid = job_id_int(job_id)
        except ServerError as exc:
            return fail(exc)
        return self.db.run_read(lambda conn: self._fetch(conn, uid))

    def delete_job(self, job_id: int | str) -> Deferred:
        """Delete one job; fires with the list of deleted ids (hex)."""
        try:
            uid = job_id_int(job_id)
        except ServerError as exc:
            return fail(exc)

        def write(conn: sqlite3.Connection) -> list[str]:
            if conn.execute("DELETE FROM job_history WHERE job_id = ?", (uid,)).rowcount == 0:
                raise ServerError(f"Job '{uid:06X}' not found", 404)
            return [f"{uid:06X}"]

        return self.db.run_write(write)

    def delete_all(self) -> Deferred:
        """Delete every job; fires with the deleted ids (hex)."""

        def write(conn: sqlite3.Connection) -> list[str]:
            ids = [f"{r[0]:06X}" for r in conn.execute("SELECT job_id FROM job_history")]
            conn.execute("DELETE FROM job_history")
            return ids

        return self.db.run_write(write)

    def list_jobs(
        self,
        start: int = 0,
        limit: int = 50,
        since: float | None = None,
        before: float | None = None,
        order: str = "desc",
    ) -> Deferred:
        """Fires with ``(count, jobs)``, like ``/server/history/list``.

        ``since``: jobs that started after it; ``before``: jobs that ended before it;
        ``limit <= 0`` returns every match (``start`` is then ignored, as in Moonraker);
        ``order`` is ``asc`` or ``desc`` by job id.  ``count`` is the number of jobs
        returned, as in Moonraker.
        """
        direction = str(order).upper()
        if direction not in ("ASC", "DESC"):
            return fail(ServerError(f"Argument 'order' must be 'asc' or 'desc', got {order!r}"))
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("start_time > ?")
            params.append(since)
        if before is not None:
            clauses.append("end_time < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        ordering = f"ORDER BY job_id {direction}"
        sql = (
            f"SELECT {_COLUMNS} FROM job_history WHERE job_id IN "
            f"(SELECT job_id FROM job_history {where} {ordering} LIMIT ? OFFSET ?) {ordering}"
        )
        params.extend((limit, max(start, 0)) if limit > 0 else (-1, 0))

        def read(conn: sqlite3.Connection) -> tuple[int, list[dict[str, Any]]]:
            jobs = [_job_from_row(row) for row in conn.execute(sql, params)]
            return len(jobs), jobs

        return self.db.run_read(read)

    def totals(self) -> Deferred:
        """Fires with ``{"job_totals": {...}, "auxiliary_totals": [...]}``."""
        return self.db.run_read(_read_totals)

    def update_totals(
        self, job: dict[str, Any], fold_auxiliary: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None = None
    ) -> Deferred:
        """Add a finished job to the totals; fires with the new totals.

        ``fold_auxiliary(auxiliary_totals, job)`` adds the job's auxiliary values (in the writer thread).
        """

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            current = _read_totals(conn)
            totals = current["job_totals"]
            totals["total_jobs"] += 1
            totals["total_time"] += job.get("total_duration") or 0.0
            totals["total_print_time"] += job.get("print_duration") or 0.0
            totals["total_filament_used"] += job.get("filament_used") or 0.0
            totals["longest_job"] = max(totals["longest_job"], job.get("total_duration") or 0.0)
            totals["longest_print"] = max(totals["longest_print"], job.get("print_duration") or 0.0)
            if fold_auxiliary is not None:
                fold_auxiliary(current["auxiliary_totals"], job)
            write_totals(conn, totals, current["auxiliary_totals"])
            return current

        return self.db.run_write(write)

    def reset_totals(self) -> Deferred:
        """Zero the totals; fires with ``{"last_totals", "last_auxiliary_totals"}``."""

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            last = _read_totals(conn)
            write_totals(conn, {}, [])
            return {
                "last_totals": last["job_totals"],
                "last_auxiliary_totals": last["auxiliary_totals"],
            }

        return self.db.run_write(write)

    def close_interrupted_jobs(self) -> Deferred:
        """Mark jobs left ``in_progress`` (by a crash) as ``interrupted``; fires with their ids."""

        def write(conn: sqlite3.Connection) -> list[str]:
            ids = [
                r[0]
                for r in conn.execute("SELECT job_id FROM job_history WHERE status = 'in_progress'")
            ]
            conn.executemany(
                "UPDATE job_history SET status = 'interrupted' WHERE job_id = ?",
                [(i,) for i in ids],
            )
            return [f"{i:06X}" for i in ids]

        return self.db.run_write(write)
