"""system_info pieces: cpuinfo, os-release, SD card, virtualization, and the whole object here."""

from __future__ import annotations

import os
import sys

import pytest_twisted

from moontwist.machine.cpuinfo import cpu_info, parse_cpuinfo
from moontwist.machine.distro import distribution, parse_os_release
from moontwist.machine.network import network_from_sysfs, parse_ip_json
from moontwist.machine.providers import RecordingProvider
from moontwist.machine.sdcard import parse_cid, parse_csd_capacity, sd_info
from moontwist.machine.sysinfo import static_info, system_info
from moontwist.machine.virt import container_from_files, virtualization, vm_from_files

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz
flags\t\t: fpu vme de pse tsc

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz
flags\t\t: fpu vme de pse tsc
"""

PI_CPUINFO = "".join(
    f"processor\t: {n}\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nBogoMIPS\t: 38.40\n\n"
    for n in range(4)
) + """Hardware\t: BCM2835
Revision\t: a02082
Serial\t\t: 00000000b898bdb4
Model\t\t: Raspberry Pi 3 Model B Rev 1.2
"""

RASPBIAN = '''PRETTY_NAME="Raspbian GNU/Linux 10 (buster)"
NAME="Raspbian GNU/Linux"
VERSION_ID="10"
VERSION="10 (buster)"
ID=raspbian
ID_LIKE=debian
'''

UBUNTU = '''NAME="Ubuntu"
VERSION="22.04.3 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME="Ubuntu 22.04.3 LTS"
VERSION_ID="22.04"
VERSION_CODENAME=jammy
'''


def write(root, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_x86_cpuinfo() -> None:
    parsed = parse_cpuinfo(X86_CPUINFO)
    assert parsed == {
        "cpu_count": 2,
        "cpu_desc": "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz",
        "serial_number": "",
        "hardware_desc": "",
        "model": "",
    }


def test_pi_cpu_info_from_tree(tmp_path) -> None:
    write(tmp_path, "/proc/cpuinfo", PI_CPUINFO)
    write(tmp_path, "/proc/meminfo", "MemTotal:         945364 kB\nMemFree: 1000 kB\n")
    info = cpu_info(str(tmp_path))
    assert info["cpu_count"] == 4
    assert info["cpu_desc"] == "ARMv7 Processor rev 4 (v7l)"
    assert info["hardware_desc"] == "BCM2835"
    assert info["serial_number"] == "b898bdb4"
    assert info["model"] == "Raspberry Pi 3 Model B Rev 1.2"
    assert (info["total_memory"], info["memory_units"]) == (945364, "kB")
    assert set(info) == {"cpu_count", "bits", "processor", "cpu_desc", "serial_number",
                         "hardware_desc", "model", "total_memory", "memory_units"}


def test_pi4_model_from_device_tree(tmp_path) -> None:
    write(tmp_path, "/proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 108.00\n")
    write(tmp_path, "/sys/firmware/devicetree/base/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    info = cpu_info(str(tmp_path))
    assert info["model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert info["total_memory"] is None and info["memory_units"] == ""


def test_distribution_raspbian(tmp_path) -> None:
    write(tmp_path, "/etc/os-release", RASPBIAN)
    dist = distribution(str(tmp_path))
    assert {k: dist[k] for k in ("name", "id", "version", "version_parts", "like", "codename")} == {
        "name": "Raspbian GNU/Linux 10 (buster)",
        "id": "raspbian",
        "version": "10",
        "version_parts": {"major": "10", "minor": "", "build_number": ""},
        "like": "debian",
        "codename": "buster",
    }
    assert dist["release_info"]["id_like"] == "debian"


def test_distribution_ubuntu_fallback_path(tmp_path) -> None:
    write(tmp_path, "/usr/lib/os-release", UBUNTU)
    dist = distribution(str(tmp_path))
    assert dist["name"] == "Ubuntu 22.04.3 LTS"
    assert dist["version_parts"] == {"major": "22", "minor": "04", "build_number": ""}
    assert dist["codename"] == "jammy"


def test_distribution_missing(tmp_path) -> None:
    dist = distribution(str(tmp_path))
    assert dist["name"] == dist["id"] == dist["version"] == ""
    assert dist["release_info"] == {}


def test_os_release_quoting() -> None:
    assert parse_os_release("# c\nNAME='A B'\nX=\"q \\\"x\\\"\"\nbad line\n") == {
        "name": "A B",
        "x": 'q "x"',
    }


def test_sd_card(tmp_path) -> None:
    # SanDisk "SU32G", rev 8.0, serial 46ba46.., made 4/2018; SDHC CSD for ~29.7 GiB.
    cid = "035344535533324780" + "46ba4600" + "0124" + "00"
    info = parse_cid(cid)
    assert info["manufacturer"] == "Sandisk" and info["product_name"] == "SU32G"
    assert info["product_revision"] == "8.0" and info["manufacturer_date"] == "4/2018"
    csd = "400e00325b590000ed9d7f800a400000"
    capacity, total = parse_csd_capacity(csd)
    assert total == (0xED9D + 1) * 512 * 1024 and capacity == "29.7 GiB"
    assert sd_info(str(tmp_path)) == {}
    write(tmp_path, "/sys/block/mmcblk0/device/cid", cid + "\n")
    write(tmp_path, "/sys/block/mmcblk0/device/csd", csd + "\n")
    assert sd_info(str(tmp_path))["total_bytes"] == total


def test_container_markers(tmp_path) -> None:
    assert container_from_files(str(tmp_path)) is None
    write(tmp_path, "/proc/1/environ", "PATH=/bin\x00container=lxc\x00")
    assert container_from_files(str(tmp_path)) == "lxc"
    write(tmp_path, "/run/.containerenv", "")
    assert container_from_files(str(tmp_path)) == "podman"


def test_vm_markers(tmp_path) -> None:
    assert vm_from_files(str(tmp_path)) is None
    write(tmp_path, "/proc/cpuinfo", "flags\t: fpu hypervisor sse\n")
    assert vm_from_files(str(tmp_path)) == "unknown"
    write(tmp_path, "/sys/class/dmi/id/sys_vendor", "QEMU\n")
    assert vm_from_files(str(tmp_path)) == "qemu"


@pytest_twisted.ensureDeferred
async def test_virtualization_fixture_without_tools(tmp_path) -> None:
    write(tmp_path, "/sys/class/dmi/id/product_name", "VMware Virtual Platform\n")
    virt = await virtualization(str(tmp_path), path_env=str(tmp_path))
    assert virt == {"virt_type": "vm", "virt_identifier": "vmware"}
    os.remove(tmp_path / "sys/class/dmi/id/product_name")
    virt = await virtualization(str(tmp_path), path_env=str(tmp_path))
    assert virt == {"virt_type": "none", "virt_identifier": "none"}


IP_JSON = """[
 {"ifname": "lo", "operstate": "UNKNOWN", "link_type": "loopback", "address": "00:00:00:00:00:00",
  "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"}]},
 {"ifname": "wlan0", "operstate": "UP", "link_type": "ether", "address": "aa:bb:cc:dd:ee:ff",
  "addr_info": [{"family": "inet", "local": "192.168.1.127", "scope": "global"},
                {"family": "inet6", "local": "fe80::1", "scope": "link"}]},
 {"ifname": "eth1", "operstate": "DOWN", "link_type": "ether", "address": "aa:bb:cc:dd:ee:00",
  "addr_info": []},
 {"ifname": "can0", "operstate": "UP", "link_type": "can", "txqlen": 128,
  "linkinfo": {"info_data": {"bittiming": {"bitrate": 500000},
                             "bittiming_const": {"name": "mcp251x"}}}}
]"""


def test_parse_ip_json() -> None:
    network, canbus = parse_ip_json(IP_JSON)
    assert network == {
        "wlan0": {
            "mac_address": "aa:bb:cc:dd:ee:ff",
            "ip_addresses": [
                {"family": "ipv4", "address": "192.168.1.127", "is_link_local": False},
                {"family": "ipv6", "address": "fe80::1", "is_link_local": True},
            ],
        }
    }
    assert canbus == {"can0": {"tx_queue_len": 128, "bitrate": 500000, "driver": "mcp251x"}}


def test_network_from_sysfs_tree(tmp_path) -> None:
    write(tmp_path, "/sys/class/net/eth0/type", "1\n")
    write(tmp_path, "/sys/class/net/eth0/operstate", "up\n")
    write(tmp_path, "/sys/class/net/eth0/address", "02:fc:00:00:00:01\n")
    write(tmp_path, "/sys/class/net/lo/type", "772\n")
    write(tmp_path, "/proc/net/if_inet6", "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n")
    assert network_from_sysfs(str(tmp_path)) == {
        "eth0": {
            "mac_address": "02:fc:00:00:00:01",
            "ip_addresses": [{"family": "ipv6", "address": "fe80::fc:ff:fe00:1", "is_link_local": True}],
        }
    }


@pytest_twisted.ensureDeferred
async def test_system_info_on_this_machine() -> None:
    provider = RecordingProvider()
    provider.set_state("klipper", "active", "running")
    static = await static_info()
    info = await system_info(provider, static=static, instance_ids={"moonraker": "moontwist", "klipper": "klipper"})
    assert set(info) >= {"cpu_info", "sd_info", "distribution", "virtualization", "network", "canbus",
                         "python", "instance_ids", "available_services", "service_state", "provider"}
    assert info["cpu_info"]["cpu_count"] == os.cpu_count()
    assert info["cpu_info"]["memory_units"] == "kB"
    assert isinstance(info["sd_info"], dict)
    assert info["python"]["version"][:3] == list(sys.version_info[:3])
    assert info["available_services"] == ["klipper"]
    assert info["service_state"] == {"klipper": {"active_state": "active", "sub_state": "running"}}
    for intf in info["network"].values():
        assert set(intf) == {"mac_address", "ip_addresses"}
    # This test machine is a container (docker): detection must say so.
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        assert info["virtualization"]["virt_type"] == "container"
        assert info["virtualization"]["virt_identifier"] in ("docker", "podman")
