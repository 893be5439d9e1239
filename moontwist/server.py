"""The Server: owns the config, registry, plugins, connections and the notification bus."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.logger import Logger

from moontwist import API_VERSION, MOONRAKER_API_RELEASE, __version__, jsonutil
from moontwist.api.connection import Connection, ConnectionTable
from moontwist.api.errors import ServerError
from moontwist.api.http import HTTPAPI
from moontwist.api.jsonrpc import JSONRPCDispatcher
from moontwist.api.registry import APIRequest, Endpoint, Registry
from moontwist.api.websocket import build_websocket_resource
from moontwist.config import Config, ConfigError, find_config_file
from moontwist.logs import InstanceLog, ServerLog
from moontwist.pluginmanager import PluginManager

__all__ = ["Server", "ServerOptions", "DATA_SUBDIRS", "DEFAULT_CONFIG"]

DATA_SUBDIRS = ("config", "gcodes", "logs", "database", "comms")

DEFAULT_CONFIG = """\
# moontwist configuration, generated on first start.
# It reads like moonraker.conf; see etc/moontwist.conf in the source for every option.

[server]
host: 0.0.0.0
port: 7125

# Moonraker's usual defaults: no login on the local network, and Mainsail or
# Fluidd served from another port or host may call the API.
[authorization]
trusted_clients:
    10.0.0.0/8
    127.0.0.0/8
    169.254.0.0/16
    172.16.0.0/12
    192.168.0.0/16
    fe80::/10
    ::1/128
cors_domains:
    *.lan
    *.local
    *://localhost
    *://localhost:*
    *://my.mainsail.xyz
    *://app.fluidd.xyz
