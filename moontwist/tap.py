"""``twistd moontwist``: command-line options and the service tree."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet.defer import DeferredList, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.python import usage
from twisted.python.failure import Failure

from moontwist.api.http import APISite
from moontwist.api.unixsock import UnixSocketFactory
from moontwist.api.upload import streaming_request_factory
from moontwist.config import ConfigError
from moontwist.server import Server, ServerOptions

__all__ = ["Options", "makeService", "MoontwistService"]

# Set when start-up failed after twistd took over, so ``moontwist`` can exit non-zero.
start_failed = False


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "Config file (default: DATAPATH/config/moonraker.conf or moontwist.conf)"],
        ["datapath", "d", "~/printer_data", "Data path holding config/ gcodes/ logs/ database/ comms/"],
        ["host", None, None, "Address to listen on (default: [server] host, 0.0.0.0)"],
        ["port", "p", None, "Port to listen on (default: [server] port, 7125)", int],
        ["simulate-farm", None, None, "Farm: N simulated printers in DATAPATH/printer-01... on ports PORT...", int],
        ["farm-port", None, None, "Farm: serve the fleet view (/farm/printers, /websocket, /) on this port", int],
        ["sim-speed", None, 1.0, "Farm: time factor of --simulate-farm's printers", float],
        ["farm-datapath", None, None, "Farm: the fleet view's own data path (default DATAPATH with "
         "--simulate-farm, else ~/printer_farm)"],
    ]
    optFlags = [
        ["simulate", "s", "Always run the built-in simulated printer"],
        ["no-simulate", None, "Never start the simulated printer, even when no Klippy answers"],
        ["debug", None, "Verbose logging"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["instance"] = []

    def opt_instance(self, datapath: str) -> None:  # noqa: N802 - twisted API
        """Farm: serve the instance whose data path this is (repeat for each printer)."""
        self["instance"].append(datapath)

    def postOptions(self) -> None:  # noqa: N802 - twisted API
        if self["simulate"] and self["no-simulate"]:
            raise usage.UsageError("--simulate and --no-simulate exclude each other")
        if self["instance"] and self["simulate-farm"] is not None:
            raise usage.UsageError("--instance and --simulate-farm exclude each other")
        if self["simulate-farm"] is not None and not 1 <= self["simulate-farm"] <= 500:
            raise usage.UsageError("--simulate-farm takes a number of printers from 1 to 500")
        if self.farm and self["config"]:
            raise usage.UsageError("--config names one instance's file; farm instances use their own data paths")
        if self["instance"] and self["port"] is not None:
            raise usage.UsageError("--port with --instance: each instance's port comes from its own config")
        if self["farm-port"] is not None and not self.farm:
            raise usage.UsageError("--farm-port needs --instance or --simulate-farm")

    @property
    def farm(self) -> bool:
        return bool(self["instance"]) or self["simulate-farm"] is not None


class MoontwistService(service.MultiService):
    """Starts the Server, then listens on TCP (HTTP + websocket) and on the unix socket.

    ``on_failure(failure)`` is told when start-up fails; by default the process
    stops (a farm instead records the failure and keeps its other instances).
    """

    def __init__(
        self,
        server: Server,
        reactor: Any = None,
        *,
        on_failure: Callable[[Failure], None] | None = None,
        unix_socket: bool = True,
    ) -> None:
        super().__init__()
        self.server = server
        self.reactor = reactor or server.reactor
        self.on_failure = on_failure
        self.unix_socket = unix_socket
        self.log = server.logger(__name__)
        self.site = APISite(server.root_resource(), reactor=self.reactor, logger=server.logger("moontwist.access"))
        self.site.requestFactory = streaming_request_factory(server)
        self.listening_port: Any = None
        self.tls_port: Any = None  # Deferred firing with the HTTPS port, when configured
        self._ports: list[Any] = []

    def startService(self) -> None:  # noqa: N802 - twisted API
        service.Service.startService(self)
        d = self.server.start()
        d.addCallback(lambda _: self._listen())
        d.addErrback(self._failed)
        self._started = d

    def _failed(self, failure: Failure) -> None:
        if self.on_failure is not None:
            self.on_failure(failure)  # may still write to the instance's log
            self.server.close_log()
            return
        global start_failed
        start_failed = True
        if failure.check(ConfigError):
            self.log.critical("Configuration error: {message}", message=failure.getErrorMessage())
        else:
            self.log.failure("moontwist failed to start", failure)
        self.server.close_log()
        self.reactor.callWhenRunning(self.reactor.stop)

    def _listen(self) -> Any:
        # The reactor's own listen calls: Twisted's endpoint and service layers would cost ~1 MB resident.
        server = self.server
        self.listening_port = self.reactor.listenTCP(server.port, self.site, interface=server.host)
        self._ports.append(self.listening_port)
        sock_path = server.path("comms", "moonraker.sock")
        if self.unix_socket:
            if os.path.exists(sock_path):
                os.unlink(sock_path)
            self._ports.append(self.reactor.listenUNIX(sock_path, UnixSocketFactory(server), mode=0o660))
        self._listen_tls()
        self.site.access_log = server.debug
        self.log.info("Listening on {host}:{port}", host=server.host, port=server.port)
        return self.listening_port

    def _listen_tls(self) -> None:
        """HTTPS and WSS on ``ssl_port`` when ``[server]`` names a certificate and its key."""
        section = self.server.config.section("server")
        cert_path = section.get("ssl_certificate_path", None)
        key_path = section.get("ssl_key_path", None)
        if not cert_path or not key_path:
            return
        port = section.getint("ssl_port", 7130, minval=0, maxval=65535)
        try:  # imported only when HTTPS is configured; this import brings pyOpenSSL back (moontwist.tls)
            from twisted.internet import ssl
        except ImportError:
            self.log.error("HTTPS disabled: pyOpenSSL is not installed")
            return

        try:
            with open(os.path.expanduser(cert_path), "rb") as f:
                cert = f.read()
            with open(os.path.expanduser(key_path), "rb") as f:
                key = f.read()
            options = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key).options()
        except (OSError, ValueError, ssl.SSL.Error) as exc:
            self.log.error("HTTPS disabled: can't load {cert} / {key}: {error}", cert=cert_path, key=key_path, error=str(exc))
            return
        try:
            tls = self.reactor.listenSSL(port, self.site, options, interface=self.server.host)
        except CannotListenError as exc:
            self.log.error("HTTPS disabled: {error}", error=str(exc))
            return
        self._ports.append(tls)
        self.tls_port = succeed(tls)
        self.log.info("Listening for HTTPS on {host}:{port}", host=self.server.host, port=port)

    def stopService(self) -> Any:  # noqa: N802
        d = super().stopService()
        ports, self._ports = self._ports, []
        d.addCallback(lambda _: DeferredList([maybeDeferred(p.stopListening) for p in ports]))
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


def makeService(options: Options) -> service.MultiService:  # noqa: N802 - twisted API
    """The service ``twistd moontwist`` runs; a config that can't be read stops it here."""
    if options.farm:
        from moontwist.farm import make_farm

        return make_farm(options)
    server = Server(server_options(options))
    try:
        server.check_config()
    except ConfigError as exc:
        raise SystemExit(f"moontwist: configuration error: {exc}") from None
    return MoontwistService(server)
