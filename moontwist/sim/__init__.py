"""A Klippy simulator speaking Klippy's Unix-socket API (for tests and development)."""

from .simulator import KlippySimulator, SimulatorService

__all__ = ["KlippySimulator", "SimulatorService"]
