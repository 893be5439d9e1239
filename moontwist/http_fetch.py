"""HTTP requests to peers whose answers are bounded: one deadline for head and body, a size limit.

treq's own ``timeout`` only covers the response head, and its buffered body
grows without limit: a peer that streams for ever (a webcam's MJPEG stream
given where a snapshot was meant, a broken or hostile server) would hold the
request open and fill the memory.  ``fetch`` reads the body itself and hangs
up as soon as the limit is passed or the deadline comes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from moontwist.tls import http_client

__all__ = ["fetch", "read_body", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """The peer's answer passed the size limit (the connection was dropped)."""


class _Collector(Protocol):
    def __init__(self, limit: int, finished: Deferred) -> None:
        self.limit = limit
        self.finished = finished
        self.size = 0
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self.finished.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.chunks.clear()
            self.abort()
            self.finished.errback(BodyTooLarge(f"the answer is larger than {self.limit} bytes"))
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        # twisted.web.client is imported with treq, not when this module is
        from twisted.web.client import PotentialDataLoss, ResponseDone

        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


def read_body(response: Any, limit: int) -> Deferred:
    """The body of an (unbuffered) treq response, at most ``limit`` bytes; cancelling hangs up."""
    collector: _Collector | None = None
    finished: Deferred = Deferred(lambda _: collector.abort() if collector is not None else None)
    collector = _Collector(limit, finished)
    response.deliverBody(collector)
    return finished


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
