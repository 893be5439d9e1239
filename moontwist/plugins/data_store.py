"""``server.temperature_store`` (1 s samples of every sensor) and ``server.gcode_store``."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall

from moontwist.api.args import Arg
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.hookspecs import hookimpl

if TYPE_CHECKING:
    from moontwist.config import Config
    from moontwist.server import Server

OWNER = "data_store"
# printer object field -> temperature_store array name
FIELDS = {"temperature": "temperatures", "target": "targets", "power": "powers", "speed": "speeds"}


class DataStorePlugin:
    """Keeps recent temperatures and G-code traffic for frontends' charts and consoles."""

    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("data_store")
        self.temp_size = section.getint("temperature_store_size", 1200, minval=1)
        self.gcode_size = section.getint("gcode_store_size", 1000, minval=1)
        self.sensors: dict[str, dict[str, deque]] = {}
        self.monitors: set[str] = set()
        self.gcodes: deque[dict[str, Any]] = deque(maxlen=self.gcode_size)
        self.sampler = LoopingCall(self._sample)
        self.sampler.clock = server.reactor

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        register(
            Endpoint(
                "server.temperature_store",
                self.temperature_store,
                "/server/temperature_store",
                args=(Arg("include_monitors", "bool", default=False, description="Include temperature monitors"),),
                description="Recent 1 s samples of every temperature sensor",
            )
        )
        register(
            Endpoint(
                "server.gcode_store",
                self.gcode_store,
                "/server/gcode_store",
                args=(Arg("count", "int", minimum=0, description="How many recent entries (default: all)"),),
                description="Recent G-code commands and responses",
            )
        )

    @hookimpl
    def startup(self, server: Server) -> None:
        self.sampler.start(1.0, now=False)

    @hookimpl
    def shutdown(self, server: Server) -> None:
        if self.sampler.running:
            self.sampler.stop()

    @hookimpl
    def klippy_state_changed(self, state: str) -> None:
        if state == "ready":
            self._discover().addErrback(lambda f: self.log.warn("Sensor discovery failed: {e}", e=f.getErrorMessage()))

    @inlineCallbacks
    def _discover(self) -> Any:
        klippy = self.server.klippy
        result = yield klippy.query({"heaters": ["available_sensors", "available_monitors"]})
        heaters = result.get("status", {}).get("heaters", {})
        sensors = list(heaters.get("available_sensors") or [])
        self.monitors = set(heaters.get("available_monitors") or [])
        names = sensors + [m for m in self.monitors if m not in sensors]
        if not names:
            return
        values = yield klippy.query({name: None for name in names})
        status = values.get("status", {})
        wanted: dict[str, list[str]] = {}
        for name in names:
            fields = [f for f in FIELDS if f in status.get(name, {})]
            if not fields:
                continue
            wanted[name] = fields
            store = self.sensors.get(name)
            if store is None or set(store) != {FIELDS[f] for f in fields}:
                self.sensors[name] = {FIELDS[f]: deque(maxlen=self.temp_size) for f in fields}
        for gone in set(self.sensors) - set(wanted):
            del self.sensors[gone]
        yield klippy.add_subscription(OWNER, wanted)

    def _sample(self) -> None:
        klippy = self.server.klippy
        if klippy is None or not self.sensors:
            return
        status = klippy.status
        for name, arrays in self.sensors.items():
            values = status.get(name, {})
            for field, key in FIELDS.items():
                if key in arrays:
                    value = values.get(field)
                    if value is None and name not in self.monitors:
                        value = 0.0
                    arrays[key].append(round(value, 2) if isinstance(value, float) else value)

    @hookimpl
    def gcode_command(self, script: str) -> None:
        self.gcodes.append({"message": script, "time": time.time(), "type": "command"})

    @hookimpl
    def gcode_response(self, response: str) -> None:
        self.gcodes.append({"message": response, "time": time.time(), "type": "response"})

    def temperature_store(self, request: APIRequest) -> dict[str, Any]:
        include_monitors = request.args["include_monitors"]
        return {
            name: {key: list(values) for key, values in arrays.items()}
            for name, arrays in self.sensors.items()
            if include_monitors or name not in self.monitors
        }

    def gcode_store(self, request: APIRequest) -> dict[str, Any]:
        count = request.args.get("count")
        items = list(self.gcodes)
        if count is not None:
            items = items[-count:] if count else []
        return {"gcode_store": items}
