"""``cpu_info``: CPU and memory description from /proc/cpuinfo and /proc/meminfo."""

from __future__ import annotations

import os
import platform
from typing import Any

from moontwist.machine.hostfs import read_line, read_text


def _blocks(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as a list of ``key: value`` blocks (one per CPU, plus trailing system info)."""
    blocks: list[dict[str, str]] = []
    for chunk in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """cpu_count, cpu_desc, serial_number, hardware_desc and model from /proc/cpuinfo text."""
    blocks = _blocks(text)
    merged: dict[str, str] = {}
    for block in blocks:
        for key, value in block.items():
            merged.setdefault(key, value)
    cpus = sum(1 for block in blocks if "processor" in block)
    serial = merged.get("Serial", "").lstrip("0")
    return {
        "cpu_count": cpus or None,
        "cpu_desc": merged.get("model name") or merged.get("Processor") or merged.get("cpu model", ""),
        "serial_number": serial,
        "hardware_desc": merged.get("Hardware", ""),
        "model": merged.get("Model", ""),
    }


def parse_meminfo(text: str) -> dict[str, tuple[int, str]]:
    """``{field: (value, units)}`` from /proc/meminfo text."""
    result: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            result[key.strip()] = (int(parts[0]), parts[1] if len(parts) > 1 else "")
    return result


def cpu_info(root: str = "/") -> dict[str, Any]:
    """The ``cpu_info`` object of system_info."""
    parsed = parse_cpuinfo(read_text(root, "/proc/cpuinfo") or "")
    if not parsed["model"]:
        parsed["model"] = read_line(root, "/sys/firmware/devicetree/base/model") or ""
    memory = parse_meminfo(read_text(root, "/proc/meminfo") or "").get("MemTotal")
    return {
        "cpu_count": parsed["cpu_count"] or os.cpu_count(),
        "bits": platform.architecture()[0],
        "processor": platform.machine(),
        "cpu_desc": parsed["cpu_desc"],
        "serial_number": parsed["serial_number"],
        "hardware_desc": parsed["hardware_desc"],
        "model": parsed["model"],
        "total_memory": memory[0] if memory else None,
        "memory_units": memory[1] if memory else "",
    }
