"""Persistent client connections (websocket, unix socket) and their bounded send queue."""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from moontwist import jsonutil
from moontwist.api.errors import ServerError

__all__ = ["Connection", "ConnectionTable", "SendQueue"]


@implementer(IPushProducer)
class SendQueue:
    """Writes messages while the transport keeps up; queues a bounded amount when it doesn't.

    Registered as the transport's streaming producer, so Twisted tells it when
    the kernel buffer is full. A client whose backlog passes ``max_bytes`` is
    reported through ``on_overflow`` instead of being buffered without limit.
    """

    def __init__(self, write: Callable[[bytes], None], on_overflow: Callable[[], None], max_bytes: int) -> None:
        self._write = write
        self._on_overflow = on_overflow
        self._max_bytes = max_bytes
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self.paused = False
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.paused and not self._pending:
            self._write(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self._max_bytes:
            self.closed = True
            self._pending.clear()
            self._on_overflow()

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted interface
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        while self._pending and not self.paused and not self.closed:
            data = self._pending.popleft()
            self._pending_bytes -= len(data)
            self._write(data)

    def stopProducing(self) -> None:  # noqa: N802
        self.closed = True
        self._pending.clear()


class Connection:
    """State shared by every persistent JSON-RPC connection."""

    transport_name = "websocket"
    _user: dict[str, Any] | None = None
    # Set by authorization while the connection has no user: it gets no broadcasts (as Moonraker).
    need_auth = False

    @property
    def user(self) -> dict[str, Any] | None:
        """Who this connection authenticated as (None: nobody)."""
        return self._user

    @user.setter
    def user(self, value: dict[str, Any] | None) -> None:
        self._user = value
        if value is not None:
            self.need_auth = False
        self.user_changed()

    def user_changed(self) -> None:
        """The connection logged in, out, or lost its credentials (subclasses adjust their limits)."""

    def init_connection(self, ip: str | None, ids: Iterator[int]) -> None:
        """Set up a new connection; ``ids`` numbers it and its requests to the client (its server's)."""
        self._ids = ids
        self.connection_id = next(ids)
        self.ip = ip
        self.identified = False
        self.client_name: str | None = None
        self.client_version: str | None = None
        self.client_type: str | None = None
        self.client_url: str | None = None
        self.user: dict[str, Any] | None = None
        self.subscriptions: dict[str, Any] = {}
        # Requests this server sent to the client (agents), by JSON-RPC id.
        self.outgoing: dict[int, Deferred] = {}

    def call_method(self, method: str, params: Any = None) -> Deferred:
        """Send a JSON-RPC request to the client; fires with its result.

        Fails with a ``ServerError`` when the client answers with an error or
        goes away first (``fail_outgoing``).
        """
        req_id = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params:
            msg["params"] = params
        d: Deferred = Deferred(lambda _: self.outgoing.pop(req_id, None))
        self.outgoing[req_id] = d
        self.send_bytes(jsonutil.dumpb(msg))
        return d

    def resolve_response(self, message: dict[str, Any]) -> bool:
        """Deliver the client's answer to ``call_method``; False when nothing waits for it."""
        d = self.outgoing.pop(message.get("id"), None) if isinstance(message.get("id"), int) else None
        if d is None:
            return False
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            text = error.get("message", message["error"])
            d.errback(ServerError(f"{self.client_name or 'Client'} answered with an error: {text}", 424))
        else:
            d.callback(message.get("result"))
        return True

    def fail_outgoing(self, reason: str) -> None:
        """Fail every request still waiting for this client's answer."""
        pending, self.outgoing = self.outgoing, {}
        for d in pending.values():
            d.errback(ServerError(reason, 503))

    def send_bytes(self, data: bytes) -> None:
        """Send one encoded JSON-RPC message (subclasses frame it)."""
        raise NotImplementedError

    def close_connection(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "client_name": self.client_name,
            "version": self.client_version,
            "type": self.client_type,
            "url": self.client_url,
            "transport": self.transport_name,
        }


class ConnectionTable:
    """Every open persistent connection, for broadcasts and lookups by id."""

    def __init__(self, on_open: Callable[[Connection], None], on_close: Callable[[Connection], None]) -> None:
        self._conns: dict[int, Connection] = {}
        self._on_open = on_open
        self._on_close = on_close
        self._agents: dict[str, int] = {}
        # Connection ids (and ids of requests sent to clients): this server's own sequence.
        self.ids = itertools.count(random.randint(1 << 20, 1 << 30))

    def add(self, conn: Connection) -> None:
        self._conns[conn.connection_id] = conn
        self._on_open(conn)

    def remove(self, conn: Connection) -> None:
        if self._conns.pop(conn.connection_id, None) is None:
            return
        if conn.client_type == "agent" and self._agents.get(conn.client_name or "") == conn.connection_id:
            del self._agents[conn.client_name or ""]
        conn.fail_outgoing(f"{conn.client_name or 'Client'} disconnected before answering")
        self._on_close(conn)

    def get(self, connection_id: int) -> Connection | None:
        return self._conns.get(connection_id)

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self):
        return iter(list(self._conns.values()))

    def agent(self, name: str) -> Connection | None:
        """The connected agent identified as ``name``."""
        conn_id = self._agents.get(name)
        return self._conns.get(conn_id) if conn_id is not None else None

    def count(self, transport: str) -> int:
        return sum(1 for c in self._conns.values() if c.transport_name == transport)

    def identify(self, conn: Connection, name: str, version: str, client_type: str, url: str) -> None:
        if conn.identified:
            raise ServerError(f"Connection {conn.connection_id} is already identified", 400)
        if client_type == "agent":
            owner = self._agents.get(name)
            if owner is not None and owner != conn.connection_id and owner in self._conns:
                raise ServerError(f"Agent '{name}' is already connected", 400)
            self._agents[name] = conn.connection_id
        conn.identified = True
        conn.client_name, conn.client_version = name, version
        conn.client_type, conn.client_url = client_type, url

    def broadcast(
        self, data: bytes, exclude: Connection | None = None, only: Callable[[Connection], bool] | None = None
    ) -> None:
        """Send ``data`` to every connection that may read notifications (not ``exclude``; those ``only`` accepts)."""
        for conn in list(self._conns.values()):
            if not conn.need_auth and conn is not exclude and (only is None or only(conn)):
                conn.send_bytes(data)

    def close_all(self, code: int = 1001, reason: str = "Server restarting") -> None:
        for conn in list(self._conns.values()):
            conn.close_connection(code, reason)
