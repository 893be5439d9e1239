"""moontwist: a Moonraker-compatible API server for Klipper, built on Twisted."""

__version__ = "0.1.0"
API_VERSION = (1, 5, 0)
# The Moonraker release (git describe --long, without the hash) whose API moontwist implements.
MOONRAKER_API_RELEASE = "v0.10.0-0"
