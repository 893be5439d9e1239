"""The ``sensor`` plugin: Moonraker's ``[sensor NAME]`` sections and ``server.sensors.*``.

Endpoints (HTTP and JSON-RPC)::

    GET /server/sensors/list          server.sensors.list          every sensor (extended: parameters, history fields)
    GET /server/sensors/info          server.sensors.info          one sensor
    GET /server/sensors/measurements  server.sensors.measurements  stored measurements (one sensor or all)

The only type is ``mqtt``: ``state_topic`` is subscribed through the ``[mqtt]``
client and each payload is rendered with ``state_response_template``, a
sandboxed Jinja2 template with Moonraker's delimiters (``{ expr }``,
``{% stmt %}``) that calls ``set_result(name, value)`` for each measurement
(``payload``, ``log_debug``, ``raise_error`` and the ``fromjson`` filter are
available).  Once a second the latest values are appended to a store of
``sensor_store_size`` samples (like the temperature store) and changes are
broadcast as ``notify_sensor_update``.  ``history_field_NAME`` options add the
sensor's values to print history jobs' ``auxiliary_data``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from moontwist import jsonutil
from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import ConfigError, ConfigSection
from moontwist.history_fields import STRATEGIES, HistoryField
from moontwist.hookspecs import hookimpl

if TYPE_CHECKING:
    from moontwist.config import Config
    from moontwist.server import Server

__all__ = ["SensorsPlugin", "MQTTSensor", "template_environment"]

UPDATE_INTERVAL = 1.0
PARAMETER_PREFIX = "parameter_"
HISTORY_PREFIX = "history_field_"
_FIELD_KEYS = {"parameter", "desc", "strategy", "units", "init_tracker", "exclude_paused", "report_total", "report_maximum", "precision"}


class TemplateRaised(Exception):
    """``raise_error(message)`` called from a template."""


def _raise_error(message: str) -> None:
    raise TemplateRaised(message)


def template_environment(log: Logger) -> SandboxedEnvironment:
    """Moonraker's template dialect, sandboxed: ``{ expr }``, ``{% stmt %}``, ``fromjson``."""
    env = SandboxedEnvironment(
        block_start_string="{%", block_end_string="%}", variable_start_string="{", variable_end_string="}"
    )
    env.filters["fromjson"] = jsonutil.loads
    env.globals["raise_error"] = _raise_error
    env.globals["log_debug"] = lambda message: log.debug("{message}", message=str(message))
    return env


def _flag(value: str | None, option: str, section: str) -> bool:
    text = (value or "false").strip().lower()
    if text not in ("true", "false"):
        raise ConfigError(f"[{section}] {option}: expected true or false, got {value!r}")
    return text == "true"


