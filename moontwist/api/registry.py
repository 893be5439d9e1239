"""One registry of endpoints; every transport is generated from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moontwist.api.args import Arg, validate

if TYPE_CHECKING:
    from moontwist.api.connection import Connection

__all__ = ["APIRequest", "Endpoint", "Registry", "TRANSPORTS", "DuplicateEndpoint", "Unwrapped"]

# "http" is the REST form; "websocket", "unix", "jsonrpc_http" and "mqtt" all speak JSON-RPC.
TRANSPORTS = frozenset({"http", "websocket", "unix", "jsonrpc_http", "mqtt"})
RPC_TRANSPORTS = frozenset({"websocket", "unix", "jsonrpc_http", "mqtt"})

Handler = Callable[["APIRequest"], Awaitable[Any] | Any]


@dataclass(frozen=True)
class Unwrapped:
    """A handler result that HTTP sends as-is, without the ``{"result": ...}`` envelope."""

    value: Any


@dataclass
class APIRequest:
    """What a handler receives: validated arguments and where the call came from."""

    endpoint: Endpoint
    args: dict[str, Any]
    transport: str
    http_method: str = "POST"
    connection: Connection | None = None
    ip: str | None = None
    user: dict[str, Any] | None = None
    http_request: Any = None  # the twisted.web request, for handlers that stream

    def get(self, name: str, default: Any = None) -> Any:
        value = self.args.get(name, default)
        return default if value is None else value


@dataclass(frozen=True)
class Endpoint:
    """An API endpoint declared once: its JSON-RPC name, HTTP route and arguments."""

    method: str
    handler: Handler
    http_path: str | None = None
    http_methods: tuple[str, ...] = ("GET",)
    transports: frozenset[str] = TRANSPORTS
    args: tuple[Arg, ...] = ()
    auth: bool = True
    description: str = ""
    plugin: str = ""
    # Streaming endpoints read the HTTP body themselves (uploads).
    raw_body: bool = False
    # The largest HTTP request body accepted, checked on the headers (None: limits.DEFAULT_MAX_BODY;
    # uploads streamed to a ``body_sink`` are bounded by ``[server] max_upload_size`` instead).
    max_body: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "transports", frozenset(self.transports))
        object.__setattr__(self, "http_methods", tuple(m.upper() for m in self.http_methods))
        unknown = self.transports - TRANSPORTS
        if unknown:
            raise ValueError(f"Endpoint {self.method}: unknown transports {sorted(unknown)}")
        if "http" in self.transports and not self.http_path:
            raise ValueError(f"Endpoint {self.method}: an HTTP transport needs http_path")

    def validate(self, raw: dict[str, Any]) -> dict[str, Any]:
        return validate(self.args, raw)


class DuplicateEndpoint(ValueError):
    """Two registrations claimed the same JSON-RPC method or HTTP route."""


class Registry:
    """Endpoints by JSON-RPC method and by (HTTP path, method); may change at run time."""

    def __init__(self) -> None:
        self._by_method: dict[str, Endpoint] = {}
        self._by_route: dict[str, dict[str, Endpoint]] = {}
        self._derived: dict[str, Any] = {}  # documents built from the endpoints; dropped on change

    def add(self, endpoint: Endpoint) -> Endpoint:
        rpc = self._by_method.get(endpoint.method)
        if rpc is not None:
            raise DuplicateEndpoint(
                f"JSON-RPC method '{endpoint.method}' is already registered by '{rpc.plugin or '?'}'"
            )
        if endpoint.http_path and "http" in endpoint.transports:
            routes = self._by_route.get(endpoint.http_path, {})
            for verb in endpoint.http_methods:
                if verb in routes:
                    raise DuplicateEndpoint(
                        f"HTTP route {verb} {endpoint.http_path} is already registered "
                        f"by '{routes[verb].plugin or '?'}'"
                    )
        self._derived.clear()
        self._by_method[endpoint.method] = endpoint
        if endpoint.http_path and "http" in endpoint.transports:
            routes = self._by_route.setdefault(endpoint.http_path, {})
            for verb in endpoint.http_methods:
                routes[verb] = endpoint
        return endpoint

    def remove(self, method: str) -> None:
        endpoint = self._by_method.pop(method, None)
        if endpoint is None:
            return
        self._derived.clear()
        if endpoint.http_path:
            routes = self._by_route.get(endpoint.http_path, {})
            for verb in endpoint.http_methods:
                if routes.get(verb) is endpoint:
                    del routes[verb]
            if not routes:
                self._by_route.pop(endpoint.http_path, None)

    def derived(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()``'s result, kept until an endpoint is added or removed (API descriptions).

        Callers share the object: treat it as read-only.
        """
        value = self._derived.get(name)
        if value is None:
            value = self._derived[name] = build()
        return value

    def by_method(self, method: str) -> Endpoint | None:
        return self._by_method.get(method)

    def routes(self, path: str) -> dict[str, Endpoint] | None:
        """The endpoints at an HTTP path by request method, or None when the path is unknown."""
        return self._by_route.get(path)

    def match(self, path: str) -> tuple[dict[str, Endpoint], str | None] | None:
        """Routes for ``path``: an exact path, else the longest ``/prefix/*`` route and the tail."""
        routes = self._by_route.get(path)
        if routes:
            return routes, None
        cut = len(path)
        while cut > 0:
            cut = path.rfind("/", 0, cut)
            if cut < 0:
                break
            routes = self._by_route.get(path[: cut + 1] + "*")
            if routes:
                return routes, path[cut + 1 :]
        return None

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(list(self._by_method.values()))

    def __len__(self) -> int:
        return len(self._by_method)

    def methods(self) -> Sequence[str]:
        return sorted(self._by_method)
