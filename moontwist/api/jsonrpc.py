"""JSON-RPC 2.0 dispatcher shared by the websocket, the unix socket, HTTP and MQTT."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from moontwist import jsonutil
from moontwist.api.errors import ArgumentError, ServerError
from moontwist.api.registry import APIRequest, Endpoint, Registry

if TYPE_CHECKING:
    from moontwist.api.connection import Connection

__all__ = ["JSONRPCDispatcher", "call_handler", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS"]

log = Logger()

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

Authorizer = Callable[[APIRequest], None]


def call_handler(endpoint: Endpoint, request: APIRequest) -> Any:
    """Run a handler; returns its value or a Deferred (coroutines are wrapped)."""
    result = endpoint.handler(request)
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result


def _error(code: int, message: str, req_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": req_id}


class JSONRPCDispatcher:
    """Turns JSON-RPC messages into registry calls and replies."""

    def __init__(self, registry: Registry, admit: Authorizer) -> None:
        self.registry = registry
        self.admit = admit

    def handle_bytes(
        self,
        data: bytes | str,
        transport: str,
        connection: Connection | None = None,
        ip: str | None = None,
        user: dict[str, Any] | None = None,
    ) -> bytes | None | Deferred:
        """Handle one encoded message; returns the encoded reply, None, or a Deferred of either.

        ``user`` is who the carrying request authenticated as (``POST /server/jsonrpc``).
        """
        try:
            obj = jsonutil.loads(data)
        except jsonutil.JSONDecodeError:
            log.info("JSON-RPC parse error from {ip} over {transport}", ip=ip, transport=transport)
            return jsonutil.dumpb(_error(PARSE_ERROR, "Parse error", None))
        reply = self.handle(obj, transport, connection, ip, user)
        if isinstance(reply, Deferred):
            return reply.addCallback(lambda r: None if r is None else jsonutil.dumpb(r))
        return None if reply is None else jsonutil.dumpb(reply)

    def handle(
        self,
        obj: Any,
        transport: str,
        connection: Connection | None = None,
        ip: str | None = None,
        user: dict[str, Any] | None = None,
    ) -> Any:
        """Handle a decoded request or batch; returns the reply object, None, or a Deferred."""
        if isinstance(obj, list):
            if not obj:
                return _error(INVALID_REQUEST, "Invalid Request: empty batch", None)
            parts = [self._single(item, transport, connection, ip, user) for item in obj]
            if not any(isinstance(p, Deferred) for p in parts):
                replies = [p for p in parts if p is not None]
                return replies or None
            waits = [p if isinstance(p, Deferred) else _fired(p) for p in parts]
            return gatherResults(waits).addCallback(lambda rs: [r for r in rs if r is not None] or None)
        return self._single(obj, transport, connection, ip, user)

    def _single(
        self, obj: Any, transport: str, connection: Connection | None, ip: str | None, user: dict[str, Any] | None
    ) -> Any:
        if not isinstance(obj, dict):
            return _error(INVALID_REQUEST, "Invalid Request: expected an object", None)
        req_id = obj.get("id")
        has_id = "id" in obj
        method = obj.get("method")
        if obj.get("jsonrpc") != "2.0" or not isinstance(method, str):
            what = "'jsonrpc' must be \"2.0\"" if obj.get("jsonrpc") != "2.0" else "'method' must be a string"
            return _error(INVALID_REQUEST, f"Invalid Request: {what}", req_id if _valid_id(req_id) else None)
        if has_id and not _valid_id(req_id):
            return _error(INVALID_REQUEST, "Invalid Request: 'id' must be a string, number or null", None)
        params = obj.get("params", {})
        if params is None:
            params = {}
        endpoint = self.registry.by_method(method)
        if endpoint is None or transport not in endpoint.transports:
            log.info("JSON-RPC over {transport}: unknown method {method}", transport=transport, method=method)
            if not has_id:
                return None
            return _error(METHOD_NOT_FOUND, f"Method not found: {method}", req_id)
        if not isinstance(params, dict):
            if not has_id:
                return None
            return _error(INVALID_PARAMS, "Invalid params: 'params' must be an object", req_id)
        try:
            request = APIRequest(endpoint, params, transport, "POST", connection, ip, user)
            if connection is not None:
                request.user = connection.user
            self.admit(request)  # lifecycle and authorization, before the arguments are looked at
            request.args = endpoint.validate(params)
            result = call_handler(endpoint, request)
        except Exception:
            reply = self._failure(Failure(), method, req_id)
            return reply if has_id else None
        if isinstance(result, Deferred):
            d = result.addCallbacks(
                lambda r: {"jsonrpc": "2.0", "result": r, "id": req_id},
                lambda f: self._failure(f, method, req_id),
            )
            return d.addCallback(lambda r: r if has_id else None)
        if not has_id:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": req_id}

    def _failure(self, failure: Failure, method: str, req_id: Any) -> dict[str, Any]:
        exc = failure.value
        if isinstance(exc, ServerError):
            code = INVALID_PARAMS if isinstance(exc, ArgumentError) else exc.status
            log.info("JSON-RPC {method} failed: {code} {message}", method=method, code=code, message=exc.message)
            return _error(code, exc.message, req_id)
        log.failure("Unhandled error in JSON-RPC method {method}", failure, method=method)
        return _error(INTERNAL_ERROR, f"Internal error in {method}: {exc!r}", req_id)


def _valid_id(req_id: Any) -> bool:
    return req_id is None or (isinstance(req_id, (str, int, float)) and not isinstance(req_id, bool))


def _fired(value: Any) -> Deferred:
    d: Deferred = Deferred()
    d.callback(value)
    return d
