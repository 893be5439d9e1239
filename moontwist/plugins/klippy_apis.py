"""``printer.*`` endpoints and the Klippy connection (with the built-in simulator when no Klippy answers)."""

from __future__ import annotations

import os
import re
import socket
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import inlineCallbacks

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.klippysocket import KlippyBridges
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.hookspecs import hookimpl
from moontwist.klippy.connection import KlippyConnection
from moontwist.klippy.subscriptions import normalize

if TYPE_CHECKING:
    from moontwist.config import Config
    from moontwist.server import Server

PLUGIN_NAME = "klippy_apis"

# arguments of the HTTP query form that are not object names
_NOT_OBJECTS = frozenset({"connection_id", "path_tail", "objects"})
# Klippy endpoints only moontwist itself may call (as in Moonraker)
RESERVED_ENDPOINTS = frozenset({"list_endpoints", "gcode/subscribe_output", "register_remote_method"})
_KLIPPY_ENDPOINT = re.compile(r"[a-z0-9_]+(/[a-z0-9_]+)*")


def _objects_arg(request: APIRequest) -> dict[str, Any]:
    """``objects`` from JSON-RPC, or ``?gcode_move&extruder=target,temperature`` from HTTP."""
    objects = request.args.get("objects")
    if objects is not None:
        return objects
    return {
        name: (value or None) if isinstance(value, str) else value
        for name, value in request.args.items()
        if name not in _NOT_OBJECTS and value is not None
    }


