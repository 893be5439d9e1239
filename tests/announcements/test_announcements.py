"""server.announcements.* against an RSS server on 127.0.0.1: entries, dismiss/wake, feeds, offline."""

from __future__ import annotations

import time

import pytest_twisted
import treq
from announcements.feedserver import rss, start
from twisted.internet import reactor
from twisted.internet.defer import fail
from twisted.logger import globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from moontwist.plugins import announcements as plugin
from mtclient import RPCError, wait_for

T0 = 1_700_000_000


def ids(entries):
    return [e["entry_id"] for e in entries]


async def error(ws, method, params):
    try:
        await ws.call(method, params)
    except RPCError as exc:
        return exc
    raise AssertionError(f"{method} succeeded: {params}")


@pytest_twisted.ensureDeferred
async def test_entries_parsed_updated_and_pruned(tmp_path, feeds):
    feeds.write("moonraker", "arksine/moonraker", [(1, "normal", T0), (2, "high", T0 + 200)])
    feeds.write("klipper", "klipper3d/klipper", [(7, "normal", T0 + 100)])
    feeds.write("mainsail", "mainsail-crew/mainsail", [])
    svc = await start(tmp_path, feeds.config("subscriptions:\n  Mainsail\n"))
    try:
        ws = await svc.ws()
        info = await ws.call("server.info")
        assert "announcements" in info["components"] and info["failed_components"] == []
        listed = await ws.call("server.announcements.list")
        assert listed == {"entries": [], "feeds": ["moonraker", "klipper", "mainsail"]}
        result = await ws.call("server.announcements.update")
        assert result["modified"] is True
        assert ids(result["entries"]) == ["arksine/moonraker/issue/2", "klipper3d/klipper/issue/7", "arksine/moonraker/issue/1"]
        assert result["entries"][0] == {
            "entry_id": "arksine/moonraker/issue/2",
            "url": "https://github.com/arksine/moonraker/issues/2",
            "title": "Announcement 2",
            "description": "Description 2",
            "priority": "high",
            "date": T0 + 200,
            "dismissed": False,
            "date_dismissed": None,
            "dismiss_wake": None,
            "source": "moonlight",
            "feed": "moonraker",
        }
        note = await ws.next_notification("notify_announcement_update")
        assert note["params"] == [{"entries": result["entries"]}]
        assert (await ws.call("server.announcements.update"))["modified"] is False
        # an item closed upstream disappears, a new one appears; only some feeds may be checked
        feeds.write("moonraker", "arksine/moonraker", [(2, "high", T0 + 200), (3, "normal", T0 + 300)])
        result = await ws.call("server.announcements.update", {"subscriptions": ["moonraker"]})
        assert result["modified"] is True
        assert ids(result["entries"]) == ["arksine/moonraker/issue/3", "arksine/moonraker/issue/2", "klipper3d/klipper/issue/7"]
        assert (await error(ws, "server.announcements.update", {"subscriptions": ["nope"]})).code == 404
        code, body = await svc.get("/server/announcements/list?include_dismissed=false")
        assert code == 200 and ids(body["result"]["entries"]) == ids(result["entries"])
        code, body = await svc.get("/server/announcements/feeds")
        assert body["result"] == {"feeds": ["moonraker", "klipper", "mainsail"]}
        # the namespace is the plugin's: readable, not writable by clients
        code, body = await svc.post("/server/database/item", json={"namespace": "announcements", "key": "x", "value": 1})
        assert code == 403
        ws.sendClose()
    finally:
        await svc.service.stopService()
    # entries survive a restart
    svc = await start(tmp_path, feeds.config())
    try:
        code, body = await svc.get("/server/announcements/list")
        assert len(body["result"]["entries"]) == 3
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_dismiss_and_wake(tmp_path, feeds):
    feeds.write("moonraker", "arksine/moonraker", [(1, "normal", T0), (2, "high", T0 + 200)])
    svc = await start(tmp_path, feeds.config())
    try:
        ws = await svc.ws()
        await ws.call("server.announcements.update")
        before = time.time()
        code, body = await svc.post(
            "/server/announcements/dismiss", json={"entry_id": "arksine/moonraker/issue/1", "wake_time": 0.4}
        )
        assert code == 200 and body["result"] == {"entry_id": "arksine/moonraker/issue/1"}
        note = await ws.next_notification("notify_announcement_dismissed")
        assert note["params"] == [{"entry_id": "arksine/moonraker/issue/1"}]
        entries = (await ws.call("server.announcements.list"))["entries"]
        dismissed = entries[1]
        assert dismissed["dismissed"] is True and before <= dismissed["date_dismissed"] <= time.time()
        assert abs(dismissed["dismiss_wake"] - (dismissed["date_dismissed"] + 0.4)) < 0.01
        hidden = await ws.call("server.announcements.list", {"include_dismissed": False})
        assert ids(hidden["entries"]) == ["arksine/moonraker/issue/2"]
        note = await ws.next_notification("notify_announcement_wake", timeout=3)
        assert note["params"] == [{"entry_id": "arksine/moonraker/issue/1"}]
        woken = (await ws.call("server.announcements.list", {"include_dismissed": False}))["entries"]
        assert woken[1]["entry_id"] == "arksine/moonraker/issue/1"
        assert (woken[1]["dismissed"], woken[1]["date_dismissed"], woken[1]["dismiss_wake"]) == (False, None, None)
        # dismissed for good, and one that wakes after a restart
        await ws.call("server.announcements.dismiss", {"entry_id": "arksine/moonraker/issue/2"})
        await ws.call("server.announcements.dismiss", {"entry_id": "arksine/moonraker/issue/1", "wake_time": 1.0})
        assert (await error(ws, "server.announcements.dismiss", {"entry_id": "nope"})).code == 404
        assert (await error(ws, "server.announcements.dismiss", {"entry_id": "arksine/moonraker/issue/2", "wake_time": -1})).code == -32602
        ws.sendClose()
    finally:
        await svc.service.stopService()
    svc = await start(tmp_path, feeds.config())
    try:
        ws = await svc.ws()
        entries = (await ws.call("server.announcements.list"))["entries"]
        assert [e["dismissed"] for e in entries] == [True, True]
        assert entries[0]["dismiss_wake"] is None
        note = await ws.next_notification("notify_announcement_wake", timeout=3)
        assert note["params"] == [{"entry_id": "arksine/moonraker/issue/1"}]
        assert [e["dismissed"] for e in (await ws.call("server.announcements.list"))["entries"]] == [True, False]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_feeds_added_and_removed(tmp_path, feeds):
    feeds.write("moonraker", "arksine/moonraker", [(1, "normal", T0)])
    feeds.write("fluidd", "fluidd-core/fluidd", [(5, "normal", T0 + 50), (6, "high", T0 + 60)])
    svc = await start(tmp_path, feeds.config("subscriptions: mainsail\n"))
    try:
        ws = await svc.ws()
        added = await ws.call("server.announcements.post_feed", {"name": "Fluidd"})
        assert added == {"feed": "fluidd", "action": "added"}
        note = await ws.next_notification("notify_announcement_update")
        assert ids(note["params"][0]["entries"]) == ["fluidd-core/fluidd/issue/6", "fluidd-core/fluidd/issue/5"]
        assert await ws.call("server.announcements.post_feed", {"name": "fluidd"}) == {"feed": "fluidd", "action": "skipped"}
        assert await ws.call("server.announcements.post_feed", {"name": "klipper"}) == {"feed": "klipper", "action": "skipped"}
        assert (await ws.call("server.announcements.feeds"))["feeds"] == ["moonraker", "klipper", "mainsail", "fluidd"]
        assert (await error(ws, "server.announcements.post_feed", {"name": "../etc"})).code == 400
        assert (await error(ws, "server.announcements.delete_feed", {"name": "mainsail"})).code == 400
        assert (await error(ws, "server.announcements.delete_feed", {"name": "moonraker"})).code == 400
        assert (await error(ws, "server.announcements.delete_feed", {"name": "other"})).code == 404
        ws.sendClose()
    finally:
        await svc.service.stopService()
    svc = await start(tmp_path, feeds.config("subscriptions: mainsail\n"))
    try:
        ws = await svc.ws()
        assert (await ws.call("server.announcements.feeds"))["feeds"] == ["moonraker", "klipper", "mainsail", "fluidd"]
        code, body, _ = await svc.request("DELETE", "/server/announcements/feed?name=fluidd")
        assert code == 200 and body["result"] == {"feed": "fluidd", "action": "removed"}
        note = await ws.next_notification("notify_announcement_update")
        assert note["params"] == [{"entries": []}]
        listed = await ws.call("server.announcements.list")
        assert listed == {"entries": [], "feeds": ["moonraker", "klipper", "mainsail"]}
        ws.sendClose()
    finally:
        await svc.service.stopService()


