"""One-time import of a Moonraker SQLite database (``moonraker-sql.db``).

The source file is only read: it is opened with a read-only URI, or, when it
has a journal or WAL beside it (or is in WAL mode), a copy in a temporary
folder is read instead, so nothing is ever written next to it.

Imported: every namespace except Moonraker's private ``database`` one, the
job history (ids kept) and totals, the users (into ``auth_users``, with their
PBKDF2 hashes) and the API key (as in Moonraker, the reserved ``_API_KEY_USER_``
row of ``auth_users``: never in a namespace, which clients can read).
Everything is written in one transaction together with a row in
``moonraker_import``, which makes a second import a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred

from moontwist import jsonutil
from moontwist.storage.database import Database
from moontwist.storage.history import TOTAL_FIELDS, HistoryStore, insert_jobs, write_totals

__all__ = [
    "API_KEY_SCHEME",
    "API_KEY_USER",
    "AUTH_USERS_SQL",
    "MOONRAKER_HASH_SCHEME",
    "decode_record",
    "import_moonraker_db",
    "read_moonraker_db",
    "select_api_key",
    "verify_moonraker_password",
]

MOONRAKER_HASH_SCHEME = "moonraker_pbkdf2_sha256"
PBKDF2_ITERATIONS = 100_000
# The API key is the "password" of this reserved auth_users row (not a user).
API_KEY_USER = "_API_KEY_USER_"
API_KEY_SCHEME = "api_key"
SKIPPED_NAMESPACES = ("database",)

AUTH_USERS_SQL = """
CREATE TABLE auth_users (
    username TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    salt TEXT,
    hash_scheme TEXT,
    source TEXT,
    created_on REAL,
    extra TEXT
)
"""
IMPORT_LOG_SQL = """
CREATE TABLE moonraker_import (
    id INTEGER PRIMARY KEY,
    source_path TEXT NOT NULL,
    imported_on REAL NOT NULL,
    summary TEXT NOT NULL
)
"""


def select_api_key(conn: sqlite3.Connection) -> str | None:
    """The API key stored in ``auth_users``, or None."""
    row = conn.execute(
        "SELECT password_hash FROM auth_users WHERE username = ? AND hash_scheme = ?",
        (API_KEY_USER, API_KEY_SCHEME),
    ).fetchone()
    key = None if row is None else row[0]
    return key if isinstance(key, str) and key else None


def verify_moonraker_password(password: str, salt: str, hash_hex: str) -> bool:
    """Whether ``password`` matches a Moonraker PBKDF2-HMAC-SHA256 hash (hex salt and hash)."""
    try:
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt_bytes, PBKDF2_ITERATIONS)
    return hmac.compare_digest(digest.hex(), hash_hex.lower())


def decode_record(blob: bytes) -> Any:
    """Decode one typed ``namespace_store.value`` BLOB (its first byte is the type tag)."""
    blob = bytes(blob)
    if not blob:
        raise ValueError("empty record")
    tag, rest = blob[0], blob[1:]
    if tag == 0x71:  # q: int64
        return struct.unpack("<q", rest)[0]
    if tag == 0x64:  # d: float64
        return struct.unpack("<d", rest)[0]
    if tag == 0x3F:  # ?: bool
        if len(rest) != 1:
            raise ValueError(f"bool record of {len(blob)} bytes")
        return rest != b"\x00"
    if tag == 0x73:  # s: raw UTF-8
        return rest.decode("utf-8")
    if tag in (0x7B, 0x5B):  # { or [: the whole blob is JSON
        return jsonutil.loads(blob)
    if tag == 0x00 and not rest:
        return None
    raise ValueError(f"unknown record tag 0x{tag:02X}")


def _is_wal(path: str) -> bool:
    with open(path, "rb") as fh:
        header = fh.read(20)
    return len(header) == 20 and header[18] == 2


@contextmanager
def _open_readonly(source_path: str) -> Iterator[sqlite3.Connection]:
    source_path = os.path.abspath(source_path)
    if not os.path.isfile(source_path):
        raise FileNotFoundError(f"Moonraker database not found: {source_path}")
    sidecars = [source_path + s for s in ("-wal", "-journal") if os.path.exists(source_path + s)]
    tmpdir = None
    try:
        if sidecars or _is_wal(source_path):
            # recovering a journal or reading a WAL writes beside the file: use a copy
            tmpdir = tempfile.mkdtemp(prefix="moontwist-import-")
            path = os.path.join(tmpdir, "moonraker-sql.db")
            shutil.copyfile(source_path, path)
            for sidecar in sidecars:
                shutil.copyfile(sidecar, path + sidecar[len(source_path) :])
            conn = sqlite3.connect(path)
        else:
            conn = sqlite3.connect(f"file:{quote(source_path)}?mode=ro", uri=True)
        try:
            conn.row_factory = sqlite3.Row
            yield conn
        finally:
            conn.close()
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def read_moonraker_db(source_path: str) -> dict[str, Any]:
    """Read and decode a Moonraker database (blocking).

    Returns ``namespaces`` (namespace -> row key -> value), ``failed`` (rows that
    could not be decoded), ``jobs``, ``job_totals``, ``auxiliary_totals``, ``users``
    and ``api_key_user`` (the ``_API_KEY_USER_`` row holding the API key, or None).
    """
    with _open_readonly(source_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "namespace_store" not in tables:
            raise ValueError(f"{source_path} is not a Moonraker SQLite database")
        result: dict[str, Any] = {
            "namespaces": {},
            "failed": [],
            "jobs": [],
            "job_totals": {},
            "auxiliary_totals": [],
            "users": [],
            "api_key_user": None,
        }
        for row in conn.execute("SELECT namespace, key, value FROM namespace_store"):
            try:
                value = decode_record(row["value"])
            except (ValueError, struct.error) as exc:
                result["failed"].append(f"{row['namespace']}/{row['key']}: {exc}")
                continue
            result["namespaces"].setdefault(row["namespace"], {})[row["key"]] = value
        if "job_history" in tables:
            for row in conn.execute("SELECT * FROM job_history ORDER BY job_id"):
                job = dict(row)
                if job.pop("instance_id", "default") != "default":
                    continue
                for field in ("metadata", "auxiliary_data"):
                    if job.get(field) is not None:
                        job[field] = jsonutil.loads(job[field])
                result["jobs"].append(job)
        if "job_totals" in tables:
            for row in conn.execute("SELECT * FROM job_totals"):
                total = dict(row)
                if total.pop("instance_id", "default") != "default":
                    continue
                if total["provider"] == "history" and total["field"] in TOTAL_FIELDS:
                    kind = TOTAL_FIELDS[total["field"]]
                    result["job_totals"][total["field"]] = total[kind]
                else:
                    result["auxiliary_totals"].append(total)
        if "authorized_users" in tables:
            for row in conn.execute("SELECT * FROM authorized_users"):
                user = dict(row)
                if user.get("groups") is not None:
                    user["groups"] = jsonutil.loads(user["groups"])
                if user["username"] != API_KEY_USER:
                    result["users"].append(user)
                elif isinstance(user.get("password"), str) and user["password"]:
                    result["api_key_user"] = user
    return result


def _user_row(user: dict[str, Any], scheme: str = MOONRAKER_HASH_SCHEME) -> tuple:
    known = ("username", "password", "salt", "source", "created_on")
    extra = {k: v for k, v in user.items() if k not in known}
    return (
        user["username"],
        user.get("password"),
        user.get("salt"),
        scheme,
        user.get("source", "moonraker"),
        user.get("created_on"),
        jsonutil.dumps(extra),
    )


def _import(conn: sqlite3.Connection, source_path: str) -> dict[str, Any]:
    done = conn.execute("SELECT imported_on, summary FROM moonraker_import").fetchone()
    if done is not None:
        return {"skipped": True, "imported_on": done[0], "previous": jsonutil.loads(done[1])}
    data = read_moonraker_db(source_path)
    rows = [
        (namespace, key, jsonutil.dumpb(value))
        for namespace, items in data["namespaces"].items()
        if namespace not in SKIPPED_NAMESPACES
        for key, value in items.items()
    ]
    conn.executemany(
        "INSERT OR REPLACE INTO namespace_store (namespace, key, value) VALUES (?, ?, ?)", rows
    )
    insert_jobs(conn, data["jobs"])
    if data["job_totals"] or data["auxiliary_totals"]:
        write_totals(conn, data["job_totals"], data["auxiliary_totals"])
    user_rows = [_user_row(user) for user in data["users"]]
    if data["api_key_user"] is not None:
        user_rows.append(_user_row(data["api_key_user"], API_KEY_SCHEME))
    conn.executemany(
        "INSERT OR REPLACE INTO auth_users (username, password_hash, salt, hash_scheme, "
        "source, created_on, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
        user_rows,
    )
    imported = sorted(ns for ns in data["namespaces"] if ns not in SKIPPED_NAMESPACES)
    summary = {
        "skipped": False,
        "source": os.path.abspath(source_path),
        "namespaces": len(imported),
        "namespace_keys": len(rows),
        "jobs": len(data["jobs"]),
        "totals": len(data["job_totals"]) + len(data["auxiliary_totals"]),
        "users": len(data["users"]),
        "api_key": data["api_key_user"] is not None,
        "skipped_namespaces": sorted(set(data["namespaces"]) & set(SKIPPED_NAMESPACES)),
        "failed": data["failed"],
    }
    conn.execute(
        "INSERT INTO moonraker_import (source_path, imported_on, summary) VALUES (?, ?, ?)",
        (summary["source"], time.time(), jsonutil.dumps(summary)),
    )
    return summary


async def _import_moonraker_db(source_path: str, db: Database, history: HistoryStore) -> dict:
    await history.open()
    await db.register_table("auth_users", AUTH_USERS_SQL)
    await db.register_table("moonraker_import", IMPORT_LOG_SQL)
    summary = await db.run_write(lambda conn: _import(conn, source_path))
    if not summary["skipped"]:
        await db.reload()
    return summary


def import_moonraker_db(source_path: str, db: Database, history: HistoryStore) -> Deferred:
    """Import a Moonraker database once; fires with a summary (counts per kind).

    A database that already holds an import is left alone: the summary is then
    ``{"skipped": True, "imported_on": ..., "previous": <first summary>}``.
    """
    return Deferred.fromCoroutine(_import_moonraker_db(source_path, db, history))
