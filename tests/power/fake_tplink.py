"""A fake TP-Link Kasa plug or strip speaking the local protocol on a loopback TCP port.

Framing and cipher follow the published protocol (softScheck's tplink-smartplug
write-up): a 4-byte big-endian length, then the JSON enciphered with an autokey
XOR starting at 171.  The fake deciphers with its own code, records each
command and answers like an HS100/HS300.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol


def _encipher(data: bytes) -> bytes:
    key, out = 171, bytearray()
    for byte in data:
        key ^= byte
        out.append(key)
    return struct.pack(">I", len(data)) + bytes(out)


def _decipher(data: bytes) -> bytes:
    key, out = 171, bytearray()
    for byte in data:
        out.append(key ^ byte)
        key = byte
    return bytes(out)


class _Conn(Protocol):
    def __init__(self, fake: FakeTPLink) -> None:
        self.fake = fake
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.buffer += data
        if len(self.buffer) < 4:
            return
        (length,) = struct.unpack(">I", self.buffer[:4])
        if len(self.buffer) < 4 + length:
            return
        command = json.loads(_decipher(self.buffer[4 : 4 + length]))
        self.fake.commands.append(command)
        if self.fake.hang:
            return
        self.transport.write(_encipher(json.dumps(self.fake.answer(command)).encode()))


class FakeTPLink(Factory):
    def __init__(self, outlets: int = 0) -> None:
        self.commands: list[dict[str, Any]] = []
        self.relay = 0
        self.children = [
            {"id": f"8006AABBCCDD{i:02d}", "state": 0, "alias": f"Outlet {i}", "on_time": 0} for i in range(outlets)
        ]
        self.rules: list[dict[str, Any]] = []
        self.hang = False
        self.port: Any = None

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802
        return _Conn(self)

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        system = command.get("system", {})
        if "get_sysinfo" in system:
            info: dict[str, Any] = {"sw_ver": "1.0.4", "model": "HS300(US)" if self.children else "HS100(EU)",
                                    "alias": "Printer", "err_code": 0}
            if self.children:
                info["children"] = [dict(c) for c in self.children]
                info["child_num"] = len(self.children)
            else:
                info["relay_state"] = self.relay
            return {"system": {"get_sysinfo": info}}
        if "set_relay_state" in system:
            state = system["set_relay_state"]["state"]
            child_ids = command.get("context", {}).get("child_ids")
            if child_ids:
                for child in self.children:
                    if child["id"] in child_ids:
                        child["state"] = state
            else:
                self.relay = state
            return {"system": {"set_relay_state": {"err_code": 0}}}
        count_down = command.get("count_down", {})
        if "delete_all_rules" in count_down:
            self.rules.clear()
            return {"count_down": {"delete_all_rules": {"err_code": 0}}}
        if "add_rule" in count_down:
            self.rules.append(count_down["add_rule"])
            return {"count_down": {"add_rule": {"id": "RULE1", "err_code": 0}}}
        return {"system": {"err_code": -1, "err_msg": "module not support"}}

    def start(self) -> int:
        self.port = reactor.listenTCP(0, self, interface="127.0.0.1")
        return self.port.getHost().port

    def stop(self) -> Any:
        return self.port.stopListening()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port.getHost().port}"
