"""Serial, USB, video and CAN discovery over fixture sysfs trees and on this machine."""

from __future__ import annotations

import os
import struct

import pytest
import pytest_twisted
from twisted.internet import reactor

from moontwist.api.errors import ServerError
from moontwist.machine.canbus import can_interfaces, parse_uuid_response, query_can_uuids
from moontwist.machine.peripherals import (
    CAPABILITY,
    parse_capability,
    serial_devices,
    usb_devices,
    video_devices,
)
from moontwist.machine.usbids import parse_usb_ids

USB_IDS = """# comment
0403  Future Technology Devices International, Ltd
\t6001  FT232 Serial (UART) IC
1d6b  Linux Foundation
\t0002  2.0 root hub
C 09  Hub
\t00  Unused
\t\t02  TT per port
C ff  Vendor Specific Class
"""


def write(root, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def usb_device(root, name: str, bus: int, dev: int, vid: str, pid: str, cls: str, **extra: str) -> str:
    rel = f"/sys/devices/pci0/usb{bus}/{name}"
    for key, value in {"busnum": bus, "devnum": dev, "idVendor": vid, "idProduct": pid,
                       "bDeviceClass": cls, "bDeviceSubClass": "00", "bDeviceProtocol": "02",
                       **extra}.items():
        write(root, f"{rel}/{key}", f"{value}\n")
    link = root / "sys/bus/usb/devices" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(root / rel.lstrip("/"))
    return rel


def test_usb_ids_parsing() -> None:
    names = parse_usb_ids(USB_IDS)
    assert names["0403:6001"] == "FT232 Serial (UART) IC"
    assert names["C:09"] == "Hub" and names["C:09:00:02"] == "TT per port"


def test_usb_and_serial_tree(tmp_path) -> None:
    write(tmp_path, "/usr/share/misc/usb.ids", USB_IDS)
    usb_device(tmp_path, "usb1", 1, 1, "1d6b", "0002", "09", manufacturer="Linux xhci", product="xHCI Host")
    ftdi = usb_device(tmp_path, "1-1", 1, 5, "0403", "6001", "00", serial="A1B2")
    usb_device(tmp_path, "1-2", 1, 4, "1d50", "614e", "02", manufacturer="Klipper", product="stm32f407xx")
    write(tmp_path, f"{ftdi}/1-1:1.0/bInterfaceClass", "ff\n")  # interface folders are skipped
    (tmp_path / "sys/bus/usb/devices/1-1:1.0").symlink_to(tmp_path / ftdi.lstrip("/") / "1-1:1.0")

    devices = {d["usb_location"]: d for d in usb_devices(str(tmp_path))}
    assert set(devices) == {"1:1", "1:4", "1:5"}
    hub = devices["1:1"]
    assert (hub["manufacturer"], hub["product"], hub["class"], hub["subclass"], hub["protocol"]) == (
        "Linux xhci", "xHCI Host", "Hub", None, "TT per port")
    assert hub["description"] == "Linux Foundation 2.0 root hub"
    uart = devices["1:5"]
    assert uart["manufacturer"] == "Future Technology Devices International, Ltd"
    assert uart["class"] is None and uart["serial"] == "A1B2"
    assert devices["1:4"]["description"] == "OpenMoko, Inc. Klipper 3d-Printer Firmware"
    assert set(uart) == {"device_num", "bus_num", "vendor_id", "product_id", "usb_location",
                         "manufacturer", "product", "serial", "class", "subclass", "protocol",
                         "description"}

    # ttyUSB0 hangs below the FTDI device; ttyS0 is a real UART; ttyS1 an unused placeholder.
    port = tmp_path / ftdi.lstrip("/") / "1-1:1.0" / "ttyUSB0"
    port.mkdir(parents=True)
    (port / "driver").symlink_to(tmp_path / "drivers/ftdi_sio", target_is_directory=True)
    (tmp_path / "drivers/ftdi_sio").mkdir(parents=True)
    tty = tmp_path / "sys/class/tty"
    (tty / "ttyUSB0").mkdir(parents=True)
    (tty / "ttyUSB0/device").symlink_to(port)
    for name, kind in (("ttyS0", "4"), ("ttyS1", "0")):
        write(tmp_path, f"/sys/class/tty/{name}/uartclk", "1843200\n")
        write(tmp_path, f"/sys/class/tty/{name}/type", f"{kind}\n")
        (tty / name / "device").mkdir()
    (tty / "tty0").mkdir()  # virtual console: no device folder
    by_id = tmp_path / "dev/serial/by-id"
    by_id.mkdir(parents=True)
    (tmp_path / "dev/ttyUSB0").write_text("")
    (by_id / "usb-FTDI_FT232R-if00-port0").symlink_to(tmp_path / "dev/ttyUSB0")

    serial = {d["device_name"]: d for d in serial_devices(str(tmp_path))}
    assert set(serial) == {"ttyS0", "ttyUSB0"}
    assert serial["ttyS0"]["device_type"] == "hardware_uart"
    assert serial["ttyUSB0"] == {
        "device_type": "usb",
        "device_path": "/dev/ttyUSB0",
        "device_name": "ttyUSB0",
        "driver_name": "ftdi_sio",
        "path_by_hardware": None,
        "path_by_id": "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        "usb_location": "1:5",
    }


def test_empty_tree_is_clean(tmp_path) -> None:
    root = str(tmp_path)
    assert serial_devices(root) == [] and usb_devices(root) == []
    assert video_devices(root) == {"v4l2_devices": [], "libcamera_devices": []}
    assert can_interfaces(root) == {}


def test_this_machine() -> None:
    assert all("usb_location" in d for d in usb_devices())
    video = video_devices()
    assert set(video) == {"v4l2_devices", "libcamera_devices"}
    if not os.path.isdir("/sys/class/video4linux"):
        assert video["v4l2_devices"] == []
    for dev in serial_devices():
        assert dev["device_type"] in ("hardware_uart", "usb", "unknown")


def test_v4l2_capability_decoding() -> None:
    raw = CAPABILITY.pack(b"uvcvideo", b"UVC Camera (046d:0825)", b"usb-0000:01:00.0-1",
                          (6 << 16) | (1 << 8) | 63, 0x84A00001, 0x04200001)
    assert parse_capability(raw) == {
        "camera_name": "UVC Camera (046d:0825)",
        "driver_name": "uvcvideo",
        "hardware_bus": "usb-0000:01:00.0-1",
        "capabilities": ["VIDEO_CAPTURE", "EXT_PIX_FORMAT", "STREAMING"],
        "version": "6.1.63",
        "can_capture": True,
    }
    assert struct.calcsize("16s32s32sIII12x") == 104


def test_can_interfaces_tree(tmp_path) -> None:
    write(tmp_path, "/sys/class/net/can0/type", "280\n")
    write(tmp_path, "/sys/class/net/can0/operstate", "up\n")
    write(tmp_path, "/sys/class/net/can0/tx_queue_len", "128\n")
    write(tmp_path, "/sys/class/net/eth0/type", "1\n")
    assert can_interfaces(str(tmp_path)) == {
        "can0": {"tx_queue_len": 128, "bitrate": -1, "driver": "unknown"}
    }


def test_uuid_response_parsing() -> None:
    assert parse_uuid_response(bytes([0x20, 0x11, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x01])) == {
        "uuid": "11AABBCCDDEE", "application": "Klipper"}
    assert parse_uuid_response(bytes([0x20, 1, 2, 3, 4, 5, 6, 0x11]))["application"] == "Katapult"
    assert parse_uuid_response(bytes([0x21, 1, 2, 3, 4, 5, 6, 0x11])) is None


@pytest_twisted.ensureDeferred
async def test_canbus_not_available_here() -> None:
    with pytest.raises(ServerError) as err:
        await query_can_uuids("can0", reactor=reactor, listen=0.1)
    assert err.value.status == 400
    assert err.value.message == "Unable to bind socket to interface 'can0'"
