"""printer.objects.query answered from the live cache: queried objects stay subscribed (issue 11).

Every test watches what the simulated Klippy receives: the first query of an
object is an ``objects/query``, later ones cost Klippy nothing, and no answer
is ever older than what Klippy has shown (or, after a command sent through
moontwist, older than that command).
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from mtclient import sleep, wait_for


class Recorder:
    """Wraps the simulator's request handler: records requests, can hold back ``objects/subscribe``."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.seen: list[tuple[str, dict]] = []
        self.holding = False
        self.held: list[tuple[Any, Any]] = []
        self._original = sim.handle_request
        sim.handle_request = self._handle

    def _handle(self, conn: Any, msg: Any) -> None:
        if isinstance(msg, dict):
            self.seen.append((msg.get("method"), msg.get("params") or {}))
            if self.holding and msg.get("method") == "objects/subscribe":
                self.held.append((conn, msg))
                return
        self._original(conn, msg)

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for conn, msg in held:
            self._original(conn, msg)

    def count(self, method: str, name: str | None = None) -> int:
        """Requests for ``method`` (naming object ``name``, when given)."""
        return sum(1 for m, p in self.seen if m == method and (name is None or name in p.get("objects", {})))

    def subscribed(self) -> set[str]:
        """Objects in the last ``objects/subscribe`` sent."""
        subs = [p for m, p in self.seen if m == "objects/subscribe"]
        return set(subs[-1]["objects"]) if subs else set()

    def close(self) -> None:
        self.sim.handle_request = self._original


async def query(printer, objects: dict) -> dict:
    ws = getattr(printer, "_query_ws", None)
    if ws is None:
        ws = printer._query_ws = await printer.ws()
    return await ws.call("printer.objects.query", {"objects": objects})


async def cached(printer, rec: Recorder, name: str) -> None:
    """Wait until ``name`` is answered without asking Klippy."""
    for _ in range(40):
        before = rec.count("objects/query", name)
        await query(printer, {name: None})
        if rec.count("objects/query", name) == before:
            return
        await sleep(0.1)
    raise AssertionError(f"{name} never answered from the cache")


def run_gcode(printer, script: str) -> Any:
    """G-code run inside the simulator, not through moontwist (like a macro or another client)."""
    return printer.sim.webhooks._script(script)


@pytest_twisted.async_yield_fixture
async def rec(printer):
    recorder = Recorder(printer.sim)
    yield recorder
    recorder.release()
    recorder.close()
    ws = getattr(printer, "_query_ws", None)
    if ws is not None:
        ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_first_query_goes_to_klippy_later_ones_do_not(printer, rec):
    first = await query(printer, {"fan": ["speed"], "gcode_move": None})
    assert rec.count("objects/query", "fan") == 1
    assert set(first["status"]) == {"fan", "gcode_move"} and set(first["status"]["fan"]) == {"speed"}
    await wait_for(lambda: {"fan", "gcode_move"} <= rec.subscribed())
    await cached(printer, rec, "fan")
    rec.seen.clear()
    for _ in range(20):
        result = await query(printer, {"fan": ["speed", "rpm"], "gcode_move": ["speed_factor"]})
        assert set(result["status"]["fan"]) == {"speed", "rpm"}
        assert result["status"]["gcode_move"]["speed_factor"] == 1.0
    code, body = await printer.get("/printer/objects/query?fan&gcode_move=speed_factor")
    assert code == 200 and set(body["result"]["status"]) == {"fan", "gcode_move"}
    assert rec.count("objects/query", "fan") == rec.count("objects/query", "gcode_move") == 0


