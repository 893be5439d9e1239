"""The ``announcements`` plugin: Moonraker's ``server.announcements.*`` API.

Endpoints (HTTP and JSON-RPC)::

    GET    /server/announcements/list     server.announcements.list         entries, newest first
    POST   /server/announcements/update   server.announcements.update       fetch the feeds now
    POST   /server/announcements/dismiss  server.announcements.dismiss      mark an entry read
    GET    /server/announcements/feeds    server.announcements.feeds        subscribed feeds
    POST   /server/announcements/feed     server.announcements.post_feed    subscribe to a feed
    DELETE /server/announcements/feed     server.announcements.delete_feed  drop a subscribed feed

Notifications: ``notify_announcement_update`` (``{"entries"}``), ``notify_announcement_dismissed``
and ``notify_announcement_wake`` (``{"entry_id"}``).

Feeds are Moonlight RSS files, ``<moonlight_url>/<name>.xml`` (or, with ``dev_mode``,
``<datapath>/development/announcements/<name>.xml``), checked shortly after start-up and every
30 minutes.  The layout in the database is Moonraker's, so an imported Moonraker database
keeps its announcements: entries in the reserved namespace ``announcements``; feeds added
through the API and each feed's ETag under ``announcements`` in namespace ``moonraker``.
Offline, a fetch fails after ``FETCH_TIMEOUT`` seconds (so does one whose answer doesn't end
in time or passes ``MAX_FEED`` bytes): the entries stay as they are and one warning is logged
until a fetch succeeds again.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredLock
from twisted.internet.threads import deferToThreadPool

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config, ConfigError
from moontwist.hookspecs import hookimpl
from moontwist.http_fetch import fetch
from moontwist.plugins.database import DatabaseNamespace

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["AnnouncementsPlugin", "parse_feed"]

NAMESPACE = "announcements"
MOONLIGHT_URL = "https://arksine.github.io/moonlight/assets"
DEFAULT_FEEDS = ("moonraker", "klipper")
STARTUP_DELAY = 30.0
OFFLINE_ENV = "MOONTWIST_OFFLINE"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
UPDATE_INTERVAL = 1800.0
FETCH_TIMEOUT = 10.0  # head and body together
MAX_FEED = 4 * 1024 * 1024
FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
HEX_KEY = re.compile(r"^[0-9A-Fa-f]+$")


def parse_feed(xml_text: str | bytes, feed: str) -> list[dict[str, Any]]:
    """The items of a Moonlight RSS document as announcement entries (not dismissed).

    Raises ValueError for anything that is not such a document.
    """
    import xml.etree.ElementTree as ET  # only needed once a feed arrives

    try:
        channel = ET.fromstring(xml_text).find("channel")
    except ET.ParseError as exc:
        raise ValueError(str(exc)) from exc
    if channel is None:
        raise ValueError("no <channel> element")
    entries = []
    for item in channel.findall("item"):
        guid = item.findtext("guid")
        if not guid:
            continue
        try:
            date = email.utils.parsedate_to_datetime(item.findtext("pubDate", "")).timestamp()
        except (TypeError, ValueError):
            date = time.time()
        entries.append(
            {
                "entry_id": guid,
                "url": item.findtext("link"),
                "title": item.findtext("title"),
                "description": item.findtext("description"),
                "priority": item.findtext("category"),
                "date": date,
                "dismissed": False,
                "date_dismissed": None,
                "dismiss_wake": None,
                "source": "moonlight",
                "feed": feed,
            }
        )
    return entries


def _feed_name(name: str) -> str:
    name = name.strip().lower()
    if not FEED_NAME.match(name):
        raise ServerError(f"Invalid feed name {name!r}: letters, digits, '_', '-' and '.' only", 400)
    return name


class AnnouncementsPlugin:
    """Keeps the entries of the subscribed feeds, their dismissals and wake timers."""

    server: Server

    # lifecycle ------------------------------------------------------------------------

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("announcements")
        self.moonlight = section.getboolean("enable_moonlight", True)
        self.base_url = section.get("moonlight_url", MOONLIGHT_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"[announcements] moonlight_url must be an http(s) URL, got {self.base_url!r}")
        dev_mode = section.getboolean("dev_mode", False)
        self.dev_folder = server.path("development", "announcements") if dev_mode else None
        try:
            subscriptions = [_feed_name(name) for name in section.getlist("subscriptions", [])]
        except ServerError as exc:
            raise ConfigError(f"[announcements] subscriptions: {exc.message}") from None
        self.configured = list(dict.fromkeys([*DEFAULT_FEEDS, *subscriptions]))
        db = server.lookup("database")
        if db is None:
            raise RuntimeError("the database plugin is not loaded")
        db.reserve_namespace(NAMESPACE, owner="announcements")
        self.store = DatabaseNamespace(db, NAMESPACE)
        self.settings = DatabaseNamespace(db, "moonraker")
        self.stored: list[str] = []
        self.entries: dict[str, dict[str, Any]] = {}  # entry_id -> entry
        self.keys: dict[str, str] = {}  # entry_id -> database key
        self.next_key = 0
        self.etags: dict[str, str] = {}
        self.mtimes: dict[str, int] = {}
        self.wakes: dict[str, Any] = {}  # entry_id -> IDelayedCall
        self.fetches: set[Deferred] = set()
        self.timer: Any = None
        self.offline = False
        self.lock = DeferredLock()

    @hookimpl
    def startup(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._startup())

    async def _startup(self) -> None:
        settings = await self.settings.get("announcements", {})
        settings = settings if isinstance(settings, dict) else {}
        self.stored = [name for name in settings.get("stored_feeds") or [] if isinstance(name, str)]
        self.etags = {
            name: value["etag"]
            for name, value in settings.items()
            if isinstance(value, dict) and isinstance(value.get("etag"), str)
        }
        stored = await self.store.get(None, {})
        for key, entry in sorted(stored.items()):
            if not (isinstance(entry, dict) and isinstance(entry.get("entry_id"), str)):
                continue
            self.entries[entry["entry_id"]] = entry
            self.keys[entry["entry_id"]] = key
            if HEX_KEY.match(key):
                self.next_key = max(self.next_key, int(key, 16) + 1)
            if entry.get("dismissed") and entry.get("dismiss_wake") is not None:
                self._arm_wake(entry["entry_id"], float(entry["dismiss_wake"]) - time.time())
        if self.dev_folder is not None:
            os.makedirs(self.dev_folder, exist_ok=True)
        self.timer = self.server.reactor.callLater(STARTUP_DELAY, self._periodic)

    @hookimpl
    def shutdown(self, server: Server) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        for call in self.wakes.values():
            if call.active():
                call.cancel()
        self.wakes.clear()
        for d in list(self.fetches):
            d.cancel()

    def _feeds(self) -> list[str]:
        """Configured feeds, then those added through the API."""
        return list(dict.fromkeys([*self.configured, *self.stored]))

    # endpoints --------------------------------------------------------------------------

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        name = Arg("name", required=True, description="Feed name, e.g. mainsail")
        for endpoint in (
            Endpoint("server.announcements.list", self.list_entries, "/server/announcements/list",
                     args=(Arg("include_dismissed", "bool", True, description="Include dismissed entries"),),
                     description="Announcement entries, newest first, and the subscribed feeds"),
            Endpoint("server.announcements.update", self.update, "/server/announcements/update", ("POST",),
                     args=(Arg("subscriptions", "list", items="str", description="Feeds to check (default: all)"),),
                     description="Check the feeds for new announcements now"),
            Endpoint("server.announcements.dismiss", self.dismiss, "/server/announcements/dismiss", ("POST",),
                     args=(Arg("entry_id", required=True, description="The entry to dismiss"),
                           Arg("wake_time", "float", nullable=True, minimum=0,
                               description="Seconds until the entry is shown again (null: never)")),
                     description="Dismiss an announcement"),
            Endpoint("server.announcements.feeds", self.list_feeds, "/server/announcements/feeds",
                     description="The subscribed feeds"),
            Endpoint("server.announcements.post_feed", self.post_feed, "/server/announcements/feed", ("POST",),
                     args=(name,), description="Subscribe to a feed"),
            Endpoint("server.announcements.delete_feed", self.delete_feed, "/server/announcements/feed", ("DELETE",),
                     args=(name,), description="Drop a feed subscribed through the API"),
        ):
            register(endpoint)

    def list_entries(self, request: APIRequest) -> dict[str, Any]:
        return {"entries": self._sorted(request.args["include_dismissed"]), "feeds": self._feeds()}

    async def update(self, request: APIRequest) -> dict[str, Any]:
        names = [_feed_name(n) for n in request.args["subscriptions"] or self._feeds()]
        unknown = [n for n in names if n not in self._feeds()]
        if unknown:
            raise ServerError(f"No subscription for {', '.join(unknown)}", 404)
        changed = await self._refresh(names)
        return {"entries": self._sorted(), "modified": changed}

    def dismiss(self, request: APIRequest) -> dict[str, Any]:
        entry_id = request.args["entry_id"]
        entry = self.entries.get(entry_id)
        if entry is None:
            raise ServerError(f"No announcement with entry_id {entry_id!r}", 404)
        if not entry["dismissed"]:
            wake_time = request.args["wake_time"]
            now = time.time()
            entry.update(dismissed=True, date_dismissed=now, dismiss_wake=None if wake_time is None else now + wake_time)
            self._save(entry)
            if wake_time is not None:
                self._arm_wake(entry_id, wake_time)
            self._notify("notify_announcement_dismissed", {"entry_id": entry_id})
        return {"entry_id": entry_id}

    def list_feeds(self, request: APIRequest) -> dict[str, Any]:
        return {"feeds": self._feeds()}

    async def post_feed(self, request: APIRequest) -> dict[str, Any]:
        name = _feed_name(request.args["name"])
        if name in self._feeds():
            return {"feed": name, "action": "skipped"}
        self.stored.append(name)
        self._save_setting("announcements.stored_feeds", list(self.stored))
        await self._refresh([name])
        return {"feed": name, "action": "added"}

    async def delete_feed(self, request: APIRequest) -> dict[str, Any]:
        name = _feed_name(request.args["name"])
        if name in self.configured:
            raise ServerError(f"Feed '{name}' is in the configuration and can't be removed", 400)
        if name not in self.stored:
            raise ServerError(f"Feed '{name}' is not subscribed", 404)
        await self.lock.acquire()
        try:
            self.stored.remove(name)
            self._save_setting("announcements.stored_feeds", list(self.stored))
            if self._prune(name, set()):
                self._notify_update()
        finally:
            self.lock.release()
        return {"feed": name, "action": "removed"}

    # entries ----------------------------------------------------------------------------

    def _sorted(self, include_dismissed: bool = True) -> list[dict[str, Any]]:
        entries = sorted(self.entries.values(), key=lambda e: e.get("date") or 0, reverse=True)
        return [dict(e) for e in entries if include_dismissed or not e["dismissed"]]

    def _save(self, entry: dict[str, Any]) -> None:
        key = self.keys.get(entry["entry_id"])
        if key is None:
            key = self.keys[entry["entry_id"]] = f"{self.next_key:06X}"
            self.next_key += 1
        self.store.insert(key, dict(entry)).addErrback(lambda f: self.log.failure("Saving an announcement failed", f))

    def _save_setting(self, key: str, value: Any) -> None:
        self.settings.insert(key, value).addErrback(lambda f: self.log.failure("Saving {key} failed", f, key=key))

    def _prune(self, feed: str, keep: set[str]) -> bool:
        """Drop the entries of ``feed`` not in ``keep``; True when any were dropped."""
        gone = [i for i, e in self.entries.items() if e.get("feed") == feed and i not in keep]
        for entry_id in gone:
            del self.entries[entry_id]
            call = self.wakes.pop(entry_id, None)
            if call is not None and call.active():
                call.cancel()
            key = self.keys.pop(entry_id, None)
            if key is not None:
                self.store.delete(key).addErrback(lambda f: self.log.failure("Deleting an announcement failed", f))
        return bool(gone)

    def _arm_wake(self, entry_id: str, delay: float) -> None:
        old = self.wakes.pop(entry_id, None)
        if old is not None and old.active():
            old.cancel()
        self.wakes[entry_id] = self.server.reactor.callLater(max(delay, 0.0), self._wake, entry_id)

    def _wake(self, entry_id: str) -> None:
        self.wakes.pop(entry_id, None)
        entry = self.entries.get(entry_id)
        if entry is None or not entry["dismissed"]:
            return
        entry.update(dismissed=False, date_dismissed=None, dismiss_wake=None)
        self._save(entry)
        self._notify("notify_announcement_wake", {"entry_id": entry_id})

    def _notify(self, method: str, params: dict[str, Any]) -> None:
        """Broadcast after the reply to the request that caused it has gone out."""
        self.server.reactor.callLater(0, self.server.notify, method, params)

    def _notify_update(self) -> None:
        self._notify("notify_announcement_update", {"entries": self._sorted()})

    # feeds ------------------------------------------------------------------------------

    def _periodic(self) -> None:
        self.timer = self.server.reactor.callLater(UPDATE_INTERVAL, self._periodic)
        Deferred.fromCoroutine(self._refresh(self._feeds())).addErrback(
            lambda f: self.log.failure("Announcement update failed", f)
        )

    async def _refresh(self, names: list[str]) -> bool:
        """Fetch ``names`` together, then merge each feed's entries; True when entries changed."""
        results = await DeferredList([Deferred.fromCoroutine(self._fetch(n)) for n in names], consumeErrors=True)
        await self.lock.acquire()
        try:
            changed = False
            for name, (ok, text) in zip(names, results, strict=True):
                if ok and text and name in self._feeds():
                    changed |= self._merge(name, text)
            if changed:
                self._notify_update()
            return changed
        finally:
            self.lock.release()

    def _merge(self, name: str, text: bytes) -> bool:
        try:
            fresh = parse_feed(text, name)
        except ValueError as exc:
            self.log.warn("Announcement feed {name} is not a valid RSS document: {error}", name=name, error=exc)
            return False
        added = [e for e in fresh if e["entry_id"] not in self.entries]
        for entry in added:
            self.entries[entry["entry_id"]] = entry
            self._save(entry)
        pruned = self._prune(name, {e["entry_id"] for e in fresh})
        return bool(added) or pruned

    async def _fetch(self, name: str) -> bytes | None:
        """The feed's XML, or None when unchanged or unavailable."""
        if self.dev_folder is not None:
            return await self._read_local(name)
        if not self.moonlight:
            return None
        url = f"{self.base_url}/{name}.xml"
        if os.environ.get(OFFLINE_ENV) and urlparse(url).hostname not in LOOPBACK_HOSTS:
            return None  # test and benchmark runs: no traffic beyond this machine
        headers = {"Accept": "application/xml"}
        if name in self.etags:
            headers["If-None-Match"] = self.etags[name]
        d = Deferred.fromCoroutine(fetch("GET", url, headers=headers, persistent=False, reactor=self.server.reactor,
                                         timeout=FETCH_TIMEOUT, limit=MAX_FEED))
        self.fetches.add(d)
        try:
            resp, body = await d
        except CancelledError:
            return None  # shutting down
        except Exception as exc:
            self._unavailable(url, str(exc) or type(exc).__name__)
            return None
        finally:
            self.fetches.discard(d)
        if resp.code == 304:
            return None
        self.offline = False
        if resp.code != 200:
            self.log.info("Announcement feed {url} not available: HTTP {code}", url=url, code=resp.code)
            return None
        etag = resp.headers.getRawHeaders(b"etag", [None])[0]
        if etag is not None and self.etags.get(name) != etag.decode("latin-1"):
            self.etags[name] = etag.decode("latin-1")
            self._save_setting(f"announcements.{name}.etag", self.etags[name])
        return body

    def _unavailable(self, url: str, why: str) -> None:
        if not self.offline:
            self.log.warn("Announcements unavailable ({url}: {why}); retrying every 30 minutes", url=url, why=why)
        self.offline = True

    async def _read_local(self, name: str) -> bytes | None:
        path = os.path.join(self.dev_folder or "", f"{name}.xml")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            self.log.info("No announcement feed file {path}", path=path)
            return None
        if self.mtimes.get(name) == mtime:
            return None
        reactor = self.server.reactor
        data = await deferToThreadPool(reactor, reactor.getThreadPool(), _read, path)
        self.mtimes[name] = mtime
        return data


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
