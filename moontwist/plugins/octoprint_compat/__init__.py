"""OctoPrint API emulation for slicers (``[octoprint_compat]``).

PrusaSlicer, OrcaSlicer, SuperSlicer and Cura's OctoPrint connection check
``/api/version``, upload to ``POST /api/files/local`` (Cura: a UFP package
when ``/api/settings`` reports the UltimakerFormatPackage plugin), optionally
start the print, and poll ``/api/printer`` and ``/api/job``.  Responses are
OctoPrint's: not wrapped in ``{"result": ...}``.  Authentication is the
server's own (``X-Api-Key`` is the API key).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint, Unwrapped
from moontwist.config import Config
from moontwist.hookspecs import hookimpl
from moontwist.plugins.files.paths import resolve
from moontwist.plugins.files.uploads import UploadSink, finish_upload
from moontwist.plugins.octoprint_compat.ufp import unpack_ufp

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["OctoPrintPlugin", "OCTOPRINT_VERSION"]

OCTOPRINT_VERSION = "1.5.0"
HTTP = frozenset({"http"})
OWNER = "octoprint_compat"
GCODE_EXTENSIONS = (".gcode", ".g", ".gco", ".nc", ".ufp")
# print_stats.state -> OctoPrint's state text
STATES = {"standby": "Operational", "printing": "Printing", "paused": "Paused", "complete": "Operational",
          "cancelled": "Operational", "error": "Error"}
UFP_PLUGIN = {
    "align_inline_thumbnail": False,
    "inline_thumbnail": False,
    "inline_thumbnail_align_value": "left",
    "inline_thumbnail_scale_value": "50",
    "installed": True,
    "installed_version": "0.2.2",
    "scale_inline_thumbnail": False,
    "state_panel_thumbnail": True,
}


def _tool_name(heater: str) -> str | None:
    """OctoPrint's name for a Klipper heater (tool0, tool1, bed, chamber), None to leave it out."""
    if heater.startswith("extruder"):
        suffix = heater[len("extruder"):]
        return f"tool{suffix}" if suffix.isdigit() else "tool0" if not suffix else None
    if heater == "heater_bed":
        return "bed"
    if heater == "heater_generic chamber":
        return "chamber"
    return None


