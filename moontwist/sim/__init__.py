"""A Klippy simulator speaking Klippy's Unix-socket API (for tests and development).

Behaviour follows recordings of a real Klippy v0.13 (see tests/data/klippy).  Motion,
heating and print durations run on a simulated clock ``speed`` times faster than real
time; the 250 ms status tick and ``eventtime`` stay real.
"""

from .simulator import KlippySimulator, SimulatorService

__all__ = ["KlippySimulator", "SimulatorService"]