@pytest_twisted.ensureDeferred
async def test_answers_follow_every_status_update(printer, rec):
    """While the extruder heats, each answer is at least as new as the last update a client saw."""
    watcher = await printer.ws()
    await watcher.call("printer.objects.subscribe", {"objects": {"extruder": ["temperature", "target"]}})
    await query(printer, {"extruder": ["temperature", "target"]})
    await cached(printer, rec, "extruder")
    await run_gcode(printer, "M104 S220")  # inside Klippy: moontwist learns it from the next update
    latest: dict = {}
    checked = 0
    asked = rec.count("objects/query", "extruder")
    while checked < 8:
        values, eventtime = (await watcher.next_notification("notify_status_update", timeout=2.0))["params"]
        latest.update(values.get("extruder", {}))
        result = await query(printer, {"extruder": ["temperature", "target"]})
        assert result["eventtime"] >= eventtime
        if result["eventtime"] == eventtime:
            assert result["status"]["extruder"] == {**result["status"]["extruder"], **latest}
        if latest.get("target") == 220.0:
            assert result["status"]["extruder"]["target"] == 220.0
            checked += 1
    assert rec.count("objects/query", "extruder") == asked  # every answer from the cache
    watcher.sendClose()


async def reconnected(printer) -> None:
    """Wait until moontwist noticed a dropped Klippy connection and finished its handshake again."""
    klippy = printer.server.klippy
    await wait_for(lambda: not klippy.initialized)
    await wait_for(lambda: klippy.initialized and klippy.subscriptions._flight is None, timeout=10)


@pytest_twisted.ensureDeferred
async def test_a_command_sent_through_moontwist_is_read_back_at_once(printer, rec):
    await query(printer, {"fan": ["speed"]})
    await cached(printer, rec, "fan")
    ws = await printer.ws()
    for speed in (64, 255, 0, 128):
        assert await ws.call("printer.gcode.script", {"script": f"M106 S{speed}"}) == "ok"
        result = await query(printer, {"fan": ["speed"]})
        assert abs(result["status"]["fan"]["speed"] - speed / 255) < 0.01
    ws.sendClose()
    await sleep(0.6)  # the next status update settles it: back to the cache
    await cached(printer, rec, "fan")


@pytest_twisted.ensureDeferred
async def test_no_answer_from_the_cache_before_the_subscribe_reply(printer, rec):
    rec.holding = True
    await query(printer, {"fan": ["speed"]})  # first query: Klippy answers it
    await wait_for(lambda: rec.held)  # the subscribe adding the fan is on its way
    await run_gcode(printer, "M106 S255")  # the fan changes in Klippy meanwhile
    answers: list = []
    ensureDeferred(query(printer, {"fan": ["speed"]})).addCallback(answers.append)
    await sleep(0.6)
    assert answers == []  # not the old value from the first answer: it waits for the subscribe reply
    rec.release()
    await wait_for(lambda: answers)
    assert answers[0]["status"]["fan"]["speed"] == 1.0


@pytest_twisted.ensureDeferred
async def test_reconnect_forgets_the_cache_until_subscribed_again(printer, rec):
    await query(printer, {"fan": ["speed"]})
    await cached(printer, rec, "fan")
    klippy = printer.server.klippy
    rec.holding = True  # the re-subscribe after the reconnect will wait
    await printer.sim.drop_connections()
    await run_gcode(printer, "M106 S255")  # changes while moontwist is away
    await wait_for(lambda: not klippy.initialized)
    await wait_for(lambda: klippy.initialized and rec.held, timeout=10)
    answers: list = []
    ensureDeferred(query(printer, {"fan": ["speed"]})).addCallback(answers.append)
    await sleep(0.5)
    # Not the speed from before the reconnect: the query waits for the re-subscribe or asks Klippy.
    assert answers == [] or answers[0]["status"]["fan"]["speed"] == 1.0
    rec.release()
    await wait_for(lambda: answers)
    assert answers[0]["status"]["fan"]["speed"] == 1.0
    assert "fan" in rec.subscribed()  # still kept after the reconnect
    await cached(printer, rec, "fan")


