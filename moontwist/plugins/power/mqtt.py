"""``mqtt``: a device switched by publishing to an MQTT topic, its state read from another.

Needs the MQTT plugin (a ``[mqtt]`` section): ``server.lookup("mqtt")`` with
``publish_topic``, ``subscribe_topic``, ``unsubscribe``, ``is_connected``,
``wait_connected`` and ``add_connection_listener``/``remove_connection_listener``.
Without it the device is left out with a warning saying why.

Options (Moonraker's): ``command_topic``, ``command_payload`` (template with
``command``), ``retain_command_state``, ``state_topic``,
``state_response_template`` (template with ``payload``, ``last_request``,
``response_count``; renders on, off or discard), ``state_timeout`` (2 s),
``query_topic``, ``query_payload``, ``query_after_command``, ``qos``.

Every state message updates the device, so switches made elsewhere show up.
The device follows the broker connection: ``error`` when the broker goes away
(or can't be reached at start-up within the device's ``timeout``), its state
read again once the broker is back.  ``initial_state`` is applied only when
the device is first reached, never after a broker restart.  Without an
explicit ``timeout`` the device allows ``state_timeout`` plus one second per
call, so a long ``state_timeout`` is not cut short.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, DeviceTimeout, PowerDevice, PowerDriver
from moontwist.plugins.power.templates import TemplateFailed

__all__ = ["MQTTDriver", "MISSING_MQTT", "missing_mqtt"]

MISSING_MQTT = "type 'mqtt' requires the [mqtt] section / mqtt plugin, which is not loaded"


def missing_mqtt(server: Any) -> str:
    """Why the MQTT service is missing, for the warning that leaves a device out."""
    plugins = server.plugins
    failed = plugins.failed.get("mqtt") if plugins is not None else None
    if failed is not None:
        return f"{MISSING_MQTT} (it failed to load: {failed})"
    if server.config.has_section("mqtt"):
        return f"{MISSING_MQTT} (it is disabled)"
    return f"{MISSING_MQTT}: add an [mqtt] section with the broker's address"


class MQTTDriver(PowerDriver):
    can_poll = False
    starts_ready = False  # initialized once the broker is connected

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        templates = device.templates
        self.command_topic = self._topic(section, "command_topic")
        self.command_payload = templates.option(section, "command_payload")
        self.retain = section.getboolean("retain_command_state", False)
        self.query_topic = self._topic(section, "query_topic", None)
        self.query_payload = templates.option(section, "query_payload", None)
        self.query_after = section.getboolean("query_after_command", False) and self.query_topic is not None
        self.state_topic = self._topic(section, "state_topic")
        self.state_timeout = section.getfloat("state_timeout", 2.0, above=0.0)
        self.state_response = templates.option(section, "state_response_template", "{payload}")
        self.qos = section.getint("qos", None, minval=0, maxval=2)
        if "timeout" not in section:
            device.timeout = max(device.timeout, self.state_timeout + 1.0)
        self.mqtt: Any = None
        self.handle: Any = None
        self.known: str | None = None  # the last state the device published
        self.reached = False  # the device answered once: initial_state is spent
        self.listened = False  # waited for a retained state since the last connect
        self.last_request = ""
        self.response_count = 0
        self.waiter: Deferred | None = None
        self.stopped = False

    @staticmethod
    def _topic(section: ConfigSection, option: str, default: Any = ...) -> Any:
        topic = section.get(option) if default is ... else section.get(option, default)
        if topic is not None and (not topic.strip() or "+" in topic or "#" in topic):
            raise ConfigError(
                f"Config error in section [{section.name}], option '{option}': "
                f"{topic!r} is not a topic to publish or subscribe (empty, or wildcards + #)"
            )
        return topic

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        server = self.device.server
        mqtt = server.lookup("mqtt")
        if mqtt is None:
            raise ConfigError(missing_mqtt(server))
        self.mqtt = mqtt
        self.handle = mqtt.subscribe_topic(self.state_topic, self._on_state, self.qos)
        mqtt.add_connection_listener(self._connection_changed)
        if mqtt.is_connected():
            self.device.initialize()
        else:
            mqtt.wait_connected(self.device.timeout).addCallback(self._first_connect)

    async def stop(self) -> None:
        self.stopped = True
        if self.mqtt is not None:
            self.mqtt.remove_connection_listener(self._connection_changed)
            if self.handle is not None:
                self.mqtt.unsubscribe(self.handle)
        self.handle = None
        self._answer(DeviceError("the server is stopping"), report=False)

    def _first_connect(self, connected: bool) -> None:
        """The broker could not be reached at start-up within the device's timeout."""
        if not connected and not self.stopped and self.device.state == "init":
            self.log.warn("Power device {name}: the MQTT broker is not connected", name=self.device.name)
            self.device.report("error")

    def _connection_changed(self, connected: bool) -> None:
        if self.stopped:
            return
        if connected:
            self.listened = False
            if self.reached:
                self.device.initial_state = None  # a broker restart must not switch the device
            self.device.initialize()
            return
        self.known = None
        self._answer(DeviceError("lost the MQTT broker"), report=False)
        self.device.report("error")

    # state messages -----------------------------------------------------------------------------

    def _on_state(self, payload: bytes) -> None:
        self.response_count += 1
        text = payload.decode("utf-8", "replace")
        context = {"payload": text, "last_request": self.last_request, "response_count": self.response_count}
        try:
            response = self.state_response.render(context).lower()
        except TemplateFailed as exc:
            self.known = None
            self._answer(DeviceError(f"state_response_template failed on {text[:80]!r}: {exc}"))
            return
        if response == "discard":
            return
        if response not in ("on", "off"):
            self.known = None
            self._answer(DeviceError(f"state {text[:80]!r} rendered as {response[:80]!r}, not on, off or discard"))
            return
        self.known = response
        self.reached = True
        self._answer(response)

    def _answer(self, result: str | DeviceError, report: bool = True) -> None:
        """Give a state (or failure) to the request waiting for it, else to the device as news."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.called:
            if isinstance(result, DeviceError):
                waiter.errback(result)
            else:
                waiter.callback(result)
        elif report:
            if isinstance(result, DeviceError):
                self.log.warn("Power device {name}: {error}", name=self.device.name, error=str(result))
                self.device.report("error")
            else:
                self.device.report(result)

    # requests -----------------------------------------------------------------------------------

    def _connected(self) -> Any:
        if self.mqtt is None:
            raise DeviceError(MISSING_MQTT)
        if not self.mqtt.is_connected():
            raise DeviceError("the MQTT broker is not connected")
        return self.mqtt

    async def _wait(self, request: str, send: Any) -> str:
        """Run ``send`` and wait for the next state message (at most ``state_timeout`` seconds)."""
        self.waiter = waiter = Deferred()
        self.last_request, self.response_count = request, 0

        def expire() -> None:
            if not waiter.called:
                self.known = None
                waiter.errback(DeviceTimeout(f"no state on {self.state_topic} within {self.state_timeout:g} s"))

        timer = self.device.reactor.callLater(self.state_timeout, expire)
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
        if self.query_topic is None:
            # nothing to ask with: only a state retained on the broker comes after subscribing
            if self.listened:
                raise DeviceError(f"state unknown: nothing received on {self.state_topic} and no query_topic to ask")
            self.listened = True
        return await self._wait("refresh", self._query)

    async def set_state(self, state: str) -> str:
        mqtt = self._connected()
        payload = self.command_payload.render({"command": state})

        async def send() -> None:
            await mqtt.publish_topic(self.command_topic, payload, self.qos, retain=self.retain)
            if self.query_after:
                await self._query()

        return await self._wait(f"power_{state}", send)
