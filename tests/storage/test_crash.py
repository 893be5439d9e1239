"""kill -9 during a storm of writes loses no acknowledged write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest_twisted

from moontwist.storage.database import Database

SCRIPT = os.path.join(os.path.dirname(__file__), "crash_writer.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_and_kill(data_path: str, prefix: str, acknowledged_before_kill: int) -> dict[str, int]:
    """Run the writer child, SIGKILL it after enough acknowledgements; return every ack."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, SCRIPT, data_path, prefix], stdout=subprocess.PIPE, env=env
    )
    acks: dict[str, int] = {}
    try:
        assert child.stdout.readline() == b"open\n"
        while len(acks) < acknowledged_before_kill:
            line = child.stdout.readline()
            assert line, "writer child ended early"
            key, value = line.split()
            acks[key.decode()] = int(value)
        os.kill(child.pid, signal.SIGKILL)
        # lines already written to the pipe were acknowledged before the kill
        for line in child.stdout.read().splitlines():
            parts = line.split()
            if len(parts) == 2:
                acks[parts[0].decode()] = int(parts[1])
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acks


@pytest_twisted.ensureDeferred
async def test_kill_9_keeps_every_acknowledged_write(tmp_path):
    data_path = str(tmp_path)
    all_acks: dict[str, int] = {}
    for round_number, count in enumerate((400, 1500)):
        all_acks.update(run_and_kill(data_path, f"r{round_number}-", count))

    db = Database(data_path)
    await db.open()
    try:
        integrity = await db.run_read(lambda c: c.execute("PRAGMA integrity_check").fetchone())
        assert integrity == ("ok",)
        stored = await db.get_item("crash")
    finally:
        await db.close()
    nested = stored.pop("nested", {})
    missing = []
    for key, value in all_acks.items():
        prefix, _, name = key.partition(".")
        found = nested.get(name) if prefix == "nested" else stored.get(key)
        if found != value:
            missing.append((key, value, found))
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    assert len(all_acks) >= 1900