class Silent(Resource):
    """Accepts requests and never answers."""

    isLeaf = True

    def render_GET(self, request):  # noqa: N802
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_offline_feeds_warn_once_and_time_out(tmp_path, monkeypatch):
    warnings = []

    def observer(event):
        if event.get("log_namespace") == plugin.__name__ and event["log_level"].name == "warn":
            warnings.append(event)

    monkeypatch.setattr(plugin, "FETCH_TIMEOUT", 0.3)
    silent = reactor.listenTCP(0, Site(Silent()), interface="127.0.0.1")
    refused = reactor.listenTCP(0, Site(Silent()), interface="127.0.0.1")
    closed = refused.getHost().port
    await refused.stopListening()  # nothing listens there any more: connection refused
    globalLogPublisher.addObserver(observer)
    try:
        for url in (f"http://127.0.0.1:{closed}/assets", f"http://127.0.0.1:{silent.getHost().port}/"):
            del warnings[:]
            svc = await start(tmp_path, f"[announcements]\nmoonlight_url: {url}\n")
            try:
                ws = await svc.ws()
                for _ in range(2):
                    started = time.monotonic()
                    result = await ws.call("server.announcements.update")
                    assert result == {"entries": [], "modified": False}
                    assert time.monotonic() - started < 2
                assert len(warnings) == 1 and url.rstrip("/") in warnings[0]["url"]
                ws.sendClose()
            finally:
                await svc.service.stopService()
    finally:
        globalLogPublisher.removeObserver(observer)
        await silent.stopListening()