class MQTTSensor:
    """A ``type: mqtt`` sensor: values from a topic, through a template."""

    def __init__(self, section: ConfigSection, env: SandboxedEnvironment, log: Logger) -> None:
        self.log = log
        self.id = section.name.split(maxsplit=1)[1]
        self.section_name = section.name
        self.type = section.get("type").lower()
        self.friendly_name = section.get("name", self.id)
        store_size = section.getint("sensor_store_size", 1200, minval=1)
        self.state_topic = section.get("state_topic")
        source = section.get("state_response_template")
        try:
            self.template = env.from_string(source)
        except TemplateError as exc:
            raise ConfigError(f"[{section.name}] state_response_template: {exc}") from None
        self.qos = section.getint("qos", None, minval=0, maxval=2)
        self.error_state: str | None = None
        self.last_measurements: dict[str, int | float] = {}
        self.last_value: dict[str, int | float] = {}
        self.values: dict[str, deque[int | float]] = {}
        self.store_size = store_size
        self.param_info: list[dict[str, Any]] = []
        self.fields: dict[str, list[tuple[HistoryField, bool]]] = {}
        for option in section.options():
            if option.startswith(PARAMETER_PREFIX):
                info = dict(section.getdict(option, allow_empty=True))
                info["name"] = option[len(PARAMETER_PREFIX):]
                self.param_info.append(info)
            elif option.startswith(HISTORY_PREFIX):
                self._history_field(section, option)
        self.handle: Any = None

    def _history_field(self, section: ConfigSection, option: str) -> None:
        name = option[len(HISTORY_PREFIX):]
        spec = section.getdict(option)
        where = f"{section.name}] option [{option}"
        unknown = sorted(set(spec) - _FIELD_KEYS)
        if unknown:
            raise ConfigError(f"[{section.name}] {option}: unknown keys {unknown}")
        parameter = spec.get("parameter")
        if not parameter:
            raise ConfigError(f"[{section.name}] {option}: the key 'parameter' must be given")
        strategy = spec.get("strategy") or "basic"
        if strategy not in STRATEGIES:
            raise ConfigError(f"[{section.name}] {option}: strategy {strategy!r} is not one of {list(STRATEGIES)}")
        precision = spec.get("precision")
        try:
            digits = int(precision) if precision is not None else None
        except ValueError:
            raise ConfigError(f"[{section.name}] {option}: precision {precision!r} is not an integer") from None
        field = HistoryField(
            provider=section.name,
            name=name,
            description=spec.get("desc") or f"{parameter} tracker",
            strategy=strategy,
            units=spec.get("units"),
            precision=digits,
            exclude_paused=_flag(spec.get("exclude_paused"), "exclude_paused", where),
            report_total=_flag(spec.get("report_total"), "report_total", where),
            report_maximum=_flag(spec.get("report_maximum"), "report_maximum", where),
        )
        init = _flag(spec.get("init_tracker"), "init_tracker", where)
        self.fields.setdefault(parameter, []).append((field, init))

    # measurements --------------------------------------------------------------------------

    def on_payload(self, payload: bytes) -> None:
        """A message on the state topic: render the template, keep what it set."""
        measurements: dict[str, int | float] = {}

        def set_result(name: str, value: Any) -> str:
            measurements[str(name)] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else float(value)
            return ""

        try:
            self.template.render(payload=payload.decode("utf-8", "replace"), set_result=set_result)
        except Exception as exc:
            self.log.warn("Sensor {name}: state_response_template failed: {error}", name=self.id, error=str(exc))
            self.error_state = str(exc)
            return
        self.error_state = None
        self.last_measurements = measurements
        for name, value in measurements.items():
            for field, _ in self.fields.get(name, ()):
                field.update(value)

    def disconnected(self) -> None:
        self.error_state = "MQTT Disconnected"
        self.last_measurements = {}

    def sample(self) -> bool:
        """Append the latest values to the store; whether they changed since the last sample."""
        for name, value in self.last_measurements.items():
            store = self.values.get(name)
            if store is None:
                store = self.values[name] = deque(maxlen=self.store_size)
            store.append(value)
        changed = self.last_measurements != self.last_value
        self.last_value = dict(self.last_measurements)
        return changed

    # reports ---------------------------------------------------------------------------------

    def info(self, extended: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "friendly_name": self.friendly_name,
            "type": self.type,
            "values": dict(self.last_measurements),
        }
        if extended:
            out["parameter_info"] = [dict(p) for p in self.param_info]
            out["history_fields"] = [
                {
                    "field": field.name,
                    "provider": field.provider,
                    "description": field.description,
                    "strategy": field.strategy,
                    "units": field.units,
                    "init_tracker": init,
                    "exclude_paused": field.exclude_paused,
                    "report_total": field.report_total,
                    "report_maximum": field.report_maximum,
                    "precision": field.precision,
                    "parameter": parameter,
                }
                for parameter, entries in self.fields.items()
                for field, init in entries
            ]
        return out

    def measurements(self) -> dict[str, list[int | float]]:
        return {name: list(values) for name, values in self.values.items()}


