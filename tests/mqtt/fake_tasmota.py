"""A Tasmota plug on the real broker, as its firmware speaks MQTT.

``cmnd/NAME/POWER`` in: an empty payload or ``?`` asks for the state; ON, OFF,
TOGGLE, 1, 0 switch.  Out: ``stat/NAME/RESULT`` ``{"POWER": "ON"}`` and
``stat/NAME/POWER`` ``ON`` after every command and every press of its button.
The plug records every command it was sent.
"""

from __future__ import annotations

import json

from mqtt.broker import Peer

from mtclient import sleep


class TasmotaPlug(Peer):
    """One plug; ``mute`` stops it answering, ``press()`` switches it at the plug."""

    def __init__(self, port: int, name: str = "plug", on: bool = False) -> None:
        super().__init__(port)
        self.name = name
        self.on = on
        self.mute = False
        #: answer commands with the old state first, then the new one (some firmwares do)
        self.echo_old = False
        #: switch on commands without publishing the state (it has to be queried)
        self.quiet_commands = False
        self.commands: list[bytes] = []
        self.command_topic = f"cmnd/{name}/POWER"
        # back quickly after a broker restart; subscriptions renewed on every connect
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        connected = self.client.on_connect

        def on_connect(client, userdata, flags, rc, properties):
            client.subscribe(self.command_topic, 1)
            connected(client, userdata, flags, rc, properties)

        self.client.on_connect = on_connect

    async def start(self) -> TasmotaPlug:
        await self.connect()
        await sleep(0.1)  # the subscription made in on_connect is in place
        return self

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        super()._on_message(topic, payload, retain)
        if topic != self.command_topic:
            return
        self.commands.append(payload)
        word = payload.decode().strip().upper()
        old = self.on
        if word in ("ON", "1"):
            self.on = True
        elif word in ("OFF", "0"):
            self.on = False
        elif word == "TOGGLE":
            self.on = not self.on
        elif word not in ("", "?"):
            return
        if self.mute or (self.quiet_commands and word not in ("", "?")):
            return
        if self.echo_old and word not in ("", "?"):
            self._publish_state(old)
        self._publish_state(self.on)

    def press(self) -> None:
        """The plug's own button."""
        self.on = not self.on
        self._publish_state(self.on)

    def _publish_state(self, on: bool) -> None:
        word = "ON" if on else "OFF"
        self.client.publish(f"stat/{self.name}/RESULT", json.dumps({"POWER": word}))
        self.client.publish(f"stat/{self.name}/POWER", word)
