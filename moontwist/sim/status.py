"""objects/query and objects/subscribe served on Klippy's 250 ms status tick."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

TICK = 0.25
_MISSING = object()


@dataclass
class Subscription:
    """One connection's subscribed objects (None = all fields) and push template."""

    objects: dict[str, list[str] | None]
    template: dict
    last: dict[str, dict] = field(default_factory=dict)
    answered: bool = False


class StatusHub:
    """Answers queries at the next tick and pushes changed fields to subscribers."""

    def __init__(self, reactor, clock, get_printer) -> None:
        self.reactor = reactor
        self.clock = clock
        self.get_printer = get_printer
        self.subscriptions: dict[object, Subscription] = {}
        self._pending: list[tuple[object | None, dict, Deferred]] = []
        self._call = None

    def query(self, objects: dict[str, list[str] | None]) -> Deferred:
        """Result of an ``objects/query``, delivered on the next tick."""
        d = Deferred()
        self._pending.append((None, objects, d))
        self._schedule()
        return d

    def subscribe(self, conn, objects: dict[str, list[str] | None], template: dict) -> Deferred:
        """Replace ``conn``'s subscription; the full status arrives on the next tick."""
        self.subscriptions[conn] = Subscription(objects, dict(template))
        d = Deferred()
        self._pending.append((conn, objects, d))
        self._schedule()
        return d

    def remove(self, conn) -> None:
        """Forget a closed connection."""
        self.subscriptions.pop(conn, None)
        self._pending = [p for p in self._pending if p[0] is not conn]

    def clear(self) -> None:
        """Forget everything (restart) and stop the timer."""
        self.subscriptions.clear()
        self._pending = []
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        if self._call is None:
            self._call = self.reactor.callLater(0, self._tick)

    def _tick(self) -> None:
        self._call = None
        printer = self.get_printer()
        eventtime = self.clock.eventtime()
        cache: dict[str, dict | None] = {}

        def status(name: str) -> dict | None:
            if name not in cache:
                cache[name] = printer.get_status(name)
            return cache[name]

        for conn, sub in list(self.subscriptions.items()):
            if sub.answered:
                self._push(conn, sub, status, eventtime)
        pending, self._pending = self._pending, []
        for conn, objects, d in pending:
            result = {}
            for name, fields in objects.items():
                current = status(name)
                if current is None:
                    result[name] = {}
                elif fields is None:
                    result[name] = dict(current)
                else:
                    result[name] = {f: current.get(f) for f in fields}
            if conn is not None:
                sub = self.subscriptions.get(conn)
                if sub is not None and sub.objects is objects:
                    sub.last = {name: dict(values) for name, values in result.items()}
                    sub.answered = True
            d.callback({"eventtime": eventtime, "status": result})
        if self.subscriptions or self._pending:
            self._call = self.reactor.callLater(TICK, self._tick)

    @staticmethod
    def _push(conn, sub: Subscription, status, eventtime: float) -> None:
        diff: dict[str, dict] = {}
        for name, fields in sub.objects.items():
            current = status(name)
            if current is None:
                continue
            last = sub.last.setdefault(name, {})
            names = current.keys() if fields is None else fields
            changed = {f: current[f] for f in names
                       if f in current and last.get(f, _MISSING) != current[f]}
            if changed:
                last.update(changed)
                diff[name] = changed
        if diff:
            conn.send({**sub.template, "params": {"eventtime": eventtime, "status": diff}})
