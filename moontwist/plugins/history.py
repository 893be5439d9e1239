"""The ``history`` plugin: print jobs recorded from ``print_stats`` and ``server.history.*``.

A job starts when ``print_stats`` goes to ``printing`` (not when a paused print
resumes; a print that ran entirely between two status updates arrives as a
start and an end, see :mod:`moontwist.klippy.jobstate`) and ends as ``completed``, ``cancelled`` (also a return to
``standby``, which is how a ``CANCEL_PRINT`` macro without
``BASE_CANCEL_PRINT`` ends), ``error``, ``klippy_shutdown``,
``klippy_disconnect`` or ``server_exit``.  Jobs left ``in_progress`` by a crash
are marked ``interrupted`` at start-up.  Like Moonraker, history is always
loaded; ``[history]`` has no options.

Endpoints::

    GET    /server/history/list          server.history.list
    GET    /server/history/totals        server.history.totals
    POST   /server/history/reset_totals  server.history.reset_totals
    GET    /server/history/job           server.history.get_job
    DELETE /server/history/job           server.history.delete_job
"""

from __future__ import annotations

import math
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredLock

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config
from moontwist.history_fields import HistoryField
from moontwist.hookspecs import hookimpl
from moontwist.storage.history import HistoryStore

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["HistoryPlugin", "file_exists"]

NO_USER = "No User"
_STATS_FIELDS = ("print_duration", "total_duration", "filament_used")
# metadata fields that describe a job, not the file: not kept in the snapshot
_JOB_METADATA = ("print_start_time", "job_id")


def file_exists(root: str | None, filename: str | None, modified: Any = None) -> bool:
    """Whether ``filename`` is still a file under ``root`` (with mtime ``modified`` if given)."""
    if not root or not filename:
        return False
    try:
        st = os.stat(os.path.join(root, filename))
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if isinstance(modified, (int, float)) and not isinstance(modified, bool):
        return math.isclose(st.st_mtime, modified, abs_tol=1e-3)
    return True


def _optional_time(value: float | None) -> float | None:
    """Moonraker's ``since``/``before`` use -1 for "no bound"."""
    return None if value is None or value == -1 else value


