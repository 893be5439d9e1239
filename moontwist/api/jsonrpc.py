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
from moontwist.api.limits import ANONYMOUS_RPC, AUTHENTICATED_RPC, RPCLimits, check_depth
from moontwist.api.registry import APIRequest, Endpoint, Registry

if TYPE_CHECKING:
    from moontwist.api.connection import Connection

__all__ = [
    "JSONRPCDispatcher",
    "call_handler",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "REPLY_TOO_LARGE",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REPLY_TOO_LARGE = 413
# Transports whose clients may not have authenticated (the unix socket and MQTT are guarded outside).
ANONYMOUS_TRANSPORTS = frozenset({"websocket", "jsonrpc_http"})

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

    def __init__(self, registry: Registry, admit: Authorizer, log: Logger) -> None:
        self.registry = registry
        self.admit = admit
        self.log = log

    def limits(
        self, transport: str, connection: Connection | None = None, user: dict[str, Any] | None = None
    ) -> RPCLimits:
        """The bounds for the next message from this client: much lower while it is anonymous."""
        if transport not in ANONYMOUS_TRANSPORTS:
            return AUTHENTICATED_RPC
        who = connection.user if connection is not None else user
        return ANONYMOUS_RPC if who is None else AUTHENTICATED_RPC

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
        The message, its batch and its reply are bounded by ``limits``; a reply
        that would pass the bound is replaced by an error naming it.
        """
        limits = self.limits(transport, connection, user)
        if len(data) > limits.message:
            self.log.info("JSON-RPC message of {size} bytes from {ip} refused", size=len(data), ip=ip)
            message = f"Invalid Request: message of {len(data)} bytes exceeds the limit of {limits.message}"
            return jsonutil.dumpb(_error(INVALID_REQUEST, message, None))
        try:
            obj = jsonutil.loads(data)
        except jsonutil.JSONDecodeError:
            self.log.info("JSON-RPC parse error from {ip} over {transport}", ip=ip, transport=transport)
            return jsonutil.dumpb(_error(PARSE_ERROR, "Parse error", None))
        try:
            check_depth(data, obj)
        except ServerError as exc:
            req_id = obj.get("id") if isinstance(obj, dict) and _valid_id(obj.get("id")) else None
            return jsonutil.dumpb(_error(exc.status, exc.message, req_id))
        reply = self.handle(obj, transport, connection, ip, user, limits)
        if isinstance(reply, Deferred):
            return reply.addCallback(_encode, limits.reply)
        return _encode(reply, limits.reply)

    def handle(
        self,
        obj: Any,
        transport: str,
        connection: Connection | None = None,
        ip: str | None = None,
        user: dict[str, Any] | None = None,
        limits: RPCLimits | None = None,
    ) -> Any:
        """Handle a decoded request or batch; returns the reply object, None, or a Deferred."""
        if isinstance(obj, list):
            if not obj:
                return _error(INVALID_REQUEST, "Invalid Request: empty batch", None)
            batch = (limits or self.limits(transport, connection, user)).batch
            if len(obj) > batch:
                self.log.info("JSON-RPC batch of {n} calls from {ip} refused", n=len(obj), ip=ip)
                return _error(INVALID_REQUEST, f"Invalid Request: batch of {len(obj)} calls exceeds {batch}", None)
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
        if method is None and ("result" in obj or "error" in obj) and connection is not None:
            # an answer to a request this server sent the client (an agent's method)
            if not connection.resolve_response(obj):
                self.log.info("JSON-RPC answer with unknown id {id} over {transport}", id=req_id, transport=transport)
            return None
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
            self.log.info("JSON-RPC over {transport}: unknown method {method}", transport=transport, method=method)
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
            self.log.info("JSON-RPC {method} failed: {code} {message}", method=method, code=code, message=exc.message)
            return _error(code, exc.message, req_id)
        self.log.failure("Unhandled error in JSON-RPC method {method}", failure, method=method)
        return _error(INTERNAL_ERROR, f"Internal error in {method}: {exc!r}", req_id)


def _too_large(reply: Any, limit: int) -> dict[str, Any]:
    req_id = reply.get("id") if isinstance(reply, dict) else None
    return _error(REPLY_TOO_LARGE, f"Reply too large: one message may carry at most {limit} bytes", req_id)


def _encode(reply: Any, limit: int) -> bytes | None:
    """Encode a reply (or a batch's replies, one by one), replacing what would pass ``limit``."""
    if reply is None:
        return None
    if not isinstance(reply, list):
        data = jsonutil.dumpb(reply)
        return data if len(data) <= limit else jsonutil.dumpb(_too_large(reply, limit))
    parts = []
    total = 2
    full = False
    for item in reply:
        data = None if full else jsonutil.dumpb(item)
        if data is None or total + len(data) + 1 > limit:
            full = True
            data = jsonutil.dumpb(_too_large(item, limit))
        total += len(data) + 1
        parts.append(data)
    return b"[" + b",".join(parts) + b"]"


def _valid_id(req_id: Any) -> bool:
    return req_id is None or (isinstance(req_id, (str, int, float)) and not isinstance(req_id, bool))


def _fired(value: Any) -> Deferred:
    d: Deferred = Deferred()
    d.callback(value)
    return d