"""


@dataclass
class ServerOptions:
    """What the command line decides; everything else comes from the config file."""

    datapath: str = "~/printer_data"
    config_file: str | None = None
    host: str | None = None
    port: int | None = None
    simulate: bool | None = None  # None: simulate when no Klippy answers
    debug: bool = False
    use_entry_points: bool = True
    builtins: dict[str, str] | None = None
    extra_plugins: dict[str, Any] | None = None  # name -> plugin object (embedding, tests)
    # Other servers share this process (a farm): the log file gets only this instance's
    # lines (the process's own go to stdout), and stdout shows them under ``instance_name``.
    shared_process: bool = False
    instance_name: str | None = None


class Server:
    """One moontwist instance. ``start``/``stop``/``restart`` drive the plugins' lifecycle."""

    def __init__(self, options: ServerOptions, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.options = options
        self.instance_log = InstanceLog(options.instance_name if options.shared_process else None)
        self._log = self.logger(__name__)
        self.datapath = os.path.abspath(os.path.expanduser(options.datapath))
        self.registry = Registry()
        self.connections = ConnectionTable(self._connection_opened, self._connection_closed)
        self.dispatcher = JSONRPCDispatcher(self.registry, self.admit, self.logger("moontwist.api.jsonrpc"))
        self.http_api = HTTPAPI(self)
        self.websocket_resource = build_websocket_resource(self)
        # Set by plugins: auth checks every request, CORS vets origins and preflights.
        self.authorize: Callable[[APIRequest], None] | None = None
        self.origin_allowed: Callable[[str, str | None], bool] | None = None
        self.http_prepare: Callable[[Any], Any] | None = None
        self.klippy: Any = None
        self.config: Config = Config()
        self.plugins: PluginManager | None = None
        self.server_log: ServerLog | None = None
        self.warnings: list[str] = []
        # Klipper remote methods of this start (register_remote_methods): name -> callback.
        self.remote_methods: dict[str, Callable[..., Any]] = {}
        self.running = False
        self._services: dict[str, Any] = {}
        self._lifecycle = DeferredLock()
        self._restarting: list[Deferred] | None = None  # who waits for the restart under way
        self.prepare_datapath()

    # paths & config ----------------------------------------------------------------

    def logger(self, namespace: str) -> Logger:
        """A logger writing to this instance's log (and on to the process's, e.g. stdout)."""
        return self.instance_log.logger(namespace)

    def prepare_datapath(self) -> None:
        for sub in DATA_SUBDIRS:
            os.makedirs(os.path.join(self.datapath, sub), exist_ok=True)

    def path(self, *parts: str) -> str:
        """A path inside the data path."""
        return os.path.join(self.datapath, *parts)

    @property
    def config_file(self) -> str:
        return find_config_file(self.datapath, self.options.config_file)

    def load_config(self) -> Config:
        path = self.config_file
        if not os.path.exists(path) and not self.options.config_file:
            with open(path, "w", encoding="utf-8") as f:
                f.write(DEFAULT_CONFIG)
            self._log.info("Wrote a default config to {path}", path=path)
        config = Config(path)
        secrets = config.section("secrets").get("secrets_path", None)
        if secrets is None and os.path.exists(self.path("moonraker.secrets")):
            secrets = self.path("moonraker.secrets")
        if secrets is not None:
            config.load_secrets(secrets)
        return config

    def check_config(self) -> None:
        """Read the config files and [server] now, so errors show before the reactor starts."""
        self.config = self.load_config()
        self._read_server_section()

    def _read_server_section(self) -> None:
        section = self.config.section("server")
        host = section.get("host", "0.0.0.0")
        port = section.getint("port", 7125, minval=0, maxval=65535)
        self.host = self.options.host or host
        self.port = self.options.port if self.options.port is not None else port
        section.getint("ssl_port", 7130, minval=0, maxval=65535)
        self.klippy_uds_address = os.path.expanduser(
            section.get("klippy_uds_address", self.path("comms", "klippy.sock"))
        )
        self.max_upload_size = section.getint("max_upload_size", 1024, minval=1) * 1024 * 1024
        self.debug = self.options.debug or section.getboolean("enable_debug_logging", False)
        section.getboolean("enable_asyncio_debug", False)
        section.get("ssl_certificate_path", None)
        section.get("ssl_key_path", None)

    # lifecycle --------------------------------------------------------------------

    def start(self) -> Deferred:
        """Read the config, load plugins, register endpoints, start every plugin."""
        return self._lifecycle.run(self._start)

    @inlineCallbacks
    def _start(self) -> Any:
        self.config = self.load_config()
        self._read_server_section()
        if self.server_log is None:
            self.server_log = ServerLog(
                self.path("logs", "moontwist.log"), self.instance_log, self.debug, self.options.shared_process
            )
            self.server_log.start()
        self._log.info("moontwist {version} starting, config {path}", version=__version__, path=self.config.main_file)
        plugins = PluginManager(self, self.options.builtins, self.options.use_entry_points)
        self.plugins = plugins
        plugins.load(self.options.extra_plugins or {})
        plugins.call_each("configure", fatal=True, server=self, config=self.config)
        plugins.call_registration("register_endpoints", self._registrar, server=self)
        self.remote_methods = {}
        plugins.call_registration("register_remote_methods", self._remote_registrar, server=self)
        yield plugins.start_all(server=self)
        self.warnings = self.config.warnings() + [
            f"Plugin '{name}' failed to load: {why}" for name, why in plugins.failed.items()
        ]
        for warning in self.warnings:
            self._log.warn("{warning}", warning=warning)
        self.running = True
        self._log.info("Loaded plugins: {names}", names=", ".join(plugins.names))

    def _registrar(self, plugin: str) -> Callable[..., Endpoint]:
        def register(endpoint: Endpoint | None = None, **kwargs: Any) -> Endpoint:
            if endpoint is None:
                endpoint = Endpoint(**kwargs)
            return self.registry.add(replace(endpoint, plugin=plugin))

        return register

    def _remote_registrar(self, plugin: str) -> Callable[[str, Callable[..., Any]], None]:
        def register(name: str, callback: Callable[..., Any]) -> None:
            if name in self.remote_methods:
                raise ValueError(f"Klipper remote method '{name}' is already registered")
            self.remote_methods[name] = callback

        return register

    def stop(self) -> Deferred:
        """Stop every plugin (failed ones too) and drop every client."""
        return self._lifecycle.run(self._stop)

    @inlineCallbacks
    def _stop(self) -> Any:
        plugins = self.plugins
        if plugins is None:
            return
        self.running = False
        plugins.started.clear()  # from here on every endpoint answers 503
        self.connections.close_all(1001, "Server shutting down")
        yield plugins.stop_all(server=self)
        for endpoint in list(self.registry):
            self.registry.remove(endpoint.method)
        self._services.clear()
        self.remote_methods = {}
        self.plugins = None

    def close_log(self) -> None:
        if self.server_log is not None:
            self.server_log.stop()
            self.server_log = None

    def restart(self, delay: float = 0.0) -> Deferred:
        """Reload the config and plugins in this process; connected clients are dropped.

        The restart begins after ``delay`` seconds (so a reply can go out first).
        Restarts are serialized: asking again while one is pending or under way
        joins it.  The Deferred fires when the server runs again (never fails).
        """
        if self._restarting is None:
            self._log.info("Restarting")
            self._restarting = []
            self.reactor.callLater(delay, lambda: self._lifecycle.run(self._restart).addBoth(self._restarted))
        waiter: Deferred = Deferred()
        self._restarting.append(waiter)
        return waiter

    @property
    def restarting(self) -> bool:
        return self._restarting is not None

    def _restarted(self, result: Any) -> None:
        waiters, self._restarting = self._restarting or [], None
        for waiter in waiters:
            waiter.callback(None)

    @inlineCallbacks
    def _restart(self) -> Any:
        try:
            yield self._stop()
            yield self._start()
        except ConfigError as exc:
            if self.options.shared_process:  # the other instances of the process go on
                self._log.critical("Restart failed: {error}; this instance stays stopped", error=str(exc))
                return
            self._log.critical("Restart failed: {error}", error=str(exc))
            self.reactor.stop()
        except Exception:
            self._log.failure("Restart failed")

    # notifications & events ----------------------------------------------------------

    def notify(self, method: str, *params: Any) -> None:
        """Broadcast ``method`` to every websocket and unix socket client (encoded once)."""
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            msg["params"] = list(params)
        self.connections.broadcast(jsonutil.dumpb(msg))
        if self.plugins is not None:
            self.plugins.emit("notification", server=self, method=method, params=list(params) if params else None)

    def emit(self, event: str, **kwargs: Any) -> None:
        """Deliver an event hook to every plugin."""
        if self.plugins is not None:
            self.plugins.emit(event, server=self, **kwargs)

    def _connection_opened(self, conn: Connection) -> None:
        self.emit("connection_opened", connection=conn)

    def _connection_closed(self, conn: Connection) -> None:
        self.emit("connection_closed", connection=conn)

    def admit(self, request: APIRequest) -> None:
        """The gate of every transport: the endpoint's plugin is started, then authorization.

        During start-up, restart and shutdown an endpoint answers 503; without an
        authorization check installed nothing is allowed through.
        """
        plugins = self.plugins
        if plugins is None or not plugins.is_started(request.endpoint.plugin):
            raise ServerError("Server is restarting" if self.restarting else "Server is not ready", 503)
        authorize = self.authorize
        if authorize is None:
            raise ServerError("Authorization is not available", 503)
        authorize(request)

    # state reported by server.info ------------------------------------------------------

    @property
    def klippy_state(self) -> str:
        return self.klippy.state if self.klippy is not None else "disconnected"

    @property
    def print_state(self) -> str | None:
        """``print_stats.state`` as Klippy last reported it (None before it has)."""
        if self.klippy is None:
            return None
        return (self.klippy.status.get("print_stats") or {}).get("state")

    @property
    def printing(self) -> bool:
        """Whether a print is running or paused (what refuses updates, compaction, power-off...)."""
        return self.print_state in ("printing", "paused")

    @property
    def klippy_connected(self) -> bool:
        return bool(self.klippy is not None and self.klippy.connected)

    def info(self) -> dict[str, Any]:
        plugins = self.plugins
        dirs = self._services.get("registered_directories")
        return {
            "klippy_connected": self.klippy_connected,
            "klippy_state": self.klippy_state,
            "components": plugins.names if plugins else [],
            "failed_components": sorted(plugins.failed) if plugins else [],
            "registered_directories": dirs() if callable(dirs) else [],
            "warnings": list(self.warnings),
            "websocket_count": self.connections.count("websocket"),
            # Compared by frontends with their minimum Moonraker version; still names moontwist.
            "moonraker_version": f"{MOONRAKER_API_RELEASE}-moontwist-{__version__}",
            "moontwist_version": __version__,
            "api_version": list(API_VERSION),
            "api_version_string": ".".join(map(str, API_VERSION)),
        }

    def provide(self, name: str, value: Any) -> None:
        """Offer a service to other plugins (e.g. ``registered_directories``)."""
        self._services[name] = value

    def lookup(self, name: str, default: Any = None) -> Any:
        return self._services.get(name, default)

    def root_resource(self) -> Any:
        return self.http_api.resource()

