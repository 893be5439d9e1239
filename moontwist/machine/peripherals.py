"""``machine.peripherals.*``: serial ports, USB devices and V4L2 cameras, read from sysfs.

Everything takes ``root`` so tests can use fixture trees. Functions do blocking file I/O
and ioctls on a handful of small files; call them through ``deferToThread`` if needed.
Serial ports are enumerated from /sys/class/tty directly (pyserial's ``list_ports`` cannot
report the driver or the USB bus:device location, and has no injectable root).
"""

from __future__ import annotations

import fcntl
import os
import struct
from typing import Any

from moontwist.machine.hostfs import host_path, read_line
from moontwist.machine.usbids import describe, usb_names

# V4L2 ioctls and structures (linux/videodev2.h).
VIDIOC_QUERYCAP = 0x80685600
VIDIOC_ENUM_FMT = 0xC0405602
VIDIOC_ENUM_FRAMESIZES = 0xC02C564A
CAPABILITY = struct.Struct("16s32s32sIII12x")
FMTDESC = struct.Struct("III32sII12x")
FRMSIZE = struct.Struct("IIIII16x8x")
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
CAP_NAMES = (
    (0x00000001, "VIDEO_CAPTURE"), (0x00000002, "VIDEO_OUTPUT"), (0x00000004, "VIDEO_OVERLAY"),
    (0x00000010, "VBI_CAPTURE"), (0x00000020, "VBI_OUTPUT"), (0x00000040, "SLICED_VBI_CAPTURE"),
    (0x00000080, "SLICED_VBI_OUTPUT"), (0x00000100, "RDS_CAPTURE"),
    (0x00000200, "VIDEO_OUTPUT_OVERLAY"), (0x00000400, "HW_FREQ_SEEK"), (0x00000800, "RDS_OUTPUT"),
    (0x00001000, "VIDEO_CAPTURE_MPLANE"), (0x00002000, "VIDEO_OUTPUT_MPLANE"),
    (0x00004000, "VIDEO_M2M_MPLANE"), (0x00008000, "VIDEO_M2M"), (0x00010000, "TUNER"),
    (0x00020000, "AUDIO"), (0x00040000, "RADIO"), (0x00080000, "MODULATOR"),
    (0x00100000, "SDR_CAPTURE"), (0x00200000, "EXT_PIX_FORMAT"), (0x00400000, "SDR_OUTPUT"),
    (0x00800000, "META_CAPTURE"), (0x01000000, "READWRITE"), (0x04000000, "STREAMING"),
    (0x08000000, "META_OUTPUT"), (0x10000000, "TOUCH"), (0x20000000, "IO_MC"),
)
FORMAT_FLAGS = ((0x0001, "COMPRESSED"), (0x0002, "EMULATED"))


def _links(root: str, rel: str) -> dict[str, str]:
    """``{device file name: link path}`` for the symlinks in a /dev/*/by-* folder."""
    folder = host_path(root, rel)
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return {}
    return {os.path.basename(os.path.realpath(os.path.join(folder, e))): f"{rel}/{e}" for e in entries}


def _usb_location(device_dir: str) -> str | None:
    """``bus:device`` of the USB device that owns a sysfs device folder, if any."""
    path = os.path.realpath(device_dir)
    while path and path != os.path.dirname(path):
        try:
            with open(os.path.join(path, "busnum")) as b, open(os.path.join(path, "devnum")) as d:
                return f"{int(b.read())}:{int(d.read())}"
        except (OSError, ValueError):
            path = os.path.dirname(path)
    return None


def _driver(device_dir: str) -> str:
    """The device's driver; past the kernel's generic serial-base ``port``/``ctrl`` layers."""
    path = os.path.realpath(device_dir)
    for _ in range(4):
        link = os.path.join(path, "driver")
        name = os.path.basename(os.path.realpath(link)) if os.path.exists(link) else ""
        if name not in ("port", "ctrl"):
            return name
        path = os.path.dirname(path)
    return name


def serial_devices(root: str = "/") -> list[dict[str, Any]]:
    """The ``serial_devices`` list: hardware UARTs and USB serial ports."""
    tty_dir = host_path(root, "/sys/class/tty")
    try:
        names = sorted(os.listdir(tty_dir))
    except OSError:
        return []
    by_path = _links(root, "/dev/serial/by-path")
    by_id = _links(root, "/dev/serial/by-id")
    devices: list[dict[str, Any]] = []
    for name in names:
        rel = f"/sys/class/tty/{name}"
        device_dir = host_path(root, f"{rel}/device")
        if not os.path.isdir(device_dir):
            continue
        info: dict[str, Any] = {
            "device_type": "unknown",
            "device_path": f"/dev/{name}",
            "device_name": name,
            "driver_name": _driver(device_dir),
            "path_by_hardware": by_path.get(name),
            "path_by_id": by_id.get(name),
            "usb_location": None,
        }
        if read_line(root, f"{rel}/uartclk") is not None:
            if read_line(root, f"{rel}/type") == "0":
                continue  # an unused 8250 placeholder port
            info["device_type"] = "hardware_uart"
        else:
            location = _usb_location(device_dir)
            if location is not None:
                info["device_type"] = "usb"
                info["usb_location"] = location
        devices.append(info)
    return devices


