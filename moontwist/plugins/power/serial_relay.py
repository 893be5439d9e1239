"""``serial_relay``: a relay board on a serial port (USB relay boards such as LCUS/CH340).

Options: ``serial`` (the port: ``/dev/ttyUSB0``, better a ``/dev/serial/by-id/...``
link), ``baud`` (9600), ``on_command`` and ``off_command`` (the bytes to send,
in hex: ``A0 01 01 A2`` / ``A0 01 00 A1`` for channel 1 of an LCUS board),
``query_command`` with ``on_response`` and ``off_response`` (for boards that
report their state; without them the state is what was last sent), ``encoding``
(``hex``, or ``text`` for line protocols, where ``\\r``, ``\\n`` and ``\\t`` are
escapes) and ``reconnect_interval`` (2 s).

The port is opened through Twisted's ``SerialPort`` (pyserial).  Without a query
command moontwist takes control when it opens the port: it sends the
``initial_state`` (off when not given), and after a reconnect the last state it
set.  A port that goes away puts the device in ``error`` (with a notification)
and is reopened every ``reconnect_interval`` seconds.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.serialport import SerialPort
from twisted.python.failure import Failure

from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver

__all__ = ["SerialRelayDriver", "parse_bytes"]

MAX_BUFFER = 4096
_ESCAPES = {"\\r": "\r", "\\n": "\n", "\\t": "\t", "\\\\": "\\"}


def parse_bytes(text: str, encoding: str) -> bytes:
    """``A0 01 01 A2`` (hex: spaces, commas and 0x prefixes allowed) or escaped text."""
    if encoding == "text":
        for escape, char in _ESCAPES.items():
            text = text.replace(escape, char)
        return text.encode()
    cleaned = text.replace(",", " ").replace("0x", "").replace("0X", "")
    return bytes.fromhex("".join(cleaned.split()))


class _Link(Protocol):
    def __init__(self, driver: SerialRelayDriver) -> None:
        self.driver = driver

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.driver.received(data)

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802 - Twisted API
        self.driver.lost(self, reason)


class SerialRelayDriver(PowerDriver):
    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.path = section.get("serial")
        self.baud = section.getint("baud", 9600, minval=50)
        self.encoding = section.get("encoding", "hex", choices=("hex", "text"))

        def sequence(option: str, required: bool = True) -> bytes | None:
            raw = section.get(option) if required else section.get(option, None)
            if raw is None:
                return None
            try:
                value = parse_bytes(raw, self.encoding)
            except ValueError:
                value = b""
            if not value:
                raise ConfigError(
                    f"Config error in section [{section.name}], option '{option}': {raw!r} is not a "
                    + ("hex byte sequence (e.g. A0 01 01 A2)" if self.encoding == "hex" else "text")
                )
            return value

        self.commands = {"on": sequence("on_command"), "off": sequence("off_command")}
        self.query = sequence("query_command", required=False)
        self.responses = {"on": sequence("on_response", False), "off": sequence("off_response", False)}
        if self.query is not None and None in self.responses.values():
            raise ConfigError(
                f"Config error in section [{section.name}]: 'query_command' needs 'on_response' and 'off_response'"
            )
        self.reconnect_interval = section.getfloat("reconnect_interval", 2.0, above=0.0)
        self.port: SerialPort | None = None
        self.link: _Link | None = None
        self.buffer = b""
        self.waiter: Deferred | None = None
        self.on = bool(device.initial_state)  # what we set last (the state without a query)
        self.reconnect_call: Any = None
        self.stopped = False

    # the port ------------------------------------------------------------------------------

    def _open(self) -> SerialPort:
        if self.port is not None:
            return self.port
        link = _Link(self)
        try:
            port = SerialPort(link, self.path, self.device.reactor, baudrate=self.baud)
        except Exception as exc:
            self._schedule_reconnect()
            raise DeviceError(f"can't open {self.path}: {exc}") from None
        self.port, self.link, self.buffer = port, link, b""
        self.log.info("Power device {name}: {path} open", name=self.device.name, path=self.path)
        return port

    def lost(self, link: _Link, reason: Any) -> None:
        if link is not self.link:
            return
        self.port = self.link = None
        if self.waiter is not None and not self.waiter.called:
            self.waiter.errback(DeviceError(f"{self.path} went away"))
        if self.stopped:
            return
        self.log.warn("Power device {name}: {path} went away", name=self.device.name, path=self.path)
        self.device.report("error")
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self.stopped or (self.reconnect_call is not None and self.reconnect_call.active()):
            return
        self.reconnect_call = self.device.reactor.callLater(self.reconnect_interval, self._reconnect)

    def _reconnect(self) -> None:
        try:
            self._open()
        except DeviceError:
            return  # _open scheduled the next attempt
        if self.query is None:
            self._write(self.commands["on" if self.on else "off"])
            self.device.report("on" if self.on else "off")
        else:
            self.device.initialize()

    def _write(self, data: bytes | None) -> None:
        assert data is not None
        self._open().write(data)

    def received(self, data: bytes) -> None:
        self.buffer = (self.buffer + data)[-MAX_BUFFER:]
        if self.waiter is None or self.waiter.called:
            return
        for state, response in self.responses.items():
            if response and response in self.buffer:
                self.buffer = b""
                self.waiter.callback(state)
                return

    async def _ask(self) -> str:
        self.buffer = b""
        self.waiter = waiter = Deferred()
        self._write(self.query)
        try:
            return await waiter
        finally:
            self.waiter = None

    # the driver API -----------------------------------------------------------------------

    async def start(self) -> None:
        self._open()
        if self.query is None:
            self._write(self.commands["on" if self.on else "off"])

    async def stop(self) -> None:
        self.stopped = True
        if self.reconnect_call is not None and self.reconnect_call.active():
            self.reconnect_call.cancel()
        port, self.port, self.link = self.port, None, None
        if port is not None:
            port.loseConnection()

    async def read_state(self) -> str:
        self._open()
        if self.query is None:
            return "on" if self.on else "off"
        return await self._ask()

    async def set_state(self, state: str) -> str:
        self._write(self.commands[state])
        self.on = state == "on"
        if self.query is None:
            return state
        return await self._ask()
