"""Child process of test_crash: writes forever, printing each acknowledged write.

Usage: python crash_writer.py <data path> <prefix>
Each line is ``<key> <value>``, printed (and flushed) after the write's Deferred fired.
"""

from __future__ import annotations

import sys

from twisted.internet import task
from twisted.internet.defer import Deferred

from moontwist.storage.database import Database

IN_FLIGHT = 32


async def storm(reactor, data_path: str, prefix: str) -> None:
    db = Database(data_path, reactor=reactor)
    await db.open()
    sys.stdout.write("open\n")
    sys.stdout.flush()
    counter = iter(range(10**9))
    done: Deferred = Deferred()

    def acknowledged(value: int, key: str | list[str]) -> None:
        name = key if isinstance(key, str) else ".".join(key)
        sys.stdout.write(f"{name} {value}\n")
        sys.stdout.flush()
        start_one()

    def start_one() -> None:
        i = next(counter)
        # alternate top-level rows and nested writes into shared rows
        key: str | list[str] = f"{prefix}{i}" if i % 2 else ["nested", f"{prefix}{i}"]
        d = db.insert_item("crash", key, i)
        d.addCallback(acknowledged, key)
        d.addErrback(done.errback)

    for _ in range(IN_FLIGHT):
        start_one()
    await done


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(storm(reactor, sys.argv[1], sys.argv[2])))
