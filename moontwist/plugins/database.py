"""The ``database`` plugin: Moonraker's ``server.database.*`` API and the Moonraker import.

Endpoints (HTTP and JSON-RPC)::

    GET    /server/database/list      server.database.list          namespaces and backups
    GET    /server/database/item      server.database.get_item      a value, or a whole namespace
    POST   /server/database/item      server.database.post_item     store a value (parents created)
    DELETE /server/database/item      server.database.delete_item   remove a value
    POST   /server/database/compact   server.database.compact       VACUUM (not while printing)
    POST   /server/database/backup    server.database.post_backup   copy to <datapath>/backup/database
    DELETE /server/database/backup    server.database.delete_backup
    POST   /server/database/restore   server.database.restore       then the server restarts

The namespaces ``moonraker``, ``gcode_metadata``, ``history`` and every namespace a
plugin reserves are read-only to clients (403) but readable; ``moonraker`` always
exists (it holds the ``instance_id``, ``file_manager.*``, ``klippy_connection.*`` and
``announcements.*`` as Moonraker keeps them).  The ``database`` namespace (unsafe
shutdown count) is the server's own: clients may neither list, read nor write it.

With ``[database] enable_database_debug: True`` Moonraker's debug endpoints exist too::

    GET    /debug/database/list       debug.database.list           every namespace, backup and table
    GET    /debug/database/item       debug.database.get_item       read any namespace
    POST   /debug/database/item       debug.database.post_item      write any namespace
    DELETE /debug/database/item       debug.database.delete_item
    GET    /debug/database/table      debug.database.table          every row of a table

Secrets never leave through them: the password hashes, salts and signing keys of
``auth_users`` (the API key is the hash of its ``_API_KEY_USER_`` row) are redacted.

At start-up the database (``<datapath>/database/moontwist.db``) is opened and a
Moonraker database found at ``<datapath>/database/moonraker-sql.db`` is imported once
(the source file is only read); what was imported is logged.

Using the database from a plugin
--------------------------------

The :class:`~moontwist.storage.database.Database` is offered as the service
``"database"`` from this plugin's ``configure`` hook on, and a
:class:`~moontwist.storage.history.HistoryStore` as ``"history_store"``.  The
database plugin loads right after ``server``, so in your own ``configure``::

    db = server.lookup("database")
    db.reserve_namespace("my_plugin", owner="my_plugin")   # read-only to clients
    self.store = DatabaseNamespace(db, "my_plugin")        # or db.get_item(...) etc.

The database is open from the database plugin's ``startup`` on; plugins start in
load order, so in your own ``startup`` (which may return a Deferred or be async)::

    await db.register_table("my_table", "CREATE TABLE my_table (...)", version=1)
    await self.store.insert("settings.speed", 100)         # fires once on disk
    speed = await self.store.get("settings.speed", 50)     # from memory, default if missing
    await db.run_write(lambda conn: conn.execute("INSERT INTO my_table ..."))
    rows = await db.run_read(lambda conn: conn.execute("SELECT ...").fetchall())

``register_table`` creates the table (and indexes in the same script) or upgrades it
with ``upgrades={2: "ALTER TABLE ...", ...}``.  ``run_write`` functions run on the
single writer thread inside a transaction and must not BEGIN/COMMIT themselves.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from moontwist import jsonutil
from moontwist.api.args import Arg
from moontwist.api.errors import ArgumentError, ServerError
from moontwist.api.limits import LARGE_BODY
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config
from moontwist.hookspecs import hookimpl
from moontwist.storage.database import Database
from moontwist.storage.database import _check_namespace as check_namespace
from moontwist.storage.history import HistoryStore
from moontwist.storage.instance import instance_uuid
from moontwist.storage.moonraker_import import import_moonraker_db

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["DatabasePlugin", "DatabaseNamespace", "MOONRAKER_DB_FILENAME"]

MOONRAKER_DB_FILENAME = "moonraker-sql.db"
_MISSING: Any = object()
# auth_users columns a debug endpoint may show as stored; every other column is redacted
AUTH_TABLE = "auth_users"
AUTH_PUBLIC_COLUMNS = frozenset({"rowid", "username", "hash_scheme", "source", "created_on"})
REDACTED = "<redacted>"


class DatabaseNamespace:
    """A plugin's view of one namespace: ``get``/``insert``/``delete`` return Deferreds."""

    def __init__(self, db: Database, namespace: str) -> None:
        self.db = db
        self.namespace = namespace

    def get(self, key: str | list[str] | None = None, default: Any = _MISSING) -> Deferred:
        """The value at ``key`` (the whole namespace when None); ``default`` instead of a 404."""
        d = self.db.get_item(self.namespace, key)
        if default is not _MISSING:

            def missing(failure: Any) -> Any:
                failure.trap(ServerError)
                if failure.value.status != 404:
                    return failure
                return default

            d.addErrback(missing)
        return d

    def insert(self, key: str | list[str], value: Any) -> Deferred:
        """Store ``value`` (fires with it once durable)."""
        return self.db.insert_item(self.namespace, key, value)

    def delete(self, key: str | list[str]) -> Deferred:
        """Remove ``key``; fires with the removed value."""
        return self.db.delete_item(self.namespace, key)