class OctoPrintPlugin:
    """The OctoPrint endpoints slicers use, over Klippy's state and the file manager."""

    optional = True
    section = "octoprint_compat"
    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section(self.section)
        self.enable_ufp = section.getboolean("enable_ufp", True)
        self.webcam = {
            "flipH": section.getboolean("flip_h", False),
            "flipV": section.getboolean("flip_v", False),
            "rotate90": section.getboolean("rotate_90", False),
            "streamUrl": section.get("stream_url", "/webcam/?action=stream"),
            "webcamEnabled": section.getboolean("webcam_enabled", True),
        }

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        post = ("POST",)
        for endpoint in (
            Endpoint("octoprint.version", self.version, "/api/version", transports=HTTP,
                     description="OctoPrint: version information"),
            Endpoint("octoprint.server", self.server_status, "/api/server", transports=HTTP,
                     description="OctoPrint: server status"),
            Endpoint("octoprint.login", self.login, "/api/login", post, transports=HTTP,
                     description="OctoPrint: confirm the login (API key only)"),
            Endpoint("octoprint.currentuser", self.login, "/api/currentuser", transports=HTTP,
                     description="OctoPrint: the current user"),
            Endpoint("octoprint.settings", self.settings, "/api/settings", transports=HTTP,
                     description="OctoPrint: settings (webcam, UFP plugin)"),
            Endpoint("octoprint.job", self.job, "/api/job", transports=HTTP,
                     description="OctoPrint: the current job and its progress"),
            Endpoint("octoprint.printer", self.printer, "/api/printer", transports=HTTP,
                     description="OctoPrint: temperatures and printer state"),
            Endpoint("octoprint.printer_command", self.command, "/api/printer/command", post, transports=HTTP,
                     description="OctoPrint: run G-code ('commands' list or one 'command')"),
            Endpoint("octoprint.printerprofiles", self.profiles, "/api/printerprofiles", transports=HTTP,
                     description="OctoPrint: printer profiles"),
            Endpoint("octoprint.upload", self.upload, "/api/files/local", post, transports=HTTP, raw_body=True,
                     extra={"body_sink": self._body_sink},
                     description="OctoPrint: upload G-code or a UFP package (multipart: file, path, print)"),
            Endpoint("octoprint.file_command", self.file_command, "/api/files/moonraker/*", post, transports=HTTP,
                     description="OctoPrint: select (and print) an uploaded file, /api/files/moonraker/{root}/{path}"),
            Endpoint("octoprint.local_file_command", self.local_file_command, "/api/files/local/*", post,
                     transports=HTTP, description="OctoPrint: select (and print) a file, /api/files/local/{path}"),
        ):
            register(endpoint)

    # printer state --------------------------------------------------------------------

    async def _status(self) -> dict[str, dict[str, Any]]:
        """Heaters, print_stats and virtual_sdcard, subscribed on first use (never a moment without heaters)."""
        klippy = self.server.klippy
        if klippy is None or klippy.state != "ready":
            return {}
        wanted: dict[str, Any] = {"heaters": ["available_heaters"], "print_stats": None, "virtual_sdcard": None}
        heaters = (klippy.status.get("heaters") or {}).get("available_heaters")
        try:
            if heaters is None:
                result = await klippy.add_subscription(OWNER, wanted)
                heaters = (result["status"].get("heaters") or {}).get("available_heaters") or []
            wanted.update((name, ["temperature", "target"]) for name in heaters)
            await klippy.add_subscription(OWNER, wanted)
        except ServerError as exc:  # Klippy went away meanwhile: OctoPrint clients see "Offline"
            self.log.info("OctoPrint status unavailable: {e}", e=exc.message)
            return {}
        return klippy.status

    def _state(self, status: dict[str, dict[str, Any]]) -> str:
        klippy = self.server.klippy
        if klippy is None or klippy.state in ("disconnected", "startup"):
            return "Offline"
        if klippy.state != "ready":
            return "Error"
        return STATES.get((status.get("print_stats") or {}).get("state", "standby"), "Operational")

    def _temperatures(self, status: dict[str, dict[str, Any]]) -> dict[str, Any]:
        temps: dict[str, Any] = {}
        for heater in (status.get("heaters") or {}).get("available_heaters") or []:
            name = _tool_name(heater)
            data = status.get(heater)
            if name is None or data is None:
                continue
            temps[name] = {"actual": round(data.get("temperature") or 0.0, 2), "offset": 0,
                           "target": data.get("target") or 0.0}
        return temps

    # handlers ---------------------------------------------------------------------------

    def version(self, request: APIRequest) -> Unwrapped:
        moonraker = self.server.info()["moonraker_version"]
        return Unwrapped({"server": OCTOPRINT_VERSION, "api": "0.1", "text": f"OctoPrint (Moonraker {moonraker})"})

    def server_status(self, request: APIRequest) -> Unwrapped:
        return Unwrapped({"server": OCTOPRINT_VERSION,
                          "safemode": None if self.server.klippy_state == "ready" else "settings"})

    def login(self, request: APIRequest) -> Unwrapped:
        return Unwrapped({
            "_is_external_client": False,
            "_login_mechanism": "apikey",
            "name": "_api",
            "active": True,
            "user": True,
            "admin": True,
            "apikey": None,
            "permissions": [],
            "groups": ["admins", "users"],
        })

    def settings(self, request: APIRequest) -> Unwrapped:
        return Unwrapped({
            "plugins": {"UltimakerFormatPackage": dict(UFP_PLUGIN)} if self.enable_ufp else {},
            "feature": {"sdSupport": False, "temperatureGraph": False},
            "webcam": dict(self.webcam),
        })

    async def printer(self, request: APIRequest) -> Unwrapped:
        status = await self._status()
        state = self._state(status)
        return Unwrapped({
            "temperature": self._temperatures(status),
            "state": {
                "text": state,
                "flags": {
                    "operational": state not in ("Error", "Offline"),
                    "paused": state == "Paused",
                    "printing": state == "Printing",
                    "cancelling": False,
                    "pausing": False,
                    "error": state == "Error",
                    "ready": state == "Operational",
                    "closedOrError": state in ("Error", "Offline"),
                },
            },
        })

    async def job(self, request: APIRequest) -> Unwrapped:
        status = await self._status()
        stats = status.get("print_stats") or {}
        filename = stats.get("filename") or ""
        state = self._state(status)
        if not filename or state == "Offline":
            return Unwrapped({
                "job": {"file": {"name": None}, "estimatedPrintTime": None, "filament": {"length": None}, "user": None},
                "progress": {"completion": None, "filepos": None, "printTime": None, "printTimeLeft": None,
                             "printTimeOrigin": None},
                "state": state,
            })
        files = self.server.lookup("file_manager")
        meta = (files.store.get(filename) if files is not None else None) or {}
        sdcard = status.get("virtual_sdcard") or {}
        estimate = meta.get("estimated_time")
        printed = stats.get("print_duration") or 0.0
        left = max(estimate - printed, 0.0) if isinstance(estimate, (int, float)) else None
        length = meta.get("filament_total")
        return Unwrapped({
            "job": {
                "file": {"name": os.path.basename(filename), "path": filename, "display": os.path.basename(filename),
                         "origin": "local", "size": meta.get("size"), "date": meta.get("modified")},
                "estimatedPrintTime": estimate,
                "filament": {"tool0": {"length": length, "volume": None}} if length is not None else {"length": None},
                "user": None,
            },
            "progress": {
                "completion": round((sdcard.get("progress") or 0.0) * 100, 2),
                "filepos": sdcard.get("file_position"),
                "printTime": round(printed),
                "printTimeLeft": round(left) if left is not None else None,
                "printTimeOrigin": "estimate" if left is not None else None,
            },
            "state": state,
        })

    async def command(self, request: APIRequest) -> Unwrapped:
        commands = request.args.get("commands")
        single = request.args.get("command")
        if commands is None:
            commands = [single] if single is not None else []
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise ServerError("Invalid argument 'commands': expected a list of G-code strings", 400)
        klippy = self.server.klippy
        if commands and (klippy is None or klippy.state != "ready"):
            raise ServerError("Printer is not operational", 409)
        for line in commands:
            try:
                await klippy.gcode(line)
            except ServerError as exc:  # OctoPrint doesn't report failed commands either
                self.log.info("OctoPrint command {line!r} failed: {e}", line=line, e=exc.message)
        return Unwrapped({})

    async def profiles(self, request: APIRequest) -> Unwrapped:
        status = await self._status()
        heaters = (status.get("heaters") or {}).get("available_heaters") or []
        axis = {"speed": 6000.0, "inverted": False}
        return Unwrapped({"profiles": {"_default": {
            "id": "_default", "name": "Default", "color": "default", "model": "Default",
            "default": True, "current": True,
            "heatedBed": "heater_bed" in heaters, "heatedChamber": "heater_generic chamber" in heaters,
            "axes": {"x": dict(axis), "y": dict(axis), "z": dict(axis), "e": {"speed": 300.0, "inverted": False}},
        }}})

    # file commands -------------------------------------------------------------------------

    def file_command(self, request: APIRequest) -> Any:
        root, _, rel = (request.args.get("path_tail") or "").strip("/").partition("/")
        if root != "gcodes":
            raise ServerError("File must be located in the 'gcodes' root", 400)
        return self._select(request, rel)

    def local_file_command(self, request: APIRequest) -> Any:
        return self._select(request, (request.args.get("path_tail") or "").strip("/"))

    async def _select(self, request: APIRequest, rel: str) -> bytes:
        """``{"command": "select", "print": true}``: start the print, or queue it when enabled, else 409."""
        command = request.args.get("command")
        if command != "select":
            raise ServerError(f"Unsupported command: {command!r} (only 'select' is)", 400)
        wanted = request.args.get("print", False)
        if isinstance(wanted, str):
            wanted = wanted.strip().lower() in ("true", "1", "yes")
        manager = self._manager()
        full = resolve(manager.roots.get("gcodes"), rel)
        if not rel or not os.path.isfile(full):
            raise ServerError(f"File does not exist: {rel}", 404)
        if wanted:
            user = (request.user or {}).get("username")
            if not await self._start(rel, user):
                queue_jobs = self.server.lookup("queue_jobs")
                if not manager.queue_uploads or queue_jobs is None:
                    raise ServerError("Conflict: the printer can't start a print now", 409)
                await queue_jobs([rel], user)
        request.http_request.setResponseCode(204)
        return b""

    async def _start(self, rel: str, user: str | None) -> bool:
        klippy = self.server.klippy
        start = self.server.lookup("start_print")
        if start is None or klippy is None or klippy.state != "ready":
            return False
        if self.server.print_state in ("printing", "paused"):
            return False
        try:
            await start(rel, user)
        except ServerError as exc:
            self.log.info("OctoPrint select of {rel} did not start a print: {e}", rel=rel, e=exc.message)
            return False
        return True

    # uploads ------------------------------------------------------------------------------

    def _manager(self) -> Any:
        manager = self.server.lookup("file_manager")
        if manager is None:
            raise ServerError("The file manager is not available", 503)
        return manager

    def _body_sink(self, request: Any) -> UploadSink:
        return UploadSink(self._manager(), request.requestHeaders.getRawHeaders(b"content-type", [None])[0])

    async def upload(self, request: APIRequest) -> Unwrapped:
        http = request.http_request
        sink = getattr(http, "body_sink", None)
        if sink is None:
            raise ServerError("Uploads must be multipart/form-data", 400)
        if http.body_error is not None:
            raise http.body_error
        manager = self._manager()
        if (sink.fields.get("root") or "gcodes").strip() != "gcodes":
            sink.abort()
            raise ServerError("OctoPrint uploads go to the gcodes root", 400)
        extension = os.path.splitext(sink.filename or "")[1].lower()
        if extension not in GCODE_EXTENSIONS:
            sink.abort()
            raise ServerError(f"Unsupported file type {extension or '(none)'!r}: OctoPrint uploads take "
                              f"{', '.join(GCODE_EXTENSIONS)}", 415)
        later = None
        if extension == ".ufp":
            if not self.enable_ufp:
                sink.abort()
                raise ServerError("UFP uploads are disabled ([octoprint_compat] enable_ufp)", 415)
            later = await self._unpack(manager, sink)
        result, location = await finish_upload(manager, sink, (request.user or {}).get("username"))
        if later is not None:  # the upload created the G-code's folder: now the thumbnail can go in
            await self._store_thumbnail(manager, *later)
            rel = manager.gcodes_rel(manager.roots.get("gcodes"), later[0])
            await manager.processor.scan(rel, later[0])
        location = "/api/files/moonraker/" + location[len("/server/files/"):]
        host = http.getHeader(b"host")
        if host:
            scheme = "https" if http.isSecure() else "http"
            location = f"{scheme}://{host.decode('latin-1')}{location}"
        http.setResponseCode(201)
        http.setHeader(b"location", location.encode())
        item = result["item"]
        download = f"/server/files/gcodes/{quote(item['path'])}"
        return Unwrapped({
            **result,
            "done": True,
            "effectiveSelect": bool(result.get("print_started")),
            "effectivePrint": bool(result.get("print_started")),
            "files": {"local": {"name": os.path.basename(item["path"]), "path": item["path"], "origin": "local",
                                "refs": {"resource": location, "download": download}}},
        })

    async def _unpack(self, manager: Any, sink: UploadSink) -> tuple[str, bytes] | None:
        """Replace the uploaded UFP by its G-code (named ``<name>.gcode``) and store its thumbnail.

        The thumbnail goes to ``.thumbs/<name>.png`` before the G-code is placed
        (so its metadata has it); returns (path, PNG) when its folder doesn't
        exist yet: the caller stores it once the upload created the folder.
        """
        name = (sink.filename or "").replace("\\", "/")
        stem = name[: -len(".ufp")]
        root = manager.roots.get("gcodes")
        rel = "/".join(p for p in (sink.fields.get("path", "").strip().strip("/"), stem.strip("/") + ".gcode") if p)
        try:
            full = resolve(root, rel, for_write=True)
        except ServerError:
            sink.abort()
            raise
        ufp_path = sink.temp_path
        # beside the package, with a temporary name the start-up sweep recognises (<prefix>*.part)
        gcode_name = sink.temp_name.removesuffix(".part") + "-gcode.part"
        gcode_temp = os.path.join(os.path.dirname(ufp_path), gcode_name)
        try:
            thumbnail = await manager.in_thread(unpack_ufp, ufp_path, gcode_temp, self.server.max_upload_size)
        except ServerError:
            sink.abort()
            raise
        sink.abort()  # the package itself is no longer needed
        sink.temp_name, sink.temp_path, sink.filename = gcode_name, gcode_temp, stem + ".gcode"
        if thumbnail is not None and not os.path.isdir(os.path.dirname(full)):
            return full, thumbnail
        await self._store_thumbnail(manager, full, thumbnail)
        return None

    async def _store_thumbnail(self, manager: Any, full: str, png: bytes | None) -> None:
        try:
            await manager.in_thread(_write_thumbnail, manager.roots.get("gcodes").realpath, full, png)
        except OSError as exc:
            self.log.warn("Thumbnail of {path} not stored: {e}", path=full, e=exc)


def _write_thumbnail(root_real: str, gcode_full: str, png: bytes | None) -> None:
    """``.thumbs/<stem>.png`` beside the G-code (a stale one is removed when the package has none)."""
    folder = os.path.join(os.path.dirname(gcode_full), ".thumbs")
    path = os.path.join(folder, os.path.splitext(os.path.basename(gcode_full))[0] + ".png")
    if png is None:
        if os.path.isfile(path):
            os.unlink(path)
        return
    os.makedirs(folder, exist_ok=True)
    real = os.path.realpath(folder)
    if real != root_real and not real.startswith(root_real + os.sep):
        raise OSError(f"{folder} leads outside the gcodes root")
    temp = path + ".part"
    with open(temp, "wb") as f:
        f.write(png)
    os.replace(temp, path)
