"""A twisted.web Request that streams request bodies of upload endpoints to a sink.

The stock Request keeps the whole body (in memory or a temporary file) and
parses multipart forms in memory.  For a POST to an endpoint declaring
``extra={"body_sink": factory}`` this Request instead checks
``server.max_upload_size`` against Content-Length before any body byte is
read (413), then hands every chunk to ``factory(request)``'s sink as it
arrives.  The handler finds the finished sink at ``http_request.body_sink``.

A sink has ``feed(data)`` and ``finish()`` (which may raise ``ServerError``
for a bad body) and ``abort()`` (the client went away, or the body was
refused: remove whatever was written).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Protocol
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.web.server import Request

from moontwist.api.errors import ServerError
from moontwist.api.http import JSON_TYPE, error_body
from moontwist.api.registry import APIRequest, Endpoint

__all__ = ["BodySink", "StreamingRequest", "streaming_request_factory"]

log = Logger()

_REASONS = {
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
}


class BodySink(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class StreamingRequest(Request):
    """Streams bodies of ``body_sink`` endpoints; other requests behave as usual."""

    server: Any = None  # set by streaming_request_factory
    body_sink: BodySink | None = None
    body_error: ServerError | None = None
    _received = 0
    _refused = False

    def _upload_endpoint(self) -> Endpoint | None:
        if self.server is None or getattr(self.channel, "_command", b"").upper() != b"POST":
            return None
        path = unquote(getattr(self.channel, "_path", b"").split(b"?", 1)[0].decode("utf-8", "replace"))
        match = self.server.registry.match(path.rstrip("/") or "/")
        if match is None:
            return None
        endpoint = match[0].get("POST")
        return endpoint if endpoint is not None and endpoint.extra.get("body_sink") else None

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - twisted API
        endpoint = self._upload_endpoint()
        if endpoint is None:
            super().gotLength(length)
            return
        self.content = BytesIO()  # stays empty: the stock multipart parsing never runs
        self._parsePOSTFormSubmission = False
        # Headers are in; the body is not. Authenticate now so a stranger's body is never read.
        self.method, self.uri = self.channel._command, self.channel._path
        peer = self.channel.transport.getPeer()
        try:
            self.server.admit(APIRequest(endpoint, {}, "http", "POST", None, getattr(peer, "host", None), http_request=self))
        except ServerError as exc:
            self._refuse(exc)
            return
        limit = self.server.max_upload_size
        if length is not None and length > limit:
            self._refuse(ServerError(f"Request body of {length} bytes exceeds max_upload_size ({limit} bytes)", 413))
            return
        try:
            self.body_sink = endpoint.extra["body_sink"](self)
        except ServerError as exc:
            self._refuse(exc)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - twisted API
        if self.body_sink is None:
            if not self._refused:
                super().handleContentChunk(data)
            return
        if self.body_error is not None:
            return
        self._received += len(data)
        if self._received > self.server.max_upload_size:
            self._refuse(ServerError(f"Request body exceeds max_upload_size ({self.server.max_upload_size} bytes)", 413))
            return
        try:
            self.body_sink.feed(data)
        except ServerError as exc:
            self._refuse(exc)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if self._refused:
            return
        sink = self.body_sink
        if sink is not None:
            # Whatever the handler does (or if it never runs: auth), nothing stays behind.
            self.notifyFinish().addBoth(lambda _: sink.abort())
            try:
                sink.finish()
            except ServerError as exc:
                self.body_error = exc
                sink.abort()
        super().requestReceived(command, path, version)

    def _refuse(self, error: ServerError) -> None:
        """Answer now, before (the rest of) the body is read, and close the connection."""
        self._refused = True
        if self.body_sink is not None:
            self.body_sink.abort()
        self.requestHeaders.removeHeader(b"expect")
        log.info("Refused upload: {message}", message=error.message)
        body = error_body(error.status, error.message)
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
            error.status,
            _REASONS.get(error.status, b"Error"),
            JSON_TYPE,
            len(body),
        )
        self.channel.transport.write(head + body)
        self.channel.loseConnection()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - twisted API
        if self.body_sink is not None and not self.finished:
            self.body_sink.abort()
        super().connectionLost(reason)


def streaming_request_factory(server: Any) -> type[StreamingRequest]:
    """A StreamingRequest class bound to ``server`` (for ``Site.requestFactory``)."""
    return type("ServerStreamingRequest", (StreamingRequest,), {"server": server})
