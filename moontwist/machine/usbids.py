"""Vendor, product and class names from a ``usb.ids`` database."""

from __future__ import annotations

import functools
import os
from typing import Any

from moontwist.machine.hostfs import host_path

USB_IDS_PATHS = ("/usr/share/misc/usb.ids", "/usr/share/hwdata/usb.ids", "/var/lib/usbutils/usb.ids")
# Firmware IDs printers commonly expose that older usb.ids files lack.
EXTRA_IDS = {
    "1d50": "OpenMoko, Inc.",
    "1d50:614e": "Klipper 3d-Printer Firmware",
    "1d50:6177": "Katapult Bootloader (CDC_ACM)",
}
_NULL_NAMES = {"?", "none", "unused", "undefined", "reserved/undefined", "no subclass"}


def parse_usb_ids(text: str) -> dict[str, str]:
    """Flatten usb.ids into keys ``vvvv``, ``vvvv:pppp``, ``C:cc``, ``C:cc:ss``, ``C:cc:ss:pp``."""
    names: dict[str, str] = {}
    top = sub = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        depth = len(line) - len(line.lstrip("\t"))
        key, _, name = line.strip().partition(" ")
        name = name.strip()
        if depth == 0:
            if key == "C":
                code, _, name = name.partition(" ")
                top = f"C:{code.lower()}"
            elif len(key) == 4:
                top = key.lower()
            else:
                top = ""  # other sections (AT, HID, ...) are not used
                continue
            names[top] = name.strip()
            sub = ""
        elif top and depth == 1:
            sub = f"{top}:{key.lower()}"
            names[sub] = name
        elif sub and depth == 2 and top.startswith("C:"):
            names[f"{sub}:{key.lower()}"] = name
    return names


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict[str, str]:
    with open(path, encoding="latin-1") as f:
        return parse_usb_ids(f.read())


def usb_names(root: str = "/") -> dict[str, str]:
    """The first readable usb.ids under ``root`` merged over built-in firmware IDs."""
    for rel in USB_IDS_PATHS:
        path = host_path(root, rel)
        try:
            return {**EXTRA_IDS, **_load(path, os.stat(path).st_mtime)}
        except OSError:
            continue
    return dict(EXTRA_IDS)


def describe(names: dict[str, str], vendor: str, product: str, cls: str, sub: str, proto: str) -> dict[str, Any]:
    """manufacturer/product/description and class/subclass/protocol names (None when unknown)."""

    def lookup(key: str) -> str | None:
        value = names.get(key)
        return None if value is None or value.lower() in _NULL_NAMES else value

    vendor_name = lookup(vendor)
    product_name = lookup(f"{vendor}:{product}")
    has_class = cls != "00" and lookup(f"C:{cls}") is not None
    return {
        "manufacturer": vendor_name,
        "product": product_name,
        "description": f"{vendor_name} {product_name or ''}".strip() if vendor_name else None,
        "class": lookup(f"C:{cls}") if has_class else None,
        "subclass": lookup(f"C:{cls}:{sub}") if has_class else None,
        "protocol": lookup(f"C:{cls}:{sub}:{proto}") if has_class else None,
    }
