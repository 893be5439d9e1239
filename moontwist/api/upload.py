"""The twisted.web Request of the API site: every request is vetted on its headers.

Before any body byte is read, ``gotLength`` refuses (answering at once and
closing the connection):

* a request whose ``Origin`` the server does not allow (403): a page on
  another site can't make a browser act for it (see ``Server.origin_allowed``),
  and a cross-site ``GET`` without ``Origin`` (an image, a link) can't reach a
  ``GET`` alias of an action (an endpoint answering both GET and POST);
* a body for an endpoint the client may not call (the registry's gate,
  ``Server.admit``: 401, 503), or larger than the endpoint accepts (413):
  ``Endpoint.max_body`` or ``limits.DEFAULT_MAX_BODY``, lower for a client
  that has not authenticated, ``[server] max_upload_size`` for uploads.
  Chunked bodies are counted as they arrive.

For a POST to an endpoint declaring ``extra={"body_sink": factory}`` the body
is not kept: every chunk goes to ``factory(request)``'s sink as it arrives,
and the handler finds the finished sink at ``http_request.body_sink``.

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
from moontwist.api.limits import ANONYMOUS_MAX_BODY, DEFAULT_MAX_BODY
from moontwist.api.registry import APIRequest, Endpoint

__all__ = ["BodySink", "StreamingRequest", "streaming_request_factory"]

_REASONS = {
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    503: b"Service Unavailable",
}
_SAFE = frozenset((b"GET", b"HEAD"))


class BodySink(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class StreamingRequest(Request):
    """Vets requests on their headers; streams bodies of ``body_sink`` endpoints."""

    server: Any = None  # set by streaming_request_factory
    log: Logger  # the server's, set by streaming_request_factory
    body_sink: BodySink | None = None
    body_error: ServerError | None = None
    body_limit: int | None = None
    _received = 0
    _refused = False
    _allowed_origin: bytes | None = None

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - twisted API
        command = self.channel._command
        if command != b"OPTIONS" and not self._origin_passes(command):  # preflights: see the CORS code
            return
        if length == 0:
            super().gotLength(length)
            return
        self._vet_body(command, length)

    def _origin_passes(self, command: bytes) -> bool:
        """Refuse a page on another site: any action, and a GET that is an alias of one."""
        headers = self.requestHeaders
        origin = headers.getRawHeaders(b"origin")
        if origin is None:
            if command not in _SAFE or headers.getRawHeaders(b"sec-fetch-site") != [b"cross-site"]:
                return True  # not a browser, or not a cross-site image/link
            allowed = False
        else:
            checker = self.server.origin_allowed
            if checker is None:
                self._refuse(ServerError("Server is not ready", 503))
                return False
            host = headers.getRawHeaders(b"host")
            allowed = checker(origin[-1].decode("latin-1"), host[-1].decode("latin-1") if host else None)
            if allowed:
                self._allowed_origin = origin[-1]  # a refusal below must be readable by that page
                return True
        if command in _SAFE and not self._action_alias():
            return True  # the page can't read the answer, and nothing changes
        where = origin[-1].decode("latin-1") if origin is not None else "A cross-site page"
        self._refuse(ServerError(f"{where} may not call this endpoint (see [authorization] cors_domains)", 403))
        return False

    def _routes(self) -> dict[str, Endpoint] | None:
        raw = self.channel._path.split(b"?", 1)[0]
        prefix = self.server.http_api.route_prefix.encode("ascii")
        if prefix:  # [server] route_prefix: the resource answers 404 outside it
            if raw != prefix and not raw.startswith(prefix + b"/"):
                return None
            raw = raw[len(prefix) :] or b"/"
        path = unquote(raw.decode("utf-8", "replace"))
        match = self.server.registry.match(path.rstrip("/") or "/")
        return match[0] if match is not None else None

    def _action_alias(self) -> bool:
        routes = self._routes()
        return routes is not None and routes.get("GET") is not None and routes.get("GET") is routes.get("POST")

    def _vet_body(self, command: bytes, length: int | None) -> None:
        server = self.server
        method = command.decode("ascii", "replace").upper()
        routes = self._routes()
        endpoint = None
        if routes is not None:
            endpoint = routes.get(method) or (routes.get("GET") if method == "HEAD" else None)
        sink_factory = None
        limit = DEFAULT_MAX_BODY  # unknown routes and Klein's: their handler answers, the body is bounded
        if endpoint is not None:
            # Authenticate now, from the headers, so a stranger's body is never read.
            self.method, self.uri = command, self.channel._path
            peer = self.channel.transport.getPeer()
            request = APIRequest(endpoint, {}, "http", method, None, getattr(peer, "host", None), http_request=self)
            try:
                server.admit(request)
            except ServerError as exc:
                self._refuse(exc)
                return
            if command == b"POST":
                sink_factory = endpoint.extra.get("body_sink")
            if sink_factory is not None:
                limit = server.max_upload_size
            elif endpoint.max_body is not None:
                limit = endpoint.max_body
            if request.user is None:
                limit = min(limit, ANONYMOUS_MAX_BODY)
        if length is not None and length > limit:
            what = "max_upload_size" if sink_factory is not None else "the limit of this endpoint"
            self._refuse(ServerError(f"Request body too large: {length} bytes exceeds {what} ({limit} bytes)", 413))
            return
        self.body_limit = limit
        if sink_factory is None:
            super().gotLength(length)
            return
        self.content = BytesIO()  # stays empty: the stock multipart parsing never runs
        self._parsePOSTFormSubmission = False
        try:
            self.body_sink = sink_factory(self)
        except ServerError as exc:
            self._refuse(exc)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - twisted API
        if self._refused or self.body_error is not None:
            return
        self._received += len(data)
        limit = self.body_limit
        if limit is not None and self._received > limit:
            self._refuse(ServerError(f"Request body too large: it exceeds the limit of this endpoint ({limit} bytes)", 413))
            return
        sink = self.body_sink
        if sink is None:
            super().handleContentChunk(data)
            return
        try:
            sink.feed(data)
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
        channel = self.channel
        self.log.info(
            "Refused {method} {path}: {message}",
            method=getattr(channel, "_command", b"?").decode("latin-1"),
            path=getattr(channel, "_path", b"?").decode("latin-1"),
            message=error.message,
        )
        body = error_body(error.status, error.message)
        cors = b""
        if self._allowed_origin is not None:
            cors = b"access-control-allow-origin: %s\r\nvary: Origin\r\n" % self._allowed_origin
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n" % (
            error.status,
            _REASONS.get(error.status, b"Error"),
            JSON_TYPE,
            len(body),
            cors,
        )
        channel.transport.write(head + body)
        channel.loseConnection()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - twisted API
        if self.body_sink is not None and not self.finished:
            self.body_sink.abort()
        super().connectionLost(reason)


def streaming_request_factory(server: Any) -> type[StreamingRequest]:
    """A StreamingRequest class bound to ``server`` (for ``Site.requestFactory``)."""
    return type("ServerStreamingRequest", (StreamingRequest,), {"server": server, "log": server.logger(__name__)})
