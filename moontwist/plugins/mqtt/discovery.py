"""Home Assistant MQTT discovery: the printer as a device with its entities.

With ``[mqtt] home_assistant_discovery: True`` retained configs are published under
``DISCOVERY_PREFIX/COMPONENT/NODE/OBJECT/config`` for the print state, progress,
current file, ETA and each heater's temperature and target (sensors); the
values go to one retained JSON state topic, ``INSTANCE/moontwist/ha_state``.
Availability follows ``INSTANCE/moonraker/status``.  Other plugins add entities
with ``add_entity`` (power devices as switches).

Stale configs are removed: the client watches ``PREFIX/+/NODE/+/config`` and
clears every retained config that is not wanted any more (all of them when
discovery is turned off).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from moontwist import __version__, jsonutil

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessage

    from moontwist.plugins.mqtt.client import MQTTClient
    from moontwist.server import Server

__all__ = ["HomeAssistantDiscovery", "node_id", "heater_objects"]

log = Logger()

OWNER = "mqtt_home_assistant"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_HEATER = re.compile(r"(extruder\d*|heater_bed|heater_generic .+)")


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
        self.heaters: list[str] = []
        self.configs: dict[str, bytes] = {}
        self.extra: dict[str, dict[str, Any]] = {}
        self.last_state: dict[str, Any] | None = None

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.client.subscribe_filter(self.filter, self._existing_config)
        self.client.add_connection_listener(self._connection_changed)
        self._build()
        if self.enabled:
            klippy = self.server.klippy
            if klippy is not None:
                self._subscribe(klippy)

    def stop(self) -> None:
        self.client.unsubscribe_filter(self.filter)
        self.client.remove_connection_listener(self._connection_changed)

    def add_entity(self, component: str, object_id: str, config: dict[str, Any]) -> None:
        """Announce another entity of this device (``config`` without device and availability)."""
        self.extra[f"{component}/{node_id(object_id)}"] = config
        self._build()
        if self.client.connected:
            self._publish_configs()

    def remove_entity(self, component: str, object_id: str) -> None:
        key = f"{component}/{node_id(object_id)}"
        if self.extra.pop(key, None) is not None:
            topic = self._topic(component, node_id(object_id))
            self.configs.pop(topic, None)
            if self.client.connected:
                self._clear(topic)

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
        for key, config in self.extra.items():
            component, object_id = key.split("/", 1)
            full = {
                "unique_id": f"moontwist_{self.node}_{object_id}",
                "object_id": f"{self.node}_{object_id}",
                **config,
                **self.availability,
                "device": self.device,
            }
            configs[self._topic(component, object_id)] = jsonutil.dumpb(full)
        self.configs = configs

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
            lambda f: log.info("Home Assistant status subscription: {e}", e=f.getErrorMessage())
        )

    def klippy_state_changed(self, state: str) -> None:
        if not self.enabled:
            return
        klippy = self.server.klippy
        heaters = heater_objects(klippy.objects) if klippy is not None and state != "disconnected" else self.heaters
        if heaters != self.heaters:
            self.heaters = heaters
            self._build()
            if klippy is not None:
                self._subscribe(klippy)
            if self.client.connected:
                self._publish_configs()
        self._publish_state()

    def status_update(self, status: dict[str, Any]) -> None:
        if self.enabled:
            self._publish_state()

    def _connection_changed(self, connected: bool) -> None:
        if not connected:
            return
        if self.enabled:
            self._publish_configs()
            self.last_state = None
            self._publish_state()

    def _existing_config(self, message: MQTTMessage) -> None:
        """A config retained on the broker: clear it unless it is one of ours now."""
        if message.retain and message.payload and message.topic not in self.configs:
            log.info("Removing Home Assistant discovery config {topic}", topic=message.topic)
            self._clear(message.topic)

    # publishing -------------------------------------------------------------------------------

    def _publish_configs(self) -> None:
        for topic, payload in self.configs.items():
            self._publish(topic, payload)

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
            lambda f: log.info("Home Assistant publish to {topic} failed: {e}", topic=topic, e=f.getErrorMessage())
        )
