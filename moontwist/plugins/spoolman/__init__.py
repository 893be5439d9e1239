"""Spoolman integration (``[spoolman]``): active spools, filament use reported to Spoolman, a proxy.

Filament is measured from the toolhead's extruder position (the highest
position seen, so retractions cancel out) and charged to the spool active on
that extruder: ``extruder`` is tool 0 (T0), ``extruderN`` tool N.  Usage
collects in ``pending_reports`` and is sent as ``PUT /api/v1/spool/{id}/use``
every ``sync_rate`` seconds while Spoolman's websocket is up; while Spoolman
is away it stays pending, and pending reports are kept in the database so a
restart loses none.  Each print's history job records the spools, the
filament weight and the cost it used (see ``usage``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from moontwist import jsonutil
from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config, ConfigError
from moontwist.hookspecs import hookimpl
from moontwist.plugins.database import DatabaseNamespace
from moontwist.plugins.spoolman.peer import SpoolmanPeer, parse_server_url
from moontwist.plugins.spoolman.usage import JobField, usage_entries

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["SpoolmanPlugin"]

OWNER = "spoolman"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_TOOLS = 64


def tool_of(extruder: str | None) -> int:
    """Tool number of a Klipper extruder name: ``extruder`` 0, ``extruder3`` 3."""
    suffix = (extruder or "extruder")[len("extruder"):]
    return int(suffix) if suffix.isdigit() else 0


def _spool_arg(value: Any) -> int | None:
    """A spool id from a Klipper macro (int, numeric string, None/"None"/0 to clear)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    spool_id = int(value)
    return spool_id if spool_id > 0 else None


