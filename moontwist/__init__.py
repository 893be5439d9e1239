"""moontwist: a Moonraker-compatible API server for Klipper, built on Twisted."""

__version__ = "0.1.0"
API_VERSION = (1, 5, 0)
