"""Home Assistant MQTT discovery: the printer as a device with its entities.

With ``[mqtt] home_assistant_discovery: True`` retained configs are published under
``DISCOVERY_PREFIX/COMPONENT/NODE/OBJECT/config`` for the print state, progress,
current file, ETA and each heater's temperature and target (sensors); the
values go to one retained JSON state topic, ``INSTANCE/moontwist/ha_state``.
Availability follows ``INSTANCE/moonraker/status``.

Each power device and group (``server.lookup("power")``) is a ``switch``: its
status (``on``, ``off``, ``init``, ``error``, as in the API) is published
retained to ``INSTANCE/moontwist/power/NAME/state`` whenever it changes, and
``ON``, ``OFF`` or ``TOGGLE`` published to ``INSTANCE/moontwist/power/NAME/set``
switches it through the power plugin, with the device's own rules
(``locked_while_printing``...).  A refused command is logged and the state
published again.  The switch is unavailable while the device is in ``error``
and unknown while it initializes.

Stale configs are removed: the client watches ``PREFIX/+/NODE/+/config`` (and
the power state topics) and clears every retained one that is not wanted any
more (all of them when discovery is turned off).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred

from moontwist import __version__, jsonutil

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessage

    from moontwist.plugins.mqtt.client import MQTTClient
    from moontwist.server import Server

__all__ = ["HomeAssistantDiscovery", "node_id", "heater_objects"]

OWNER = "mqtt_home_assistant"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_HEATER = re.compile(r"(extruder\d*|heater_bed|heater_generic .+)")
POWER_COMMANDS = {"ON": "on", "OFF": "off", "TOGGLE": "toggle"}
MAX_COMMAND = 16  # bytes of a power command payload worth reading


def node_id(name: str) -> str:
    """A discovery node or object id: only letters, digits, ``_`` and ``-``."""
    return _UNSAFE.sub("_", name)


def heater_objects(objects: list[str]) -> list[str]:
    """The heaters among Klippy's printer objects."""
    return [name for name in objects if _HEATER.fullmatch(name)]


