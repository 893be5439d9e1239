"""``server.*`` endpoints that need nothing but the server itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, maybeDeferred

from moontwist import __version__
from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.limits import LARGE_BODY
from moontwist.api.openapi import openapi_document, openrpc_document
from moontwist.api.prefix import parse_route_prefix
from moontwist.api.registry import APIRequest, Endpoint, Unwrapped
from moontwist.config import Config, ConfigError
from moontwist.hookspecs import hookimpl
from moontwist.plugins.landing_page import LandingInfo, render_landing_page

if TYPE_CHECKING:
    from moontwist.server import Server

CLIENT_TYPES = ("web", "mobile", "desktop", "display", "bot", "agent", "other")
PERSISTENT = frozenset({"websocket", "unix"})
OWN_LOG_NAMES = ("moonraker", "moontwist")
MAX_WEBSOCKETS = 50  # Moonraker's default for max_websocket_connections
# printer.cfg sections whose objects frontends need (print control, progress, pausing)
KLIPPY_REQUIREMENTS = ("virtual_sdcard", "display_status", "pause_resume")


class ServerPlugin:
    """Server info, config, restart, connection identity, log rollover, API descriptions."""

    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        section = config.section("server")
        try:
            server.http_api.route_prefix = parse_route_prefix(section.get("route_prefix", None))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.max_websockets = section.getint("max_websocket_connections", MAX_WEBSOCKETS, minval=1)
        server.provide("websockets_full", self.websockets_full)

    def websockets_full(self) -> bool:
        """Whether ``max_websocket_connections`` (websockets and Klippy bridges together) are open."""
        bridges = self.server.lookup("klippy_bridges")
        count = self.server.connections.count("websocket") + (len(bridges) if bridges is not None else 0)
        return count >= self.max_websockets

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        http_only = frozenset({"http"})
        register(
            Endpoint(
                "server.landing_page", self.landing_page, "/", transports=http_only, auth=False,
                description="An HTML page about this server, for a person opening its address in a browser",
            )
        )
        register(
            Endpoint(
                "server.redirect",
                self.redirect,
                "/server/redirect",
                transports=http_only,
                args=(Arg("url", description="Where to go; its origin must be allowed by cors_domains"),),
                auth=False,
                description="Redirect (302) to a URL whose origin the CORS settings allow",
            )
        )
        register(
            Endpoint(
                "server.info",
                self.info,
                "/server/info",
                args=(Arg("raw", "bool", False, description="Warnings as written (default: line breaks as <br/>)"),),
                description="Server and Klippy status",
            )
        )
        register(Endpoint("server.config", self.config, "/server/config", description="The parsed configuration"))
        register(Endpoint("server.restart", self.restart, "/server/restart", ("POST",), description="Reload config and plugins"))
        register(
            Endpoint(
                "server.websocket.id",
                self.websocket_id,
                transports=PERSISTENT,
                description="This connection's id (deprecated: use identify)",
            )
        )
        register(
            Endpoint(
                "server.connection.identify",
                self.identify,
                transports=PERSISTENT,
                args=(
                    Arg("client_name", required=True, description="Application name, e.g. Mainsail"),
                    Arg("version", required=True, description="Application version"),
                    Arg("type", required=True, choices=CLIENT_TYPES, description="Application type"),
                    Arg("url", required=True, description="Application homepage"),
                    Arg("access_token", nullable=True, description="A JWT to authenticate this connection"),
                    Arg("api_key", nullable=True, description="The API key to authenticate this connection"),
                ),
                auth=False,
                description="Identify this connection; once per connection",
            )
        )
        register(
            Endpoint(
                "server.logs.rollover",
                self.rollover,
                "/server/logs/rollover",
                ("POST",),
                args=(Arg("application", nullable=True, description="moonraker, klipper, or all when omitted"),),
                description="Start new log files",
            )
        )
        register(
            Endpoint(
                "server.jsonrpc",
                self.jsonrpc,
                "/server/jsonrpc",
                ("POST",),
                transports=frozenset({"http"}),
                raw_body=True,
                max_body=LARGE_BODY,
                description="A JSON-RPC 2.0 request (or batch) in the body",
            )
        )
        register(
            Endpoint(
                "server.openapi",
                self.openapi,
                "/server/openapi.json",
                transports=frozenset({"http"}),
                auth=False,
                description="This API as an OpenAPI 3.1 document",
            )
        )
        register(
            Endpoint(
                "rpc.discover",
                self.discover,
                transports=frozenset({"websocket", "unix", "jsonrpc_http", "mqtt"}),
                auth=False,
                description="The JSON-RPC methods and their argument schemas (OpenRPC)",
            )
        )

    def info(self, request: APIRequest) -> dict[str, Any]:
        info = self.server.info()
        if not request.args["raw"]:
            info["warnings"] = [w.replace("\n", "<br/>") for w in info["warnings"]]
        info["missing_klippy_requirements"] = self.missing_klippy_requirements()
        return info

    def landing_page(self, request: APIRequest) -> bytes:
        server = self.server
        klippy = server.klippy
        sudo = server.lookup("sudo_alerts")
        info = LandingInfo(
            version=__version__,
            prefix=server.http_api.route_prefix,
            remote_ip=request.ip,
            authorized=request.user is not None,
            klippy_state=server.klippy_state,
            klippy_message=klippy.state_message if klippy is not None else "",
            websocket_count=server.connections.count("websocket"),
            warnings=list(server.warnings),
            sudo_messages=sudo.messages if sudo is not None else [],
        )
        request.http_request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return render_landing_page(info)

    def redirect(self, request: APIRequest) -> bytes:
        url = request.args.get("url")
        if not url:
            raise ServerError("No url argument provided", 400)
        parts = urlsplit(url) if url.isprintable() else None
        allowed = self.server.origin_allowed
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or allowed is None
            or not allowed(f"{parts.scheme}://{parts.netloc}", None)
        ):
            raise ServerError(f"Unauthorized URL redirect: {url}", 400)
        request.http_request.redirect(url.encode("utf-8"))
        return b""

    def missing_klippy_requirements(self) -> list[str]:
        """Printer objects Moonraker's clients rely on that a ready Klippy doesn't have."""
        klippy = self.server.klippy
        if klippy is None or not klippy.initialized or klippy.state != "ready":
            return []
        return [name for name in KLIPPY_REQUIREMENTS if name not in klippy.objects]

    def config(self, request: APIRequest) -> dict[str, Any]:
        cfg = self.server.config
        return {"config": cfg.typed(), "orig": {"DEFAULT": {}, **cfg.orig()}, "files": cfg.files()}

    def restart(self, request: APIRequest) -> str:
        self.server.restart(delay=0.05)
        return "ok"

    def websocket_id(self, request: APIRequest) -> dict[str, int]:
        assert request.connection is not None
        return {"websocket_id": request.connection.connection_id}

    def identify(self, request: APIRequest) -> dict[str, int]:
        conn = request.connection
        assert conn is not None
        args = request.args
        verify = self.server.lookup("identify_credentials")
        if verify is not None and (args.get("access_token") or args.get("api_key")):
            verify(conn, args.get("access_token"), args.get("api_key"))
        self.server.connections.identify(conn, args["client_name"], args["version"], args["type"], args["url"])
        self.server.emit("connection_identified", connection=conn)
        return {"connection_id": conn.connection_id}

    async def rollover(self, request: APIRequest) -> dict[str, Any]:
        app = request.args.get("application")
        known = (*OWN_LOG_NAMES, "klipper")
        if app is not None and app not in known:
            raise ServerError(f"Invalid argument 'application': unknown application {app!r}", 400)
        rolled: list[str] = []
        failed: dict[str, str] = {}
        if app in (None, *OWN_LOG_NAMES):
            log = self.server.server_log
            if log is None:
                failed["moonraker"] = "No log file is configured"
            else:
                log.rollover()
                rolled.append("moonraker")
        if app in (None, "klipper"):
            klippy_rollover = self.server.lookup("klippy_log_rollover")
            if klippy_rollover is None:
                failed["klipper"] = "Klipper's log can't be rolled over without a service provider"
            else:
                try:
                    await maybeDeferred(klippy_rollover)
                    rolled.append("klipper")
                except ServerError as exc:
                    failed["klipper"] = exc.message
        return {"rolled_over": rolled, "failed": failed}

    def jsonrpc(self, request: APIRequest) -> Any:
        http = request.http_request
        http.content.seek(0)
        reply = self.server.dispatcher.handle_bytes(http.content.read(), "jsonrpc_http", None, request.ip, request.user)
        if isinstance(reply, Deferred):
            return reply.addCallback(lambda data: data or b"")
        return reply or b""

    def openapi(self, request: APIRequest) -> Unwrapped:
        return Unwrapped(openapi_document(self.server.registry))

    def discover(self, request: APIRequest) -> dict[str, Any]:
        return openrpc_document(self.server.registry)
