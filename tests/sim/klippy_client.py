"""A minimal Klippy API client for the simulator tests (real Unix sockets)."""

from __future__ import annotations

import json

from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol


class KlippyClient(Protocol):
    """Collects every message; lets tests await replies and pushes."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.raw: list[bytes] = []
        self.closed = defer.Deferred()
        self._buffer = b""
        self._waiters: list[tuple[object, defer.Deferred]] = []
        self._next_id = 1000

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\x03" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\x03", 1)
            self.raw.append(raw)
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            self.messages.append(msg)
            for item in list(self._waiters):
                pred, d = item
                if pred(msg):
                    self._waiters.remove(item)
                    d.callback(msg)

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)
        for _, d in self._waiters:
            d.errback(ConnectionError("connection closed"))
        self._waiters = []

    def write_raw(self, data: bytes) -> None:
        self.transport.write(data)

    def send(self, msg: object) -> None:
        self.transport.write(json.dumps(msg).encode() + b"\x03")

    def wait_for(self, pred, timeout: float = 5.0, since: int = 0) -> defer.Deferred:
        """A message (already received after index ``since``, or future) matching ``pred``."""
        for msg in self.messages[since:]:
            if pred(msg):
                return defer.succeed(msg)
        d = defer.Deferred()
        self._waiters.append((pred, d))
        d.addTimeout(timeout, reactor)
        return d

    def request(self, method: str, params: dict | None = None, timeout: float = 5.0,
                req_id: object = None) -> defer.Deferred:
        """Send a request and wait for the reply with the same id."""
        if req_id is None:
            self._next_id += 1
            req_id = self._next_id
        msg = {"id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        start = len(self.messages)
        self.send(msg)
        return self.wait_for(lambda m: "id" in m and m["id"] == req_id and
                             ("result" in m or "error" in m), timeout, since=start)

    async def result(self, method: str, params: dict | None = None, timeout: float = 5.0):
        """The ``result`` of a request (fails the test on an error reply)."""
        reply = await self.request(method, params, timeout)
        assert "result" in reply, reply
        return reply["result"]

    async def script(self, script: str, timeout: float = 5.0) -> dict:
        """Run G-code and return the whole reply."""
        return await self.request("gcode/script", {"script": script}, timeout)

    def outputs(self) -> list[str]:
        """Every gcode output line received so far."""
        return [m["params"]["response"] for m in self.messages
                if "id" not in m and "response" in m.get("params", {})]


async def connect(path: str) -> KlippyClient:
    """Connect a client to the simulator socket."""
    return await connectProtocol(UNIXClientEndpoint(reactor, path), KlippyClient())


async def connect_ready(path: str, timeout: float = 5.0) -> KlippyClient:
    """Connect (retrying while refused) and poll ``info`` until the printer is ready."""
    deadline = reactor.seconds() + timeout
    while True:
        try:
            client = await connect(path)
            break
        except Exception:
            if reactor.seconds() > deadline:
                raise
            await sleep(0.05)
    while True:
        info = await client.result("info", {})
        if info["state"] == "ready":
            return client
        if reactor.seconds() > deadline:
            raise AssertionError(f"printer not ready: {info['state']}")
        await sleep(0.05)


def sleep(seconds: float) -> defer.Deferred:
    """Wait without blocking the reactor."""
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)
