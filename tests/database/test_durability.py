"""Every acknowledged server.database.post_item survives a kill -9 of the daemon."""

from __future__ import annotations

import time

import pytest_twisted

from mtclient import Daemon, connect_ws, sleep

CONNECTIONS = 4
IN_FLIGHT = 64  # per connection
STORM_SECONDS = 1.5


@pytest_twisted.ensureDeferred
async def test_acknowledged_writes_survive_kill_9(tmp_path):
    datapath = str(tmp_path / "data")
    daemon = Daemon(datapath).start()
    acked: dict[str, int] = {}  # key -> value whose reply arrived
    last: dict[int, int] = {}  # connection -> highest acknowledged counter value
    sent = replies = 0
    clients = []
    try:
        clients = [await connect_ws(f"ws://127.0.0.1:{daemon.port}/websocket") for _ in range(CONNECTIONS)]
        stop_at = time.monotonic() + STORM_SECONDS
        running = True

        def ack(reply, key, value, conn):
            nonlocal replies
            if "result" in reply and reply["result"]["value"] == value:
                acked[key] = value
                replies += 1
                if key.startswith("counter"):
                    last[conn] = max(last.get(conn, -1), value)

        def post(conn: int, i: int) -> None:
            nonlocal sent
            # alternate fresh keys with one overwritten counter per connection
            key = f"counter{conn}" if i % 2 else f"c{conn}_{i}"
            d = clients[conn].rpc(
                "server.database.post_item", {"namespace": "storm", "key": [key], "value": i}
            )
            sent += 1
            d.addCallback(ack, key, i, conn)
            d.addErrback(lambda _f: None)  # the daemon dies mid-storm
            d.addBoth(lambda _r: refill(conn))

        counters = [0] * CONNECTIONS

        def refill(conn: int) -> None:
            if running and time.monotonic() < stop_at:
                counters[conn] += 1
                post(conn, counters[conn])

        for conn in range(CONNECTIONS):
            for _ in range(IN_FLIGHT):
                counters[conn] += 1
                post(conn, counters[conn])
        await sleep(STORM_SECONDS * 0.8)
        running = False  # nothing new is sent; IN_FLIGHT per connection are still on their way
        daemon.proc.kill()  # SIGKILL while hundreds of writes are in flight
        daemon.proc.wait(10)
        await sleep(0.2)
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(10)
    print(f"{replies} of {sent} writes acknowledged before kill -9")
    assert replies > 1000, f"only {replies} writes acknowledged of {sent}"

    again = Daemon(datapath).start()
    try:
        code, body = again.get_json("/server/database/item?namespace=storm")
        assert code == 200
        stored = body["result"]["value"]
        lost = {k: v for k, v in acked.items() if not k.startswith("counter") and stored.get(k) != v}
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {list(lost.items())[:5]}"
        for conn, value in last.items():
            assert stored[f"counter{conn}"] >= value, (conn, stored[f"counter{conn}"], value)
    finally:
        again.stop()