class SensorsPlugin:
    """Reads every ``[sensor NAME]``, subscribes their topics and serves ``server.sensors.*``."""

    optional = True
    section = "sensor"

    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.sensors: dict[str, MQTTSensor] = {}
        env = template_environment(self.log)
        for name in config.sections():
            if not name.startswith("sensor "):
                continue
            section = config.section(name)
            kind = section.get("type")
            if kind.lower() != "mqtt":
                config.extra_warnings.append(f"[{name}]: unsupported sensor type '{kind}' (supported: mqtt)")
                continue
            sensor = MQTTSensor(section, env, self.log)
            self.sensors[sensor.id] = sensor
        if self.sensors and not config.has_section("mqtt"):
            config.extra_warnings.append("MQTT sensors need an [mqtt] section; none is configured")
        self.timer: LoopingCall | None = None
        self._listening: Any = None

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        extended = Arg("extended", "bool", False, description="Add parameter_info and history_fields")
        register(Endpoint("server.sensors.list", self.list_sensors, "/server/sensors/list", args=(extended,), description="Every configured sensor"))
        register(
            Endpoint(
                "server.sensors.info",
                self.sensor_info,
                "/server/sensors/info",
                args=(Arg("sensor", required=True, description="The sensor's id"), extended),
                description="One sensor's status",
            )
        )
        register(
            Endpoint(
                "server.sensors.measurements",
                self.sensor_measurements,
                "/server/sensors/measurements",
                args=(Arg("sensor", description="The sensor's id (default: every sensor)"),),
                description="Stored measurements (one sample a second)",
            )
        )

    @hookimpl
    def register_history_fields(self, register: Callable[[Any], None]) -> None:
        for sensor in self.sensors.values():
            for entries in sensor.fields.values():
                for field, _ in entries:
                    register(field)

    @hookimpl
    def startup(self, server: Server) -> None:
        mqtt = server.lookup("mqtt")
        if mqtt is None:
            for sensor in self.sensors.values():
                sensor.error_state = "MQTT is not configured"
        else:
            for sensor in self.sensors.values():
                sensor.handle = mqtt.subscribe_topic(sensor.state_topic, sensor.on_payload, sensor.qos)
            self._listening = mqtt
            mqtt.add_connection_listener(self._mqtt_connection)
        self.timer = LoopingCall(self._sample)
        self.timer.clock = server.reactor
        self.timer.start(UPDATE_INTERVAL, now=False)

    @hookimpl
    def shutdown(self, server: Server) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        mqtt = self._listening
        if mqtt is not None:
            mqtt.remove_connection_listener(self._mqtt_connection)
            for sensor in self.sensors.values():
                if sensor.handle is not None:
                    mqtt.unsubscribe(sensor.handle)
                    sensor.handle = None

    def _mqtt_connection(self, connected: bool) -> None:
        if not connected:
            for sensor in self.sensors.values():
                sensor.disconnected()

    def _sample(self) -> None:
        changed = {sensor_id: dict(sensor.last_value) for sensor_id, sensor in self.sensors.items() if sensor.sample()}
        if changed:
            self.server.notify("notify_sensor_update", changed)

    # handlers ---------------------------------------------------------------------------------

    def _sensor(self, request: APIRequest) -> MQTTSensor:
        name = request.args["sensor"]
        sensor = self.sensors.get(name)
        if sensor is None:
            raise ServerError(f"No valid sensor named {name}", 404)
        return sensor

    def list_sensors(self, request: APIRequest) -> dict[str, Any]:
        extended = request.args["extended"]
        return {"sensors": {sensor_id: sensor.info(extended) for sensor_id, sensor in self.sensors.items()}}

    def sensor_info(self, request: APIRequest) -> dict[str, Any]:
        return self._sensor(request).info(request.args["extended"])

    def sensor_measurements(self, request: APIRequest) -> dict[str, Any]:
        if request.args.get("sensor"):
            sensor = self._sensor(request)
            return {sensor.id: sensor.measurements()}
        return {sensor_id: sensor.measurements() for sensor_id, sensor in self.sensors.items()}
