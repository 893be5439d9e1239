"""The ``mqtt`` plugin: Moonraker's ``[mqtt]`` — an MQTT client on the reactor, the API over MQTT,
Klipper status publishing, ``server.mqtt.publish|subscribe`` and Home Assistant discovery.

Topics (``INSTANCE`` is ``instance_name``)::

    INSTANCE/moonraker/status          {"server": "online"} retained; "offline" as the last will
    INSTANCE/moonraker/api/request     JSON-RPC requests (enable_moonraker_api)
    INSTANCE/moonraker/api/response    their replies, and every notification
    INSTANCE/klipper/status            {"eventtime", "status"} of status_objects
    INSTANCE/klipper/state/OBJ/FIELD   {"eventtime", "value"} retained (publish_split_status)
    INSTANCE/moontwist/power/NAME/...  Home Assistant switches: state (retained), set

Requests over MQTT go through the same JSON-RPC dispatcher as the websocket,
with the transport ``mqtt`` (trusted like the unix socket: the broker decides
who may publish).  Other plugins reach the client through ``server.lookup("mqtt")``:
``publish_topic``, ``subscribe_topic``, ``unsubscribe``, ``is_connected``.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from moontwist import jsonutil
from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.limits import check_depth
from moontwist.api.registry import TRANSPORTS, APIRequest, Endpoint
from moontwist.config import ConfigError
from moontwist.hookspecs import hookimpl
from moontwist.klippy.subscriptions import normalize, pick
from moontwist.plugins.mqtt.client import PROTOCOLS, MQTTClient
from moontwist.plugins.mqtt.discovery import HomeAssistantDiscovery

if TYPE_CHECKING:
    from moontwist.config import Config
    from moontwist.server import Server

__all__ = ["MQTTPlugin"]

OWNER = "mqtt"
DUPLICATE_REQUEST = -10000
TIMESTAMPS_KEPT = 20
MAX_REQUEST = 16 * 1024 * 1024  # as on the websocket
# Publishing and subscribing over MQTT itself would be redundant (as in Moonraker).
ENDPOINT_TRANSPORTS = TRANSPORTS - {"mqtt"}


class MQTTPlugin:
    """Reads ``[mqtt]``, owns the client and everything published through it."""

    optional = True
    section = "mqtt"

    server: Server
    client: MQTTClient

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("mqtt")
        address = section.get("address")
        port = section.getint("port", 1883, minval=1, maxval=65535)
        client_id = section.get("client_id", "")
        tls = section.getboolean("enable_tls", False)
        ca_file = section.get("tls_ca_file", None)
        if ca_file is not None:
            ca_file = os.path.expanduser(ca_file)
            if not os.path.isfile(ca_file):
                raise ConfigError(f"[mqtt] tls_ca_file: '{ca_file}' does not exist")
        username = section.get("username", None)
        password = section.get("password", None)
        password_file = section.get("password_file", None)
        if password_file is not None and password is None:
            path = os.path.expanduser(password_file)
            try:
                with open(path, encoding="utf-8") as f:
                    password = f.read().strip()
            except OSError as exc:
                raise ConfigError(f"[mqtt] password_file: can't read '{path}': {exc.strerror}") from None
        protocol = section.get("mqtt_protocol", "v3.1.1", choices=list(PROTOCOLS))
        self.api_enabled = section.getboolean("enable_moonraker_api", True)
        self.instance = section.get("instance_name", socket.gethostname())
        if "+" in self.instance or "#" in self.instance or not self.instance:
            raise ConfigError(f"[mqtt] instance_name {self.instance!r}: must be non-empty, without wildcards (+, #)")
        status_objects = section.getdict("status_objects", {}, allow_empty=True)
        self.status_request = normalize(
            {name: [f.strip() for f in fields.split(",") if f.strip()] or None if fields else None
             for name, fields in status_objects.items()}
        )
        self.status_interval = section.getfloat("status_interval", 0.0, minval=0.0)
        if 0 < self.status_interval <= 0.25:
            raise ConfigError("[mqtt] status_interval: must be above 0.25 seconds (or 0 to publish every change)")
        self.split_status = section.getboolean("publish_split_status", False)
        self.default_qos = section.getint("default_qos", 0, minval=0, maxval=2)
        self.api_qos = section.getint("api_qos", self.default_qos, minval=0, maxval=2)
        keepalive = section.getint("keepalive", 60, minval=5, maxval=65535)
        ha_enabled = section.getboolean("home_assistant_discovery", False)
        ha_prefix = section.get("discovery_prefix", "homeassistant")

        prefix = self.instance
        self.status_topic = f"{prefix}/moonraker/status"
        self.request_topic = f"{prefix}/moonraker/api/request"
        self.response_topic = f"{prefix}/moonraker/api/response"
        self.klipper_status_topic = f"{prefix}/klipper/status"
        self.klipper_state_prefix = f"{prefix}/klipper/state"
        self.client = MQTTClient(
            server.reactor,
            address,
            port,
            client_id=client_id,
            protocol=protocol,
            username=username,
            password=password,
            tls=tls,
            ca_file=ca_file,
            keepalive=keepalive,
            default_qos=self.default_qos,
            instance_name=self.instance,
            will=(self.status_topic, jsonutil.dumpb({"server": "offline"}), self.default_qos, True),
            log=server.logger(MQTTClient.__module__),
        )
        self.discovery = HomeAssistantDiscovery(server, self.client, ha_prefix, ha_enabled)
        self._timestamps: deque[Any] = deque(maxlen=TIMESTAMPS_KEPT)
        self._status_cache: dict[str, dict[str, Any]] = {}
        self._status_time = 0.0
        self._status_timer: LoopingCall | None = None
        self._waiting: set[defer.Deferred] = set()

    # registration ---------------------------------------------------------------------------

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        topic = Arg("topic", required=True, description="The MQTT topic (no wildcards)")
        qos = Arg("qos", "int", None, minimum=0, maximum=2, nullable=True, description="QoS level (default: default_qos)")
        timeout = Arg("timeout", "float", None, minimum=0.0, nullable=True, description="Seconds before a 504 (default: wait)")
        register(
            Endpoint(
                "server.mqtt.publish",
                self.handle_publish,
                "/server/mqtt/publish",
                ("POST",),
                transports=ENDPOINT_TRANSPORTS,
                args=(
                    topic,
                    Arg("payload", "any", None, nullable=True, description="String, number, boolean, object or array (JSON encoded)"),
                    qos,
                    Arg("retain", "bool", False, description="The broker keeps the payload for new subscribers"),
                    timeout,
                ),
                description="Publish an MQTT topic",
            )
        )
        register(
            Endpoint(
                "server.mqtt.subscribe",
                self.handle_subscribe,
                "/server/mqtt/subscribe",
                ("POST",),
                transports=ENDPOINT_TRANSPORTS,
                args=(topic, qos, timeout),
                description="Wait for the next message on an MQTT topic (a retained one answers at once)",
            )
        )

    @hookimpl
    def register_remote_methods(self, register: Any) -> None:
        register("publish_mqtt_topic", self.publish_from_klipper)

    # lifecycle --------------------------------------------------------------------------------

    @hookimpl
    def startup(self, server: Server) -> None:
        server.provide("mqtt", self.client)
        client = self.client
        if self.api_enabled:
            client.subscribe_topic(self.request_topic, self.api_request, self.api_qos)
        client.add_connection_listener(self._connection_changed)
        client.on_refused = self._refused
        self.discovery.start()
        if self.status_request:
            klippy = server.klippy
            if klippy is not None:
                klippy.add_subscription(OWNER, {n: None if f is None else sorted(f) for n, f in self.status_request.items()}).addErrback(
                    lambda f: self.log.info("MQTT status subscription: {e}", e=f.getErrorMessage())
                )
            if self.status_interval:
                self._status_timer = LoopingCall(self._flush_status)
                self._status_timer.clock = server.reactor
                self._status_timer.start(self.status_interval, now=False)
        client.start()

    @hookimpl
    def shutdown(self, server: Server) -> defer.Deferred:
        if self._status_timer is not None and self._status_timer.running:
            self._status_timer.stop()
        self.discovery.stop()
        offline = (self.status_topic, jsonutil.dumpb({"server": "offline"}), self.default_qos, True)
        return self.client.stop(last_words=offline).addCallback(self._fail_waiting)

    def _fail_waiting(self, _: Any) -> None:
        for d in list(self._waiting):
            if not d.called:
                d.errback(ServerError("Server is shutting down", 503))

    def _refused(self, message: str) -> None:
        """Shown in server.info's warnings, as Moonraker does."""
        warnings = self.server.config.extra_warnings
        if message not in warnings:
            warnings.append(message)
            if self.server.running:
                self.server.warnings.append(message)

    def _connection_changed(self, connected: bool) -> None:
        if not connected:
            return
        self.client.publish_topic(self.status_topic, {"server": "online"}, retain=True).addErrback(self._log_publish)
        klippy = self.server.klippy
        if self.status_request and klippy is not None and klippy.initialized:
            self._publish_status(pick(klippy.status, self.status_request, fill=False), klippy.subscriptions.eventtime)

    # the API over MQTT ---------------------------------------------------------------------------

    def api_request(self, payload: bytes) -> None:
        """A JSON-RPC request (or batch) arrived on the request topic: dispatch it, publish the reply."""
        dispatcher = self.server.dispatcher
        reply: Any
        if len(payload) > MAX_REQUEST:
            self.log.info("MQTT API request of {size} bytes refused", size=len(payload))
            error = {"code": -32600, "message": f"Invalid Request: larger than {MAX_REQUEST} bytes"}
            reply = jsonutil.dumpb({"jsonrpc": "2.0", "error": error, "id": None})
        elif b"mqtt_timestamp" in payload:
            try:
                obj = jsonutil.loads(payload)
                check_depth(payload, obj)  # as handle_bytes does, before anything walks it
            except jsonutil.JSONDecodeError:
                reply = dispatcher.handle_bytes(payload, "mqtt")
            except ServerError as exc:
                error = {"code": exc.status, "message": exc.message}
                reply = jsonutil.dumpb({"jsonrpc": "2.0", "error": error, "id": None})
            else:
                reply = self._screened(obj)
        else:
            reply = dispatcher.handle_bytes(payload, "mqtt")
        if isinstance(reply, defer.Deferred):
            reply.addCallback(self._send_reply).addErrback(lambda f: self.log.failure("MQTT API reply failed", f))
        else:
            self._send_reply(reply)

    def _screened(self, obj: Any) -> Any:
        """Drop requests whose ``mqtt_timestamp`` was seen already (QoS 1 may deliver twice)."""
        duplicates: list[dict[str, Any]] = []
        items = obj if isinstance(obj, list) else [obj]
        fresh = []
        for item in items:
            params = item.get("params") if isinstance(item, dict) else None
            if isinstance(params, dict) and "mqtt_timestamp" in params:
                params = dict(params)
                stamp = params.pop("mqtt_timestamp")
                item = {**item, "params": params}
                if stamp in self._timestamps:
                    self.log.debug("Duplicate MQTT API request {stamp}", stamp=stamp)
                    if "id" in item:
                        duplicates.append(
                            {"jsonrpc": "2.0", "error": {"code": DUPLICATE_REQUEST, "message": "Duplicate MQTT Request"}, "id": item["id"]}
                        )
                    continue
                self._timestamps.append(stamp)
            fresh.append(item)
        if not isinstance(obj, list):
            if duplicates:
                return jsonutil.dumpb(duplicates[0])
            if not fresh:
                return None
            reply = self.server.dispatcher.handle(fresh[0], "mqtt")
        else:
            reply = self.server.dispatcher.handle(fresh, "mqtt") if fresh else None

        def encode(result: Any) -> bytes | None:
            if isinstance(obj, list):
                combined = (result or []) + duplicates
                return jsonutil.dumpb(combined) if combined else None
            return None if result is None else jsonutil.dumpb(result)

        if isinstance(reply, defer.Deferred):
            return reply.addCallback(encode)
        return encode(reply)

    def _send_reply(self, data: bytes | None) -> None:
        if data is not None:
            self.client.publish_topic(self.response_topic, data, self.api_qos).addErrback(self._log_publish)

    @hookimpl
    def notification(self, method: str, params: list[Any] | None) -> None:
        self.discovery.notification(method, params)
        if not self.api_enabled or not self.client.connected:
            return
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            msg["params"] = params
        self.client.publish_topic(self.response_topic, jsonutil.dumpb(msg), self.api_qos).addErrback(self._log_publish)

    def _log_publish(self, failure: Any) -> None:
        self.log.info("MQTT publish failed: {error}", error=failure.getErrorMessage())

    # Klipper status ------------------------------------------------------------------------------

    @hookimpl
    def status_update(self, status: dict[str, Any], eventtime: float) -> None:
        self.discovery.status_update(status)
        if not self.status_request:
            return
        part = pick(status, self.status_request, fill=False)
        if not part:
            return
        if self.status_interval:
            cache = self._status_cache
            for name, values in part.items():
                cache.setdefault(name, {}).update(values)
            self._status_time = eventtime
        else:
            self._publish_status(part, eventtime)

    @hookimpl
    def klippy_state_changed(self, state: str) -> None:
        self.discovery.klippy_state_changed(state)
        if state == "disconnected":
            self._flush_status()
            return
        # startup, ready, shutdown, error: the whole current status (as Moonraker does once Klippy is identified)
        klippy = self.server.klippy
        if self.status_request and klippy is not None:
            self._publish_status(pick(klippy.status, self.status_request, fill=False), klippy.subscriptions.eventtime)

    def _flush_status(self) -> None:
        if self._status_cache:
            cache, self._status_cache = self._status_cache, {}
            self._publish_status(cache, self._status_time)

    def _publish_status(self, status: dict[str, Any], eventtime: float) -> None:
        client = self.client
        if not status or not client.connected:
            return
        if self.split_status:
            for name, values in status.items():
                for field, value in values.items():
                    client.publish_topic(
                        f"{self.klipper_state_prefix}/{name}/{field}", {"eventtime": eventtime, "value": value}, retain=True
                    ).addErrback(self._log_publish)
        else:
            client.publish_topic(
                self.klipper_status_topic, {"eventtime": eventtime, "status": status}
            ).addErrback(self._log_publish)

    # endpoints and the remote method ----------------------------------------------------------------

    async def handle_publish(self, request: APIRequest) -> dict[str, Any]:
        topic = request.args["topic"]
        d = self.client.publish_topic(topic, request.args["payload"], request.args["qos"], request.args["retain"])
        await self._bounded(d, request.args["timeout"], "MQTT Publish Timed Out")
        return {"topic": topic}

    async def handle_subscribe(self, request: APIRequest) -> dict[str, Any]:
        topic = request.args["topic"]
        received: defer.Deferred = defer.Deferred()

        def on_message(payload: bytes) -> None:
            if not received.called:
                received.callback(payload)

        handle = self.client.subscribe_topic(topic, on_message, request.args["qos"])
        try:
            payload = await self._bounded(received, request.args["timeout"], "MQTT Subscribe Timed Out")
        finally:
            self.client.unsubscribe(handle)
        try:
            value = jsonutil.loads(payload)
        except jsonutil.JSONDecodeError:
            value = payload.decode("utf-8", "replace")
        return {"topic": topic, "payload": value}

    async def _bounded(self, d: defer.Deferred, timeout: float | None, message: str) -> Any:
        """Wait for ``d`` at most ``timeout`` seconds (504), failing with 503 at shutdown."""
        if timeout is not None:
            d.addTimeout(timeout, self.server.reactor)
        self._waiting.add(d)
        try:
            return await d
        except defer.TimeoutError:
            raise ServerError(message, 504) from None
        finally:
            self._waiting.discard(d)

    def publish_from_klipper(
        self, topic: str, payload: Any = None, qos: int | None = None, retain: bool = False, use_prefix: bool = False
    ) -> defer.Deferred:
        """``{action_call_remote_method("publish_mqtt_topic", topic=..., payload=..., use_prefix=True)}``."""
        if use_prefix:
            topic = f"{self.instance}/{str(topic).lstrip('/')}"
        return self.client.publish_topic(topic, payload, qos, bool(retain))

