"""The simulated printer's files on disk: its printer.cfg and its stand-in for a Klipper checkout.

A real Klippy reports real paths in its ``info`` reply (``config_file``,
``klipper_path``...), and Moonraker builds the config-examples and docs roots
from ``klipper_path``.  The simulator reports :data:`KLIPPER_PATH`, a folder
shipped with moontwist holding a few example configs and documents written for
the simulator, and writes the configuration it reports as ``printer.cfg`` into
the config folder once (a file already there is never touched).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

__all__ = ["KLIPPER_PATH", "PRINTER_CFG", "render_config", "write_printer_cfg"]

KLIPPER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "klipper")
PRINTER_CFG = "printer.cfg"

_HEADER = (
    "# Written by moontwist's simulated printer on its first start, from the\n"
    "# configuration it reports. The simulator does not read this file and never\n"
    "# overwrites it: edit it freely.\n"
)


def render_config(sections: dict[str, dict[str, Any]]) -> str:
    """Klipper config text for ``sections`` (section -> option -> value); multi-line values indented."""
    out = [_HEADER]
    for section, options in sections.items():
        out.append(f"\n[{section}]\n")
        for option, value in options.items():
            lines = str(value).split("\n")
            first, rest = lines[0], lines[1:]
            out.append(f"{option}: {first}".rstrip() + "\n")
            out.extend(f"  {line}\n" if line.strip() else "\n" for line in rest)
    return "".join(out)


def write_printer_cfg(config_dir: str, sections: dict[str, dict[str, Any]]) -> str:
    """Create ``config_dir/printer.cfg`` from ``sections`` unless it exists; returns its path."""
    path = os.path.join(config_dir, PRINTER_CFG)
    os.makedirs(config_dir, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        return path  # the user's (or an earlier start's): never overwritten
    with contextlib.closing(os.fdopen(fd, "w", encoding="utf-8")) as f:
        f.write(render_config(sections))
    return path