class Endless(Resource):
    """Answers 200 and sends its body for ever: a trickle (``/moonraker.xml``) or a flood; records hang-ups."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.streams = []

    def render_GET(self, request):  # noqa: N802
        state = {"sent": 0, "closed": False}
        self.streams.append(state)
        slow = request.path.endswith(b"/moonraker.xml")

        def send():
            if not state["closed"]:
                chunk = b"<" if slow else b" " * 65536
                request.write(chunk)
                state["sent"] += len(chunk)
                reactor.callLater(0.1 if slow else 0.001, send)

        request.notifyFinish().addBoth(lambda _: state.update(closed=True))
        send()
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_a_feed_that_never_ends_is_cut_off_by_time_and_size(tmp_path, monkeypatch):
    monkeypatch.setattr(plugin, "FETCH_TIMEOUT", 0.5)
    monkeypatch.setattr(plugin, "MAX_FEED", 1024 * 1024)
    endless = Endless()
    port = reactor.listenTCP(0, Site(endless), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/assets"
    svc = await start(tmp_path, f"[announcements]\nmoonlight_url: {url}\n")
    try:
        ws = await svc.ws()
        update = ws.call("server.announcements.update")
        update.addTimeout(8, reactor)
        assert await update == {"entries": [], "modified": False}
        assert len(endless.streams) == 2
        await wait_for(lambda: all(s["closed"] for s in endless.streams))
        assert all(s["sent"] < 4 * 1024 * 1024 for s in endless.streams)
        ws.sendClose()
    finally:
        await svc.service.stopService()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_feeds_checked_after_startup(tmp_path, feeds, monkeypatch):
    monkeypatch.setattr(plugin, "STARTUP_DELAY", 0.2)
    feeds.write("klipper", "klipper3d/klipper", [(9, "high", T0)])
    svc = await start(tmp_path, feeds.config())
    try:
        ws = await svc.ws()
        note = await ws.next_notification("notify_announcement_update", timeout=5)
        assert ids(note["params"][0]["entries"]) == ["klipper3d/klipper/issue/9"]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_dev_mode_reads_local_files(tmp_path):
    folder = tmp_path / "data" / "development" / "announcements"
    folder.mkdir(parents=True)
    (folder / "moonraker.xml").write_text(rss("arksine/moonraker", [(4, "normal", T0)]))
    svc = await start(tmp_path, "[announcements]\ndev_mode: True\nmoonlight_url: http://127.0.0.1:9/\n")
    try:
        ws = await svc.ws()
        result = await ws.call("server.announcements.update")
        assert result["modified"] is True and ids(result["entries"]) == ["arksine/moonraker/issue/4"]
        assert (await ws.call("server.announcements.update"))["modified"] is False  # file unchanged
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_offline_mode_contacts_nothing_beyond_loopback(tmp_path, monkeypatch):
    """MOONTWIST_OFFLINE (set for tests and benchmarks) keeps feeds off the network."""
    warnings = []

    def observer(event):
        if event.get("log_namespace") == plugin.__name__ and event["log_level"].name == "warn":
            warnings.append(event)

    fetched = []

    def fake_request(method, url, *args, **kwargs):
        fetched.append(url)
        return fail(ConnectionRefusedError(url))

    monkeypatch.setenv(plugin.OFFLINE_ENV, "1")
    monkeypatch.setattr(treq, "request", fake_request)
    globalLogPublisher.addObserver(observer)
    svc = await start(tmp_path, "[announcements]\nmoonlight_url: https://feeds.example.invalid/assets\n")
    try:
        ws = await svc.ws()
        assert await ws.call("server.announcements.update") == {"entries": [], "modified": False}
        assert fetched == [] and warnings == []
        ws.sendClose()
    finally:
        globalLogPublisher.removeObserver(observer)
        await svc.service.stopService()