class SpoolmanPlugin:
    """Moonraker's ``spoolman`` component, with one active spool per extruder."""

    optional = True
    section = "spoolman"
    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section(self.section)
        url = section.get("server")
        try:
            parse_server_url(url)
        except ValueError as exc:
            raise ConfigError(f"[spoolman] server: {exc}") from None
        self.sync_rate = section.getint("sync_rate", 5, minval=1)
        self.peer = SpoolmanPeer(server.reactor, url, self._connection_changed, self._event, server.logger(SpoolmanPeer.__module__))
        db = server.lookup("database")
        if db is None:
            raise RuntimeError("the spoolman plugin needs the database plugin")
        self.store = DatabaseNamespace(db, "moonraker")
        self.active: dict[int, int] = {}  # tool -> spool id
        self.pending: dict[int, float] = {}  # spool id -> millimetres not yet reported
        self.pending_dirty = False
        self.spools: dict[int, dict[str, Any]] = {}  # spool id -> Spoolman's spool object
        self.currency: str | None = None
        self.current_tool = 0
        self.highest_epos: float | None = None
        self.last_epos: float | None = None
        self.job_used: dict[tuple[str, int], float] = {}
        self.job_spools: list[int] = []
        self.reporting = False
        self.error_logged: str | None = None
        self.loop = LoopingCall(self._tick)
        self.loop.clock = server.reactor

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        tool = Arg("tool", "int", default=0, minimum=0, maximum=MAX_TOOLS - 1,
                   description="Tool number: 0 is 'extruder' (T0), N is 'extruderN'")
        register(Endpoint("server.spoolman.status", self.status, "/server/spoolman/status",
                          description="Spoolman connection, pending usage reports and active spools"))
        register(Endpoint("server.spoolman.get_spool_id", self.get_spool_id, "/server/spoolman/spool_id",
                          args=(tool,), description="The active spool of a tool"))
        register(Endpoint("server.spoolman.post_spool_id", self.post_spool_id, "/server/spoolman/spool_id", ("POST",),
                          args=(Arg("spool_id", "int", nullable=True, minimum=1,
                                    description="The spool to track; null stops tracking"), tool),
                          description="Set a tool's active spool"))
        register(Endpoint(
            "server.spoolman.proxy", self.proxy, "/server/spoolman/proxy", ("POST",),
            args=(
                Arg("request_method", required=True, choices=METHODS, description="HTTP method to send to Spoolman"),
                Arg("path", required=True, description="API path with its version, e.g. /v1/spool"),
                Arg("query", nullable=True, description="Query string without '?'"),
                Arg("body", "any", nullable=True, description="JSON body"),
                Arg("use_v2_response", "bool", default=False,
                    description="Answer {response, response_headers, error} instead of Spoolman's own answer"),
            ),
            description="Call any Spoolman API",
        ))

    @hookimpl
    def register_remote_methods(self, register: Any) -> None:
        register("spoolman_set_active_spool", self.remote_set_active_spool)

    @hookimpl
    def register_history_fields(self, register: Any) -> None:
        register(JobField("spoolman", "spool_ids", "Spool IDs used", compute=lambda: list(self.job_spools),
                          on_start=self._job_started))
        register(JobField("spoolman", "filament_usage", "Filament used per tool and spool",
                          compute=self._job_usage))
        register(JobField("spoolman", "filament_weight", "Filament weight used", units="g", precision=3,
                          report_total=True, compute=lambda: self._job_total("filament_weight")))
        self.cost_field = JobField("spoolman", "filament_cost", "Filament cost", precision=4, report_total=True,
                                   compute=lambda: self._job_total("filament_cost"))
        register(self.cost_field)

    # lifecycle ----------------------------------------------------------------------------

    @hookimpl
    def startup(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._startup())

    async def _startup(self) -> None:
        saved = await self.store.get("spoolman", {})
        saved = saved if isinstance(saved, dict) else {}
        if isinstance(saved.get("spool_id"), int):
            self.active[0] = saved["spool_id"]
        for key, spool_id in (saved.get("tool_spools") or {}).items():
            if str(key).isdigit() and 0 < int(key) < MAX_TOOLS and isinstance(spool_id, int):
                self.active[int(key)] = spool_id
        for key, length in (saved.get("pending_reports") or {}).items():
            if str(key).isdigit() and isinstance(length, (int, float)) and length > 0:
                self.pending[int(key)] = float(length)
        if self.pending:
            self.log.info("Spoolman: {n} usage report(s) kept from the last run", n=len(self.pending))
        self.peer.start()
        self.loop.start(self.sync_rate, now=False)

    @hookimpl
    def shutdown(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        if self.loop.running:
            self.loop.stop()
        await self._save_pending()
        await self.peer.stop()

    async def _save_pending(self) -> None:
        self.pending_dirty = False
        await self.store.insert("spoolman.pending_reports", {str(k): v for k, v in self.pending.items()})

    # extrusion ------------------------------------------------------------------------------

    @hookimpl
    def klippy_state_changed(self, server: Server, state: str) -> None:
        if state == "ready":
            self.highest_epos = self.last_epos = None
            wanted = {"toolhead": ["position", "extruder"]}
            server.klippy.add_subscription(OWNER, wanted).addErrback(
                lambda f: self.log.warn("Spoolman can't follow the extruder: {e}", e=f.getErrorMessage()))
            # the position now, whenever the subscription's first push comes
            server.klippy.query(wanted).addCallbacks(
                self._subscribed, lambda f: self.log.warn("Spoolman can't read the extruder: {e}", e=f.getErrorMessage()))
        elif state in ("disconnected", "shutdown", "error"):
            self.highest_epos = self.last_epos = None

    def _subscribed(self, result: dict[str, Any]) -> None:
        if self.highest_epos is not None:  # pushes came first: they are newer
            return
        toolhead = result.get("status", {}).get("toolhead") or {}
        self.current_tool = tool_of(toolhead.get("extruder"))
        position = toolhead.get("position") or []
        if len(position) >= 4:
            self.highest_epos = self.last_epos = position[3]

    @hookimpl
    def status_update(self, status: dict[str, Any]) -> None:
        toolhead = status.get("toolhead")
        if not toolhead:
            return
        if "extruder" in toolhead:
            tool = tool_of(toolhead["extruder"])
            if tool != self.current_tool:
                self.current_tool = tool
                self.highest_epos = None  # the new extruder starts from where its position is now
        position = toolhead.get("position")
        if not position or len(position) < 4:
            return
        epos = position[3]
        self.last_epos = epos
        if self.highest_epos is None or epos < self.highest_epos - 1e6:  # a Klippy restart zeroed it
            self.highest_epos = epos
        elif epos > self.highest_epos:
            self._used(epos - self.highest_epos)
            self.highest_epos = epos

    def _used(self, length: float) -> None:
        spool_id = self.active.get(self.current_tool)
        if spool_id is None:
            return
        self.pending[spool_id] = self.pending.get(spool_id, 0.0) + length
        self.pending_dirty = True
        key = (f"T{self.current_tool}", spool_id)
        self.job_used[key] = self.job_used.get(key, 0.0) + length

    # history ----------------------------------------------------------------------------------

    def _job_started(self) -> None:
        self.job_used = {}
        self.job_spools = sorted(set(self.active.values()))

    def _job_usage(self) -> list[dict[str, Any]]:
        return usage_entries(self.job_used, self.spools, self.currency)

    def _job_total(self, key: str) -> float | None:
        values = [entry[key] for entry in self._job_usage()]
        return sum(values) if values and all(v is not None for v in values) else None

    # reports ------------------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.peer.connected and self.pending and not self.reporting:
            Deferred.fromCoroutine(self._report()).addErrback(
                lambda f: self.log.failure("Reporting filament use to Spoolman failed", f)
            )
        elif self.pending_dirty and not self.reporting:
            Deferred.fromCoroutine(self._save_pending()).addErrback(
                lambda f: self.log.warn("Saving Spoolman reports failed: {e}", e=f.getErrorMessage())
            )

    async def _report(self) -> None:
        """Send every pending report once; what doesn't go through stays pending."""
        self.reporting = True
        changed = self.pending_dirty
        try:
            for spool_id, length in list(self.pending.items()):
                if not self.peer.connected:
                    break
                try:
                    resp = await self.peer.request("PUT", f"/v1/spool/{spool_id}/use", {"use_length": length})
                except ServerError as exc:
                    self._report_failed(spool_id, exc.message)
                    break
                if resp.status == 404 and resp.valid_json:
                    self.log.info("Spoolman has no spool {id}: {mm:.1f} mm of usage dropped", id=spool_id, mm=length)
                    self.pending.pop(spool_id, None)
                    self._spool_gone(spool_id)
                elif not resp.ok:
                    self._report_failed(spool_id, resp.error_message())
                    continue
                else:
                    left = self.pending.get(spool_id, 0.0) - length  # usage added meanwhile stays
                    if left > 1e-9:
                        self.pending[spool_id] = left
                    else:
                        self.pending.pop(spool_id, None)
                    if isinstance(resp.data, dict):
                        self.spools[spool_id] = resp.data
                    self.error_logged = None
                changed = True
            if changed:
                await self._save_pending()
        except Exception:
            self.log.failure("Spoolman report failed")
        finally:
            self.reporting = False

    def _report_failed(self, spool_id: int, message: str) -> None:
        if message != self.error_logged:
            self.log.info("Spoolman usage report for spool {id} failed (kept for later): {e}", id=spool_id, e=message)
            self.error_logged = message

    # Spoolman connection -----------------------------------------------------------------------

    def _connection_changed(self, connected: bool) -> None:
        self.server.notify("notify_spoolman_status_changed", {"spoolman_connected": connected})
        if connected:
            Deferred.fromCoroutine(self._on_connected())

    async def _on_connected(self) -> None:
        try:
            resp = await self.peer.request("GET", "/v1/setting/currency")
            if resp.ok and isinstance(resp.data, dict) and isinstance(resp.data.get("value"), str):
                currency = jsonutil.loads(resp.data["value"])
                self.currency = currency if isinstance(currency, str) else None
                self.cost_field.units = self.currency
            for spool_id in sorted(set(self.active.values())):
                await self._check_spool(spool_id)
        except (ServerError, ValueError) as exc:
            self.log.info("Spoolman: checking the active spools failed: {e}", e=getattr(exc, "message", exc))
        if self.pending and not self.reporting:
            await self._report()

    async def _check_spool(self, spool_id: int) -> bool | None:
        """Whether Spoolman has the spool (None when it can't tell); a missing one is no longer active."""
        resp = await self.peer.request("GET", f"/v1/spool/{spool_id}")
        if resp.status == 404 and resp.valid_json:
            self.log.info("Spoolman has no spool {id}; it is no longer active", id=spool_id)
            self._spool_gone(spool_id)
            return False
        if resp.ok and isinstance(resp.data, dict):
            self.spools[spool_id] = resp.data
            return True
        return None

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("resource") != "spool" or not isinstance(event.get("payload"), dict):
            return
        spool_id = event["payload"].get("id")
        if not isinstance(spool_id, int):
            return
        if event.get("type") == "deleted":
            if spool_id in self.active.values():
                self.log.info("Spool {id} was deleted in Spoolman", id=spool_id)
                self.pending.pop(spool_id, None)
                self._spool_gone(spool_id)
        elif spool_id in self.active.values() or spool_id in self.spools:
            self.spools[spool_id] = event["payload"]

    def _spool_gone(self, spool_id: int) -> None:
        for tool, active in list(self.active.items()):
            if active == spool_id:
                self.set_active(tool, None)

    # active spools ------------------------------------------------------------------------------

    def set_active(self, tool: int, spool_id: int | None) -> None:
        """Make ``spool_id`` the spool of ``tool`` (None: none), stored and announced."""
        if self.active.get(tool) == spool_id:
            return
        if spool_id is None:
            self.active.pop(tool, None)
        else:
            self.active[tool] = spool_id
            if spool_id not in self.job_spools:
                self.job_spools.append(spool_id)
        if tool == self.current_tool:
            self.highest_epos = self.last_epos  # extrusion before the change is not this spool's
        if tool == 0:
            d = self.store.insert("spoolman.spool_id", spool_id)
        else:
            d = self.store.insert("spoolman.tool_spools", {str(t): s for t, s in self.active.items() if t})
        d.addErrback(lambda f: self.log.warn("Saving the active spool failed: {e}", e=f.getErrorMessage()))
        self.log.info("Active spool of T{tool}: {id}", tool=tool, id=spool_id)
        if tool == 0:  # what frontends know: the printer's one active spool
            self.server.notify("notify_active_spool_set", {"spool_id": spool_id})
        self.server.notify("notify_spoolman_tool_spool_set", {"tool": tool, "spool_id": spool_id,
                                                              "tool_spool_map": self._tool_map()})

    def _tool_map(self) -> dict[str, int]:
        return {f"T{tool}": spool for tool, spool in sorted(self.active.items())}

    def remote_set_active_spool(self, spool_id: Any = None, tool: Any = 0, **_: Any) -> Any:
        """Klipper: ``{action_call_remote_method("spoolman_set_active_spool", spool_id=1)}`` (optionally ``tool=1``)."""
        try:
            new = _spool_arg(spool_id)
            number = int(tool)
            if not 0 <= number < MAX_TOOLS:
                raise ValueError(tool)
        except (TypeError, ValueError):
            self.log.warn("spoolman_set_active_spool: invalid spool_id {id!r} or tool {tool!r}", id=spool_id, tool=tool)
            return None
        self.set_active(number, new)
        if new is not None and self.peer.connected:
            return Deferred.fromCoroutine(self._check_spool(new)).addErrback(lambda f: None)
        return None

    # handlers -------------------------------------------------------------------------------------

    def status(self, request: APIRequest) -> dict[str, Any]:
        return {
            "spoolman_connected": self.peer.connected,
            "pending_reports": [{"spool_id": sid, "filament_used": used} for sid, used in self.pending.items()],
            "spool_id": self.active.get(0),
            "tool_spool_map": self._tool_map(),
        }

    def get_spool_id(self, request: APIRequest) -> dict[str, Any]:
        return {"spool_id": self.active.get(request.args["tool"])}

    async def post_spool_id(self, request: APIRequest) -> dict[str, Any]:
        spool_id, tool = request.args.get("spool_id"), request.args["tool"]
        if spool_id is not None and self.peer.connected:
            try:
                exists = await self._check_spool(spool_id)
            except ServerError as exc:  # can't tell now: checked again when Spoolman answers
                self.log.info("Spool {id} not verified: {e}", id=spool_id, e=exc.message)
                exists = None
            if exists is False:
                raise ServerError(f"Invalid argument 'spool_id': Spoolman has no spool {spool_id}", 404)
        self.set_active(tool, spool_id)
        return {"spool_id": self.active.get(tool)}

    async def proxy(self, request: APIRequest) -> Any:
        args = request.args
        method, path, query, body = args["request_method"], args["path"], args["query"], args["body"]
        v2 = args["use_v2_response"]
        if body is not None and method == "GET":
            raise ServerError("Invalid argument 'body': GET requests cannot have a body", 400)
        if not path.startswith("/v1/") or any(c in path for c in "?#\r\n\\") or "/../" in path + "/" \
                or "/./" in path + "/":
            raise ServerError(f"Invalid argument 'path': {path!r} must be an API path starting with the version, "
                              "e.g. /v1/spool", 400)
        if query is not None and any(c in query for c in "#\r\n"):
            raise ServerError("Invalid argument 'query': it may not contain '#' or line breaks", 400)
        if not self.peer.connected:
            return self._proxy_error(v2, 503, "Spoolman server not available")
        try:
            resp = await self.peer.request(method, path, body, query or None)
        except ServerError as exc:
            return self._proxy_error(v2, exc.status, exc.message)
        if resp.ok:
            return {"response": resp.data, "response_headers": resp.headers, "error": None} if v2 else resp.data
        status = resp.status if resp.valid_json and resp.status >= 400 else 502
        return self._proxy_error(v2, status, resp.error_message())

    @staticmethod
    def _proxy_error(v2: bool, status: int, message: str) -> dict[str, Any]:
        if not v2:
            raise ServerError(message, status)
        return {"response": None, "error": {"status_code": status, "message": message}}
