"""``tplink_smartplug``: a TP-Link Kasa plug or strip, over its local protocol (TCP port 9999).

Each command is one connection: a 4-byte big-endian length, then the JSON
command enciphered with TP-Link's autokey XOR (key 171, each cipher byte keys
the next); the answer comes back framed the same way.  Options: ``address``
(``host``, ``host:port``, or ``host/N`` for outlet N of a strip, as Moonraker
accepts), ``port`` (9999), ``output_id`` (outlet index of a strip),
``timer`` (seconds: "off" arms the plug's countdown rule instead).
"""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from moontwist import jsonutil
from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver

__all__ = ["TPLinkDriver", "encrypt", "decrypt", "MAX_ANSWER"]

START_KEY = 171
MAX_ANSWER = 64 * 1024


def encrypt(payload: bytes) -> bytes:
    """Frame and encipher one message."""
    key = START_KEY
    out = bytearray(struct.pack(">I", len(payload)))
    for byte in payload:
        key ^= byte
        out.append(key)
    return bytes(out)


def decrypt(cipher: bytes) -> bytes:
    """Decipher a message body (without its length prefix)."""
    key = START_KEY
    out = bytearray()
    for byte in cipher:
        out.append(key ^ byte)
        key = byte
    return bytes(out)


class _Exchange(Protocol):
    """Sends one command, collects one framed answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buffer = b""
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.buffer += data
        if len(self.buffer) < 4:
            return
        (length,) = struct.unpack(">I", self.buffer[:4])
        if length > MAX_ANSWER:
            self._finish(DeviceError(f"announced an answer of {length} bytes"))
        elif len(self.buffer) >= 4 + length:
            self._finish(self.buffer[4 : 4 + length])

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted API
        self._finish(DeviceError("closed the connection before answering in full"))

    def _finish(self, result: Any) -> None:
        if self.done.called:
            return
        if self.transport is not None:
            self.transport.loseConnection()
        if isinstance(result, Exception):
            self.done.errback(result)
        else:
            self.done.callback(result)


class TPLinkDriver(PowerDriver):
    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        address = section.get("address").strip()
        host_port, _, outlet = address.partition("/")
        self.output_id: int | None = section.getint("output_id", None, minval=0)
        if outlet:
            try:
                self.output_id = int(outlet)
            except ValueError:
                raise ConfigError(
                    f"Config error in section [{section.name}], option 'address': outlet {outlet!r} is not a number"
                ) from None
        try:
            parts = urlsplit(f"//{host_port}")
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host:
            raise ConfigError(f"Config error in section [{section.name}], option 'address': {address!r} is not a host")
        self.host = host
        self.port = port or section.getint("port", 9999, minval=1, maxval=65535)
        self.timer = section.get("timer", "")

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        endpoint = HostnameEndpoint(self.device.reactor, self.host, self.port, timeout=self.device.timeout)
        exchange = _Exchange(encrypt(jsonutil.dumpb(command)))
        try:
            await connectProtocol(endpoint, exchange)
        except Exception as exc:
            raise DeviceError(f"unreachable at {self.host}:{self.port}: {exc}") from None
        try:
            body = await exchange.done
        finally:
            if exchange.transport is not None:
                exchange.transport.abortConnection()
        try:
            answer = jsonutil.loads(decrypt(body))
        except ValueError:
            raise DeviceError("answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise DeviceError(f"answered {answer!r}")
        return answer

    async def _sysinfo(self) -> dict[str, Any]:
        return (await self.command({"system": {"get_sysinfo": {}}}))["system"]["get_sysinfo"]

    async def read_state(self) -> str:
        info = await self._sysinfo()
        if self.output_id is not None:
            return "on" if info["children"][self.output_id]["state"] else "off"
        return "on" if info["relay_state"] else "off"

    async def set_state(self, state: str) -> str:
        if self.timer and state == "off":
            await self.command({"count_down": {"delete_all_rules": None}})
            rule = {"enable": 1, "delay": int(float(self.timer)), "act": 0, "name": "turn off"}
            answer = await self.command({"count_down": {"add_rule": rule}})
            error = answer["count_down"]["add_rule"].get("err_code", 1)
        else:
            command: dict[str, Any] = {"system": {"set_relay_state": {"state": int(state == "on")}}}
            if self.output_id is not None:
                child = (await self._sysinfo())["children"][self.output_id]["id"]
                command["context"] = {"child_ids": [str(child)]}
            answer = await self.command(command)
            error = answer["system"]["set_relay_state"].get("err_code", 1)
        if error:
            raise DeviceError(f"refused to switch {state} (err_code {error})")
        return state
