"""The SQLite database: one writer thread, a reader thread, versioned tables and namespaces.

Layout under the data path::

    <data path>/database/moontwist.db       the database (WAL, synchronous=FULL)
    <data path>/backup/database/<name>      backups made by :meth:`Database.backup`

Every write runs on one dedicated writer thread.  Writes queued together are
committed in one transaction (each in its own savepoint, so one failing write
does not undo the others) and a write's Deferred fires only after the commit
returned, which with ``synchronous=FULL`` means it is on disk.

The namespace store (``/server/database/*``) is kept in memory as the committed
JSON bytes of every row, loaded at :meth:`Database.open`; reads are answered
from it without leaving the reactor thread.
"""

from __future__ import annotations

import math
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.python.failure import Failure

from moontwist import jsonutil
from moontwist.api.errors import ServerError
from moontwist.storage.confined import OutsideTree, Tree, sweep_temp_files

__all__ = ["Database", "DEFAULT_MAX_VALUE_SIZE", "ensure_table", "split_sql"]

T = TypeVar("T")

DB_FILENAME = "moontwist.db"
DEFAULT_MAX_VALUE_SIZE = 10 * 1024 * 1024
BUILTIN_OWNER = "moontwist"
BUILTIN_RESERVED = ("moonraker", "gcode_metadata", "history")
# Moonraker's "database" namespace: the server's own bookkeeping, which clients may not even read
BUILTIN_FORBIDDEN = ("database",)
# always listed and readable, even before anything is stored in it
ALWAYS_PRESENT = ("moonraker",)
BACKUP_TEMP_PREFIX = ".backup-"
_BATCH_LIMIT = 256
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_BACKUP_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")
_TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

SCHEMA_VERSION_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
)
NAMESPACE_STORE_SQL = """
CREATE TABLE namespace_store (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""

Upgrade = str | Callable[[sqlite3.Connection], Any]


def split_sql(script: str) -> list[str]:
    """Split ``script`` into complete SQL statements (``CREATE TRIGGER`` bodies stay whole)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending.strip().rstrip(";"))
    return statements


class _Worker:
    """A thread owning one SQLite connection; runs queued jobs in order.

    Jobs in ``"txn"`` mode run inside a transaction; a writer batches
    consecutive ones into one commit.  ``"bare"`` jobs run outside any
    transaction (VACUUM, backups).
    """

    def __init__(
        self, name: str, connect: Callable[[], sqlite3.Connection], reactor: Any, writer: bool
    ) -> None:
        self._connect = connect
        self._reactor = reactor
        self._writer = writer
        self._queue: queue.SimpleQueue[tuple[Any, str, Deferred]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], Any], mode: str = "txn") -> Deferred:
        d: Deferred = Deferred()
        self._queue.put((fn, mode, d))
        return d

    def stop(self) -> Deferred:
        """Finish the queued jobs, close the connection, end the thread."""
        return self.submit(None, "stop")  # type: ignore[arg-type]

    def _run(self) -> None:
        try:
            conn: sqlite3.Connection | None = self._connect()
            error: Failure | None = None
        except Exception:
            conn, error = None, Failure()
        held = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            fn, mode, d = item
            if mode == "stop":
                if conn is not None:
                    conn.close()
                self._deliver([(d, None)])
                return
            if conn is None:
                self._deliver([(d, error)])
                continue
            if mode == "bare":
                self._deliver([(d, self._call(fn, conn))])
                continue
            batch = [item]
            while self._writer and len(batch) < _BATCH_LIMIT:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt[1] != "txn":
                    held = nxt
                    break
                batch.append(nxt)
            self._deliver(self._transaction(conn, batch))

    @staticmethod
    def _call(fn: Callable[[sqlite3.Connection], Any], conn: sqlite3.Connection) -> Any:
        try:
            return fn(conn)
        except Exception:
            return Failure()

    def _transaction(self, conn: sqlite3.Connection, batch: list) -> list[tuple[Deferred, Any]]:
        try:
            conn.execute("BEGIN IMMEDIATE" if self._writer else "BEGIN")
        except Exception:
            failure = Failure()
            return [(d, failure) for _fn, _mode, d in batch]
        results = []
        for fn, _mode, d in batch:
            conn.execute("SAVEPOINT job")
            result = self._call(fn, conn)
            if isinstance(result, Failure):
                conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            results.append((d, result))
        try:
            conn.execute("COMMIT")
        except Exception:
            failure = Failure()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(d, failure) for d, _result in results]
        return results

    def _deliver(self, results: list[tuple[Deferred, Any]]) -> None:
        self._reactor.callFromThread(_fire, results)


