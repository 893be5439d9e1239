"""Benchmark suites. Each module here is one suite: ``run(ctx: Context) -> list[Result]``.

Add a suite by adding a module (e.g. ``database.py``) with a ``run`` function and a one-line
module docstring (shown by ``python -m bench --list``).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["available", "load"]


def available() -> dict[str, str]:
    """Suite name -> first line of its docstring."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = load(info.name)
        out[info.name] = (mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else ""
    return out


def load(name: str) -> ModuleType:
    if not name.isidentifier() or name.startswith("_"):
        raise KeyError(name)
    try:
        mod = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise KeyError(name) from None
        raise
    if not callable(getattr(mod, "run", None)):
        raise KeyError(name)
    return mod
