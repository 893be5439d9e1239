"""A D-Bus connection on the Twisted reactor: jeepney builds and parses the messages,
a Twisted protocol carries them over the bus's unix socket.

Method calls return Deferreds that fire with the reply body (or fail with
:class:`DBusError`); signals and incoming method calls go to registered callbacks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from jeepney import DBusAddress, HeaderFields, Message, MessageType, Parser
from jeepney.auth import BEGIN, AuthenticationError, Authenticator
from jeepney.bus import get_bus
from jeepney.bus_messages import MatchRule, message_bus
from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from moontwist.api.errors import ServerError

__all__ = ["DBusConnection", "DBusError", "connect"]

SignalHandler = Callable[[Message], None]


class DBusError(ServerError):
    """A D-Bus call failed (error reply, lost connection, timeout)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message, 503)
        self.name = name


class DBusConnection(Protocol):
    """One authenticated connection to a message bus."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.auth = Authenticator()
        self.authenticated: defer.Deferred[None] = defer.Deferred()
        self.parser = Parser()
        self.serials = itertools.count(1)
        self.pending: dict[int, defer.Deferred] = {}
        self.signal_handlers: list[tuple[MatchRule, SignalHandler]] = []
        self.method_handler: Callable[[Message], None] | None = None
        self.unique_name: str | None = None
        self.connected = False

    def connectionMade(self) -> None:  # noqa: N802 (Twisted naming)
        self.connected = True
        for chunk in self.auth:
            if chunk:
                self.transport.write(chunk)
            break

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.auth.authenticated:
            try:
                self.auth.feed(data)
            except AuthenticationError as exc:
                self.transport.loseConnection()
                if not self.authenticated.called:
                    self.authenticated.errback(DBusError(f"D-Bus authentication failed: {exc}"))
                return
            if self.auth.authenticated:
                self.transport.write(BEGIN)
                self.authenticated.callback(None)
            return
        for msg in self.parser.feed(data):
            self._dispatch(msg)

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802
        self.connected = False
        if not self.authenticated.called:
            self.authenticated.errback(DBusError("D-Bus connection closed during authentication"))
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(DBusError("D-Bus connection lost"))

    def _dispatch(self, msg: Message) -> None:
        kind = msg.header.message_type
        if kind in (MessageType.method_return, MessageType.error):
            d = self.pending.pop(msg.header.fields.get(HeaderFields.reply_serial, -1), None)
            if d is None:
                return
            if kind == MessageType.error:
                name = msg.header.fields.get(HeaderFields.error_name, "")
                text = msg.body[0] if msg.body and isinstance(msg.body[0], str) else name
                d.errback(DBusError(f"D-Bus error {name}: {text}", name))
            else:
                d.callback(msg.body)
        elif kind == MessageType.signal:
            for rule, handler in list(self.signal_handlers):
                if rule.matches(msg):
                    handler(msg)
        elif kind == MessageType.method_call and self.method_handler is not None:
            self.method_handler(msg)

    def send(self, msg: Message) -> int:
        serial = next(self.serials)
        self.transport.write(msg.serialise(serial))
        return serial

    def call(self, msg: Message, timeout: float = 30.0) -> defer.Deferred:
        """Send a method call; the Deferred fires with the reply's body tuple."""
        if not self.connected:
            return defer.fail(DBusError("D-Bus connection is closed"))
        serial = self.send(msg)
        d: defer.Deferred = defer.Deferred()
        self.pending[serial] = d

        def expire() -> None:
            late = self.pending.pop(serial, None)
            if late is not None:
                late.errback(DBusError(f"D-Bus call {msg.header.fields.get(HeaderFields.member)} timed out"))

        timer = self.reactor.callLater(timeout, expire)
        return d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])

    async def add_match(self, rule: MatchRule, handler: SignalHandler) -> Callable[[], None]:
        """Receive signals matching ``rule``; returns a function that stops it."""
        entry = (rule, handler)
        self.signal_handlers.append(entry)
        await self.call(message_bus.AddMatch(rule))

        def remove() -> None:
            if entry in self.signal_handlers:
                self.signal_handlers.remove(entry)
                if self.connected:
                    self.call(message_bus.RemoveMatch(rule)).addErrback(lambda f: None)

        return remove

    async def name_has_owner(self, name: str) -> bool:
        return bool((await self.call(message_bus.NameHasOwner(name)))[0])

    async def activatable(self) -> list[str]:
        return list((await self.call(message_bus.ListActivatableNames()))[0])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


async def connect(reactor: Any, bus: str = "SYSTEM", timeout: float = 5.0) -> DBusConnection:
    """Connect to ``bus`` (SYSTEM, SESSION or a D-Bus address), authenticate and say Hello."""
    try:
        path = get_bus(bus)
    except (KeyError, ValueError, StopIteration) as exc:
        raise DBusError(f"No D-Bus address for {bus}: {exc}") from None
    proto = DBusConnection(reactor)
    try:
        await connectProtocol(UNIXClientEndpoint(reactor, path, timeout=int(timeout) or 1), proto)
    except Exception as exc:
        raise DBusError(f"Unable to connect to the D-Bus {bus.lower()} bus at {path}: {exc}") from None
    await proto.authenticated
    proto.unique_name = (await proto.call(message_bus.Hello(), timeout))[0]
    return proto


def address(path: str, bus_name: str, interface: str) -> DBusAddress:
    return DBusAddress(path, bus_name=bus_name, interface=interface)