def usb_devices(root: str = "/") -> list[dict[str, Any]]:
    """The ``usb_devices`` list from /sys/bus/usb/devices, named through usb.ids."""
    base = host_path(root, "/sys/bus/usb/devices")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    names = usb_names(root)
    devices: list[dict[str, Any]] = []
    for entry in entries:
        rel = f"/sys/bus/usb/devices/{entry}"
        fields = {
            key: read_line(root, f"{rel}/{key}")
            for key in ("busnum", "devnum", "idVendor", "idProduct", "bDeviceClass",
                        "bDeviceSubClass", "bDeviceProtocol", "manufacturer", "product", "serial")
        }
        try:
            bus, dev = int(fields["busnum"] or ""), int(fields["devnum"] or "")
        except ValueError:
            continue  # an interface folder, not a device
        vendor = (fields["idVendor"] or "").lower()
        product = (fields["idProduct"] or "").lower()
        named = describe(
            names, vendor, product, (fields["bDeviceClass"] or "00").lower(),
            (fields["bDeviceSubClass"] or "00").lower(), (fields["bDeviceProtocol"] or "00").lower(),
        )
        devices.append({
            "device_num": dev,
            "bus_num": bus,
            "vendor_id": vendor,
            "product_id": product,
            "usb_location": f"{bus}:{dev}",
            "manufacturer": fields["manufacturer"] or named["manufacturer"],
            "product": fields["product"] or named["product"],
            "serial": fields["serial"],
            "class": named["class"],
            "subclass": named["subclass"],
            "protocol": named["protocol"],
            "description": named["description"],
        })
    return devices


def parse_capability(raw: bytes) -> dict[str, Any]:
    """Decode a ``struct v4l2_capability``."""
    driver, card, bus, version, caps, device_caps = CAPABILITY.unpack(raw[: CAPABILITY.size])
    effective = device_caps if caps & V4L2_CAP_DEVICE_CAPS else caps

    def text(b: bytes) -> str:
        return b.split(b"\x00", 1)[0].decode(errors="replace")

    return {
        "camera_name": text(card),
        "driver_name": text(driver),
        "hardware_bus": text(bus),
        "capabilities": [name for bit, name in CAP_NAMES if effective & bit],
        "version": f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}",
        "can_capture": bool(effective & V4L2_CAP_VIDEO_CAPTURE),
    }


def fourcc(code: int) -> str:
    """A V4L2 pixel format code as its four characters."""
    return code.to_bytes(4, "little").decode("ascii", errors="replace").strip()


def _modes(fd: int) -> list[dict[str, Any]]:
    """Capture formats with their discrete resolutions (formats without any are left out)."""
    modes: list[dict[str, Any]] = []
    for index in range(64):
        try:
            raw = fcntl.ioctl(fd, VIDIOC_ENUM_FMT, FMTDESC.pack(index, V4L2_BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0, 0))
        except OSError:
            break
        _, _, flags, desc, pixfmt, _ = FMTDESC.unpack(raw)
        sizes: list[str] = []
        for size_index in range(128):
            try:
                out = fcntl.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, FRMSIZE.pack(size_index, pixfmt, 0, 0, 0))
            except OSError:
                break
            _, _, kind, width, height = FRMSIZE.unpack(out)
            if kind != V4L2_FRMSIZE_TYPE_DISCRETE:
                break
            sizes.append(f"{width}x{height}")
        if sizes:
            modes.append({
                "format": fourcc(pixfmt),
                "description": desc.split(b"\x00", 1)[0].decode(errors="replace"),
                "flags": [name for bit, name in FORMAT_FLAGS if flags & bit],
                "resolutions": sizes,
            })
    return modes


def v4l2_devices(root: str = "/") -> list[dict[str, Any]]:
    """V4L2 capture devices: sysfs names plus QUERYCAP and mode enumeration on /dev/videoN."""
    base = host_path(root, "/sys/class/video4linux")
    try:
        names = sorted(os.listdir(base), key=lambda n: (len(n), n))
    except OSError:
        return []
    by_path = _links(root, "/dev/v4l/by-path")
    by_id = _links(root, "/dev/v4l/by-id")
    devices: list[dict[str, Any]] = []
    for name in names:
        try:
            fd = os.open(host_path(root, f"/dev/{name}"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            cap = parse_capability(fcntl.ioctl(fd, VIDIOC_QUERYCAP, bytes(CAPABILITY.size)))
            modes = _modes(fd) if cap["can_capture"] else []
        except OSError:
            continue
        finally:
            os.close(fd)
        if not cap.pop("can_capture"):
            continue
        devices.append({
            "device_name": name,
            "device_path": f"/dev/{name}",
            **cap,
            "path_by_hardware": by_path.get(name),
            "path_by_id": by_id.get(name),
            "alt_name": read_line(root, f"/sys/class/video4linux/{name}/name"),
            "usb_location": _usb_location(host_path(root, f"/sys/class/video4linux/{name}/device")),
            "modes": modes,
        })
    return devices


def libcamera_devices() -> list[dict[str, Any]]:
    """libcamera cameras; empty when the python3-libcamera module is not installed."""
    try:
        import libcamera  # type: ignore[import-not-found]
    except ImportError:
        return []
    devices: list[dict[str, Any]] = []
    try:
        manager = libcamera.CameraManager.singleton()
        for cam in manager.cameras:
            props = {cid.name: value for cid, value in cam.properties.items()}
            modes = []
            for stream in cam.generate_configuration([libcamera.StreamRole.Raw]):
                for fmt in stream.formats.pixel_formats:
                    modes.append({
                        "format": str(fmt),
                        "resolutions": [str(s) for s in stream.formats.sizes(fmt)],
                    })
            devices.append({"libcamera_id": cam.id, "model": props.get("Model"), "modes": modes})
    except Exception:
        return devices
    return devices


def video_devices(root: str = "/") -> dict[str, list[dict[str, Any]]]:
    """The ``machine.peripherals.video`` result."""
    return {"v4l2_devices": v4l2_devices(root), "libcamera_devices": libcamera_devices()}