class HistoryPlugin:
    """Records print jobs into the :class:`HistoryStore` and serves ``server.history.*``."""

    server: Server
    store: HistoryStore

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        config.section("history")  # Moonraker's [history] has no options; accepted
        store = server.lookup("history_store")
        if store is None:
            raise RuntimeError("history needs the database plugin (no 'history_store')")
        self.store = store
        self.lock = DeferredLock()
        self.requested_by: dict[str, str] = {}  # filename -> who asked to print it
        self.job: dict[str, Any] | None = None  # the job in progress (JOB_FIELDS)
        self.job_id: int | None = None
        self.last_stats: dict[str, Any] = {}
        self.fields: list[HistoryField] = []

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        uid = Arg("uid", description="The job id (6 hex digits)")
        register(
            Endpoint(
                "server.history.list",
                self.list_jobs,
                "/server/history/list",
                args=(
                    Arg("start", "int", 0, description="Index of the first job returned"),
                    Arg("limit", "int", 50, description="Most jobs returned (0: all)"),
                    Arg("since", "float", description="Jobs started after this Unix time"),
                    Arg("before", "float", description="Jobs ended before this Unix time"),
                    Arg("order", default="desc", description="asc or desc (by start)"),
                ),
                description="Jobs in the print history",
            )
        )
        register(
            Endpoint(
                "server.history.totals",
                self.totals,
                "/server/history/totals",
                description="Job totals",
            )
        )
        register(
            Endpoint(
                "server.history.reset_totals",
                self.reset_totals,
                "/server/history/reset_totals",
                ("POST",),
                description="Zero the job totals; returns the previous ones",
            )
        )
        register(
            Endpoint(
                "server.history.get_job",
                self.get_job,
                "/server/history/job",
                args=(Arg("uid", required=True, description="The job id (6 hex digits)"),),
                description="One job of the print history",
            )
        )
        register(
            Endpoint(
                "server.history.delete_job",
                self.delete_job,
                "/server/history/job",
                ("DELETE",),
                args=(uid, Arg("all", "bool", False, description="Delete every job")),
                description="Delete a job, or all jobs",
            )
        )

    # lifecycle -----------------------------------------------------------------------

    @hookimpl
    def startup(self, server: Server) -> Deferred:
        server.plugins.call_registration("register_history_fields", self._field_registrar, server=server)

        def closed(ids: list[str]) -> None:
            if ids:
                self.log.info("Jobs interrupted by the last exit: {ids}", ids=", ".join(ids))

        return self.store.close_interrupted_jobs().addCallback(closed)

    @hookimpl
    def shutdown(self, server: Server) -> Deferred:
        # runs before the database plugin's shutdown (reverse load order)
        return self._finish("server_exit", self.last_stats)

    def _field_registrar(self, plugin: str) -> Any:
        def register(field: HistoryField) -> HistoryField:
            if any(f.provider == field.provider and f.name == field.name for f in self.fields):
                raise ValueError(f"History field {field.provider!r} {field.name!r} is already registered")
            self.fields.append(field)
            return field

        return register

    # events ----------------------------------------------------------------------------

    @hookimpl
    def klippy_state_changed(self, server: Server, state: str) -> None:
        if state == "ready":
            self.last_stats = dict(server.klippy.status.get("print_stats") or {})
        elif state == "shutdown":
            self._finish("klippy_shutdown", self.last_stats)
        elif state == "disconnected":
            self._finish("klippy_disconnect", self.last_stats)

    @hookimpl
    def status_update(self, status: dict[str, Any]) -> None:
        stats = status.get("print_stats")
        if stats:
            self.last_stats.update(stats)

    @hookimpl
    def print_requested(self, filename: str, user: str | None) -> None:
        if user:
            self.requested_by[filename] = user

    @hookimpl
    def job_state_changed(self, old: str, new: str, status: dict[str, Any]) -> None:
        # status_update runs after this hook: last_stats is still the previous state
        prev = dict(self.last_stats)
        cur = dict(status.get("print_stats") or {})
        for field in self.fields:
            field.pause_job(new == "paused")
        if new == "printing":
            if not self._resumed(old, prev, cur):
                self._start(prev, cur)
        elif new == "complete":
            self._finish("completed", cur)
        elif new == "error":
            self._finish("error", cur)
        elif new == "cancelled":
            self._finish("cancelled", cur)
        elif new == "standby" and old in ("printing", "paused"):
            self._finish("cancelled", prev)

    def _resumed(self, old: str, prev: dict[str, Any], cur: dict[str, Any]) -> bool:
        return (
            old == "paused"
            and self.job is not None
            and prev.get("filename") == cur.get("filename")
            and (cur.get("total_duration") or 0.0) >= (prev.get("total_duration") or 0.0)
        )

    # recording -------------------------------------------------------------------------

    def _metadata(self, filename: str) -> dict[str, Any]:
        files = self.server.lookup("file_manager")
        meta = files.store.get(filename) if files is not None else None
        return {k: v for k, v in (meta or {}).items() if k not in _JOB_METADATA}

    def _write_back(self, filename: str, job_id: str, start_time: float) -> None:
        """Put ``job_id`` and ``print_start_time`` into the file's metadata, as Moonraker does."""
        files = self.server.lookup("file_manager")
        meta = files.store.get(filename) if files is not None else None
        if meta:
            files.store.put(filename, {**meta, "print_start_time": start_time, "job_id": job_id})

    def gcodes_root(self) -> str | None:
        files = self.server.lookup("file_manager")
        root = files.roots.find("gcodes") if files is not None else None
        return root.path if root is not None else None

    def api_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """A stored job as the API shows it: with ``exists``, without auxiliary values that are None."""
        modified = (job.get("metadata") or {}).get("modified")
        job["exists"] = file_exists(self.gcodes_root(), job.get("filename"), modified)
        # clients format every entry's value (Mainsail's job details call value.toString())
        aux = job.get("auxiliary_data") or []
        job["auxiliary_data"] = [a for a in aux if not (isinstance(a, dict) and a.get("value") is None)]
        return job

    def _start(self, prev: dict[str, Any], cur: dict[str, Any]) -> Deferred:
        async def start() -> None:
            if self.job is not None:  # a new print without an end for the last one
                await self._close("cancelled", prev)
            filename = cur.get("filename") or ""
            job: dict[str, Any] = {
                "user": self.requested_by.pop(filename, None) or NO_USER,
                "filename": filename,
                "status": "in_progress",
                "start_time": time.time(),
                "end_time": None,
                "metadata": self._metadata(filename),
                "auxiliary_data": [],
            }
            job.update((k, cur.get(k) or 0.0) for k in _STATS_FIELDS)
            for field in self.fields:
                field.start_job()
            self.job = job
            self.job_id = await self.store.add_job(job)
            job_id = f"{self.job_id:06X}"
            self._write_back(filename, job_id, job["start_time"])
            self.log.debug("History job {id} added: {filename}", id=job_id, filename=filename)
            self._notify("added", {**job, "job_id": job_id})

        return self._locked(start)

    def _finish(self, status: str, stats: dict[str, Any]) -> Deferred:
        return self._locked(lambda: self._close(status, dict(stats)))

    async def _close(self, status: str, stats: dict[str, Any]) -> None:
        job, uid = self.job, self.job_id
        self.job = self.job_id = None
        if job is None or uid is None:
            return
        changes: dict[str, Any] = {"status": status, "end_time": time.time()}
        # stats reset by Klippy (another file, or durations back to 0) are not this job's
        if stats.get("filename") == job["filename"] and (stats.get("total_duration") or 0.0) >= job[
            "total_duration"
        ]:
            changes.update((k, stats[k]) for k in _STATS_FIELDS if stats.get(k) is not None)
        if not job["metadata"]:  # the file may have been uploaded as the print started
            changes["metadata"] = self._metadata(job["filename"])
        changes["auxiliary_data"] = [field.end_job() for field in self.fields]
        try:
            finished = await self.store.update_job(uid, changes)
        except ServerError as exc:  # deleted while printing
            self.log.info("History job {id:06X} not finished: {e}", id=uid, e=exc.message)
            return
        await self.store.update_totals(finished, self._fold_auxiliary)
        self._write_back(job["filename"], finished["job_id"], job["start_time"])
        self.log.debug("History job {id} finished: {status}", id=finished["job_id"], status=status)
        self._notify("finished", finished)

    def _fold_auxiliary(self, totals: list[dict[str, Any]], job: dict[str, Any]) -> None:
        values = {(a.get("provider"), a.get("name")): a.get("value") for a in job.get("auxiliary_data") or []}
        for field in self.fields:
            field.add_to_totals(totals, values.get((field.provider, field.name)))

    def _locked(self, fn: Any) -> Deferred:
        d = self.lock.run(lambda: Deferred.fromCoroutine(fn()))
        return d.addErrback(lambda f: self.log.failure("History update failed", f))

    def _notify(self, action: str, job: dict[str, Any]) -> None:
        self.server.notify("notify_history_changed", {"action": action, "job": self.api_job(job)})

    # endpoints ---------------------------------------------------------------------------

    async def list_jobs(self, request: APIRequest) -> dict[str, Any]:
        args = request.args
        count, jobs = await self.store.list_jobs(
            start=args["start"],
            limit=args["limit"],
            since=_optional_time(args["since"]),
            before=_optional_time(args["before"]),
            order=args["order"],
        )
        return {"count": count, "jobs": [self.api_job(job) for job in jobs]}

    def totals(self, request: APIRequest) -> Deferred:
        return self.store.totals()

    def reset_totals(self, request: APIRequest) -> Deferred:
        if self.job is not None:
            raise ServerError("Job in progress, cannot reset totals", 400)
        return self.store.reset_totals()

    async def get_job(self, request: APIRequest) -> dict[str, Any]:
        return {"job": self.api_job(await self.store.get_job(request.args["uid"]))}

    async def delete_job(self, request: APIRequest) -> dict[str, Any]:
        if request.args["all"]:
            return {"deleted_jobs": await self.store.delete_all()}
        uid = request.args["uid"]
        if uid is None:
            raise ServerError("Missing required argument 'uid' (or all=true)", 400)
        return {"deleted_jobs": await self.store.delete_job(uid)}
