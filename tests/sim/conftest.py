"""Fixtures: a KlippySimulator on a real Unix socket in a short temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import pytest_twisted
from twisted.internet import reactor

from moontwist.sim import KlippySimulator

from .klippy_client import connect_ready


def write_print_file(folder: str, name: str = "cube.gcode", layers: int = 5,
                     moves_per_layer: int = 20) -> str:
    """A small sliced-looking file: layer info, heating, extrusion moves."""
    lines = ["; generated for the simulator tests", "G90", "M83",
             f"SET_PRINT_STATS_INFO TOTAL_LAYER={layers}", "G1 Z0.3 F600"]
    for layer in range(layers):
        lines.append(f"SET_PRINT_STATS_INFO CURRENT_LAYER={layer + 1}")
        lines.append(f"M117 layer {layer + 1}")
        lines.append(f"G1 Z{0.3 + layer * 0.2:.2f} F600")
        for i in range(moves_per_layer):
            x = 50 + (i % 2) * 40
            y = 50 + i * 2
            lines.append(f"G1 X{x} Y{y} E1.25 F3000 ; move {i}")
    lines.append("M118 print body done")
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


@pytest.fixture
def simdir():
    """A short directory (Unix socket paths are limited to ~107 bytes)."""
    path = tempfile.mkdtemp(prefix="mtsim")
    os.mkdir(os.path.join(path, "gcodes"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest_twisted.async_yield_fixture
async def make_sim(simdir):
    """Factory: start a simulator with keyword options; all are stopped afterwards."""
    sims = []

    async def factory(**kwargs) -> KlippySimulator:
        kwargs.setdefault("startup_delay", 0.05)
        sim = KlippySimulator(os.path.join(simdir, f"k{len(sims)}.sock"),
                              os.path.join(simdir, "gcodes"), reactor=reactor, **kwargs)
        await sim.start()
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        await sim.stop()


@pytest_twisted.async_yield_fixture
async def sim(make_sim):
    """A fast simulator (speed 100)."""
    yield await make_sim(speed=100.0)


@pytest_twisted.async_yield_fixture
async def client(sim):
    """A connected client once the printer is ready."""
    c = await connect_ready(sim.socket_path)
    yield c
    c.transport.loseConnection()
