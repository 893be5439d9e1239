"""The ``webcam`` plugin: Moonraker's ``server.webcams.*`` API.

Endpoints (HTTP and JSON-RPC)::

    GET    /server/webcams/list   server.webcams.list         configured webcams, then the rest by name
    GET    /server/webcams/item   server.webcams.get_item     one webcam, by uid (or name)
    POST   /server/webcams/item   server.webcams.post_item    create, or update by uid (or name)
    DELETE /server/webcams/item   server.webcams.delete_item  remove one webcam
    POST   /server/webcams/test   server.webcams.test         resolve the URLs, probe the snapshot

Every change is broadcast as ``notify_webcams_changed`` with the whole list.

Webcams from ``[webcam NAME]`` sections have source "config" and can't be changed or
deleted through the API; a database webcam with the same name is hidden.  Their uid is
derived from the instance id in ``<datapath>/.moonraker.uuid`` (created when missing), as
Moonraker's is, so it is stable.

The other webcams are rows of the database namespace ``webcams``, keyed by uid, with
Moonraker's stored field names (``urlStream``, ``flipX``, ...), so an imported Moonraker
database brings its webcams along.  As in Moonraker the namespace stays writable by
clients (older frontends write it directly); it is read on every request, so such writes
show up at once.

``server.webcams.test`` resolves a relative URL on the host name the client used to reach
this server (port 80, where the web server serves ``/webcam/``; ``127.0.0.1`` when
unknown) and, for an http(s) snapshot URL, sends a GET with a 1 s timeout: reachable
means an answer below 400 (the body is not read).
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet.defer import DeferredLock
from twisted.internet.protocol import Protocol

from moontwist.api.args import Arg
from moontwist.api.errors import ArgumentError, ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config, ConfigError, ConfigSection
from moontwist.hookspecs import hookimpl
from moontwist.plugins.database import DatabaseNamespace
from moontwist.storage.instance import instance_uuid
from moontwist.tls import http_client

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["WebcamPlugin"]

NAMESPACE = "webcams"
ROTATIONS = (0, 90, 180, 270)
PROBE_TIMEOUT = 1.0
# Every field a client may set: (name, type, default for a new webcam, description).
FIELDS: tuple[tuple[str, str, Any, str], ...] = (
    ("name", "str", None, "Unique friendly name (required for a new webcam)"),
    ("location", "str", "printer", "What the webcam is looking at"),
    ("service", "str", "mjpegstreamer", "The streaming service"),
    ("enabled", "bool", True, "Whether the webcam is available"),
    ("icon", "str", "mdiWebcam", "Icon name"),
    ("target_fps", "int", 15, "Frames per second while printing"),
    ("target_fps_idle", "int", 5, "Frames per second while idle"),
    ("stream_url", "str", None, "Stream URL, full or relative (required for a new webcam)"),
    ("snapshot_url", "str", "", "Snapshot URL, full or relative"),
    ("flip_horizontal", "bool", False, "Flip the stream horizontally"),
    ("flip_vertical", "bool", False, "Flip the stream vertically"),
    ("rotation", "int", 0, "Clockwise rotation in degrees: 0, 90, 180 or 270"),
    ("aspect_ratio", "str", "4:3", "Aspect ratio, W:H"),
    ("extra_data", "dict", {}, "Frontend data"),
)
NAMES = tuple(f[0] for f in FIELDS)
# Moonraker's names in the database, where they differ from the API's.
DB_NAMES = {
    "target_fps": "targetFps",
    "target_fps_idle": "targetFpsIdle",
    "stream_url": "urlStream",
    "snapshot_url": "urlSnapshot",
    "flip_horizontal": "flipX",
    "flip_vertical": "flipY",
    "aspect_ratio": "aspectRatio",
}
_RATIO = re.compile(r"\d+:\d+")
_ABSOLUTE = re.compile(r"\w+://[^/]+")
_CASTS = {"str": str, "bool": bool, "int": int}
_UID = Arg("uid", description="The webcam's unique id")
_NAME = Arg("name", description="The webcam's name (deprecated: use uid)")


def _from_row(uid: str, row: Any) -> dict[str, Any]:
    """An API entry from a database row (Moonraker's field names); ValueError when unusable."""
    if not isinstance(row, dict) or not isinstance(row.get("name"), str):
        raise ValueError("not an object with a name")
    if "rotation" not in row and "rotate" in row:  # older frontends' name
        row = {**row, "rotation": row["rotate"]}
    entry: dict[str, Any] = {}
    for name, kind, default, _ in FIELDS:
        value = row.get(DB_NAMES.get(name, name), default)
        if kind == "dict":
            entry[name] = value if isinstance(value, dict) else {}
        else:
            entry[name] = _CASTS[kind]("" if value is None else value)
    return {**entry, "source": "database", "uid": uid}


def _row_name(row: Any) -> Any:
    return row.get("name") if isinstance(row, dict) else None


def _to_row(entry: dict[str, Any]) -> dict[str, Any]:
    return {DB_NAMES.get(name, name): entry[name] for name in NAMES}


def _from_config(section: ConfigSection, instance: uuid.UUID) -> dict[str, Any]:
    name = section.name.split(maxsplit=1)[1]
    entry = {
        "name": name,
        "location": section.get("location", "printer"),
        "service": section.get("service", "mjpegstreamer"),
        "enabled": section.getboolean("enabled", True),
        "icon": section.get("icon", "mdiWebcam"),
        "target_fps": section.getint("target_fps", 15),
        "target_fps_idle": section.getint("target_fps_idle", 5),
        "stream_url": section.get("stream_url"),
        "snapshot_url": section.get("snapshot_url", ""),
        "flip_horizontal": section.getboolean("flip_horizontal", False),
        "flip_vertical": section.getboolean("flip_vertical", False),
        "rotation": section.getint("rotation", 0, choices=ROTATIONS),
        "aspect_ratio": section.get("aspect_ratio", "4:3"),
        "extra_data": {},
        "source": "config",
        "uid": str(uuid.uuid5(instance, f"moonraker.webcam.{name}")),
    }
    if not _RATIO.fullmatch(entry["aspect_ratio"]):
        raise ConfigError(
            f"Config error in section [{section.name}], option 'aspect_ratio': "
            f"value {entry['aspect_ratio']!r} is not W:H (e.g. 16:9)"
        )
    return entry


def _lookup(
    cams: list[dict[str, Any]], args: dict[str, Any], required: bool = True
) -> dict[str, Any] | None:
    """The webcam named by ``uid``, else by ``name``; a 404 when missing (if ``required``)."""
    uid, name = args.get("uid"), args.get("name")
    if uid is not None:
        for cam in cams:
            if cam["uid"] == uid:
                return cam
        raise ServerError(f"Webcam with UID {uid} not found", 404)
    if name is None:
        if required:
            raise ArgumentError("Missing required argument 'uid' (or 'name')", "uid")
        return None
    for cam in cams:
        if cam["name"] == name:
            return cam
    if required:
        raise ServerError(f"Webcam {name} not found", 404)
    return None


def _request_host(request: APIRequest) -> str:
    """The host name (no port) the client used for this request, else 127.0.0.1."""
    header = None
    if request.http_request is not None:
        header = request.http_request.getHeader("host")
    elif request.connection is not None:
        header = getattr(request.connection, "http_headers", {}).get("host")
    try:
        host = urlsplit(f"//{header}").hostname if header else None
    except ValueError:
        host = None
    if not host:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _resolve(url: str, host: str) -> str:
    if not url or _ABSOLUTE.match(url):
        return url
    return f"http://{host}/{url.lstrip('/')}"


class _Discard(Protocol):
    """Drops a response body unread (a snapshot URL may well be an endless stream)."""

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.transport.stopProducing()


class WebcamPlugin:
    """Webcams from the config and the database; serves ``server.webcams.*``."""

    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        db = server.lookup("database")
        if db is None:
            raise RuntimeError("the webcam plugin needs the database plugin")
        self.store = DatabaseNamespace(db, NAMESPACE)
        self.lock = DeferredLock()
        sections = [s for s in config.sections() if s.startswith("webcam ") and s[7:].strip()]
        instance = uuid.UUID(instance_uuid(server.datapath)) if sections else uuid.NAMESPACE_URL
        self.configured = [_from_config(config.section(s), instance) for s in sections]

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        post_args = (_UID,) + tuple(
            Arg(
                name,
                kind,
                nullable=True,
                description=desc if default is None else f"{desc} (new webcams: {default!r})",
                choices=ROTATIONS if name == "rotation" else None,
            )
            for name, kind, default, desc in FIELDS
        )
        register(
            Endpoint(
                "server.webcams.list", self.list, "/server/webcams/list", description="Every webcam"
            )
        )
        register(
            Endpoint(
                "server.webcams.get_item",
                self.get_item,
                "/server/webcams/item",
                args=(_UID, _NAME),
                description="One webcam, by uid (or name)",
            )
        )
        register(
            Endpoint(
                "server.webcams.post_item",
                self.post_item,
                "/server/webcams/item",
                ("POST",),
                args=post_args,
                description="Add a webcam, or update the one named by uid (or name)",
            )
        )
        register(
            Endpoint(
                "server.webcams.delete_item",
                self.delete_item,
                "/server/webcams/item",
                ("DELETE",),
                args=(_UID, _NAME),
                description="Remove a webcam added through the API",
            )
        )
        register(
            Endpoint(
                "server.webcams.test",
                self.test,
                "/server/webcams/test",
                ("POST",),
                args=(_UID, _NAME),
                description="Resolve a webcam's URLs and check that its snapshot answers",
            )
        )

    @hookimpl
    async def startup(self, server: Server) -> None:
        cams = await self._webcams(report=True)
        self.log.info(
            "{count} webcams ({config} from the config)",
            count=len(cams),
            config=len(self.configured),
        )

    # helpers ---------------------------------------------------------------------

    async def _webcams(self, report: bool = False) -> list[dict[str, Any]]:
        """The configured webcams, then the database's by name (clashing or broken rows skipped)."""
        cams = copy.deepcopy(self.configured)
        names = {cam["name"] for cam in cams}
        uids = {cam["uid"] for cam in cams}
        rows = await self.store.get(default={})
        for uid, row in sorted(rows.items(), key=lambda item: str(_row_name(item[1])).casefold()):
            try:
                cam = _from_row(uid, row)
            except (TypeError, ValueError) as exc:
                if report:
                    self.log.warn("Webcam {uid} in the database is ignored: {error}", uid=uid, error=exc)
                continue
            if cam["name"] in names or uid in uids:
                if report:
                    self.log.warn(
                        "Webcam {uid} ({name}) in the database is hidden by one of the same name or uid",
                        uid=uid,
                        name=cam["name"],
                    )
                continue
            names.add(cam["name"])
            uids.add(uid)
            cams.append(cam)
        return cams

    async def _changed(self) -> None:
        self.server.notify("notify_webcams_changed", {"webcams": await self._webcams()})

    # endpoints ---------------------------------------------------------------------

    async def list(self, request: APIRequest) -> dict[str, Any]:
        return {"webcams": await self._webcams()}

    async def get_item(self, request: APIRequest) -> dict[str, Any]:
        return {"webcam": _lookup(await self._webcams(), request.args)}

    async def post_item(self, request: APIRequest) -> dict[str, Any]:
        async with self.lock:
            given = {k: v for k, v in request.args.items() if k in NAMES and v is not None}
            cams = await self._webcams()
            cam = _lookup(cams, request.args, required=False)
            if cam is None:
                for name in ("name", "stream_url"):
                    if name not in given:
                        raise ArgumentError(f"Missing required argument '{name}'", name)
                cam = {name: copy.deepcopy(default) for name, _, default, _ in FIELDS}
                cam.update(source="database", uid=str(uuid.uuid4()))
            elif cam["source"] == "config":
                raise ServerError(
                    f"Cannot overwrite webcam '{cam['name']}' sourced from the configuration", 400
                )
            elif given.get("name", cam["name"]) != cam["name"] and any(
                c["name"] == given["name"] for c in cams
            ):
                raise ServerError(
                    f"Cannot rename webcam '{cam['name']}' to '{given['name']}': that name is taken",
                    400,
                )
            cam.update(given)
            if not cam["name"]:
                raise ArgumentError("Invalid argument 'name': must not be empty", "name")
            if not _RATIO.fullmatch(cam["aspect_ratio"]):
                raise ArgumentError(
                    f"Invalid argument 'aspect_ratio': expected W:H (e.g. 16:9), got {cam['aspect_ratio']!r}",
                    "aspect_ratio",
                )
            old = await self.store.get(cam["uid"], default={})
            # keep what frontends stored beside Moonraker's fields
            await self.store.insert(
                cam["uid"], {**(old if isinstance(old, dict) else {}), **_to_row(cam)}
            )
            await self._changed()
        return {"webcam": cam}

    async def delete_item(self, request: APIRequest) -> dict[str, Any]:
        async with self.lock:
            cam = _lookup(await self._webcams(), request.args)
            assert cam is not None
            if cam["source"] == "config":
                raise ServerError(
                    f"Cannot delete webcam '{cam['name']}' sourced from the configuration", 400
                )
            await self.store.delete(cam["uid"])
            await self._changed()
        return {"webcam": cam}

    async def test(self, request: APIRequest) -> dict[str, Any]:
        cam = _lookup(await self._webcams(), request.args)
        assert cam is not None
        host = _request_host(request)
        snapshot = _resolve(cam["snapshot_url"], host)
        return {
            "name": cam["name"],
            "snapshot_reachable": snapshot.startswith("http") and await self._reachable(snapshot),
            "snapshot_url": snapshot,
            "stream_url": _resolve(cam["stream_url"], host),
        }

    async def _reachable(self, url: str) -> bool:
        treq = http_client()  # loaded with the first probe, not at start-up
        try:
            response = await treq.get(
                url,
                timeout=PROBE_TIMEOUT,
                persistent=False,
                unbuffered=True,
                reactor=self.server.reactor,
            )
        except Exception as exc:
            self.log.debug("Webcam snapshot {url} unreachable: {error}", url=url, error=exc)
            return False
        response.deliverBody(_Discard())
        return response.code < 400
