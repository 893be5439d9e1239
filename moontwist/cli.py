"""``moontwist [options]``: runs ``twistd -n moontwist`` in the foreground."""

from __future__ import annotations

import sys

from twisted.scripts.twistd import run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "moontwist", *args]
    run()
    from moontwist import tap

    if tap.start_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
