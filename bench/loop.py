"""Event loop selection: uvloop when installed (and wanted), else the stdlib asyncio loop."""

from __future__ import annotations

import asyncio

__all__ = ["loop_name", "new_event_loop"]


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    mod = type(loop).__module__.split(".")[0]
    if mod == "uvloop":
        import uvloop

        return f"uvloop {uvloop.__version__}"
    return f"asyncio ({type(loop).__name__})"
