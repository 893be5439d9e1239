"""``sd_info``: the SD card's CID/CSD registers (Raspberry Pi style ``mmcblk0``)."""

from __future__ import annotations

from typing import Any

from moontwist.machine.hostfs import read_line

CID_PATH = "/sys/block/mmcblk0/device/cid"
CSD_PATH = "/sys/block/mmcblk0/device/csd"
# SD Association manufacturer IDs commonly seen on SBC cards.
MANUFACTURERS = {
    "01": "Panasonic",
    "02": "Toshiba",
    "03": "Sandisk",
    "1b": "Samsung",
    "1d": "AData",
    "27": "Phison",
    "28": "Lexar",
    "31": "Silicon Power",
    "41": "Kingston",
    "74": "Transcend",
    "76": "Patriot",
    "82": "Sony",
}


def parse_cid(cid: str) -> dict[str, Any]:
    """Decode the 128-bit CID register given as 32 hex digits."""
    cid = cid.strip().lower()
    if len(cid) != 32:
        raise ValueError("CID must be 32 hex digits")
    int(cid, 16)
    mid = cid[0:2]
    return {
        "manufacturer_id": mid,
        "manufacturer": MANUFACTURERS.get(mid, "Unknown"),
        "oem_id": cid[2:6],
        "product_name": bytes.fromhex(cid[6:16]).decode("ascii", errors="ignore").strip("\x00 "),
        "product_revision": f"{int(cid[16], 16)}.{int(cid[17], 16)}",
        "serial_number": cid[18:26],
        "manufacturer_date": f"{int(cid[29], 16)}/{2000 + int(cid[27:29], 16)}",
    }


def parse_csd_capacity(csd: str) -> tuple[str, int]:
    """``(capacity text, total bytes)`` from the CSD register (versions 1.0, 2.0 and 3.0)."""
    reg = bytes.fromhex(csd.strip())
    if len(reg) != 16:
        raise ValueError("CSD must be 16 bytes")
    version = reg[0] >> 6
    if version == 0:
        block_len = 1 << (reg[5] & 0x0F)
        c_size = ((reg[6] & 0x03) << 10) | (reg[7] << 2) | (reg[8] >> 6)
        mult = 1 << ((((reg[9] & 0x03) << 1) | (reg[10] >> 7)) + 2)
        total = (c_size + 1) * mult * block_len
    elif version in (1, 2):
        mask = 0x3F if version == 1 else 0x0FFF
        hi = (reg[6] << 8 | reg[7]) & mask
        c_size = (hi << 16) | (reg[8] << 8) | reg[9]
        total = (c_size + 1) * 512 * 1024
    else:
        raise ValueError("Unknown CSD structure version")
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if total >= scale:
            return f"{total / scale:.1f} {unit}", total
    return f"{total} B", total


def sd_info(root: str = "/") -> dict[str, Any]:
    """The ``sd_info`` object: empty when there is no readable SD card."""
    cid = read_line(root, CID_PATH)
    if not cid:
        return {}
    try:
        info = parse_cid(cid)
    except ValueError:
        return {}
    info["capacity"], info["total_bytes"] = "Unknown", 0
    csd = read_line(root, CSD_PATH)
    if csd:
        try:
            info["capacity"], info["total_bytes"] = parse_csd_capacity(csd)
        except ValueError:
            pass
    return info
