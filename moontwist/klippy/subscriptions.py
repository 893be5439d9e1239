"""One Klippy subscription for everybody: the union of what every client and plugin asked for.

Klippy answers ``objects/subscribe`` on its next status tick (up to 250 ms
later), so requests that arrive together are merged into one, and a request
whose fields the live subscription already covers is answered from the cache
at once. Each websocket client receives only the changed fields it asked for.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from moontwist import jsonutil
from moontwist.api.connection import Connection
from moontwist.api.errors import ServerError

if TYPE_CHECKING:
    from moontwist.klippy.connection import KlippyConnection

__all__ = ["SubscriptionManager", "Request", "normalize", "covers", "to_wire"]

log = Logger()

# object name -> the fields wanted, or None for every field
Request = dict[str, frozenset[str] | None]


def normalize(objects: Any) -> Request:
    """Validate a client's ``objects`` argument into a Request."""
    if objects is None:
        return {}
    if not isinstance(objects, dict):
        raise ServerError("Invalid argument 'objects': expected an object mapping names to field lists", 400)
    out: Request = {}
    for name, fields in objects.items():
        if fields is None:
            out[name] = None
        elif isinstance(fields, str):
            out[name] = frozenset(f.strip() for f in fields.split(",") if f.strip()) or None
        elif isinstance(fields, list) and all(isinstance(f, str) for f in fields):
            out[name] = frozenset(fields)
        else:
            raise ServerError(f"Invalid argument 'objects': fields of '{name}' must be a list of strings or null", 400)
    return out


def merge(requests: Iterable[Request]) -> Request:
    union: Request = {}
    for request in requests:
        for name, fields in request.items():
            if name in union:
                have = union[name]
                union[name] = None if have is None or fields is None else have | fields
            else:
                union[name] = fields
    return union


def covers(live: Request, wanted: Request) -> bool:
    for name, fields in wanted.items():
        if name not in live:
            return False
        have = live[name]
        if have is None:
            continue
        if fields is None or not fields <= have:
            return False
    return True


def to_wire(request: Request) -> dict[str, list[str] | None]:
    return {name: None if fields is None else sorted(fields) for name, fields in request.items()}


def pick(status: dict[str, dict[str, Any]], wanted: Request, *, fill: bool) -> dict[str, dict[str, Any]]:
    """The part of ``status`` that ``wanted`` asks for (``fill`` adds missing fields as null)."""
    out: dict[str, dict[str, Any]] = {}
    for name, fields in wanted.items():
        values = status.get(name)
        if values is None:
            if fill:
                out[name] = {} if fields is None else dict.fromkeys(fields)
            continue
        if fields is None:
            out[name] = dict(values)
        elif fill:
            out[name] = {f: values.get(f) for f in fields}
        else:
            part = {f: values[f] for f in fields if f in values}
            if part:
                out[name] = part
    return out


def _changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fields present in both snapshots whose values differ."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in new.items():
        before = old.get(name)
        if before:
            diff = {k: v for k, v in values.items() if k in before and before[k] != v}
            if diff:
                out[name] = diff
    return out


