"""``network`` (and ``canbus``) for system_info: interfaces with their MAC and IP addresses."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import socket
import struct
from typing import Any

from moontwist.machine.canbus import can_interfaces
from moontwist.machine.commands import CommandError, run_command
from moontwist.machine.hostfs import host_path, read_line, read_text

IP_FAMILIES = {"inet": "ipv4", "inet6": "ipv6"}
ARPHRD_ETHER = "1"
SIOCGIFADDR = 0x8915


def parse_ip_json(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(network, canbus)`` from ``ip -json -details address`` output; only interfaces that are up."""
    network: dict[str, Any] = {}
    canbus: dict[str, Any] = {}
    for intf in json.loads(text or "[]"):
        name = intf.get("ifname")
        if not name or intf.get("operstate") not in ("UP", "UNKNOWN"):
            continue
        link = intf.get("link_type")
        if link == "can":
            info = intf.get("linkinfo", {}).get("info_data", {})
            canbus[name] = {
                "tx_queue_len": intf.get("txqlen", 0),
                "bitrate": info.get("bittiming", {}).get("bitrate", -1),
                "driver": info.get("bittiming_const", {}).get("name", "unknown"),
            }
        elif link == "ether" and intf.get("address"):
            addresses = [
                {
                    "family": IP_FAMILIES[a["family"]],
                    "address": a["local"],
                    "is_link_local": a.get("scope") == "link",
                }
                for a in intf.get("addr_info", [])
                if a.get("family") in IP_FAMILIES and "local" in a
            ]
            if addresses:
                network[name] = {"mac_address": intf["address"], "ip_addresses": addresses}
    return network, canbus


def _ipv4_address(name: str) -> str | None:
    """The interface's primary IPv4 address through SIOCGIFADDR (this host only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def _ipv6_addresses(root: str) -> dict[str, list[dict[str, Any]]]:
    """IPv6 addresses by interface from /proc/net/if_inet6."""
    found: dict[str, list[dict[str, Any]]] = {}
    for line in (read_text(root, "/proc/net/if_inet6") or "").splitlines():
        parts = line.split()
        if len(parts) != 6 or len(parts[0]) != 32:
            continue
        addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
        found.setdefault(parts[5], []).append(
            {"family": "ipv6", "address": str(addr), "is_link_local": addr.is_link_local}
        )
    return found


def network_from_sysfs(root: str = "/") -> dict[str, Any]:
    """The ``network`` object from /sys/class/net, /proc/net/if_inet6 and (on this host) ioctl."""
    base = host_path(root, "/sys/class/net")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return {}
    ipv6 = _ipv6_addresses(root)
    network: dict[str, Any] = {}
    for name in names:
        rel = f"/sys/class/net/{name}"
        if read_line(root, f"{rel}/type") != ARPHRD_ETHER:
            continue
        if read_line(root, f"{rel}/operstate") not in ("up", "unknown"):
            continue
        mac = read_line(root, f"{rel}/address")
        addresses: list[dict[str, Any]] = []
        ipv4 = _ipv4_address(name) if root == "/" else None
        if ipv4:
            addresses.append({"family": "ipv4", "address": ipv4, "is_link_local": ipv4.startswith("169.254.")})
        addresses.extend(ipv6.get(name, []))
        if mac and addresses:
            network[name] = {"mac_address": mac, "ip_addresses": addresses}
    return network


async def network_info(
    root: str = "/", *, path_env: str | None = None, reactor: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(network, canbus)``: from ``ip -json`` when available, else from sysfs/procfs."""
    try:
        result = await run_command(
            ("ip", "-json", "-details", "address"), timeout=5.0, path_env=path_env, reactor=reactor
        )
        return parse_ip_json(result.stdout)
    except (CommandError, ValueError, KeyError):
        return network_from_sysfs(root), can_interfaces(root)
