"""API endpoints: request validation, dispatch and Klippy's reply/error format."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.python.failure import Failure

from ..machine.cpuinfo import parse_cpuinfo
from ..machine.hostfs import read_text
from .errors import GCodeError, WebRequestError
from .files import KLIPPER_PATH
from .printer import SOFTWARE_VERSION, load_data

log = logging.getLogger(__name__)

_MISSING = object()
# Endpoints Klippy registers only once the printer has connected.
CONNECT_TIME = ("bed_mesh/dump_mesh", "query_endstops/status", "motion_report/dump_stepper",
                "motion_report/dump_trapq")


def get_arg(params: dict, key: str, kind: type | tuple, default: Any = _MISSING) -> Any:
    """Fetch a request argument with Klippy's error wording."""
    if key not in params:
        if default is _MISSING:
            raise WebRequestError(f"Missing Argument [{key}]")
        return default
    value = params[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise WebRequestError(f"Invalid Argument Type [{key}]")
    return value


def host_cpu_info(root: str = "/") -> str:
    """This machine's CPU as Klippy describes it ("4 core ARMv7 Processor rev 4 (v7l)").

    Read the way ``machine.system_info`` reads it, so both name the same CPU.
    """
    parsed = parse_cpuinfo(read_text(root, "/proc/cpuinfo") or "")
    return f"{parsed['cpu_count'] or os.cpu_count()} core {parsed['cpu_desc'] or '?'}"


def _objects_arg(params: dict) -> dict[str, list[str] | None]:
    objects = get_arg(params, "objects", dict)
    for fields in objects.values():
        if fields is not None and (not isinstance(fields, list)
                                   or not all(isinstance(f, str) for f in fields)):
            raise WebRequestError("Invalid argument")
    return objects


class Webhooks:
    """Routes requests from connections to endpoint handlers."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.cpu_info = host_cpu_info()
        self.remote_methods: dict[str, dict[object, dict]] = {}
        self.endpoints: dict[str, Callable] = {
            "list_endpoints": self.list_endpoints,
            "info": self.info,
            "emergency_stop": self.emergency_stop,
            "register_remote_method": self.register_remote_method,
            "gcode/help": lambda conn, params: load_data("gcode_help.json"),
            "gcode/script": self.gcode_script,
            "gcode/restart": lambda conn, params: self._script("RESTART"),
            "gcode/firmware_restart": lambda conn, params: self._script("FIRMWARE_RESTART"),
            "gcode/subscribe_output": self.subscribe_output,
            "objects/list": lambda conn, params: {"objects": self.sim.printer.object_names()},
            "objects/query": self.objects_query,
            "objects/subscribe": self.objects_subscribe,
            "pause_resume/cancel": lambda conn, params: self._script("CANCEL_PRINT"),
            "pause_resume/pause": lambda conn, params: self._script("PAUSE"),
            "pause_resume/resume": lambda conn, params: self._script("RESUME"),
            "bed_mesh/dump_mesh": lambda conn, params: load_data("bed_mesh_dump.json"),
            "query_endstops/status": lambda conn, params: {
                "stepper_x": "open", "stepper_y": "open", "stepper_z": "open"},
            "motion_report/dump_stepper": self.motion_dump,
            "motion_report/dump_trapq": self.motion_dump,
        }

    def available(self) -> list[str]:
        """Endpoints registered in the current printer state."""
        ready = self.sim.printer.state == "ready"
        return [name for name in self.endpoints if ready or name not in CONNECT_TIME]

    def handle(self, conn, msg: Any) -> None:
        """Process one decoded message (malformed requests are dropped silently)."""
        if not isinstance(msg, dict):
            return
        method = msg.get("method")
        params = msg.get("params", {})
        if not isinstance(method, str) or not isinstance(params, dict):
            return
        if method in self.sim.silenced_methods:
            return
        req_id = msg.get("id")
        d = maybeDeferred(self._call, conn, method, params)

        def reply(result: Any) -> None:
            if req_id is not None:
                conn.send({"id": req_id, "result": result})

        def fail(failure: Failure) -> None:
            if failure.check(WebRequestError, GCodeError):
                message = str(failure.value)
            else:
                log.error("endpoint %s failed: %s", method, failure.getTraceback())
                message = f"Internal Error on WebRequest: {method}"
            if req_id is not None:
                conn.send({"id": req_id, "error": {"error": "WebRequestError",
                                                   "message": message}})

        d.addCallbacks(reply, fail)

    def _call(self, conn, method: str, params: dict) -> Any:
        if method not in self.available():
            raise WebRequestError(f"webhooks: No registered callback for path '{method}'")
        return self.endpoints[method](conn, params)

    def connection_lost(self, conn) -> None:
        """Drop a closed connection's remote methods."""
        for conns in self.remote_methods.values():
            conns.pop(conn, None)

    def call_remote_method(self, method: str, params: dict) -> None:
        """Push a remote-method call to every connection that registered it."""
        targets = self.remote_methods.get(method)
        if not targets:
            log.info("remote method %r is not registered", method)
            return
        for conn, template in list(targets.items()):
            msg = {"params": params}
            msg.update({k: v for k, v in template.items() if k != "params"})
            conn.send(msg)

    # ---- endpoints
    def list_endpoints(self, conn, params: dict) -> dict:
        return {"endpoints": self.available()}

    def info(self, conn, params: dict) -> dict:
        client_info = get_arg(params, "client_info", dict, None)
        if client_info is not None:
            conn.client_info = client_info
        printer = self.sim.printer
        return {
            "state": printer.state,
            "state_message": printer.state_message,
            "hostname": "vm",
            "klipper_path": KLIPPER_PATH,
            "python_path": sys.executable,
            "process_id": os.getpid(),
            "user_id": os.getuid(),
            "group_id": os.getgid(),
            "log_file": self.sim.log_path,
            "config_file": self.sim.config_file,
            "software_version": SOFTWARE_VERSION,
            "cpu_info": self.cpu_info,
        }

    def emergency_stop(self, conn, params: dict) -> dict:
        self.sim.printer.invoke_shutdown("Shutdown due to webhooks request")
        return {}

    def register_remote_method(self, conn, params: dict) -> dict:
        template = get_arg(params, "response_template", dict)
        method = get_arg(params, "remote_method", str)
        self.remote_methods.setdefault(method, {})[conn] = template
        return {}

    def gcode_script(self, conn, params: dict):
        return self._script(get_arg(params, "script", str))

    def _script(self, script: str):
        return self.sim.printer.gcode.run_script(script).addCallback(lambda _: {})

    def subscribe_output(self, conn, params: dict) -> dict:
        conn.output_template = get_arg(params, "response_template", dict, {})
        return {}

    def objects_query(self, conn, params: dict):
        return self.sim.hub.query(_objects_arg(params))

    def objects_subscribe(self, conn, params: dict):
        objects = _objects_arg(params)
        template = get_arg(params, "response_template", dict, {})
        return self.sim.hub.subscribe(conn, objects, template)

    def motion_dump(self, conn, params: dict) -> dict:
        name = get_arg(params, "name", str)
        raise WebRequestError(f"Motion dump of '{name}' is not available in the simulator")