class HomeAssistantDiscovery:
    """Keeps the broker's discovery configs for this instance equal to what is wanted."""

    def __init__(self, server: Server, client: MQTTClient, prefix: str, enabled: bool) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.client = client
        self.prefix = prefix.strip("/")
        self.enabled = enabled
        instance = client.instance_name
        self.node = node_id(instance)
        self.state_topic = f"{instance}/moontwist/ha_state"
        self.availability = {
            "availability_topic": f"{instance}/moonraker/status",
            "availability_template": "{{ value_json.server }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        self.device = {
            "identifiers": [f"moontwist_{self.node}"],
            "name": instance,
            "manufacturer": "Klipper",
            "model": "moontwist",
            "sw_version": __version__,
        }
        self.filter = f"{self.prefix}/+/{self.node}/+/config"
        self.power_topic = f"{instance}/moontwist/power"
        self.heaters: list[str] = []
        self.configs: dict[str, bytes] = {}
        self.last_state: dict[str, Any] | None = None
        self.power: Any = None  # the power plugin, when power devices are configured
        self.switches: dict[str, Any] = {}  # topic id -> power device or group

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Called at the MQTT plugin's start-up: every plugin is configured, the power devices exist."""
        self.power = self.server.lookup("power")
        client = self.client
        client.subscribe_filter(self.filter, self._existing_config)
        client.subscribe_filter(f"{self.power_topic}/+/state", self._existing_power_state)
        if self.enabled:
            client.subscribe_filter(f"{self.power_topic}/+/set", self._power_command)
        client.add_connection_listener(self._connection_changed)
        self._build()
        if self.enabled:
            klippy = self.server.klippy
            if klippy is not None:
                self._subscribe(klippy)

    def stop(self) -> None:
        for topic_filter in (self.filter, f"{self.power_topic}/+/state", f"{self.power_topic}/+/set"):
            self.client.unsubscribe_filter(topic_filter)
        self.client.remove_connection_listener(self._connection_changed)

    # what is announced -----------------------------------------------------------------------

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node}/{object_id}/config"

    def _entity(self, key: str, name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        config = {
            "name": name,
            "unique_id": f"moontwist_{self.node}_{key}",
            "object_id": f"{self.node}_{key}",
            "state_topic": self.state_topic,
            "value_template": "{{ value_json." + key + " }}",
            **extra,
        }
        return self._topic("sensor", key), config

    def _build(self) -> None:
        """Recompute the wanted configs (none when discovery is off)."""
        if not self.enabled:
            self.configs = {}
            self.switches = {}
            return
        entities = [
            self._entity("state", "State", icon="mdi:printer-3d"),
            self._entity("progress", "Progress", unit_of_measurement="%", state_class="measurement", icon="mdi:progress-clock"),
            self._entity("file", "Current file", icon="mdi:file-outline"),
            self._entity("eta", "ETA", device_class="timestamp"),
        ]
        for heater in self.heaters:
            key = node_id(heater)
            title = heater.split(" ", 1)[-1].replace("_", " ").capitalize()
            common = {"unit_of_measurement": "°C", "device_class": "temperature", "state_class": "measurement"}
            entities.append(self._entity(f"{key}_temperature", f"{title} temperature", **common))
            entities.append(self._entity(f"{key}_target", f"{title} target", **common))
        configs = {}
        for topic, config in entities:
            configs[topic] = jsonutil.dumpb({**config, **self.availability, "device": self.device})
        self.switches = self._power_targets()
        for key, target in self.switches.items():
            configs[self._topic("switch", f"power_{key}")] = jsonutil.dumpb(self._switch(key, target))
        self.configs = configs

    def _power_targets(self) -> dict[str, Any]:
        """Every power device and group by the id used in its topics (unique even if names differ only
        in characters a topic id can't hold)."""
        targets: dict[str, Any] = {}
        if self.power is None:
            return targets
        for target in (*self.power.devices.values(), *self.power.groups.values()):
            key = base = node_id(target.name)
            n = 2
            while key in targets:
                key, n = f"{base}_{n}", n + 1
            targets[key] = target
        return targets

    def _switch(self, key: str, target: Any) -> dict[str, Any]:
        state_topic = f"{self.power_topic}/{key}/state"
        return {
            "name": target.name,
            "unique_id": f"moontwist_{self.node}_power_{key}",
            "object_id": f"{self.node}_power_{key}",
            "command_topic": f"{self.power_topic}/{key}/set",
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_topic": state_topic,
            "state_on": "on",
            "state_off": "off",
            # init (and anything but on/off) is Home Assistant's "unknown"
            "value_template": "{{ value if value in ('on', 'off') else 'None' }}",
            "availability": [
                {"topic": self.availability["availability_topic"], "value_template": self.availability["availability_template"]},
                {"topic": state_topic, "value_template": "{{ 'offline' if value == 'error' else 'online' }}"},
            ],
            "availability_mode": "all",
            "device": self.device,
        }

    def state(self) -> dict[str, Any]:
        """The values of the state topic, from Klippy's status cache."""
        klippy = self.server.klippy
        status = klippy.status if klippy is not None else {}
        klippy_state = self.server.klippy_state
        stats = status.get("print_stats", {})
        state = stats.get("state") if klippy_state == "ready" else klippy_state
        progress = status.get("virtual_sdcard", {}).get("progress")
        if progress is None:
            progress = status.get("display_status", {}).get("progress")
        out: dict[str, Any] = {
            "state": state or klippy_state,
            "progress": round(progress * 100, 1) if isinstance(progress, (int, float)) else None,
            "file": stats.get("filename") or None,
            "eta": None,
        }
        duration = stats.get("print_duration")
        if state == "printing" and isinstance(progress, (int, float)) and progress > 0 and isinstance(duration, (int, float)):
            remaining = duration * (1.0 - progress) / progress
            # whole minutes: the value changes once a minute, not with every status push
            eta = round((time.time() + remaining) / 60.0) * 60
            out["eta"] = datetime.fromtimestamp(eta, timezone.utc).isoformat()
        for heater in self.heaters:
            values = status.get(heater, {})
            key = node_id(heater)
            temperature, target = values.get("temperature"), values.get("target")
            out[f"{key}_temperature"] = round(temperature, 1) if isinstance(temperature, (int, float)) else None
            out[f"{key}_target"] = target
        return out

    # events ----------------------------------------------------------------------------------

    def _subscribe(self, klippy: Any) -> None:
        objects: dict[str, list[str] | None] = {
            "print_stats": ["state", "filename", "print_duration"],
            "virtual_sdcard": ["progress"],
            "display_status": ["progress"],
        }
        for heater in self.heaters:
            objects[heater] = ["temperature", "target"]
        klippy.add_subscription(OWNER, objects).addErrback(
            lambda f: self.log.info("Home Assistant status subscription: {e}", e=f.getErrorMessage())
        )

    def klippy_state_changed(self, state: str) -> None:
        if not self.enabled:
            return
        klippy = self.server.klippy
        heaters = heater_objects(klippy.objects) if klippy is not None and state != "disconnected" else self.heaters
        if heaters != self.heaters:
            self.heaters = heaters
            self._rebuild()
            if klippy is not None:
                self._subscribe(klippy)
        self._publish_state()

    def status_update(self, status: dict[str, Any]) -> None:
        if self.enabled:
            self._publish_state()

    def notification(self, method: str, params: list[Any] | None) -> None:
        """A power device or group changed: its switch's state follows."""
        if not self.enabled or method != "notify_power_changed" or not params or not isinstance(params[0], dict):
            return
        name = params[0].get("device")
        for key, target in self.switches.items():
            if target.name == name:
                self._publish_power_state(key, target)
                return
        if self.power is not None and self.power.find(name) is not None:
            self._rebuild()  # not announced yet

    def _connection_changed(self, connected: bool) -> None:
        if not connected:
            return
        if self.enabled:
            self._build()  # devices left out at start-up are gone from the list
            self._publish_configs()
            self.last_state = None
            self._publish_state()
            for key, target in self.switches.items():
                self._publish_power_state(key, target)

    def _existing_config(self, message: MQTTMessage) -> None:
        """A config retained on the broker: clear it unless it is one of ours now."""
        if message.retain and message.payload and message.topic not in self.configs:
            self.log.info("Removing Home Assistant discovery config {topic}", topic=message.topic)
            self._clear(message.topic)

    def _existing_power_state(self, message: MQTTMessage) -> None:
        """A power state retained on the broker: clear it if its switch is gone."""
        key = message.topic.rsplit("/", 2)[-2]
        if message.retain and message.payload and key not in self.switches:
            self._clear(message.topic)

    def _power_command(self, message: MQTTMessage) -> Deferred | None:
        """Home Assistant switched a power device: ask the power plugin, as the API would."""
        key = message.topic.rsplit("/", 2)[-2]
        target = self.switches.get(key)
        if target is None:
            return None
        if message.retain:
            # kept by the broker, it would switch the device again at every connect
            self.log.warn("Ignoring a retained power command on {topic}", topic=message.topic)
            return None
        word = message.payload[:MAX_COMMAND].decode("utf-8", "replace").strip()
        action = POWER_COMMANDS.get(word.upper()) if len(message.payload) <= MAX_COMMAND else None
        if action is None:
            self.log.warn("Power command {word!r} on {topic}: expected ON, OFF or TOGGLE", word=word, topic=message.topic)
            return None
        plugins = self.server.plugins
        if plugins is None or not plugins.is_started("power"):
            self.log.warn("Power command on {topic} ignored: the power plugin is not running", topic=message.topic)
            return None
        self.log.info("Home Assistant: power {name} {action}", name=target.name, action=action)

        def refused(failure: Any) -> None:
            error = getattr(failure.value, "message", None) or failure.getErrorMessage()
            self.log.warn("Home Assistant: power {name} {action} refused: {error}", name=target.name, action=action, error=error)
            self._publish_power_state(key, target)

        return ensureDeferred(target.request(action)).addErrback(refused)

    # publishing -------------------------------------------------------------------------------

    def _publish_configs(self) -> None:
        for topic, payload in self.configs.items():
            self._publish(topic, payload)

    def _rebuild(self) -> None:
        """Recompute the configs; publish what is new or changed, clear what went away."""
        before, switches_before = self.configs, self.switches
        self._build()
        if not self.client.connected:
            return
        for topic in before.keys() - self.configs.keys():
            self._clear(topic)
        for topic, payload in self.configs.items():
            if before.get(topic) != payload:
                self._publish(topic, payload)
        for key, target in self.switches.items():
            if key not in switches_before:
                self._publish_power_state(key, target)

    def _publish_power_state(self, key: str, target: Any) -> None:
        if self.client.connected:
            self._publish(f"{self.power_topic}/{key}/state", target.state.encode())

    def _publish_state(self) -> None:
        if not self.client.connected:
            return
        state = self.state()
        if state != self.last_state:
            self.last_state = state
            self._publish(self.state_topic, jsonutil.dumpb(state))

    def _clear(self, topic: str) -> None:
        self._publish(topic, b"")

    def _publish(self, topic: str, payload: bytes) -> None:
        self.client.publish_topic(topic, payload, retain=True).addErrback(
            lambda f: self.log.info("Home Assistant publish to {topic} failed: {e}", topic=topic, e=f.getErrorMessage())
        )
