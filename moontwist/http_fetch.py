"""HTTP requests to peers whose answers are bounded: one deadline for head and body, a size limit.

treq's own ``timeout`` only covers the response head, and its buffered body
grows without limit: a peer that streams for ever (a webcam's MJPEG stream
given where a snapshot was meant, a broken or hostile server) would hold the
request open and fill the memory.  ``fetch`` reads the body itself and hangs
up as soon as the limit is passed or the deadline comes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from moontwist.tls import http_client

__all__ = ["fetch", "read_body", "stream_body", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """The peer's answer passed the size limit (the connection was dropped)."""


class _Reader(Protocol):
    """Feeds a response body to ``sink``: at most ``limit`` bytes, hanging up after ``idle`` silent seconds."""

    def __init__(self, sink: Callable[[bytes], Any], limit: int, finished: Deferred,
                 reactor: Any = None, idle: float | None = None) -> None:
        self.sink = sink
        self.limit = limit
        self.finished = finished
        self.size = 0
        self.reactor = reactor
        self.idle = idle
        self._timer: Any = None

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        if self.idle is not None:
            self._timer = self.reactor.callLater(self.idle, self._silent)

    def _silent(self) -> None:
        self._timer = None
        self._fail(TimeoutError(f"the answer stalled: nothing for {self.idle:g} s"))

    def _fail(self, error: Exception) -> None:
        if not self.finished.called:
            self.abort()
            self.finished.errback(error)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.finished.called:
            return
        if self._timer is not None:
            self._timer.reset(self.idle)
        self.size += len(data)
        if self.size > self.limit:
            self._fail(BodyTooLarge(f"the answer is larger than {self.limit} bytes"))
            return
        try:
            self.sink(data)
        except Exception as exc:
            self._fail(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        # twisted.web.client is imported with treq, not when this module is
        from twisted.web.client import PotentialDataLoss, ResponseDone

        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(self.size)
        else:
            self.finished.errback(reason)

    def abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.stopProducing()


def stream_body(response: Any, sink: Callable[[bytes], Any], *, limit: int,
                idle_timeout: float | None = None, reactor: Any = None) -> Deferred:
    """Feed an (unbuffered) treq response's body to ``sink``; fires with the byte count.

    Fails with ``BodyTooLarge`` past ``limit``, ``TimeoutError`` when nothing
    arrived for ``idle_timeout`` seconds, or what ``sink`` raised; each hangs
    up, and so does cancelling.
    """
    reader: _Reader | None = None
    finished: Deferred = Deferred(lambda _: reader.abort() if reader is not None else None)
    reader = _Reader(sink, limit, finished, reactor, idle_timeout)
    response.deliverBody(reader)
    return finished


def read_body(response: Any, limit: int) -> Deferred:
    """The body of an (unbuffered) treq response, at most ``limit`` bytes; cancelling hangs up."""
    chunks: list[bytes] = []
    return stream_body(response, chunks.append, limit=limit).addCallback(lambda _: b"".join(chunks))


async def fetch(method: str, url: str, *, reactor: Any, timeout: float, limit: int, **kwargs: Any) -> tuple[Any, bytes]:
    """(response, body) of ``method url``; ``timeout`` covers head and body, the body is at most ``limit`` bytes.

    Raises ``BodyTooLarge``, ``twisted.internet.defer.TimeoutError`` or the
    connection's own error.  ``kwargs`` go to ``treq.request``.
    """
    treq = http_client()

    async def exchange() -> tuple[Any, bytes]:
        response = await treq.request(method, url, reactor=reactor, unbuffered=True, **kwargs)
        return response, await read_body(response, limit)

    d = Deferred.fromCoroutine(exchange())
    d.addTimeout(timeout, reactor)
    return await d
