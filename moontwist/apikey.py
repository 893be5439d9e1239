"""``moontwist-apikey --datapath DIR``: print the API key of the instance using that data path."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from urllib.parse import quote

from moontwist.storage.moonraker_import import select_api_key

__all__ = ["main", "read_api_key"]


def read_api_key(datapath: str) -> str | None:
    """The API key in ``<datapath>/database/moontwist.db`` (table ``auth_users``), or None.

    The database is opened read-only.
    """
    path = os.path.join(os.path.abspath(os.path.expanduser(datapath)), "database", "moontwist.db")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No moontwist database at {path}")
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
    try:
        return select_api_key(conn)
    except sqlite3.OperationalError:  # no auth_users table yet
        return None
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moontwist-apikey", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("-d", "--datapath", default="~/printer_data", help="the instance's data path")
    args = parser.parse_args(argv)
    try:
        key = read_api_key(args.datapath)
    except (OSError, sqlite3.Error, ValueError) as exc:
        print(f"moontwist-apikey: {exc}", file=sys.stderr)
        return 1
    if key is None:
        print("moontwist-apikey: no API key yet; start moontwist once with [authorization] configured", file=sys.stderr)
        return 1
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
