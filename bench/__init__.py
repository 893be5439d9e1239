"""Benchmark suite for Moonraker-compatible API servers (moontwist and others).

Run ``python -m bench --help``; see ``bench/README.md``.
"""

__all__ = ["__version__"]

__version__ = "0.1"