def _fire(results: list[tuple[Deferred, Any]]) -> None:
    for d, result in results:
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)


def _outside_refused(failure: Failure, what: str) -> Failure:
    if failure.check(OutsideTree):
        raise ServerError(f"Cannot {what}: the backup folder leads outside the data path", 403)
    return failure


def _check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not namespace:
        raise ServerError("Argument 'namespace' must be a non-empty string", 400)
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise ServerError(
            f"Argument 'namespace' is invalid: {namespace!r} (use letters, digits, '_', '-', '.')",
            400,
        )
    return namespace


def _parse_key(key: Any) -> list[str]:
    """Turn a dotted string or an array of strings into a non-empty key path."""
    if isinstance(key, str):
        path = key.split(".")
    elif isinstance(key, list | tuple):
        path = list(key)
        if not path or not all(isinstance(part, str) for part in path):
            raise ServerError(
                f"Argument 'key' must be a non-empty array of strings, got {key!r}", 400
            )
    else:
        raise ServerError(
            f"Argument 'key' must be a string or an array of strings, got {type(key).__name__}",
            400,
        )
    if not all(path):
        raise ServerError(f"Argument 'key' has an empty part: {key!r}", 400)
    return path


def _has_non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or infinite float anywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else jsonutil.dumps(list(key))


def _select_row(conn: sqlite3.Connection, namespace: str, key: str) -> bytes | None:
    row = conn.execute(
        "SELECT value FROM namespace_store WHERE namespace = ? AND key = ?", (namespace, key)
    ).fetchone()
    return None if row is None else row[0]


def _upsert_row(conn: sqlite3.Connection, namespace: str, key: str, data: bytes) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO namespace_store (namespace, key, value) VALUES (?, ?, ?)",
        (namespace, key, data),
    )