class SubscriptionManager:
    """Owners (connections and plugins) → one merged Klippy subscription and a status cache."""

    def __init__(self, klippy: KlippyConnection) -> None:
        self.klippy = klippy
        self.owners: dict[Hashable, Request] = {}
        self.live: Request = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.eventtime = 0.0
        self._waiting: list[Deferred] | None = None
        self._in_flight = False
        self._groups: dict[tuple, list[Connection]] | None = None

    # owners ------------------------------------------------------------------------

    def union(self) -> Request:
        return merge(self.owners.values())

    def subscribe(self, owner: Hashable, objects: Request) -> Deferred:
        """Set ``owner``'s subscription; fires with ``{"eventtime", "status"}`` for what it asked."""
        if objects:
            self.owners[owner] = objects
        else:
            self.owners.pop(owner, None)
        self._groups = None
        if not self.klippy.initialized:
            return succeed({"eventtime": self.eventtime, "status": pick(self.status, objects, fill=True)})
        if covers(self.live, objects):
            self._maybe_shrink()
            return succeed({"eventtime": self.eventtime, "status": pick(self.status, objects, fill=True)})
        return self._request_update().addCallback(
            lambda _: {"eventtime": self.eventtime, "status": pick(self.status, objects, fill=True)}
        )

    def drop(self, owner: Hashable) -> None:
        """Forget an owner (a closed connection); the Klippy subscription shrinks."""
        if self.owners.pop(owner, None) is not None:
            self._groups = None
            self._maybe_shrink()

    def _maybe_shrink(self) -> None:
        if self.klippy.initialized and self.union() != self.live and not self._in_flight and self._waiting is None:
            d = self._request_update()
            d.addErrback(lambda f: log.info("Shrinking the subscription failed: {e}", e=f.getErrorMessage()))

    # the Klippy request ----------------------------------------------------------------

    def _request_update(self) -> Deferred:
        """Wait for the next merged ``objects/subscribe`` (one is sent per round)."""
        waiter: Deferred = Deferred()
        if self._waiting is None:
            self._waiting = []
            if not self._in_flight:
                self.klippy.reactor.callLater(0, self._send)
        self._waiting.append(waiter)
        return waiter

    def _send(self) -> None:
        waiters, self._waiting = self._waiting, None
        if not waiters:
            return
        target = self.union()
        self._in_flight = True
        d = self.klippy.request(
            "objects/subscribe",
            {"objects": to_wire(target), "response_template": {"method": "process_status_update"}},
            timeout=30.0,
        )

        def done(result: dict[str, Any]) -> None:
            old = self.status
            self.live = target
            self.status = {name: dict(values) for name, values in result.get("status", {}).items()}
            self.eventtime = result.get("eventtime", self.eventtime)
            # Changes that happened since the last push arrive inside this reply.
            changes = _changes(old, self.status)
            if changes:
                self.klippy.status_changed(changes, self.eventtime)
            self._finish(waiters, None)

        d.addCallbacks(done, lambda failure: self._finish(waiters, failure))

    def _finish(self, waiters: list[Deferred], failure: Any) -> None:
        self._in_flight = False
        for waiter in waiters:
            if failure is None:
                waiter.callback(None)
            else:
                waiter.errback(failure)
        if self._waiting is not None:
            self._send()
        elif failure is None:
            self._maybe_shrink()  # owners that left while this request was in flight

    def restore(self) -> Deferred:
        """After (re)connecting: subscribe the union of every owner again."""
        self.live = {}
        return self._request_update()

    def disconnected(self) -> None:
        self.live = {}
        self._in_flight = False
        waiters, self._waiting = self._waiting or [], None
        for waiter in waiters:
            waiter.errback(ServerError("Klippy Disconnected", 503))

    # pushes ------------------------------------------------------------------------

    def push(self, changed: dict[str, dict[str, Any]], eventtime: float) -> None:
        """Merge a status push into the cache and send each client what it asked for."""
        self.eventtime = eventtime
        status = self.status
        for name, values in changed.items():
            cached = status.get(name)
            if cached is None:
                status[name] = dict(values)
            else:
                cached.update(values)
        for wanted, conns in self._client_groups().items():
            part = pick(changed, dict(wanted), fill=False)
            if not part:
                continue
            data = jsonutil.dumpb({"jsonrpc": "2.0", "method": "notify_status_update", "params": [part, eventtime]})
            for conn in conns:
                conn.send_bytes(data)

    def _client_groups(self) -> dict[tuple, list[Connection]]:
        """Connections grouped by identical subscriptions, so each update is encoded once per group."""
        if self._groups is None:
            groups: dict[tuple, list[Connection]] = {}
            for owner, request in self.owners.items():
                if isinstance(owner, Connection):
                    groups.setdefault(tuple(sorted(request.items(), key=lambda i: i[0])), []).append(owner)
            self._groups = groups
        return self._groups
