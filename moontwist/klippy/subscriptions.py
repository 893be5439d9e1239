"""One Klippy subscription for everybody: the union of what every client and plugin asked for.

Klippy answers ``objects/subscribe`` and ``objects/query`` on its next status
tick (up to 250 ms later), so subscribe requests that arrive together are
merged into one, and a request whose fields the live subscription already
covers is answered from the cache at once. Each websocket client receives only
the changed fields it asked for.

``printer.objects.query`` keeps what it was asked for subscribed: the first
query of an object goes to Klippy and the object joins the subscription (as
the owner ``QUERY_OWNER``), so later queries are answered from the cache,
current to Klippy's latest tick. An object leaves when nobody has asked for it
for ``query_ttl`` seconds, and at most ``query_max`` objects are kept (the one
asked for least recently leaves first). Only objects Klippy lists join.

The cache is never older than Klippy's last status update: an object counts as
cached only once the reply to the subscribe that added it has arrived (a query
in between waits for that reply), after a reconnect only once it has been
subscribed again, and right after a command moontwist sent to Klippy (G-code,
pause, ...) until the next status update shows its effect: until then queries
go to Klippy, so a client reads what it just changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

from moontwist import jsonutil
from moontwist.api.connection import Connection
from moontwist.api.errors import ServerError

if TYPE_CHECKING:
    from moontwist.klippy.connection import KlippyConnection

__all__ = ["SubscriptionManager", "Request", "QUERY_OWNER", "normalize", "covers", "to_wire"]

QUERY_OWNER = "printer.objects.query"
# After a command's reply, how long until a status update would have shown its effect:
# Klippy pushes changes on every 250 ms tick.
SETTLE_TIME = 0.5

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
    """Owners (connections, plugins, queries) → one merged Klippy subscription and a status cache."""

    query_ttl = 300.0  # seconds an object stays subscribed after the last query for it
    query_max = 64  # objects kept subscribed for queries

    def __init__(self, klippy: KlippyConnection) -> None:
        self.klippy = klippy
        self.log = klippy.log
        self.owners: dict[Hashable, Request] = {}
        self.live: Request = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.eventtime = 0.0
        self._waiting: list[Deferred] | None = None
        self._flight: tuple[Request, list[Deferred]] | None = None
        self._groups: dict[tuple, list[Connection]] | None = None
        self._queried: OrderedDict[str, float] = OrderedDict()  # object -> last asked, least recent first
        self._expiry: Any = None
        self._settled_at = 0.0  # before this time (reactor seconds) a command's effect may not be cached yet

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
            self._sync()
            return succeed({"eventtime": self.eventtime, "status": pick(self.status, objects, fill=True)})
        return self._request_update().addCallback(
            lambda _: {"eventtime": self.eventtime, "status": pick(self.status, objects, fill=True)}
        )

    def drop(self, owner: Hashable) -> None:
        """Forget an owner (a closed connection); the Klippy subscription shrinks."""
        if self.owners.pop(owner, None) is not None:
            self._groups = None
            self._sync()

    def _sync(self) -> None:
        """Bring the Klippy subscription in line with the owners, unless a request is on its way."""
        if self.klippy.initialized and self.union() != self.live and self._flight is None and self._waiting is None:
            d = self._request_update()
            d.addErrback(lambda f: self.log.info("Updating the subscription failed: {e}", e=f.getErrorMessage()))

    # queries ------------------------------------------------------------------------

    def query(self, wanted: Request) -> Any:
        """``printer.objects.query``: ``{"eventtime", "status"}`` from the cache, or Klippy's answer (a Deferred)."""
        klippy = self.klippy
        if not klippy.initialized:
            return klippy.query(to_wire(wanted))  # fails at once while Klippy is away
        if covers(self.live, wanted) and self._settled():
            self._remember(wanted)
            return {"eventtime": self.eventtime, "status": pick(self.status, wanted, fill=True)}
        pending = self._round_covering(wanted)
        self._remember(wanted)
        if pending is None or not self._settled():
            return klippy.query(to_wire(wanted))

        def answer(_: Any) -> Any:
            if klippy.initialized and covers(self.live, wanted) and self._settled():
                return {"eventtime": self.eventtime, "status": pick(self.status, wanted, fill=True)}
            return klippy.query(to_wire(wanted))

        return pending.addCallbacks(answer, lambda _: klippy.query(to_wire(wanted)))

    def commanded(self) -> None:
        """Klippy answered a command that may change printer objects; its effect shows on the next tick."""
        self._settled_at = self.klippy.reactor.seconds() + SETTLE_TIME

    def _settled(self) -> bool:
        return not self._settled_at or self.klippy.reactor.seconds() >= self._settled_at

    def _round_covering(self, wanted: Request) -> Deferred | None:
        """A waiter for the subscribe request that will make ``wanted`` live, if one is on its way."""
        if self._flight is not None and covers(self._flight[0], wanted):
            waiter: Deferred = Deferred()
            self._flight[1].append(waiter)
            return waiter
        if self._waiting is not None and covers(self.union(), wanted):
            return self._request_update()
        return None

    def _remember(self, wanted: Request) -> None:
        """Keep the queried objects (that Klippy has) subscribed; the least recently asked leave first."""
        now = self.klippy.reactor.seconds()
        queried = self._queried
        mine = self.owners.setdefault(QUERY_OWNER, {})
        changed = False
        for name, fields in wanted.items():
            if name in queried:
                queried[name] = now
                queried.move_to_end(name)
                have = mine[name]
                if have is None or (fields is not None and fields <= have):
                    continue
                mine[name] = None if fields is None else have | fields
            elif name in self.klippy.objects:
                queried[name] = now
                mine[name] = fields
            else:
                continue  # unknown to Klippy: its answer is {} and it never changes
            changed = True
        while len(queried) > self.query_max:
            name, _ = queried.popitem(last=False)
            del mine[name]
            changed = True
        if changed:
            self._sync()
        if self._expiry is None and queried:
            self._expiry = self.klippy.reactor.callLater(self.query_ttl, self._expire)

    def _expire(self) -> None:
        """Drop the objects nobody has queried for ``query_ttl`` seconds."""
        self._expiry = None
        now = self.klippy.reactor.seconds()
        queried = self._queried
        mine = self.owners.setdefault(QUERY_OWNER, {})
        changed = False
        while queried:
            name, last = next(iter(queried.items()))
            if now - last < self.query_ttl:
                self._expiry = self.klippy.reactor.callLater(last + self.query_ttl - now, self._expire)
                break
            del queried[name]
            mine.pop(name, None)
            changed = True
        if changed:
            self._sync()

    def _forget_unknown(self) -> None:
        """After a (re)connect: objects Klippy no longer lists leave the query cache."""
        known = set(self.klippy.objects)
        mine = self.owners.setdefault(QUERY_OWNER, {})
        for name in [n for n in self._queried if n not in known]:
            del self._queried[name]
            mine.pop(name, None)

    def stop(self) -> None:
        """The connection is shutting down: no more timers."""
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    # the Klippy request ----------------------------------------------------------------

    def _request_update(self) -> Deferred:
        """Wait for the next merged ``objects/subscribe`` (one is sent per round)."""
        waiter: Deferred = Deferred()
        if self._waiting is None:
            self._waiting = []
            if self._flight is None:
                self.klippy.reactor.callLater(0, self._send)
        self._waiting.append(waiter)
        return waiter

    def _send(self) -> None:
        waiters, self._waiting = self._waiting, None
        if not waiters:
            return
        target = self.union()
        flight = self._flight = (target, waiters)
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
            self._settled_at = 0.0  # the reply shows the state as of this tick
            # Changes that happened since the last push arrive inside this reply.
            changes = _changes(old, self.status)
            if changes:
                self.klippy.status_changed(changes, self.eventtime)
            self._finish(flight, None)

        d.addCallbacks(done, lambda failure: self._finish(flight, failure))

    def _finish(self, flight: tuple[Request, list[Deferred]], failure: Any) -> None:
        if self._flight is flight:
            self._flight = None
        for waiter in flight[1]:
            if failure is None:
                waiter.callback(None)
            else:
                waiter.errback(failure)
        if self._flight is not None:
            return
        if self._waiting is not None:
            self._send()
        elif failure is None:
            self._sync()  # owners that left while this request was in flight

    def restore(self) -> Deferred:
        """After (re)connecting: subscribe the union of every owner again."""
        self.live = {}
        self._forget_unknown()
        return self._request_update()

    def disconnected(self) -> None:
        self.live = {}
        self._flight = None  # its request fails with the connection, which tells its waiters
        waiters, self._waiting = self._waiting or [], None
        for waiter in waiters:
            waiter.errback(ServerError("Klippy Disconnected", 503))

    # pushes ------------------------------------------------------------------------

    def push(self, changed: dict[str, dict[str, Any]], eventtime: float) -> None:
        """Merge a status push into the cache and send each client what it asked for."""
        self.eventtime = eventtime
        self._settled_at = 0.0
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
                if not conn.need_auth:
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