def _klippy_socket_answers(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


class KlippyAPIsPlugin:
    """Owns the Klippy connection; serves the printer administration, status and G-code APIs."""

    server: Server
    klippy: KlippyConnection

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("simulator")
        self.sim_speed = section.getfloat("speed", 1.0, above=0.0)
        self.simulator: Any = None
        self.bridges = KlippyBridges(server)

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        objects = Arg("objects", "dict", description="Object names mapped to field lists (null: every field)")
        post = ("POST",)
        for endpoint in (
            Endpoint("printer.info", self.info, "/printer/info", description="Klippy host information"),
            Endpoint("printer.emergency_stop", self.emergency_stop, "/printer/emergency_stop", post, description="Halt the printer (M112)"),
            Endpoint("printer.restart", self.restart, "/printer/restart", post, description="Restart Klippy's host software"),
            Endpoint("printer.firmware_restart", self.firmware_restart, "/printer/firmware_restart", post, description="Restart the MCUs and Klippy"),
            Endpoint("printer.objects.list", self.objects_list, "/printer/objects/list", description="Printer objects available"),
            Endpoint("printer.objects.query", self.objects_query, "/printer/objects/query", ("GET", "POST"), args=(objects,), description="Current values of printer objects"),
            Endpoint(
                "printer.objects.subscribe",
                self.objects_subscribe,
                "/printer/objects/subscribe",
                ("GET", "POST"),
                args=(objects, Arg("connection_id", "int", description="HTTP only: the websocket to subscribe")),
                description="Receive notify_status_update for these objects (empty cancels)",
            ),
            Endpoint("printer.query_endstops.status", self.endstops, "/printer/query_endstops/status", description="Endstop states"),
            Endpoint(
                "printer.gcode.script",
                self.gcode_script,
                "/printer/gcode/script",
                post,
                args=(Arg("script", required=True, description="G-code to run; replies when it completes"),),
                description="Run G-code",
            ),
            Endpoint("printer.gcode.help", self.gcode_help, "/printer/gcode/help", description="Registered G-code commands"),
            Endpoint(
                "printer.print.start",
                self.print_start,
                "/printer/print/start",
                post,
                args=(Arg("filename", required=True, description="File in the gcodes root"),),
                description="Start printing a file",
            ),
            Endpoint("printer.print.pause", self.print_pause, "/printer/print/pause", post, description="Pause the print"),
            Endpoint("printer.print.resume", self.print_resume, "/printer/print/resume", post, description="Resume the print"),
            Endpoint("printer.print.cancel", self.print_cancel, "/printer/print/cancel", post, description="Cancel the print"),
            Endpoint(
                "klippysocket",
                self.klippysocket,
                "/klippysocket",
                transports=frozenset({"http"}),
                description="Websocket upgrade: a raw bridge to Klippy's API socket (messages without 0x03)",
            ),
        ):
            register(endpoint)

    @hookimpl
    @inlineCallbacks
    def startup(self, server: Server) -> Any:
        path = server.klippy_uds_address
        simulate = server.options.simulate
        if simulate is None:
            simulate = not _klippy_socket_answers(path)
            if simulate:
                self.log.info("No Klippy answers at {path}; starting the simulated printer", path=path)
        if simulate:
            from moontwist.sim import KlippySimulator

            self.simulator = KlippySimulator(
                path, server.path("gcodes"), speed=self.sim_speed, reactor=server.reactor,
                log_path=server.path("logs", "klippy.log"), config_dir=server.path("config"),
            )
            yield self.simulator.start()
        self.klippy = KlippyConnection(server, path)
        server.klippy = self.klippy
        server.provide("start_print", self.start_print)
        server.provide("klippy_bridges", self.bridges)
        self.klippy.start()

    @hookimpl
    @inlineCallbacks
    def shutdown(self, server: Server) -> Any:
        self.bridges.close_all()
        self.klippy.stop()
        server.klippy = None
        if self.simulator is not None:
            yield self.simulator.stop()
            self.simulator = None

    @hookimpl
    def connection_closed(self, connection: Any) -> None:
        self.klippy.subscriptions.drop(connection)

    @hookimpl
    def klippy_state_changed(self, state: str) -> None:
        if state in ("ready", "shutdown", "error"):
            d = self.klippy.request("list_endpoints", {}).addCallbacks(self._add_klippy_endpoints, self._no_endpoints)
            d.addErrback(lambda f: self.log.failure("Registering Klippy's endpoints failed", f))

    # Klippy's own endpoints ----------------------------------------------------------------

    def _add_klippy_endpoints(self, result: dict[str, Any]) -> None:
        """Serve each endpoint Klippy lists as ``/printer/<endpoint>`` and ``printer.<endpoint>``.

        Like Moonraker: GET and POST, arguments passed on as they are; an endpoint
        moontwist serves itself (``/printer/info``, ``/printer/objects/query``...) keeps its own handler.
        """
        if self.server.klippy is not self.klippy:  # the reply came after this plugin stopped
            return
        registry = self.server.registry
        for name in (result or {}).get("endpoints", []):
            if not isinstance(name, str) or name in RESERVED_ENDPOINTS or not _KLIPPY_ENDPOINT.fullmatch(name):
                continue
            method, path = "printer." + name.replace("/", "."), "/printer/" + name
            if registry.by_method(method) is not None or registry.routes(path):
                continue
            registry.add(
                Endpoint(
                    method,
                    self._klippy_endpoint,
                    path,
                    ("GET", "POST"),
                    description=f"Klippy's '{name}' endpoint, passed through",
                    plugin=PLUGIN_NAME,
                    extra={"klippy_endpoint": name},
                )
            )

    def _no_endpoints(self, failure: Any) -> None:
        self.log.info("Klippy's endpoint list is not available: {e}", e=failure.getErrorMessage())

    def _klippy_endpoint(self, request: APIRequest) -> Any:
        return self.klippy.request(request.endpoint.extra["klippy_endpoint"], dict(request.args))

    # handlers ---------------------------------------------------------------------------

    def info(self, request: APIRequest) -> Any:
        return self.klippy.request("info", {})

    async def emergency_stop(self, request: APIRequest) -> str:
        await self.klippy.request("emergency_stop", {})
        return "ok"

    async def _restart(self, method: str, params: dict[str, Any]) -> str:
        try:
            await self.klippy.request(method, params, timeout=None)
        except ServerError as exc:
            if exc.status != 503:  # Klippy may close the socket before it replies
                raise
        return "ok"

    def restart(self, request: APIRequest) -> Any:
        return self._restart("gcode/restart", {})

    def firmware_restart(self, request: APIRequest) -> Any:
        return self._restart("gcode/script", {"script": "FIRMWARE_RESTART"})

    async def objects_list(self, request: APIRequest) -> dict[str, Any]:
        result = await self.klippy.request("objects/list", {})
        self.klippy.objects = result.get("objects", self.klippy.objects)
        return result

    def objects_query(self, request: APIRequest) -> Any:
        return self.klippy.subscriptions.query(normalize(_objects_arg(request)))

    def objects_subscribe(self, request: APIRequest) -> Any:
        conn = request.connection
        if conn is None:
            conn_id = request.args.get("connection_id")
            if conn_id is None:
                raise ServerError("Missing required argument 'connection_id' (needed over HTTP)", 400)
            conn = self.server.connections.get(conn_id)
            if conn is None:
                raise ServerError(f"Invalid argument 'connection_id': no connection {conn_id}", 404)
        if not self.klippy.connected:
            raise ServerError("Klippy Disconnected", 503)
        return self.klippy.subscriptions.subscribe(conn, normalize(_objects_arg(request)))

    async def klippysocket(self, request: APIRequest) -> Any:
        return await self.bridges.open(request.http_request, self.server.klippy_uds_address)

    def endstops(self, request: APIRequest) -> Any:
        return self.klippy.request("query_endstops/status", {})

    async def gcode_script(self, request: APIRequest) -> str:
        await self.klippy.gcode(request.args["script"])
        return "ok"

    def gcode_help(self, request: APIRequest) -> Any:
        return self.klippy.request("gcode/help", {})

    async def print_start(self, request: APIRequest) -> str:
        await self.start_print(request.args["filename"], (request.user or {}).get("username"))
        return "ok"

    async def start_print(self, filename: str, user: str | None = None) -> None:
        """Print a file of the gcodes root (``SDCARD_PRINT_FILE``); ``user`` goes to the history."""
        filename = filename.lstrip("/")
        if filename.startswith("gcodes/"):
            filename = filename[len("gcodes/"):]
        if any(c in filename for c in "\n\r"):
            raise ServerError(f"Invalid argument 'filename': {filename!r} contains a line break", 400)
        quoted = filename.replace('"', '\\"')  # as Moonraker sends it
        self.server.emit("print_requested", filename=filename, user=user)
        self.klippy.expect_print()
        try:
            await self.klippy.gcode(f'SDCARD_PRINT_FILE FILENAME="{quoted}"')
        except BaseException:
            self.klippy.print_not_started()
            raise
        self.klippy.confirm_print()

    async def _pause_resume(self, action: str) -> str:
        # Klippy replies when the macro has run (RESUME may reheat): no time limit.
        await self.klippy.request(f"pause_resume/{action}", {}, timeout=None)
        return "ok"

    def print_pause(self, request: APIRequest) -> Any:
        return self._pause_resume("pause")

    def print_resume(self, request: APIRequest) -> Any:
        return self._pause_resume("resume")

    def print_cancel(self, request: APIRequest) -> Any:
        return self._pause_resume("cancel")
