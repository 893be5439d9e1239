"""Push notifications through apprise (``[notifier NAME]`` sections).

Each notifier sends to one apprise URL when a job event it listens for
happens (``started``, ``paused``, ``resumed``, ``complete``, ``error``,
``cancelled``, ``standby``; ``*`` for all), or when a Klipper macro calls the
remote method ``notify``.  ``url``, ``title``, ``body`` and ``attach`` are
Jinja2 templates (Klipper's ``{ }`` syntax, sandboxed) seeing ``event_name``,
``event_args`` (previous and current ``print_stats``), ``event_message`` and
``printer`` (every printer object moontwist follows).  Attachments are files
inside a root or URLs (a webcam snapshot) fetched with treq.  apprise blocks,
so sending runs in the thread pool, bounded by a timeout; one notifier's
messages go out in order.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import DeferredLock, TimeoutError
from twisted.internet.threads import deferToThreadPool

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config, ConfigError, ConfigSection
from moontwist.hookspecs import hookimpl
from moontwist.http_fetch import BodyTooLarge, fetch

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["NotifierPlugin", "JOB_EVENTS"]

JOB_EVENTS = ("started", "paused", "resumed", "complete", "error", "cancelled", "standby")
OTHER_EVENTS = ("gcode", "*")
IDLE_STATES = ("standby", "complete", "cancelled", "error")
SEND_TIMEOUT = 30.0
FETCH_TIMEOUT = 10.0
MAX_ATTACHMENT = 32 * 1024 * 1024
BODY_FORMATS = ("text", "html", "markdown")


@dataclass
class Notifier:
    """One ``[notifier NAME]`` section, ready to send."""

    name: str
    url: str
    shown_url: str
    events: list[str]
    body: Any
    title: Any
    attach: Any
    body_format: str
    raw: dict[str, str | None]
    lock: DeferredLock = field(default_factory=DeferredLock)

    def listens(self, event: str) -> bool:
        # as Moonraker, "*" means every job event but standby
        return event in self.events or ("*" in self.events and event != "standby")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.shown_url, "events": list(self.events), **self.raw}


def _environment() -> Any:
    from jinja2.sandbox import SandboxedEnvironment

    # Klipper's syntax, as Moonraker: {% statements %} and { expressions }
    env = SandboxedEnvironment("{%", "%}", "{", "}", extensions=["jinja2.ext.do"], autoescape=False)
    return env


class NotifierPlugin:
    """Moonraker's ``notifier`` component."""

    optional = True
    section = "notifier"
    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        import apprise

        self.server = server
        self.log = server.logger(__name__)
        self.apprise = apprise
        self.env = _environment()
        self.send_timeout = SEND_TIMEOUT
        self.notifiers: dict[str, Notifier] = {}
        self.last_stats: dict[str, Any] = {}
        for name in config.sections():
            if not name.startswith("notifier "):
                continue
            try:
                notifier = self._load(config.section(name))
            except ConfigError:
                raise
            except ValueError as exc:
                config.extra_warnings.append(f"[{name}]: {exc}; this notifier is not loaded")
                continue
            self.notifiers[notifier.name] = notifier
        self.log.info("Notifiers (apprise {version}): {names}", version=apprise.__version__,
                 names=", ".join(self.notifiers) or "none")

    def _template(self, section: ConfigSection, option: str, required: bool = False) -> tuple[Any, str | None]:
        text = section.get(option) if required else section.get(option, None)
        if text is None:
            return None, None
        try:
            return self.env.from_string(text), text
        except Exception as exc:
            raise ValueError(f"option '{option}' is not a valid template: {exc}") from None

    def _load(self, section: ConfigSection) -> Notifier:
        name = section.name.split(maxsplit=1)[1].strip()
        url_template, _ = self._template(section, "url", required=True)
        try:
            url = url_template.render().strip()
        except Exception as exc:
            raise ValueError(f"option 'url' failed to render: {exc}") from None
        if re.match(r"\w+?://", url) is None:
            raise ValueError("option 'url' is not an apprise URL (scheme://...)")
        service = self.apprise.Apprise.instantiate(url)
        if service is None:
            raise ValueError("option 'url' names no service apprise knows")
        events = [e.strip().lower() for e in section.get("events").split(",") if e.strip()]
        unknown = [e for e in events if e not in JOB_EVENTS + OTHER_EVENTS]
        if unknown or not events:
            raise ValueError(f"option 'events' has unknown events {unknown}; choose from "
                             f"{', '.join(JOB_EVENTS + OTHER_EVENTS)}")
        body_format = section.get("body_format", "text", choices=BODY_FORMATS)
        body, body_text = self._template(section, "body")
        title, title_text = self._template(section, "title")
        attach, attach_text = self._template(section, "attach")
        return Notifier(
            name=name, url=url, shown_url=service.url(privacy=True), events=events, body=body, title=title,
            attach=attach, body_format=body_format,
            raw={"body": body_text, "title": title_text, "attach": attach_text, "body_format": body_format},
        )

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        register(Endpoint("server.notifiers.list", self.list_notifiers, "/server/notifiers/list",
                          description="Configured notifiers"))
        if self.server.debug:
            register(Endpoint("debug.notifiers.test", self.test_notifier, "/debug/notifiers/test", ("POST",),
                              args=(Arg("name", required=True, description="The notifier to test"),),
                              description="Debug: send a notifier's first event now"))

    @hookimpl
    def register_remote_methods(self, register: Any) -> None:
        register("notify", self.remote_notify)

    # events ---------------------------------------------------------------------------

    @hookimpl
    def klippy_state_changed(self, server: Server, state: str) -> None:
        if state == "ready":
            self.last_stats = dict(server.klippy.status.get("print_stats") or {})

    @hookimpl
    def status_update(self, status: dict[str, Any]) -> None:
        stats = status.get("print_stats")
        if stats:
            self.last_stats.update(stats)

    @hookimpl
    def job_state_changed(self, old: str, new: str, status: dict[str, Any]) -> None:
        # status_update runs after this hook: last_stats still holds the previous state
        prev = dict(self.last_stats)
        cur = {**prev, **(status.get("print_stats") or {})}
        for event in self._events(old, new, prev, cur):
            for notifier in self.notifiers.values():
                if notifier.listens(event):
                    self._send(notifier, event, [prev, cur]).addErrback(lambda _: None)

    @staticmethod
    def _events(old: str, new: str, prev: dict[str, Any], cur: dict[str, Any]) -> list[str]:
        """The job events a print_stats state change means (Moonraker's job_state rules)."""
        if old in IDLE_STATES:
            if new == "printing":
                return ["started"]
            return ["started", new] if new != "standby" else ["standby"]
        if new == "printing":
            resumed = (old == "paused" and prev.get("filename") == cur.get("filename")
                       and (prev.get("total_duration") or 0) <= (cur.get("total_duration") or 0))
            return ["resumed" if resumed else "started"]
        if new == "standby" and old in ("printing", "paused"):
            return ["cancelled"]  # a cancel macro that resets the file (SDCARD_RESET_FILE), as history counts it
        return [new] if new in JOB_EVENTS else []

    # sending ----------------------------------------------------------------------------

    def _context(self, event: str, args: list[Any], message: str) -> dict[str, Any]:
        klippy = self.server.klippy
        printer = {name: dict(values) for name, values in (klippy.status if klippy is not None else {}).items()}
        return {"event_name": event, "event_args": args, "event_message": message, "printer": printer}

    def _render(self, notifier: Notifier, option: str, template: Any, context: dict[str, Any]) -> str | None:
        if template is None:
            return None
        try:
            return template.render(context)
        except Exception as exc:
            self.log.warn("Notifier {name}: option '{option}' failed to render: {e}", name=notifier.name,
                     option=option, e=exc)
            raise ServerError(f"Notifier '{notifier.name}': option '{option}' failed to render: {exc}", 500) from None

    def _send(self, notifier: Notifier, event: str, args: list[Any], message: str = "") -> Any:
        """Render and send one notification (after the notifier's previous one); fires with None."""
        context = self._context(event, args, message)
        return notifier.lock.run(lambda: self._deliver(notifier, event, context))

    async def _deliver(self, notifier: Notifier, event: str, context: dict[str, Any]) -> None:
        body = self._render(notifier, "body", notifier.body, context)
        title = self._render(notifier, "title", notifier.title, context) or ""
        attachments = await self._attachments(notifier, self._render(notifier, "attach", notifier.attach, context))
        body = (body if body is not None else event).strip() or event
        reactor = self.server.reactor
        d = deferToThreadPool(reactor, reactor.getThreadPool(), self._notify_blocking, notifier,
                              body, title.strip(), attachments)
        d.addTimeout(self.send_timeout, reactor)
        try:
            sent = await d
        except Exception as exc:
            self.log.warn("Notifier {name}: sending '{event}' failed: {e}", name=notifier.name, event=event, e=exc)
            raise ServerError(f"Notifier '{notifier.name}' failed to send: {exc}", 502) from None
        if not sent:
            self.log.warn("Notifier {name}: apprise could not deliver '{event}' to {url}", name=notifier.name,
                     event=event, url=notifier.shown_url)
            raise ServerError(f"Notifier '{notifier.name}' could not deliver to {notifier.shown_url}", 502)
        self.log.info("Notifier {name} sent '{event}'", name=notifier.name, event=event)

    def _notify_blocking(self, notifier: Notifier, body: str, title: str,
                         attachments: list[str | tuple[str, bytes]]) -> bool:
        """Runs in a thread: apprise does blocking network I/O.

        Fetched attachments (name, bytes) are written to a temporary folder
        first: every apprise service can attach a file.
        """
        apobj = self.apprise.Apprise()
        apobj.add(notifier.url)
        with tempfile.TemporaryDirectory(prefix="moontwist-notify-") as folder:
            paths = []
            for i, item in enumerate(attachments):
                if isinstance(item, str):
                    paths.append(item)
                    continue
                name, content = item
                os.mkdir(os.path.join(folder, str(i)))
                path = os.path.join(folder, str(i), name)
                with open(path, "wb") as f:
                    f.write(content)
                paths.append(path)
            return bool(apobj.notify(body, title, body_format=notifier.body_format,
                                     attach=paths or None, timeout=self.send_timeout))

    async def _attachments(self, notifier: Notifier, rendered: str | None) -> list[str | tuple[str, bytes]]:
        """Files inside a root are attached by path; URLs are fetched first (with a timeout)."""
        out: list[str | tuple[str, bytes]] = []
        for item in (rendered or "").splitlines():
            item = item.strip()
            if not item:
                continue
            if re.match(r"https?://", item):
                try:
                    content, mimetype = await self._fetch(item)
                except Exception as exc:  # the notification still goes out, without this attachment
                    self.log.warn("Notifier {name}: attachment {url} not fetched: {e}", name=notifier.name, url=item,
                             e=exc)
                    continue
                name = re.sub(r"[^\w.-]", "_", os.path.basename(item.split("?", 1)[0])) or "attachment"
                if "." not in name and mimetype.startswith("image/"):
                    name += "." + mimetype.split("/", 1)[1].split(";", 1)[0]
                out.append((name, content))
                continue
            path = os.path.realpath(os.path.expanduser(item))
            if not self._readable(path):
                self.log.warn("Notifier {name}: attachment {path} is not a readable file inside a root",
                         name=notifier.name, path=path)
                continue
            out.append(path)
        return out

    def _readable(self, path: str) -> bool:
        files = self.server.lookup("file_manager")
        roots = list(files.roots) if files is not None else []
        inside = any(path.startswith(root.realpath + os.sep) for root in roots)
        return inside and os.path.isfile(path) and os.access(path, os.R_OK)

    async def _fetch(self, url: str) -> tuple[bytes, str]:
        try:
            resp, body = await fetch("GET", url, reactor=self.server.reactor, timeout=FETCH_TIMEOUT,
                                     limit=MAX_ATTACHMENT, persistent=False)
        except BodyTooLarge:
            raise ServerError(f"more than {MAX_ATTACHMENT} bytes", 413) from None
        except TimeoutError:
            raise ServerError(f"no complete answer within {FETCH_TIMEOUT:g} s", 504) from None
        if resp.code != 200:
            raise ServerError(f"HTTP {resp.code}", 502)
        mimetype = (resp.headers.getRawHeaders(b"content-type") or [b"application/octet-stream"])[0]
        return body, mimetype.decode("latin-1")

    # handlers ----------------------------------------------------------------------------

    def list_notifiers(self, request: APIRequest) -> dict[str, Any]:
        return {"notifiers": [n.describe() for n in self.notifiers.values()]}

    def _get(self, name: str) -> Notifier:
        notifier = self.notifiers.get(name)
        if notifier is None:
            raise ServerError(f"Notifier '{name}' not found", 404)
        return notifier

    async def test_notifier(self, request: APIRequest) -> dict[str, Any]:
        notifier = self._get(request.args["name"])
        stats = dict(self.last_stats)
        klippy = self.server.klippy
        if klippy is not None and klippy.state == "ready":
            try:
                stats = dict((await klippy.query({"print_stats": None}))["status"].get("print_stats") or {})
            except ServerError:
                pass
        stats["filename"] = "notifier_test.gcode"
        event = next((e for e in notifier.events if e in JOB_EVENTS), "started")
        await self._send(notifier, event, [stats, stats])
        return {"status": "success", "stats": stats}

    def remote_notify(self, name: str = "", message: str = "", **_: Any) -> Any:
        """Klipper: ``{action_call_remote_method("notify", name="...", message="...")}``."""
        if name not in self.notifiers:
            self.log.warn("Remote method notify: notifier {name!r} not found", name=name)
            return None
        d = self._send(self.notifiers[name], "remote_action", [], str(message))
        return d.addErrback(lambda f: self.log.warn("Remote method notify failed: {e}", e=f.getErrorMessage()))
