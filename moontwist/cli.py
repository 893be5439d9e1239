"""``moontwist [options]``: runs ``twistd -n moontwist`` in the foreground."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _https_configured(args: list[str]) -> bool:
    """Whether the config names a certificate; unreadable configs count as yes (twistd reports them)."""
    from moontwist.config import Config, ConfigError, find_config_file

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-c", "--config")
    parser.add_argument("-d", "--datapath", default="~/printer_data")
    known, _ = parser.parse_known_args(args)
    path = find_config_file(os.path.abspath(os.path.expanduser(known.datapath)), known.config)
    if not os.path.exists(path):
        return False
    try:
        section = Config(path).section("server")
        return "ssl_certificate_path" in section and "ssl_key_path" in section
    except ConfigError:
        return True


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not _https_configured(args):
        # Twisted imports pyOpenSSL (and cryptography's TLS bindings, ~6 MB) whenever it can;
        # without HTTPS nothing needs them. A restart that enables HTTPS needs a new process.
        sys.modules.setdefault("OpenSSL", None)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "moontwist", *args]
    run()
    from moontwist import tap

    if tap.start_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
