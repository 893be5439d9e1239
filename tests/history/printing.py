"""Helpers for print tests: tiny G-code files and a service with the simulated printer."""

from __future__ import annotations

import os

from mtclient import start_service, wait_for

CONFIG = "[server]\n[simulator]\nspeed: 50\n"


def gcode(moves: int) -> str:
    """A file that homes, then extrudes along ``moves`` short moves."""
    lines = ["G28", "G90", "M83", "G1 Z0.3 F3000"]
    for i in range(moves):
        x = 10 + (i % 2) * 20
        lines.append(f"G1 X{x} Y{10 + i % 50} E0.5 F3000")
    return "\n".join(lines) + "\n"


def write_gcodes(datapath: str, files: dict[str, int]) -> None:
    """``files``: name -> number of moves."""
    folder = os.path.join(datapath, "gcodes")
    os.makedirs(folder, exist_ok=True)
    for name, moves in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(gcode(moves))


async def start_printer(datapath: str, config: str = CONFIG):
    svc = await start_service(datapath, config, simulate=True)
    svc.sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    await wait_for(lambda: svc.server.klippy_state == "ready")
    return svc
