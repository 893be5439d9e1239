"""A daemon killed (SIGKILL) in the middle of writing leaves temporary files; the next start removes
them, except those a live writer still holds."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import time
import urllib.request

from files.upload_client import BOUNDARY, upload_head

from mtclient import Daemon

CONFIG = "[server]\nhost: 127.0.0.1\n[database]\nenable_database_debug: True\n"


def temp_files(datapath):
    found = []
    for dirpath, _dirs, files in os.walk(datapath):
        found += [os.path.relpath(os.path.join(dirpath, n), datapath) for n in files if n.endswith(".part")]
    return sorted(found)


def debug_get(daemon, namespace, key):
    url = f"{daemon.base}/debug/database/item?namespace={namespace}&key={key}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["result"]["value"]


def test_sigkill_mid_upload_leaves_no_temporary_file_after_the_next_start(tmp_path):
    datapath = tmp_path / "data"
    (datapath / "config").mkdir(parents=True)
    (datapath / "config" / "moontwist.conf").write_text(CONFIG)
    daemon = Daemon(str(datapath)).start()
    held = None
    try:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.gcode"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", daemon.port))
        sock.sendall(upload_head(len(head) + 8_000_000) + head + b"G1 X1\n" * 100_000)
        deadline = time.monotonic() + 10
        while not any(p.startswith("gcodes/.upload-") for p in temp_files(datapath)):
            assert time.monotonic() < deadline, "the upload never reached the disk"
            time.sleep(0.05)
        os.makedirs(datapath / "gcodes" / "sub" / ".thumbs")
        os.makedirs(datapath / "backup" / "database")
        for left in ("gcodes/sub/.zip-0a1b.part", "gcodes/sub/.thumbs/.thumb-0a1b.part",
                     "config/.copy-0a1b.part", "backup/database/.backup-0a1b.part"):
            (datapath / left).write_bytes(b"half written")
        # a file a live writer holds (another process sharing the data path) stays
        held = open(datapath / "gcodes" / ".upload-live.part", "wb")  # noqa: SIM115 - closed below
        fcntl.flock(held, fcntl.LOCK_EX)
        (datapath / "gcodes" / "sub" / "keep.part").write_bytes(b"not ours")  # no temporary name
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        sock.close()
        assert len(temp_files(datapath)) == 7
        daemon = Daemon(str(datapath), port=daemon.port).start()
        assert temp_files(datapath) == ["gcodes/.upload-live.part", "gcodes/sub/keep.part"]
        # the killed run counts as an unsafe shutdown; this run counts itself until it stops cleanly
        assert debug_get(daemon, "database", "unsafe_shutdowns") == 2
    finally:
        if held is not None:
            held.close()
        daemon.stop()
