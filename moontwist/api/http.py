"""The HTTP transport generated from the registry: one root resource dispatching every request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from moontwist import jsonutil
from moontwist.api.args import parse_query
from moontwist.api.channel import APIChannel
from moontwist.api.errors import ArgumentError, ServerError
from moontwist.api.jsonrpc import call_handler
from moontwist.api.limits import check_depth
from moontwist.api.prefix import strip_route_prefix
from moontwist.api.registry import APIRequest, Endpoint, Unwrapped

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["HTTPAPI", "APISite", "JSON_TYPE", "error_body"]

_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}

JSON_TYPE = b"application/json; charset=UTF-8"


def error_body(status: int, message: str) -> bytes:
    return jsonutil.dumpb({"error": {"code": status, "message": message}})


class APISite(Site):
    """A Site that doesn't log every request (Moonraker logs access only when debugging).

    A connection idle for ``timeOut`` seconds is closed; a request head must
    arrive within ``header_timeout`` seconds of its first byte (see APIChannel).
    """

    displayTracebacks = False
    noisy = False
    protocol = APIChannel
    header_timeout = 20.0
    idle_timeout = 120.0

    def __init__(self, resource: Any, access_log: bool = False, logger: Logger | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", self.idle_timeout)
        super().__init__(resource, **kwargs)
        self.access_log = access_log
        self.access_logger = logger

    def log(self, request: Request) -> None:
        if not self.access_log:
            return
        if self.access_logger is None:
            super().log(request)
        else:  # the instance's log, not the process's
            self.access_logger.info("{line}", line=self._logFormatter(self._logDateTime, request))


class APIResource(Resource):
    """The root resource: ``/websocket`` upgrades to the websocket, every other path goes through the registry."""

    isLeaf = True

    def __init__(self, api: HTTPAPI) -> None:
        super().__init__()
        self.api = api

    def render(self, request: Request) -> Any:
        prefix = self.api.route_prefix
        if prefix and not strip_route_prefix(request, prefix):
            request.setResponseCode(404)
            request.setHeader(b"content-type", JSON_TYPE)
            return error_body(404, f"Not Found: routes are below {prefix}")
        if request.path == b"/websocket":
            return self.api.server.websocket_resource.render(request)
        return self._respond(request, self.api.dispatch(request))

    def _respond(self, request: Request, result: Any) -> Any:
        if isinstance(result, Deferred):
            result.addCallback(self._finish_later, request)
            result.addErrback(self._crashed, request)
            return NOT_DONE_YET
        if result is None:
            if not request.finished and not request._disconnected:
                request.finish()
            return NOT_DONE_YET
        if IResource.providedBy(result):
            return result.render(request)
        return result

    def _finish_later(self, result: Any, request: Request) -> None:
        if request.finished or request._disconnected:
            return
        body = self._respond(request, result)
        if isinstance(body, bytes):
            request.write(body)
            request.finish()

    def _crashed(self, failure: Failure, request: Request) -> None:
        self.api.log.failure("Responding to {path} failed", failure, path=request.path)
        if not request.finished and not request._disconnected:
            request.setResponseCode(500)
            request.write(error_body(500, "Internal Server Error"))
            request.finish()


def _route_path(request: Request) -> str:
    path = unquote(request.path.decode("utf-8", "surrogateescape"))
    return path.rstrip("/") if len(path) > 1 and path.endswith("/") else path


class HTTPAPI:
    """Routes every HTTP request through the registry; ``/websocket`` upgrades to the websocket."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.route_prefix = ""  # [server] route_prefix, set at each start

    def resource(self) -> APIResource:
        return APIResource(self)

    def dispatch(self, request: Request) -> Any:
        request.setHeader(b"content-type", JSON_TYPE)
        hook = self.server.http_prepare
        if hook is not None:
            early = hook(request)
            if early is not None:
                return early
        path = _route_path(request)
        method = request.method.decode("ascii", "replace").upper()
        match = self.server.registry.match(path)
        if match is None:
            return self._fail(request, ServerError(f"Not Found: {path}", 404))
        routes, tail = match
        endpoint = routes.get(method)
        if endpoint is None and method == "HEAD":
            endpoint = routes.get("GET")
        if endpoint is None:
            request.setHeader(b"allow", ", ".join(sorted(routes)).encode())
            return self._fail(request, ServerError(f"Method {method} not allowed for {path}", 405))
        try:
            raw = self._arguments(request, endpoint)
            if tail is not None:
                raw["path_tail"] = tail
            api_request = APIRequest(
                endpoint,
                raw,
                "http",
                method,
                None,
                request.getClientAddress().host if request.getClientAddress() else None,
                http_request=request,
            )
            # Authenticate before validating, so a stranger learns nothing about arguments.
            self.server.admit(api_request)
            api_request.args = endpoint.validate(raw)
            result = call_handler(endpoint, api_request)
        except Exception:
            return self._failure(request, Failure(), endpoint)
        if isinstance(result, Deferred):
            return result.addCallbacks(
                lambda r: self._success(request, r), lambda f: self._failure(request, f, endpoint)
            )
        return self._success(request, result)

    def _arguments(self, request: Request, endpoint: Endpoint) -> dict[str, Any]:
        query = request.uri.partition(b"?")[2]
        args = parse_query(query) if query else {}
        if endpoint.raw_body:
            return args
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        content = request.content
        if content is None:
            return args
        # The body's size was checked on the headers (see moontwist.api.upload).
        content.seek(0, 2)
        if not content.tell():
            return args
        content.seek(0)
        body = content.read()
        if ctype == b"application/json":
            try:
                parsed = jsonutil.loads(body)
            except jsonutil.JSONDecodeError:
                raise ServerError("Request body is not valid JSON", 400) from None
            check_depth(body, parsed)
            if not isinstance(parsed, dict):
                got = _JSON_TYPE_NAMES.get(type(parsed), "a value")
                raise ServerError(f"Request body must be a JSON object, got {got}", 400)
            args.update(parsed)
        elif ctype == b"application/x-www-form-urlencoded":
            text = body.decode("utf-8", "surrogateescape")
            args.update(parse_query(text.encode("utf-8", "surrogateescape")))
        elif ctype.startswith(b"multipart/"):
            for key, values in (request.args or {}).items():
                name = key.decode("utf-8", "replace")
                if name not in dict(parse_qsl(query.decode("utf-8", "replace"))) and values:
                    value = values[0]
                    args[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return args

    def _success(self, request: Request, result: Any) -> bytes | None:
        if request._disconnected or request.finished:
            return None
        if isinstance(result, bytes):  # a handler that encoded its own body
            return result
        if IResource.providedBy(result):  # a resource that renders itself (file downloads)
            return result
        if isinstance(result, Unwrapped):
            return jsonutil.dumpb(result.value)
        return jsonutil.dumpb({"result": result})

    def _fail(self, request: Request, error: ServerError) -> bytes:
        request.setResponseCode(error.status)
        request.setHeader(b"content-type", JSON_TYPE)
        return error_body(error.status, error.message)

    def _failure(self, request: Request, failure: Failure, endpoint: Endpoint) -> bytes | None:
        exc = failure.value
        if request._disconnected:
            self.log.info("HTTP client went away during {method}", method=endpoint.method)
            return None
        if isinstance(exc, ServerError):
            if isinstance(exc, ArgumentError) or (exc.status >= 500 and exc.status != 503):
                self.log.info("{method}: {message}", method=endpoint.method, message=exc.message)
            return self._fail(request, exc)
        self.log.failure("Unhandled error in {method}", failure, method=endpoint.method)
        return self._fail(request, ServerError(f"Internal error in {endpoint.method}: {exc!r}", 500))
