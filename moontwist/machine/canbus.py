"""CAN interfaces (sysfs) and the query for unassigned Klipper/Katapult node UUIDs."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from twisted.internet import task
from twisted.python.failure import Failure

from moontwist.api.errors import ServerError
from moontwist.machine.hostfs import host_path, read_line

ARPHRD_CAN = "280"
CAN_FRAME = struct.Struct("<IB3x8s")
ADMIN_ID = 0x3F0  # Klipper's canbus admin id; responses come from ADMIN_ID + 1
CMD_QUERY_UNASSIGNED = 0x00
RESP_NEED_NODEID = 0x20
APPLICATIONS = {0x01: "Klipper", 0x11: "Katapult"}


def can_interfaces(root: str = "/") -> dict[str, Any]:
    """CAN interfaces from /sys/class/net (ARPHRD_CAN) that are up, as system_info ``canbus``."""
    base = host_path(root, "/sys/class/net")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return {}
    found: dict[str, Any] = {}
    for name in names:
        rel = f"/sys/class/net/{name}"
        if read_line(root, f"{rel}/type") != ARPHRD_CAN:
            continue
        if read_line(root, f"{rel}/operstate") not in ("up", "unknown"):
            continue
        qlen = read_line(root, f"{rel}/tx_queue_len") or "0"
        driver = os.path.basename(os.path.realpath(host_path(root, f"{rel}/device/driver")))
        found[name] = {
            "tx_queue_len": int(qlen) if qlen.isdigit() else 0,
            "bitrate": -1,  # only available over netlink (``ip -details``)
            "driver": driver if os.path.exists(host_path(root, f"{rel}/device/driver")) else "unknown",
        }
    return found


def not_available(interface: str) -> ServerError:
    """The error for a CAN interface that cannot be used (Moonraker's wording).

    Moonraker answers 500; a missing or unusable interface is the request's problem, so 400.
    """
    return ServerError(f"Unable to bind socket to interface '{interface}'", 400)


def parse_uuid_response(payload: bytes) -> dict[str, str] | None:
    """``{"uuid", "application"}`` from an unassigned-node reply, or None for other frames."""
    if len(payload) < 7 or payload[0] != RESP_NEED_NODEID:
        return None
    app = APPLICATIONS.get(payload[7], "Unknown") if len(payload) > 7 else "Klipper"
    return {"uuid": payload[1:7].hex().upper(), "application": app}


class _UuidReader:
    """Reads CAN frames from a raw socket registered with the reactor, collecting node replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.found: dict[str, dict[str, str]] = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:  # noqa: N802 (Twisted naming)
        return "canbus"

    def doRead(self) -> None:  # noqa: N802
        while True:
            try:
                frame = self.sock.recv(CAN_FRAME.size)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(frame) < CAN_FRAME.size:
                return
            can_id, length, data = CAN_FRAME.unpack(frame)
            if can_id & socket.CAN_EFF_MASK != ADMIN_ID + 1:
                continue
            reply = parse_uuid_response(data[:length])
            if reply is not None:
                self.found.setdefault(reply["uuid"], reply)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.sock.close()


async def query_can_uuids(
    interface: str = "can0", *, root: str = "/", listen: float = 1.5, reactor: Any = None
) -> list[dict[str, str]]:
    """Broadcast Klipper's "query unassigned" and collect replies for ``listen`` seconds."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    if interface not in can_interfaces(root) or not hasattr(socket, "AF_CAN"):
        raise not_available(interface)
    sock = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
    try:
        sock.bind((interface,))
        sock.setblocking(False)
        sock.send(CAN_FRAME.pack(ADMIN_ID, 1, bytes([CMD_QUERY_UNASSIGNED])))
    except OSError:
        sock.close()
        raise not_available(interface) from None
    reader = _UuidReader(sock)
    reactor.addReader(reader)
    try:
        await task.deferLater(reactor, listen, lambda: None)
    finally:
        reactor.removeReader(reader)
        sock.close()
    return list(reader.found.values())

