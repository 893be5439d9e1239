"""``mqtt``: a device switched by publishing to an MQTT topic, its state read from another.

Needs the MQTT plugin (a ``[mqtt]`` section): ``server.lookup("mqtt")`` with
``publish_topic``, ``subscribe_topic``, ``unsubscribe`` and ``is_connected``.
Without it the device is left out with a warning naming that dependency.

Options (Moonraker's): ``command_topic``, ``command_payload`` (template with
``command``), ``retain_command_state``, ``state_topic``,
``state_response_template`` (template with ``payload``, ``last_request``,
``response_count``; renders on, off or discard), ``state_timeout`` (2 s),
``query_topic``, ``query_payload``, ``query_after_command``, ``qos``.
Every state message updates the device, so switches made elsewhere show up.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver
from moontwist.plugins.power.templates import TemplateFailed

__all__ = ["MQTTDriver", "MISSING_MQTT"]

MISSING_MQTT = "type 'mqtt' requires the [mqtt] section / mqtt plugin, which is not loaded"


class MQTTDriver(PowerDriver):
    can_poll = False

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        templates = device.templates
        self.command_topic = section.get("command_topic")
        self.command_payload = templates.option(section, "command_payload")
        self.retain = section.getboolean("retain_command_state", False)
        self.query_topic = section.get("query_topic", None)
        self.query_payload = templates.option(section, "query_payload", None)
        self.query_after = section.getboolean("query_after_command", False) and self.query_topic is not None
        self.state_topic = section.get("state_topic")
        self.state_timeout = section.getfloat("state_timeout", 2.0, above=0.0)
        self.state_response = templates.option(section, "state_response_template", "{payload}")
        self.qos = section.getint("qos", None, minval=0, maxval=2)
        self.mqtt: Any = None
        self.handle: Any = None
        self.known: str | None = None
        self.last_request = ""
        self.response_count = 0
        self.waiter: Deferred | None = None

    async def start(self) -> None:
        self.mqtt = self.device.server.lookup("mqtt")
        if self.mqtt is None:
            raise ConfigError(f"Config error in section [{self.device.section_name}]: {MISSING_MQTT}")
        self.handle = self.mqtt.subscribe_topic(self.state_topic, self._on_state, self.qos)

    async def stop(self) -> None:
        if self.mqtt is not None and self.handle is not None:
            self.mqtt.unsubscribe(self.handle)
        self.handle = None

    def _on_state(self, payload: bytes) -> None:
        self.response_count += 1
        context = {
            "payload": payload.decode("utf-8", "replace"),
            "last_request": self.last_request,
            "response_count": self.response_count,
        }
        try:
            response = self.state_response.render(context).lower()
        except TemplateFailed as exc:
            self._answer(DeviceError(f"state_response_template failed: {exc}"))
            return
        if response == "discard":
            return
        if response not in ("on", "off"):
            self._answer(DeviceError(f"state {context['payload'][:80]!r} rendered as {response[:80]!r}, not on or off"))
            return
        self.known = response
        self._answer(response)

    def _answer(self, result: str | DeviceError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.called:
            waiter.errback(result) if isinstance(result, DeviceError) else waiter.callback(result)
        else:
            self.device.report("error" if isinstance(result, DeviceError) else result)

    def _connected(self) -> Any:
        if self.mqtt is None:
            raise DeviceError(MISSING_MQTT)
        if not self.mqtt.is_connected():
            raise DeviceError("the MQTT broker is not connected")
        return self.mqtt

    async def _wait(self, request: str, send: Any) -> str:
        self.waiter = waiter = Deferred()
        self.last_request, self.response_count = request, 0
        timer = self.device.reactor.callLater(
            self.state_timeout,
            lambda: waiter.called or waiter.errback(DeviceError(f"no state on {self.state_topic} within {self.state_timeout:g} s")),
        )
        try:
            await send()
            return await waiter
        finally:
            if timer.active():
                timer.cancel()
            if self.waiter is waiter:
                self.waiter = None
            self.last_request, self.response_count = "", 0

    async def _query(self) -> None:
        if self.query_topic is not None:
            payload = self.query_payload.render() if self.query_payload is not None else None
            await self.mqtt.publish_topic(self.query_topic, payload, self.qos)

    async def read_state(self) -> str:
        self._connected()
        if self.known is not None and not self.query_after:
            return self.known
        return await self._wait("refresh", self._query)

    async def set_state(self, state: str) -> str:
        mqtt = self._connected()
        payload = self.command_payload.render({"command": state})

        async def send() -> None:
            await mqtt.publish_topic(self.command_topic, payload, self.qos, retain=self.retain)
            if self.query_after:
                await self._query()

        return await self._wait(f"power_{state}", send)