def ensure_table(
    conn: sqlite3.Connection,
    name: str,
    create_sql: str,
    version: int,
    upgrades: dict[int, Upgrade],
) -> int | None:
    """Create table ``name`` or upgrade it to ``version``; returns the version found before.

    ``upgrades[v]`` takes the table from version ``v - 1`` to ``v``; it is SQL or a
    callable receiving the connection.  Runs inside the caller's transaction.
    """
    row = conn.execute("SELECT version FROM schema_version WHERE name = ?", (name,)).fetchone()
    if row is None:
        for statement in split_sql(create_sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (name, version) VALUES (?, ?)", (name, version))
        return None
    current = row[0]
    if current > version:
        raise RuntimeError(
            f"Table {name!r} has schema version {current}, newer than this moontwist ({version})"
        )
    for step_version in range(current + 1, version + 1):
        step = upgrades.get(step_version)
        if step is None:
            raise RuntimeError(f"Table {name!r}: no upgrade step to version {step_version}")
        if callable(step):
            step(conn)
        else:
            for statement in split_sql(step):
                conn.execute(statement)
    if current != version:
        conn.execute("UPDATE schema_version SET version = ? WHERE name = ?", (version, name))
    return current


class Database:
    """The moontwist database under data path ``path`` (see the module docstring)."""

    def __init__(
        self, path: str, *, reactor: Any = None, max_value_size: int = DEFAULT_MAX_VALUE_SIZE
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.data_path = os.path.abspath(path)
        self.db_path = os.path.join(self.data_path, "database", DB_FILENAME)
        self.backup_dir = os.path.join(self.data_path, "backup", "database")
        self.max_value_size = max_value_size
        self._store: dict[str, dict[str, bytes]] = {}
        self._reserved: dict[str, str] = dict.fromkeys(BUILTIN_RESERVED + BUILTIN_FORBIDDEN, BUILTIN_OWNER)
        self._tables: dict[str, tuple[str, int, dict[int, Upgrade]]] = {}
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None

    # -- lifecycle ---------------------------------------------------------------

    def _connect(self, writer: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if writer:
            conn.execute(SCHEMA_VERSION_SQL)
        else:
            conn.execute("PRAGMA query_only=1")
        return conn

    async def _open(self) -> None:
        os.makedirs(os.path.dirname(self.db_path), exist_ok=True)
        self._writer = _Worker(
            "moontwist-db-writer", lambda: self._connect(True), self._reactor, writer=True
        )
        await self.register_table("namespace_store", NAMESPACE_STORE_SQL)
        self._reader = _Worker(
            "moontwist-db-reader", lambda: self._connect(False), self._reactor, writer=False
        )
        await self._load_store()

    def open(self) -> Deferred:
        """Create or upgrade the schema and load the namespace cache."""
        return Deferred.fromCoroutine(self._open())

    async def _load_store(self) -> None:
        rows = await self.run_read(
            lambda conn: conn.execute(
                "SELECT namespace, key, value FROM namespace_store"
            ).fetchall()
        )
        store: dict[str, dict[str, bytes]] = {}
        for namespace, key, value in rows:
            store.setdefault(namespace, {})[key] = bytes(value)
        self._store = store

    def close(self) -> Deferred:
        """Finish queued work and close both connections."""
        workers = [w for w in (self._reader, self._writer) if w is not None]
        self._reader = self._writer = None
        return gatherResults([w.stop() for w in workers], consumeErrors=True).addCallback(
            lambda _: None
        )

    def _require_writer(self) -> _Worker:
        if self._writer is None:
            raise RuntimeError("Database is not open")
        return self._writer

    def _submit(self, fn: Callable[[sqlite3.Connection], Any], mode: str = "txn") -> Deferred:
        try:
            return self._require_writer().submit(fn, mode)
        except RuntimeError as exc:
            return fail(exc)

    # -- tables ------------------------------------------------------------------

    def register_table(
        self,
        name: str,
        create_sql: str,
        version: int = 1,
        upgrades: dict[int, Upgrade] | None = None,
    ) -> Deferred:
        """Create table ``name`` (``create_sql`` may hold several statements, e.g. indexes)
        or upgrade it to ``version``; ``upgrades[v]`` goes from ``v - 1`` to ``v``.

        Fires with the version found before (``None`` when the table was created).
        """
        if not _TABLE_NAME_RE.fullmatch(name):
            return fail(ValueError(f"invalid table name {name!r}"))
        steps = dict(upgrades or {})
        self._tables[name] = (create_sql, version, steps)
        return self.run_write(lambda conn: ensure_table(conn, name, create_sql, version, steps))

    def run_write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred:
        """Run ``fn(conn)`` on the writer thread; fires with its result after the commit.

        Writes queued together share one transaction, each in a savepoint: if ``fn``
        raises, only its own changes are rolled back.  ``fn`` must not BEGIN or COMMIT.
        """
        return self._submit(fn)

    def run_read(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred:
        """Run ``fn(conn)`` in a read transaction on the reader thread."""
        if self._reader is None:
            return fail(RuntimeError("Database is not open"))
        return self._reader.submit(fn)

    # -- namespaces --------------------------------------------------------------

    def namespaces(self, *, forbidden: bool = False) -> list[str]:
        """Namespaces holding data, plus those reserved by plugins and ``moonraker``.

        Forbidden namespaces are left out unless ``forbidden`` (debug endpoints).
        """
        names = list(self._store)
        names.extend(ns for ns in self._reserved if self._registered(ns) and ns not in self._store)
        if not forbidden:
            names = [ns for ns in names if ns not in BUILTIN_FORBIDDEN]
        return names

    def _registered(self, namespace: str) -> bool:
        """Reserved by a plugin (or always present): it exists, empty, even without rows."""
        return namespace in ALWAYS_PRESENT or self._reserved.get(namespace, BUILTIN_OWNER) != BUILTIN_OWNER

    def is_forbidden(self, namespace: str) -> bool:
        """Whether clients may neither read nor write ``namespace`` (only debug endpoints may)."""
        return namespace in BUILTIN_FORBIDDEN

    def reserve_namespace(self, namespace: str, owner: str) -> None:
        """Make ``namespace`` read-only to clients (server-internal writes stay allowed)."""
        self._reserved.setdefault(_check_namespace(namespace), owner)

    def is_reserved(self, namespace: str) -> bool:
        """Whether clients may only read ``namespace``."""
        return namespace in self._reserved

    def get_item(self, namespace: str, key: str | list[str] | None = None) -> Deferred:
        """The value at ``key`` (or the whole namespace), from the in-memory copy."""
        try:
            return succeed(self._get(namespace, key))
        except ServerError as exc:
            return fail(exc)

    def _get(self, namespace: str, key: str | list[str] | None) -> Any:
        _check_namespace(namespace)
        rows = self._store.get(namespace)
        if key is None:
            if rows is None:
                if self._registered(namespace):
                    return {}
                raise ServerError(f"Namespace '{namespace}' not found", 404)
            return {k: jsonutil.loads(v) for k, v in rows.items()}
        path = _parse_key(key)
        if rows is None:
            raise ServerError(f"Namespace '{namespace}' not found", 404)
        data = rows.get(path[0])
        if data is None:
            raise ServerError(f"Key '{_key_text(key)}' in namespace '{namespace}' not found", 404)
        value = jsonutil.loads(data)
        for part in path[1:]:
            if not isinstance(value, dict) or part not in value:
                raise ServerError(
                    f"Key '{_key_text(key)}' in namespace '{namespace}' not found", 404
                )
            value = value[part]
        return value

    def _encode(self, value: Any) -> bytes:
        try:
            data = jsonutil.dumpb(value)
        except (TypeError, ValueError) as exc:
            raise ServerError(f"Argument 'value' is not JSON serialisable: {exc}", 400) from None
        # the encoder writes NaN and infinities as null: refuse them instead of changing them
        if b"null" in data and _has_non_finite(value):
            raise ServerError(
                "Argument 'value' is not JSON serialisable: NaN and infinity have no JSON form",
                400,
            )
        self._check_size(data)
        return data

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_value_size:
            raise ServerError(
                f"Argument 'value' is too large: {len(data)} bytes encoded, "
                f"the limit is {self.max_value_size}",
                400,
            )

    def insert_item(self, namespace: str, key: str | list[str], value: Any) -> Deferred:
        """Store ``value`` at ``key``, creating parents; fires with ``value`` once durable."""
        try:
            _check_namespace(namespace)
            path = _parse_key(key)
            data = self._encode(value)
        except ServerError as exc:
            return fail(exc)
        row = path[0]

        def write(conn: sqlite3.Connection) -> bytes:
            if len(path) == 1:
                _upsert_row(conn, namespace, row, data)
                return data
            old = _select_row(conn, namespace, row)
            record = {} if old is None else jsonutil.loads(old)
            node = record
            for depth, part in enumerate(path[1:-1], start=1):
                if not isinstance(node, dict):
                    raise ServerError(
                        f"Key '{_key_text(key)}' in namespace '{namespace}': "
                        f"'{'.'.join(path[:depth])}' is not an object",
                        400,
                    )
                node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ServerError(
                    f"Key '{_key_text(key)}' in namespace '{namespace}': "
                    f"'{'.'.join(path[:-1])}' is not an object",
                    400,
                )
            node[path[-1]] = jsonutil.loads(data)
            new = jsonutil.dumpb(record)
            self._check_size(new)
            _upsert_row(conn, namespace, row, new)
            return new

        d = self._submit(write)
        d.addCallback(self._cache_row, namespace, row)
        d.addCallback(lambda _: value)
        return d

    def delete_item(self, namespace: str, key: str | list[str]) -> Deferred:
        """Remove ``key``; fires with the removed value.  An emptied namespace disappears."""
        try:
            _check_namespace(namespace)
            path = _parse_key(key)
        except ServerError as exc:
            return fail(exc)
        row = path[0]
        missing = f"Key '{_key_text(key)}' in namespace '{namespace}' not found"

        def write(conn: sqlite3.Connection) -> tuple[bytes | None, Any]:
            old = _select_row(conn, namespace, row)
            if old is None:
                raise ServerError(missing, 404)
            if len(path) == 1:
                conn.execute(
                    "DELETE FROM namespace_store WHERE namespace = ? AND key = ?", (namespace, row)
                )
                return None, jsonutil.loads(old)
            record = jsonutil.loads(old)
            node = record
            for part in path[1:-1]:
                if not isinstance(node, dict) or part not in node:
                    raise ServerError(missing, 404)
                node = node[part]
            if not isinstance(node, dict) or path[-1] not in node:
                raise ServerError(missing, 404)
            removed = node.pop(path[-1])
            if not record:  # as Moonraker: a record left empty is removed with its last key
                conn.execute(
                    "DELETE FROM namespace_store WHERE namespace = ? AND key = ?", (namespace, row)
                )
                return None, removed
            new = jsonutil.dumpb(record)
            _upsert_row(conn, namespace, row, new)
            return new, removed

        def done(result: tuple[bytes | None, Any]) -> Any:
            self._cache_row(result[0], namespace, row)
            return result[1]

        return self._submit(write).addCallback(done)

    def _cache_row(self, data: bytes | None, namespace: str, key: str) -> None:
        if data is not None:
            self._store.setdefault(namespace, {})[key] = data
            return
        rows = self._store.get(namespace)
        if rows is not None:
            rows.pop(key, None)
            if not rows:
                del self._store[namespace]

    async def reload(self) -> None:
        """Re-check every registered table's schema and reload the namespace cache."""
        for name, (create_sql, version, steps) in list(self._tables.items()):
            await self.register_table(name, create_sql, version, steps)
        await self._load_store()

    def tables(self) -> Deferred:
        """Names of every table in the database file."""
        return self.run_read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
        )

    def table_rows(self, table: str) -> Deferred:
        """Every row of ``table`` as a dict (with ``rowid`` unless the table has none or an alias)."""

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            names = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if table not in names or table.startswith("sqlite_"):
                raise ServerError(f"Table name '{table}' does not exist", 404)
            quoted = '"' + table.replace('"', '""') + '"'
            try:
                cur = conn.execute(f"SELECT rowid, * FROM {quoted}")
            except sqlite3.OperationalError:  # a WITHOUT ROWID table
                cur = conn.execute(f"SELECT * FROM {quoted}")
            columns = [d[0] for d in cur.description]
            # with an INTEGER PRIMARY KEY, SQLite names the rowid after it: keep that column once
            skip = 1 if columns.count(columns[0]) > 1 else 0
            return [dict(zip(columns[skip:], row[skip:], strict=True)) for row in cur.fetchall()]

        return self.run_read(read)

    # -- maintenance -------------------------------------------------------------

    def compact(self) -> Deferred:
        """VACUUM the database; fires with ``{"previous_size", "new_size"}`` in bytes."""

        def vacuum(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            previous = os.path.getsize(self.db_path)
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return {"previous_size": previous, "new_size": os.path.getsize(self.db_path)}

        return self._submit(vacuum, "bare")

    def _backup_path(self, filename: Any) -> str:
        if not isinstance(filename, str) or not _BACKUP_NAME_RE.fullmatch(filename):
            raise ServerError(
                f"Argument 'filename' is not a valid backup name: {filename!r} "
                "(a plain file name: letters, digits, '_', '-', '.')",
                400,
            )
        return os.path.join(self.backup_dir, filename)

    def backup(self, filename: str | None = None) -> Deferred:
        """Copy the database to the backup folder; fires with the backup's absolute path.

        Without ``filename`` the name is ``sqldb-backup-<YYYYmmdd-HHMMSS>.db``.
        """
        if filename is None:
            filename = time.strftime("sqldb-backup-%Y%m%d-%H%M%S.db")
        try:
            target = self._backup_path(filename)
            writer = self._require_writer()
        except (ServerError, RuntimeError) as exc:
            return fail(exc)

        def copy(conn: sqlite3.Connection) -> str:
            with self._backup_folder(create=True) as folder:
                partial, held = folder.create_temp(BACKUP_TEMP_PREFIX)
                try:
                    with held:  # locked while SQLite writes it through its own descriptor
                        dest = sqlite3.connect(f"/proc/self/fd/{folder.fd}/{partial}", isolation_level=None)
                        try:
                            conn.backup(dest)
                            dest.execute("PRAGMA journal_mode=DELETE")
                        finally:
                            dest.close()
                        os.fsync(held.fileno())
                    folder.replace(partial, folder, filename)
                except BaseException:
                    folder.unlink_quietly(partial)
                    raise
            return target

        return writer.submit(copy, "bare").addErrback(_outside_refused, "back up the database")

    def _backup_folder(self, *, create: bool = False) -> Any:
        """The backup folder, opened and checked to lie inside the data path (see confined)."""
        return Tree(self.data_path).folder(self.backup_dir, create=create)

    def sweep_backup_temp_files(self) -> list[str]:
        """Remove partial backups a killed process left behind (blocking)."""
        if not os.path.isdir(self.backup_dir):
            return []
        return sweep_temp_files(Tree(self.backup_dir), (BACKUP_TEMP_PREFIX,), recursive=False)

    def list_backups(self) -> list[str]:
        """Names of the backups in the backup folder."""
        try:
            names = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return []
        return sorted(
            n
            for n in names
            if _BACKUP_NAME_RE.fullmatch(n) and os.path.isfile(os.path.join(self.backup_dir, n))
        )

    def _existing_backup(self, filename: Any) -> str:
        path = self._backup_path(filename)
        if not os.path.isfile(path):
            raise ServerError(f"Backup '{filename}' not found", 404)
        return path

    def delete_backup(self, filename: str) -> Deferred:
        """Delete a backup; fires with its former absolute path."""
        try:
            path = self._existing_backup(filename)
            with self._backup_folder() as folder:
                folder.unlink(filename)
        except ServerError as exc:
            return fail(exc)
        except OutsideTree:
            return fail(ServerError("Cannot delete the backup: the backup folder leads outside the data path", 403))
        except OSError as exc:
            return fail(ServerError(f"Cannot delete the backup: {exc.strerror or exc}", 400))
        return succeed(path)

    def restore(self, filename: str) -> Deferred:
        """Replace the database's content with a backup; fires with
        ``{"restored_tables", "restored_namespaces"}``.

        Registered tables are brought to their current schema afterwards and the
        cache is reloaded; other components holding their own caches should reload.
        """
        try:
            path = self._existing_backup(filename)
            writer = self._require_writer()
        except (ServerError, RuntimeError) as exc:
            return fail(exc)

        def copy_back(conn: sqlite3.Connection) -> list[str]:
            src = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
            try:
                try:
                    tables = [
                        r[0]
                        for r in src.execute(
                            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                        )
                    ]
                    ok = src.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                except sqlite3.DatabaseError:
                    tables, ok = [], False
                if not ok or "schema_version" not in tables or "namespace_store" not in tables:
                    raise ServerError(f"Backup '{filename}' is not a moontwist database", 400)
                src.backup(conn)
            finally:
                src.close()
            conn.execute("PRAGMA journal_mode=WAL")
            return tables

        async def run() -> dict[str, list[str]]:
            tables = await writer.submit(copy_back, "bare")
            await self.reload()
            return {"restored_tables": tables, "restored_namespaces": self.namespaces()}

        return Deferred.fromCoroutine(run())