@pytest_twisted.ensureDeferred
async def test_objects_klippy_no_longer_has_leave_the_cache(printer, rec):
    await query(printer, {"fan": ["speed"]})
    await cached(printer, rec, "fan")
    webhooks = printer.sim.webhooks
    original = webhooks.endpoints["objects/list"]
    webhooks.endpoints["objects/list"] = lambda conn, params: {
        "objects": [o for o in original(conn, params)["objects"] if o != "fan"]
    }
    try:
        await printer.sim.drop_connections()
        await reconnected(printer)
        assert "fan" not in rec.subscribed()
        before = rec.count("objects/query", "fan")
        for _ in range(3):
            await query(printer, {"fan": ["speed"]})
        assert rec.count("objects/query", "fan") == before + 3  # an unknown object never joins
        assert "fan" not in rec.subscribed()
    finally:
        webhooks.endpoints["objects/list"] = original


@pytest_twisted.ensureDeferred
async def test_unknown_objects_never_join(printer, rec):
    for _ in range(3):
        result = await query(printer, {"no_such_thing": None, "gcode_macro NOPE": None})
        assert result["status"] == {"no_such_thing": {}, "gcode_macro NOPE": {}}
    assert rec.count("objects/query", "no_such_thing") == 3
    assert rec.count("objects/subscribe", "no_such_thing") == rec.count("objects/subscribe", "gcode_macro NOPE") == 0


@pytest_twisted.ensureDeferred
async def test_objects_not_asked_for_expire(printer, rec):
    printer.server.klippy.subscriptions.query_ttl = 0.5
    await query(printer, {"fan": ["speed"]})
    await wait_for(lambda: "fan" in rec.subscribed())
    await cached(printer, rec, "fan")
    await wait_for(lambda: "fan" not in rec.subscribed(), timeout=5)  # not asked for 0.5 s: it leaves
    await sleep(0.4)  # Klippy's reply to that subscribe ends the cached copy
    before = rec.count("objects/query", "fan")
    await query(printer, {"fan": ["speed"]})
    assert rec.count("objects/query", "fan") == before + 1  # a first query again
    await wait_for(lambda: "fan" in rec.subscribed())


@pytest_twisted.ensureDeferred
async def test_queries_keep_an_object_alive(printer, rec):
    printer.server.klippy.subscriptions.query_ttl = 0.6
    await query(printer, {"fan": ["speed"]})
    await cached(printer, rec, "fan")
    for _ in range(10):  # 1.5 s of queries, each within the ttl of the last
        await sleep(0.15)
        await query(printer, {"fan": ["speed"]})
    assert "fan" in rec.subscribed()


@pytest_twisted.ensureDeferred
async def test_at_most_query_max_objects_the_least_recent_leaves(printer, rec):
    printer.server.klippy.subscriptions.query_max = 3
    for name in ("fan", "gcode_move", "motion_report"):
        await query(printer, {name: None})
        await cached(printer, rec, name)
    await query(printer, {"fan": None})  # fan is now the most recent
    await query(printer, {"idle_timeout": ["state"]})
    await wait_for(lambda: "idle_timeout" in rec.subscribed() and "gcode_move" not in rec.subscribed())
    assert {"fan", "motion_report", "idle_timeout"} <= rec.subscribed()
    before = rec.count("objects/query", "gcode_move")
    await query(printer, {"gcode_move": ["speed"]})
    assert rec.count("objects/query", "gcode_move") == before + 1
    await cached(printer, rec, "fan")


@pytest_twisted.ensureDeferred
async def test_queries_while_klippy_is_away_fail_and_recover(printer, rec):
    await query(printer, {"fan": ["speed"]})
    await cached(printer, rec, "fan")
    printer.sim.never_answer("info")  # the handshake stalls: moontwist stays disconnected/startup
    try:
        await printer.sim.drop_connections()
        await wait_for(lambda: not printer.server.klippy.initialized)
        before = rec.count("objects/query", "fan")
        code, _ = await printer.get("/printer/objects/query?fan")
        assert code == 503 or rec.count("objects/query", "fan") == before + 1  # never the old cache
    finally:
        printer.sim.answer_again()
    await wait_for(lambda: printer.server.klippy.initialized, timeout=10)
    await cached(printer, rec, "fan")
