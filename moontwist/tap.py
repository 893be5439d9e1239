"""``twistd moontwist``: command-line options and the service tree."""

from __future__ import annotations

import os
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from moontwist.api.http import APISite
from moontwist.api.unixsock import UnixSocketFactory
from moontwist.config import ConfigError
from moontwist.server import Server, ServerOptions

__all__ = ["Options", "makeService", "MoontwistService"]

log = Logger()

# Set when start-up failed after twistd took over, so ``moontwist`` can exit non-zero.
start_failed = False


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "Config file (default: DATAPATH/config/moonraker.conf or moontwist.conf)"],
        ["datapath", "d", "~/printer_data", "Data path holding config/ gcodes/ logs/ database/ comms/"],
        ["host", None, None, "Address to listen on (default: [server] host, 0.0.0.0)"],
        ["port", "p", None, "Port to listen on (default: [server] port, 7125)", int],
    ]
    optFlags = [
        ["simulate", "s", "Always run the built-in simulated printer"],
        ["no-simulate", None, "Never start the simulated printer, even when no Klippy answers"],
        ["debug", None, "Verbose logging"],
    ]

    def postOptions(self) -> None:  # noqa: N802 - twisted API
        if self["simulate"] and self["no-simulate"]:
            raise usage.UsageError("--simulate and --no-simulate exclude each other")


def _endpoint_string(host: str, port: int) -> str:
    interface = host.replace(":", r"\:")
    return f"tcp:{port}:interface={interface}"


class MoontwistService(service.MultiService):
    """Starts the Server, then listens on TCP (HTTP + websocket) and on the unix socket."""

    def __init__(self, server: Server, reactor: Any = None) -> None:
        super().__init__()
        self.server = server
        self.reactor = reactor or server.reactor
        self.site = APISite(server.root_resource())
        self.listening_port: Any = None

    def startService(self) -> None:  # noqa: N802 - twisted API
        service.Service.startService(self)
        d = self.server.start()
        d.addCallback(lambda _: self._listen())
        d.addErrback(self._failed)
        self._started = d

    def _failed(self, failure: Any) -> None:
        global start_failed
        start_failed = True
        if failure.check(ConfigError):
            log.critical("Configuration error: {message}", message=failure.getErrorMessage())
        else:
            log.failure("moontwist failed to start", failure)
        self.server.close_log()
        self.reactor.callWhenRunning(self.reactor.stop)

    def _listen(self) -> Any:
        server = self.server
        tcp = StreamServerEndpointService(serverFromString(self.reactor, _endpoint_string(server.host, server.port)), self.site)
        tcp.setServiceParent(self)
        sock_path = server.path("comms", "moonraker.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        unix = StreamServerEndpointService(
            serverFromString(self.reactor, f"unix:{sock_path}:mode=660"), UnixSocketFactory(server)
        )
        unix.setServiceParent(self)
        self.site.access_log = server.debug
        log.info("Listening on {host}:{port} and {sock}", host=server.host, port=server.port, sock=sock_path)
        return tcp._waitingForPort.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        self.listening_port = port
        return port

    def stopService(self) -> Any:  # noqa: N802
        d = super().stopService()
        d.addCallback(lambda _: self.server.stop())
        d.addCallback(lambda _: self.server.close_log())
        return d


def server_options(options: Options) -> ServerOptions:
    simulate = True if options["simulate"] else (False if options["no-simulate"] else None)
    return ServerOptions(
        datapath=options["datapath"],
        config_file=options["config"],
        host=options["host"],
        port=options["port"],
        simulate=simulate,
        debug=bool(options["debug"]),
    )


def makeService(options: Options) -> MoontwistService:  # noqa: N802 - twisted API
    """The service ``twistd moontwist`` runs; a config that can't be read stops it here."""
    server = Server(server_options(options))
    try:
        server.check_config()
    except ConfigError as exc:
        raise SystemExit(f"moontwist: configuration error: {exc}") from None
    return MoontwistService(server)
