"""``moontwist [options]``: the daemon in the foreground, as ``twistd -n moontwist`` runs it.

The service is started directly rather than through twistd: twistd's
application machinery and its plugin scan (which imports every installed
twistd plugin, Twisted's trial and unittest among them) cost a few MB resident
that a foreground daemon doesn't need. Options, logging to stdout and the
shutdown sequence are the same.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from moontwist import tls

__all__ = ["main"]

_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def _option(args: list[str], short: str, long: str, default: str | None) -> str | None:
    """The value of ``-x VALUE``/``-xVALUE``/``--long VALUE``/``--long=VALUE`` (the last one wins)."""
    value = default
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in (short, long):
            value = args[i + 1] if i + 1 < len(args) else value
        elif arg.startswith(long + "="):
            value = arg[len(long) + 1 :]
        elif arg.startswith(short) and not arg.startswith("--"):
            value = arg[len(short) :]
    return value


def _https_configured(args: list[str]) -> bool:
    """Whether the config names a certificate; unreadable configs count as yes (start-up reports them)."""
    from moontwist.config import Config, ConfigError, find_config_file

    datapath = _option(args, "-d", "--datapath", "~/printer_data") or ""
    path = find_config_file(os.path.abspath(os.path.expanduser(datapath)), _option(args, "-c", "--config", None))
    if not os.path.exists(path):
        return False
    try:
        section = Config(path).section("server")
        return "ssl_certificate_path" in section and "ssl_key_path" in section
    except ConfigError:
        return True


def _libc() -> Any:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _tune_malloc() -> None:
    """Keep glibc from holding on to large freed buffers.

    glibc raises its mmap threshold each time a large block is freed, so later
    blocks of that size come from the heap and stay resident after use: a
    G-code's metadata pass (2 MB of text in a worker thread) left ~4 MB behind
    per file. A fixed threshold keeps every block of 128 KiB and more in its
    own mapping, returned to the system when freed.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def _return_freed_memory(_: object = None) -> None:
    """Hand memory that start-up allocated and freed back to the system (~1 MB)."""
    import gc

    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    _tune_malloc()
    if not _https_configured(args):
        # Serving HTTPS after a restart that configured it needs a new process.
        tls.defer_until_needed()
    from twisted.python import usage

    from moontwist import tap

    options = tap.Options()
    try:
        options.parseOptions(args)
    except usage.UsageError as exc:
        print(f"{options}\nmoontwist: {exc}", file=sys.stderr)
        sys.exit(2)

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from moontwist.logs import quiet_observer

    globalLogBeginner.beginLoggingTo([quiet_observer(textFileLogObserver(sys.stdout))])
    service = tap.makeService(options)  # SystemExit with a message when the config can't be used
    service.startService()
    service._started.addCallback(_return_freed_memory)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    if tap.start_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
