"""An in-memory stand-in for the MQTT plugin's interface (``server.lookup("mqtt")``), with a
Tasmota-like device on it: ``cmnd/<name>/POWER`` in, ``stat/<name>/POWER`` out."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import succeed

from moontwist.hookspecs import hookimpl


class FakeMQTT:
    """publish_topic / subscribe_topic / unsubscribe / is_connected (Moonraker's names) and the
    MQTT plugin's wait_connected / add_connection_listener / remove_connection_listener."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any, Any, bool]] = []
        self.subscribers: dict[str, list[Any]] = {}
        self.connected = True
        self.devices: dict[str, str] = {}  # name -> "ON"/"OFF"
        self.mute = False
        self.listeners: list[Any] = []

    def publish_topic(self, topic: str, payload: Any = None, qos: Any = None, retain: bool = False) -> Any:
        self.published.append((topic, payload, qos, retain))
        parts = topic.split("/")
        if len(parts) == 3 and parts[0] == "cmnd" and parts[1] in self.devices and parts[2] == "POWER":
            if payload:
                self.devices[parts[1]] = "ON" if str(payload).strip().lower() == "on" else "OFF"
            if not self.mute:
                reactor.callLater(0.01, self.deliver, f"stat/{parts[1]}/POWER", self.devices[parts[1]].encode())
        return succeed(None)

    def subscribe_topic(self, topic: str, callback: Any, qos: Any = None) -> Any:
        self.subscribers.setdefault(topic, []).append(callback)
        return (topic, callback)

    def unsubscribe(self, handle: Any) -> None:
        topic, callback = handle
        self.subscribers.get(topic, []).remove(callback)

    def is_connected(self) -> bool:
        return self.connected

    def wait_connected(self, timeout: float | None = None) -> Any:
        return succeed(self.connected)

    def add_connection_listener(self, callback: Any) -> None:
        self.listeners.append(callback)

    def remove_connection_listener(self, callback: Any) -> None:
        self.listeners.remove(callback)

    def deliver(self, topic: str, payload: bytes) -> None:
        for callback in list(self.subscribers.get(topic, [])):
            callback(payload)


class FakeMQTTPlugin:
    """Offers the stand-in as ``mqtt`` the way the MQTT plugin will."""

    def __init__(self, fake: FakeMQTT) -> None:
        self.fake = fake

    @hookimpl
    def configure(self, server: Any) -> None:
        server.provide("mqtt", self.fake)
