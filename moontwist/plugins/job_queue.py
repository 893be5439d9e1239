"""The ``job_queue`` plugin: a FIFO of G-code files printed one after another.

Queue states: ``ready`` (the next job loads when the current print completes),
``loading`` (waiting ``job_transition_delay`` and running
``job_transition_gcode``), ``starting`` (asking Klippy to print) and ``paused``.
As in current Moonraker: the queue starts ``paused``; only with
``automatic_transition`` does a completed print load the next job; a print that
ends in error or is cancelled pauses a non-empty queue; ``load_on_startup``
loads the first job whenever Klippy becomes ready.  Like Moonraker's, the queue
lives in memory only: it is empty after a restart.  The plugin is always loaded;
its options live in ``[job_queue]``.  Klippy macros can call the remote methods
``pause_job_queue`` and ``start_job_queue``.

Endpoints::

    GET    /server/job_queue/status   server.job_queue.status
    POST   /server/job_queue/job      server.job_queue.post_job
    DELETE /server/job_queue/job      server.job_queue.delete_job
    POST   /server/job_queue/pause    server.job_queue.pause
    POST   /server/job_queue/start    server.job_queue.start
    POST   /server/job_queue/jump     server.job_queue.jump
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredLock

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config
from moontwist.hookspecs import hookimpl
from moontwist.plugins.history import file_exists

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["JobQueuePlugin", "QueuedJob"]

LOAD_ON_STARTUP_DELAY = 1.0
START_DELAY = 0.01


@dataclass
class QueuedJob:
    """One queued file; ``job_id`` is 16 upper-case hex digits."""

    filename: str
    user: str | None = None
    job_id: str = field(default_factory=lambda: secrets.token_hex(8).upper())
    time_added: float = field(default_factory=time.time)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "job_id": self.job_id,
            "time_added": self.time_added,
            "time_in_queue": now - self.time_added,
        }


class JobQueuePlugin:
    """Serves ``server.job_queue.*`` and loads the next job when a print completes."""

    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("job_queue")
        self.load_on_startup = section.getboolean("load_on_startup", False)
        self.automatic = section.getboolean("automatic_transition", False)
        self.delay = section.getfloat("job_transition_delay", 0.01, above=0.0)
        self.transition_gcode = section.get("job_transition_gcode", "").strip()
        self.state = "paused"
        self.pause_requested = False
        self.jobs: dict[str, QueuedJob] = {}
        self.lock = DeferredLock()
        self.pop_call: Any = None

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        post = ("POST",)
        for endpoint in (
            Endpoint(
                "server.job_queue.status",
                self.status,
                "/server/job_queue/status",
                description="The queued jobs and the queue state",
            ),
            Endpoint(
                "server.job_queue.post_job",
                self.post_job,
                "/server/job_queue/job",
                post,
                args=(
                    Arg("filenames", "list", required=True, items="str", description="Files in the gcodes root"),
                    Arg("reset", "bool", False, description="Empty the queue first"),
                ),
                description="Add jobs to the end of the queue",
            ),
            Endpoint(
                "server.job_queue.delete_job",
                self.delete_job,
                "/server/job_queue/job",
                ("DELETE",),
                args=(
                    Arg("job_ids", "list", items="str", description="Queued job ids (unknown ones are ignored)"),
                    Arg("all", "bool", False, description="Remove every job"),
                ),
                description="Remove jobs from the queue",
            ),
            Endpoint(
                "server.job_queue.pause",
                self.pause,
                "/server/job_queue/pause",
                post,
                description="Load no further job",
            ),
            Endpoint(
                "server.job_queue.start",
                self.start,
                "/server/job_queue/start",
                post,
                description="Load the next job now if the printer is idle, else after this print",
            ),
            Endpoint(
                "server.job_queue.jump",
                self.jump,
                "/server/job_queue/jump",
                post,
                args=(Arg("job_id", required=True, description="The queued job to move first"),),
                description="Move a job to the front of the queue",
            ),
        ):
            register(endpoint)

    # lifecycle and events ------------------------------------------------------------

    @hookimpl
    def register_remote_methods(self, register: Any) -> None:
        for name, method in (("pause_job_queue", self.pause_queue), ("start_job_queue", self.start_queue)):
            register(name, self._remote(name, method))

    @hookimpl
    def startup(self, server: Server) -> None:
        server.provide("queue_jobs", self.queue_jobs)

    @hookimpl
    def shutdown(self, server: Server) -> Deferred:
        return self.pause_queue()

    @hookimpl
    def klippy_state_changed(self, state: str) -> None:
        if state == "ready":
            self._observed(self._locked(self._klippy_ready), "Job queue start-up load")
        elif state == "shutdown":
            requested = self.pause_requested
            d = self.pause_queue().addCallback(lambda _: setattr(self, "pause_requested", requested))
            self._observed(d, "Job queue pause at Klippy shutdown")

    @hookimpl
    def job_state_changed(self, new: str) -> None:
        if new == "complete" and self.automatic:
            self._observed(self._locked(self._job_complete), "Job queue after a completed job")
        elif new in ("error", "cancelled"):
            self._observed(self._locked(self._job_aborted), "Job queue after an aborted job")

    async def _klippy_ready(self) -> None:
        if self.load_on_startup and self.jobs and self.state in ("ready", "paused"):
            self._set_state("loading")
            self._schedule(LOAD_ON_STARTUP_DELAY, transition=False)

    async def _job_complete(self) -> None:
        if self.state == "ready" and self.jobs:
            self._set_state("loading")
            self._schedule(self.delay)

    async def _job_aborted(self) -> None:
        if self.jobs:
            self._set_state("paused")

    # the queue -------------------------------------------------------------------------

    def _remote(self, name: str, method: Callable[[], Deferred]) -> Callable[..., None]:
        def call(**params: Any) -> None:
            method().addErrback(lambda f: self.log.failure("Remote method {name} failed", f, name=name))

        return call

    def _locked(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Deferred:
        return self.lock.run(lambda: Deferred.fromCoroutine(fn()))

    def _schedule(self, delay: float, transition: bool = True) -> None:
        self.pop_call = self.server.reactor.callLater(delay, self._pop, transition)

    def _pop(self, transition: bool) -> None:
        self.pop_call = None
        self._locked(lambda: self._load_next(transition)).addErrback(
            lambda f: self.log.failure("Job queue could not load the next job", f)
        )

    async def _load_next(self, transition: bool) -> None:
        if self.state == "paused":
            return
        if not self.jobs:
            self._set_state("paused")
            return
        uid, job = next(iter(self.jobs.items()))
        if not await self._can_print() or self.state != "loading":
            self._set_state("paused")
            return
        klippy = self.server.klippy
        try:
            if self.transition_gcode and transition:
                await klippy.gcode(self.transition_gcode)
                if self.state != "loading":
                    raise ServerError("Queue state changed during the transition G-code")
            self._set_state("starting")
            await self.server.lookup("start_print")(job.filename, job.user)
        except Exception as exc:
            self.log.error("Job queue could not start {filename}: {e}", filename=job.filename, e=exc)
            self._set_state("paused")
            return
        self.jobs.pop(uid, None)
        if self.state == "starting":
            self.state = "ready" if self.jobs and self.automatic else "paused"
        self._notify("job_loaded")

    async def _can_print(self) -> bool:
        klippy = self.server.klippy
        if klippy is None:
            return False
        try:
            reply = await klippy.query({"print_stats": ["state"]})
        except Exception:
            return False
        state = ((reply or {}).get("status") or {}).get("print_stats", {}).get("state")
        return state is not None and state not in ("printing", "paused")

    def pause_queue(self) -> Deferred:
        """Pause; fires once a load under way has stopped."""
        self._set_state("paused")
        if self.pop_call is not None and self.pop_call.active():
            self.pop_call.cancel()
        self.pop_call = None
        return self._locked(self._requested_pause)

    async def _requested_pause(self) -> None:
        self.pause_requested = True

    def start_queue(self) -> Deferred:
        """Load the next job now when the printer is idle; else wait (automatic) or pause."""

        async def start() -> None:
            self.pause_requested = False
            if self.state not in ("ready", "paused"):
                return
            if not self.jobs:
                self._set_state("paused")
            elif await self._can_print():
                self._set_state("loading")
                self._schedule(START_DELAY, transition=False)
            else:
                self._set_state("ready" if self.automatic else "paused")

        return self._locked(start)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._notify()

    def _notify(self, action: str = "state_changed") -> None:
        queue = None if action == "state_changed" else self._queue()
        self.server.notify(
            "notify_job_queue_changed",
            {"action": action, "updated_queue": queue, "queue_state": self.state},
        )

    def _queue(self) -> list[dict[str, Any]]:
        now = time.time()
        return [job.as_dict(now) for job in self.jobs.values()]

    def _result(self, _: Any = None) -> dict[str, Any]:
        return {"queued_jobs": self._queue(), "queue_state": self.state}

    # endpoints ---------------------------------------------------------------------------

    def status(self, request: APIRequest) -> dict[str, Any]:
        return self._result()

    def post_job(self, request: APIRequest) -> Deferred:
        filenames = [str(name) for name in request.args["filenames"]]
        if not filenames:
            raise ServerError("Invalid argument 'filenames': no file given", 400)
        files = self.server.lookup("file_manager")
        root = files.roots.find("gcodes") if files is not None else None
        for name in filenames:
            if not file_exists(root.path if root is not None else None, name):
                raise ServerError(f"G-Code File {name} does not exist", 400)
        user = (request.user or {}).get("username")
        return self.queue_jobs(filenames, user, reset=request.args["reset"]).addCallback(self._result)

    def queue_jobs(self, filenames: list[str], user: str | None = None, reset: bool = False) -> Deferred:
        """Add files (already checked to exist) to the end of the queue."""

        async def add() -> None:
            if reset:
                self.jobs.clear()
            for name in filenames:
                job = QueuedJob(name, user)
                self.jobs[job.job_id] = job
            self._notify("jobs_added")
            if self.automatic and not self.pause_requested and self.server.printing:
                self._set_state("ready")

        return self._locked(add)

    def delete_job(self, request: APIRequest) -> Deferred:
        job_ids = request.args["job_ids"]
        remove_all = request.args["all"]
        if not remove_all and job_ids is None:
            raise ServerError("Missing required argument 'job_ids' (or all=true)", 400)

        async def remove() -> None:
            if not self.jobs:
                return
            if remove_all:
                self.jobs.clear()
            elif job_ids:
                for uid in job_ids:
                    self.jobs.pop(str(uid), None)
            else:
                return
            self._notify("jobs_removed")

        return self._locked(remove).addCallback(self._result)

    def pause(self, request: APIRequest) -> Deferred:
        return self.pause_queue().addCallback(self._result)

    def start(self, request: APIRequest) -> Deferred:
        return self.start_queue().addCallback(self._result)

    def jump(self, request: APIRequest) -> Deferred:
        job_id = request.args["job_id"]

        async def jump() -> None:
            job = self.jobs.pop(job_id, None)
            if job is None:
                raise ServerError(f"Invalid job id: {job_id}", 400)
            self.jobs = {job_id: job, **self.jobs}

        return self._locked(jump).addCallback(self._result)

    def _observed(self, d: Deferred, what: str) -> Deferred:
        """``d`` with its failure logged (work started by an event, which nobody waits for)."""
        return d.addErrback(lambda f: self.log.failure("{what} failed", f, what=what))
