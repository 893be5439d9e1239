"""The reconnecting connection to Klippy and its state: disconnected, startup, ready, shutdown, error."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.protocol import ClientCreator
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from moontwist import __version__
from moontwist.api.errors import ServerError
from moontwist.klippy.jobstate import job_transitions
from moontwist.klippy.protocol import KlippyProtocol
from moontwist.klippy.subscriptions import SubscriptionManager, normalize

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["KlippyConnection", "KLIPPY_OWNER"]

KLIPPY_OWNER = "klippy"
RETRY_FIRST = 0.25
RETRY_MAX = 2.0
INFO_TIMEOUT = 5.0
POLL_INTERVAL = 0.5
REQUEST_TIMEOUT = 60.0
DEFAULT = object()
# Requests that change no printer object; after any other, the status cache waits for the next update.
READ_ONLY = frozenset({
    "info", "list_endpoints", "objects/list", "objects/query", "objects/subscribe", "gcode/help",
    "gcode/subscribe_output", "register_remote_method", "query_endstops/status",
})


class KlippyConnection:
    """Talks to Klippy's API socket; requests return Deferreds, pushes become events."""

    def __init__(self, server: Server, socket_path: str, reactor: Any = None) -> None:
        self.server = server
        self.socket_path = socket_path
        self.reactor = reactor or server.reactor
        self.log = server.logger(__name__)
        self.state = "disconnected"
        self.state_message = "Klippy Disconnected"
        self.info: dict[str, Any] = {}
        self.objects: list[str] = []
        self.configfile: dict[str, Any] = {}
        self.initialized = False
        self.subscriptions = SubscriptionManager(self)
        self.subscriptions.owners[KLIPPY_OWNER] = normalize({"webhooks": None, "print_stats": None})
        self._proto: KlippyProtocol | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Deferred, str, Any]] = {}
        self._retry_delay = RETRY_FIRST
        self._retry_call: Any = None
        self._running = False
        self._print_state: str | None = None
        self._print_expected = False  # moontwist started a print no update has shown yet
        self.request_timeout = REQUEST_TIMEOUT

    # public state ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._proto is not None

    @property
    def status(self) -> dict[str, dict[str, Any]]:
        """The latest values of every subscribed printer object."""
        return self.subscriptions.status

    def add_subscription(self, owner: str, objects: dict[str, list[str] | None]) -> Deferred:
        """A plugin's own status needs, merged into the one Klippy subscription."""
        return self.subscriptions.subscribe(owner, normalize(objects))

    def register_remote_method(self, name: str, callback: Callable[..., Any]) -> None:
        """Add a remote method at run time (at start-up, use the ``register_remote_methods`` hook)."""
        self.server.remote_methods[name] = callback
        if self.initialized:
            self._register_remote(name).addErrback(lambda f: None)

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self) -> None:
        self._running = False
        self.subscriptions.stop()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.loseConnection()

    def _connect(self) -> None:
        self._retry_call = None
        if not self._running:
            return
        creator = ClientCreator(self.reactor, KlippyProtocol, self._on_message, self._on_lost, self.log)
        creator.connectUNIX(self.socket_path, timeout=2).addCallbacks(self._on_connected, self._on_connect_failed)

    def _on_connect_failed(self, failure: Failure) -> None:
        if not self._running:
            return
        self._retry_call = self.reactor.callLater(self._retry_delay, self._connect)
        self._retry_delay = min(self._retry_delay * 1.5, RETRY_MAX)

    def _on_connected(self, proto: KlippyProtocol) -> None:
        if not self._running:
            proto.transport.loseConnection()
            return
        self._proto = proto
        self._retry_delay = RETRY_FIRST
        self.log.info("Connected to Klippy at {path}", path=self.socket_path)
        self._handshake(proto).addErrback(self._handshake_failed, proto)

    def _handshake_failed(self, failure: Failure, proto: KlippyProtocol) -> None:
        if proto is not self._proto:
            return
        self.log.warn("Klippy start-up handshake failed: {error}; reconnecting", error=failure.getErrorMessage())
        if proto.transport is not None:
            proto.transport.abortConnection()

    @inlineCallbacks
    def _handshake(self, proto: KlippyProtocol) -> Any:
        """As Moonraker does: ``info`` until Klippy is ready, then output, objects, config, subscriptions."""
        while True:
            info = yield self.request(
                "info", {"client_info": {"program": "moontwist", "version": __version__}}, timeout=INFO_TIMEOUT
            )
            if proto is not self._proto:
                return
            self.info = info
            state = info.get("state", "error")
            if state != "startup":  # error and shutdown still have objects and output to follow
                break
            self._set_state(state, info.get("state_message", ""))
            yield deferLater(self.reactor, POLL_INTERVAL, lambda: None)
            if proto is not self._proto:
                return
        yield self.request("gcode/subscribe_output", {"response_template": {"method": "process_gcode_response"}})
        listed = yield self.request("objects/list", {})
        self.objects = listed.get("objects", [])
        config = yield self.request("objects/query", {"objects": {"configfile": ["config", "settings"]}})
        self.configfile = config.get("status", {}).get("configfile", {})
        if state == "ready":
            for name in list(self.server.remote_methods):
                yield self._register_remote(name)
        self.initialized = True
        yield self.subscriptions.restore()
        if proto is not self._proto:
            return
        webhooks = self.status.get("webhooks", {})
        self._print_state = self.status.get("print_stats", {}).get("state")
        self._set_state(webhooks.get("state", state), webhooks.get("state_message", info.get("state_message", "")))

    def _register_remote(self, name: str) -> Deferred:
        return self.request("register_remote_method", {"response_template": {"method": name}, "remote_method": name})

    # requests --------------------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float | None | object = DEFAULT) -> Deferred:
        """Send a request; fails at once with 503 when Klippy isn't connected.

        ``timeout`` defaults to ``request_timeout``; None waits for ever (long G-code).
        """
        if timeout is DEFAULT:
            timeout = self.request_timeout
        proto = self._proto
        if proto is None:
            return fail(ServerError("Klippy Disconnected", 503))
        if method == "gcode/script" and params and str(params.get("script", "")).strip():
            self.server.emit("gcode_command", script=params["script"])
        req_id = next(self._ids)
        d: Deferred = Deferred()
        timer = self.reactor.callLater(timeout, self._timed_out, req_id) if timeout else None
        self._pending[req_id] = (d, method, timer)
        proto.send({"id": req_id, "method": method, "params": params or {}})
        return d

    def gcode(self, script: str, timeout: float | None = None) -> Deferred:
        """Run a G-code script; fires when Klippy has finished it."""
        return self.request("gcode/script", {"script": script}, timeout=timeout)

    def query(self, objects: dict[str, list[str] | None]) -> Deferred:
        """``objects/query``: fires with ``{"eventtime", "status"}``."""
        return self.request("objects/query", {"objects": objects})

    def _timed_out(self, req_id: int) -> None:
        entry = self._pending.pop(req_id, None)
        if entry is not None:
            entry[0].errback(ServerError(f"Klippy request '{entry[1]}' timed out", 504))

    def _resolve(self, msg: dict[str, Any]) -> None:
        entry = self._pending.pop(msg.get("id"), None) if isinstance(msg.get("id"), int) else None
        if entry is None:
            return
        d, method, timer = entry
        if timer is not None and timer.active():
            timer.cancel()
        if method not in READ_ONLY:
            self.subscriptions.commanded()
        if "error" in msg:
            error = msg["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            d.errback(ServerError(message, 400))
        else:
            d.callback(msg.get("result"))

    # incoming -----------------------------------------------------------------------------

    def _on_message(self, msg: dict[str, Any]) -> None:
        if "id" in msg and ("result" in msg or "error" in msg):
            self._resolve(msg)
            return
        method = msg.get("method")
        params = msg.get("params")
        if method == "process_status_update" and isinstance(params, dict):
            self.status_changed(params.get("status") or {}, params.get("eventtime", 0.0))
        elif method == "process_gcode_response" and isinstance(params, dict):
            response = params.get("response", "")
            self.server.notify("notify_gcode_response", response)
            self.server.emit("gcode_response", response=response)
        elif method in self.server.remote_methods:
            self._call_remote(method, params if isinstance(params, dict) else {})
        else:
            self.log.debug("Unhandled Klippy message {method}", method=method)

    def _call_remote(self, method: str, params: dict[str, Any]) -> None:
        def failed(failure: Failure) -> None:
            self.log.failure("Remote method {method} failed", failure, method=method)

        maybeDeferred(self.server.remote_methods[method], **params).addErrback(failed)

    def status_changed(self, changed: dict[str, dict[str, Any]], eventtime: float) -> None:
        """Printer objects changed: update the cache, tell subscribers, track states."""
        stats = changed.get("print_stats")
        prev = dict(self.status.get("print_stats") or {}) if stats else None
        self.subscriptions.push(changed, eventtime)
        webhooks = changed.get("webhooks")
        if webhooks and "state" in webhooks and webhooks["state"] != self.state:
            self._set_state(webhooks["state"], self.status.get("webhooks", {}).get("state_message", ""))
        if stats:
            prev["state"] = self._print_state or "standby"
            self._emit_job_states(job_transitions(prev, stats, self._print_expected))
        self.server.emit("status_update", status=changed, eventtime=eventtime)

    def _emit_job_states(self, steps: list[tuple[str, str]]) -> None:
        for old, new in steps:
            if new == "printing":
                self._print_expected = False
            self._print_state = new
            self.server.emit("job_state_changed", old=old, new=new, status=self.status)

    # prints moontwist starts -------------------------------------------------------------

    def expect_print(self) -> None:
        """moontwist is about to start a print: the next change of a finished print_stats is it."""
        self._print_expected = True

    def print_not_started(self) -> None:
        """The print start failed; nothing is expected any more."""
        self._print_expected = False

    def confirm_print(self) -> Deferred:
        """After a print start succeeded: report a print no status update has shown.

        A print that finished at once with the same durations as the one before
        leaves print_stats unchanged, so nothing is pushed; Klippy's answer to a
        query (sent after that tick's pushes) tells whether it ran.
        """
        if not self._print_expected:
            return succeed(None)

        def check(result: dict[str, Any]) -> None:
            if not self._print_expected:
                return
            self._print_expected = False
            state = ((result or {}).get("status", {}).get("print_stats") or {}).get("state")
            if state in ("complete", "cancelled", "error") and state == self._print_state:
                self._emit_job_states([(state, "printing"), ("printing", state)])

        def failed(failure: Failure) -> None:
            self._print_expected = False
            self.log.info("Could not confirm the print start: {e}", e=failure.getErrorMessage())

        d = self.query({"print_stats": None}).addCallbacks(check, failed)
        return d.addErrback(lambda f: self.log.failure("Recording a print start failed", f))

    def _on_lost(self, proto: KlippyProtocol, reason: Failure) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self.initialized = False
        self._print_expected = False
        pending, self._pending = self._pending, {}
        for d, _method, timer in pending.values():
            if timer is not None and timer.active():
                timer.cancel()
            d.errback(ServerError("Klippy Disconnected", 503))
        self.subscriptions.disconnected()
        self.log.info("Klippy connection closed")
        self._set_state("disconnected", "Klippy Disconnected")
        if self._running:
            self._retry_call = self.reactor.callLater(RETRY_FIRST, self._connect)

    # state ------------------------------------------------------------------------------

    def _set_state(self, state: str, message: str) -> None:
        old = self.state
        self.state, self.state_message = state, message
        if state == old:
            return
        self.log.info("Klippy state: {old} -> {new}", old=old, new=state)
        self.server.emit("klippy_state_changed", state=state, message=message)
        if state == "ready":
            self.server.notify("notify_klippy_ready")
        elif state == "shutdown":
            self.server.notify("notify_klippy_shutdown")
        elif state == "disconnected":
            self.server.notify("notify_klippy_disconnected")