def _check_namespace(namespace: str) -> str:
    try:
        return check_namespace(namespace)
    except ServerError as exc:
        raise ArgumentError(exc.message, "namespace") from None


def _check_key(key: Any, required: bool) -> Any:
    """A dotted string or a non-empty array of strings, with no empty part (else a 400)."""
    if key is None:
        if required:
            raise ArgumentError("Missing required argument 'key'", "key")
        return None
    if isinstance(key, str):
        if not key:
            raise ArgumentError("Invalid argument 'key': must not be empty", "key")
        if "" in key.split("."):
            raise ArgumentError(f"Invalid argument 'key': {key!r} has an empty part", "key")
        return key
    if isinstance(key, list) and key and all(isinstance(part, str) and part for part in key):
        return key
    if isinstance(key, list):
        raise ArgumentError(
            "Invalid argument 'key': expected a non-empty array of non-empty strings", "key"
        )
    kind = {bool: "a boolean", int: "a number", float: "a number", dict: "an object"}.get(
        type(key), type(key).__name__
    )
    raise ArgumentError(
        f"Invalid argument 'key': expected a string or an array of strings, got {kind}", "key"
    )


class DatabasePlugin:
    """Owns the :class:`Database` and the :class:`HistoryStore`; serves ``server.database.*``."""

    server: Server
    db: Database
    history: HistoryStore
    unsafe_shutdowns: int | None = None  # counted at start-up, written back at a clean stop

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("database")
        # Moonraker's options: the path is deprecated there and fixed here (<datapath>/database)
        section.get("database_path", None)
        self.debug = section.getboolean("enable_database_debug", False)
        self.db = Database(server.datapath, reactor=server.reactor)
        self.history = HistoryStore(self.db)
        server.provide("database", self.db)
        server.provide("history_store", self.history)

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        namespace = Arg("namespace", required=True, description="The namespace")
        item_key = Arg(
            "key", "any", description="A dotted string or an array of strings (nested fields)"
        )
        filename = Arg("filename", required=True, description="A backup's file name")
        register(
            Endpoint(
                "server.database.list",
                self.list,
                "/server/database/list",
                description="Namespaces clients may read, and the database backups",
            )
        )
        register(
            Endpoint(
                "server.database.get_item",
                self.get_item,
                "/server/database/item",
                args=(namespace, item_key),
                description="Read an item (the whole namespace when key is omitted)",
            )
        )
        register(
            Endpoint(
                "server.database.post_item",
                self.post_item,
                "/server/database/item",
                ("POST",),
                args=(
                    namespace,
                    item_key,
                    Arg("value", "any", required=True, description="Any JSON value"),
                ),
                max_body=LARGE_BODY,
                description="Store an item; parents are created",
            )
        )
        register(
            Endpoint(
                "server.database.delete_item",
                self.delete_item,
                "/server/database/item",
                ("DELETE",),
                args=(namespace, item_key),
                description="Remove an item; an emptied namespace disappears",
            )
        )
        register(
            Endpoint(
                "server.database.compact",
                self.compact,
                "/server/database/compact",
                ("POST",),
                description="VACUUM the database (not while printing)",
            )
        )
        register(
            Endpoint(
                "server.database.post_backup",
                self.post_backup,
                "/server/database/backup",
                ("POST",),
                args=(
                    Arg(
                        "filename",
                        nullable=True,
                        description="Backup file name (default sqldb-backup-<timespec>.db)",
                    ),
                ),
                description="Back up the database to <datapath>/backup/database",
            )
        )
        register(
            Endpoint(
                "server.database.delete_backup",
                self.delete_backup,
                "/server/database/backup",
                ("DELETE",),
                args=(filename,),
                description="Delete a database backup",
            )
        )
        register(
            Endpoint(
                "server.database.restore",
                self.restore,
                "/server/database/restore",
                ("POST",),
                args=(filename,),
                description="Restore a backup, then restart the server",
            )
        )
        if self.debug:
            self._register_debug(register, namespace, item_key)

    def _register_debug(self, register: Any, namespace: Arg, item_key: Arg) -> None:
        for endpoint in (
            Endpoint("debug.database.list", self.debug_list, "/debug/database/list",
                     description="Debug: every namespace (forbidden ones too), backup and table"),
            Endpoint("debug.database.get_item", self.debug_get_item, "/debug/database/item",
                     args=(namespace, item_key), description="Debug: read an item of any namespace"),
            Endpoint("debug.database.post_item", self.debug_post_item, "/debug/database/item", ("POST",),
                     args=(namespace, item_key, Arg("value", "any", required=True, description="Any JSON value")),
                     description="Debug: store an item in any namespace"),
            Endpoint("debug.database.delete_item", self.debug_delete_item, "/debug/database/item", ("DELETE",),
                     args=(namespace, item_key), description="Debug: remove an item of any namespace"),
            Endpoint("debug.database.table", self.debug_table, "/debug/database/table",
                     args=(Arg("table", required=True, description="Table name"),),
                     description="Debug: every row of a table (secrets redacted)"),
        ):
            register(endpoint)

    # lifecycle -----------------------------------------------------------------

    @hookimpl
    def startup(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._startup(server))

    async def _startup(self, server: Server) -> None:
        await self.db.open()
        await self.history.open()
        source = server.path("database", MOONRAKER_DB_FILENAME)
        if os.path.isfile(source):
            try:
                summary = await import_moonraker_db(source, self.db, self.history)
            except Exception as exc:  # a damaged source must not keep the server down
                self.log.error(
                    "Moonraker database {source} could not be imported: {error}",
                    source=source,
                    error=f"{type(exc).__name__}: {exc}",
                )
            else:
                self._log_import(source, summary)
        await self._moonraker_namespace()
        self.unsafe_shutdowns = await self._count_start()
        reactor = server.reactor
        swept = await deferToThreadPool(reactor, reactor.getThreadPool(), self.db.sweep_backup_temp_files)
        for path in swept:
            self.log.info("Removed a partial backup left by an interrupted run: {path}", path=path)
        self.log.info(
            "Database {path} open: {count} namespaces, {unsafe} unsafe shutdowns",
            path=self.db.db_path,
            count=len(self.db.namespaces()),
            unsafe=self.unsafe_shutdowns,
        )

    async def _moonraker_namespace(self) -> None:
        """As Moonraker: the ``moonraker`` namespace names this installation (its uuid file's id)."""
        stored = await DatabaseNamespace(self.db, "moonraker").get("instance_id", None)
        current = instance_uuid(self.server.datapath)
        if stored is None:
            await self.db.insert_item("moonraker", "instance_id", current)
        elif stored != current:
            self.log.warn("Stored instance id {stored} differs from this data path's {current}", stored=stored, current=current)

    async def _count_start(self) -> int:
        """Count this start as an unsafe shutdown until a clean one writes the count back."""
        count = await DatabaseNamespace(self.db, "database").get("unsafe_shutdowns", 0)
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        await self.db.insert_item("database", "unsafe_shutdowns", count + 1)
        return count

    def _log_import(self, source: str, summary: dict[str, Any]) -> None:
        if summary.get("skipped"):
            self.log.info(
                "Moonraker database {source} was already imported; not importing again",
                source=source,
            )
            return
        self.log.info(
            "Imported Moonraker database {source}: {namespaces} namespaces ({keys} keys), "
            "{jobs} history jobs, {totals} totals, {users} users, API key {api_key}",
            source=source,
            namespaces=summary["namespaces"],
            keys=summary["namespace_keys"],
            jobs=summary["jobs"],
            totals=summary["totals"],
            users=summary["users"],
            api_key="imported" if summary["api_key"] else "absent",
        )
        if summary["failed"]:
            self.log.warn(
                "Moonraker import: {count} rows could not be decoded: {rows}",
                count=len(summary["failed"]),
                rows="; ".join(summary["failed"]),
            )

    @hookimpl
    def shutdown(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        if self.unsafe_shutdowns is not None:
            try:
                await self.db.insert_item("database", "unsafe_shutdowns", self.unsafe_shutdowns)
            except Exception as exc:
                self.log.warn("Unsafe shutdown count not saved: {error}", error=exc)
        await self.db.close()

    # helpers ---------------------------------------------------------------------

    def _refuse_while_printing(self, action: str) -> None:
        if self.server.printing:
            raise ServerError(f"Cannot {action} the database while Klipper is {self.server.print_state}", 400)

    def _readable(self, namespace: str) -> None:
        if self.db.is_forbidden(namespace):
            raise ServerError(f"Read/Write access to namespace '{namespace}' is forbidden", 403)

    def _writable(self, namespace: str) -> None:
        self._readable(namespace)
        if self.db.is_reserved(namespace):
            raise ServerError(f"Namespace '{namespace}' is read-only", 403)

    # endpoints -------------------------------------------------------------------

    def list(self, request: APIRequest) -> dict[str, Any]:
        return {"namespaces": self.db.namespaces(), "backups": self.db.list_backups()}

    def get_item(self, request: APIRequest, *, debug: bool = False) -> Deferred:
        namespace = _check_namespace(request.args["namespace"])
        key = _check_key(request.args.get("key"), required=False)
        if not debug:
            self._readable(namespace)
        return self.db.get_item(namespace, key).addCallback(
            lambda value: {"namespace": namespace, "key": key, "value": value}
        )

    def post_item(self, request: APIRequest, *, debug: bool = False) -> Deferred:
        args = request.args
        namespace = _check_namespace(args["namespace"])
        key = _check_key(args.get("key"), required=True)
        if not debug:
            self._writable(namespace)
        return self.db.insert_item(namespace, key, args["value"]).addCallback(
            lambda value: {"namespace": namespace, "key": key, "value": value}
        )

    def delete_item(self, request: APIRequest, *, debug: bool = False) -> Deferred:
        namespace = _check_namespace(request.args["namespace"])
        key = _check_key(request.args.get("key"), required=True)
        if not debug:
            self._writable(namespace)
        return self.db.delete_item(namespace, key).addCallback(
            lambda value: {"namespace": namespace, "key": key, "value": value}
        )

    # debug endpoints (enable_database_debug) ----------------------------------------

    async def debug_list(self, request: APIRequest) -> dict[str, Any]:
        return {
            "namespaces": self.db.namespaces(forbidden=True),
            "backups": self.db.list_backups(),
            "tables": await self.db.tables(),
        }

    def _debug_used(self, request: APIRequest) -> None:
        self.log.info("Database debug endpoint {method} used", method=request.endpoint.method)

    def debug_get_item(self, request: APIRequest) -> Deferred:
        return self.get_item(request, debug=True)

    def debug_post_item(self, request: APIRequest) -> Deferred:
        self._debug_used(request)
        return self.post_item(request, debug=True)

    def debug_delete_item(self, request: APIRequest) -> Deferred:
        self._debug_used(request)
        return self.delete_item(request, debug=True)

    async def debug_table(self, request: APIRequest) -> dict[str, Any]:
        table = request.args["table"]
        if not isinstance(table, str) or not table:
            raise ArgumentError("Argument 'table' must be a non-empty string", "table")
        rows = await self.db.table_rows(table)
        return {"table_name": table, "rows": [_shown_row(table, row) for row in rows]}

    def compact(self, request: APIRequest) -> Deferred:
        self._refuse_while_printing("compact")
        return self.db.compact()

    def post_backup(self, request: APIRequest) -> Deferred:
        self._refuse_while_printing("back up")
        return self.db.backup(request.args.get("filename")).addCallback(
            lambda path: {"backup_path": path}
        )

    def delete_backup(self, request: APIRequest) -> Deferred:
        return self.db.delete_backup(request.args["filename"]).addCallback(
            lambda path: {"backup_path": path}
        )

    def restore(self, request: APIRequest) -> Deferred:
        self._refuse_while_printing("restore")

        def restart(result: dict[str, Any]) -> dict[str, Any]:
            # as Moonraker: restart so every plugin reloads what it keeps from the database
            self.log.info("Database restored from {name}; restarting", name=request.args["filename"])
            self.server.restart(delay=0.1)
            return result

        return self.db.restore(request.args["filename"]).addCallback(restart)


def _shown_cell(value: Any) -> Any:
    """A cell as JSON: stored JSON (BLOB columns) decoded, other bytes as hex."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return jsonutil.loads(data)
        except jsonutil.JSONDecodeError:
            return data.hex()
    return value


def _shown_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row for a debug endpoint: secrets of the auth table are redacted."""
    shown = {name: _shown_cell(value) for name, value in row.items()}
    if table == AUTH_TABLE:
        for name, value in shown.items():
            if name not in AUTH_PUBLIC_COLUMNS and value is not None:
                shown[name] = REDACTED
    return shown
