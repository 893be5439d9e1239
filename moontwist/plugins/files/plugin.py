"""The ``file_manager`` plugin: roots, file endpoints, uploads, downloads, metadata, inotify."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint, Unwrapped
from moontwist.config import Config
from moontwist.hookspecs import hookimpl
from moontwist.plugins.files import archive, listing
from moontwist.plugins.files.metadata import DEFAULT_PARSERS
from moontwist.plugins.files.metadata.thumbnails import THUMB_TEMP_PREFIX
from moontwist.plugins.files.metadata_cache import MetadataStore
from moontwist.plugins.files.operations import FileManager
from moontwist.plugins.files.paths import resolve
from moontwist.plugins.files.roots import Root, Roots
from moontwist.plugins.files.uploads import TEMP_PREFIX as UPLOAD_TEMP_PREFIX
from moontwist.plugins.files.uploads import UPLOAD_ROOTS, UploadSink, finish_upload
from moontwist.plugins.files.watcher import Watcher
from moontwist.storage.confined import COPY_PREFIX, Tree, sweep_temp_files

if TYPE_CHECKING:
    from moontwist.plugins.files.downloads import DownloadResource
    from moontwist.server import Server

__all__ = ["FileManagerPlugin"]

HTTP = frozenset({"http"})
# read-only roots found in Klipper's checkout (klipper_path in Klippy's info), as Moonraker registers them
KLIPPER_ROOTS = (("config_examples", "config"), ("docs", "docs"))
# where Moonraker keeps what Klippy last reported (namespace moonraker), so the roots exist before it connects
KLIPPER_PATH_KEY = "klippy_connection.path"
KLIPPER_EXECUTABLE_KEY = "klippy_connection.executable"
WATCHED_ROOTS = ("gcodes", "config")
# every temporary name the file manager writes through (uploads, archives, copies, thumbnails)
TEMP_PREFIXES = (UPLOAD_TEMP_PREFIX, archive.TEMP_PREFIX, COPY_PREFIX, THUMB_TEMP_PREFIX)


class FileManagerPlugin:
    """Moonraker's ``server.files.*`` API over the registered roots."""

    server: Server
    manager: FileManager
    watcher: Watcher | None = None

    # lifecycle -------------------------------------------------------------------------------

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("file_manager")
        config_writable = section.getboolean("enable_config_write_access", True)
        self.observer = section.get("file_system_observer", "inotify", choices=("inotify", "none"))
        self.klipper_path = os.path.expanduser(section.get("klipper_path", "~/klipper"))
        queue_uploads = section.getboolean("queue_gcode_uploads", False)
        section.getboolean("enable_object_processing", False)
        section.getboolean("enable_inotify_warnings", True)
        section.getboolean("check_klipper_config_path", True)
        roots = Roots()
        roots.add("gcodes", server.path("gcodes"), True)
        roots.add("config", server.path("config"), config_writable)
        roots.add("logs", server.path("logs"), False)
        self.roots = roots
        self._klipper_roots(self.klipper_path)
        self.manager = FileManager(server, roots, MetadataStore(server.lookup("database"), self.log))
        self.manager.queue_uploads = queue_uploads
        server.provide("registered_directories", roots.names)
        server.provide("file_manager", self.manager)

    @hookimpl
    def startup(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._startup(server))

    async def _startup(self, server: Server) -> None:
        extra: list[Any] = []
        if server.plugins is not None:
            server.plugins.call_registration("register_metadata_parsers", lambda name: extra.append, server=server)
        if extra:
            self.manager.processor.parsers = (*extra, *DEFAULT_PARSERS)
        await self.manager.store.load()
        stored = await self._stored_klipper_info()
        if isinstance(stored.get("path"), str) and stored["path"]:
            self._klipper_roots(stored["path"])
        writable = [root for name in UPLOAD_ROOTS if (root := self.roots.find(name)) is not None and root.writable]
        for path in await self.manager.in_thread(_sweep, writable):
            self.log.info("Removed a temporary file left by an interrupted run: {path}", path=path)
        if self.observer == "inotify":
            self.watcher = Watcher(server.reactor, self.manager.announce, self.log)
            self.manager.suppress = self.watcher.suppress
            for name in WATCHED_ROOTS:
                root = self.roots.find(name)
                if root is not None:
                    self.watcher.watch(root)
        self.manager.scan_missing()

    @hookimpl
    def shutdown(self, server: Server) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.manager.processor.stop()

    @hookimpl
    def klippy_state_changed(self, server: Server, state: str) -> None:
        if state != "disconnected":
            self._klippy_identified()
        if state == "ready":
            self._klippy_ready()

    def _klippy_identified(self) -> None:
        """Klippy answered ``info``: its checkout's roots, remembered for the next start."""
        info = getattr(self.server.klippy, "info", None) or {}
        path, executable = info.get("klipper_path"), info.get("python_path")
        if not isinstance(path, str) or not path:
            return
        self._klipper_roots(path)
        Deferred.fromCoroutine(self._remember_klipper(path, executable)).addErrback(
            lambda f: self.log.warn("Klipper's path not saved: {e}", e=f.getErrorMessage())
        )

    async def _stored_klipper_info(self) -> dict[str, Any]:
        db = self.server.lookup("database")
        if db is None:
            return {}
        try:
            stored = await db.get_item("moonraker", "klippy_connection")
        except Exception:
            return {}
        return stored if isinstance(stored, dict) else {}

    async def _remember_klipper(self, path: str, executable: Any) -> None:
        db = self.server.lookup("database")
        if db is None:
            return
        stored = await self._stored_klipper_info()
        if stored.get("path") != path:
            await db.insert_item("moonraker", KLIPPER_PATH_KEY, path)
        if isinstance(executable, str) and executable and stored.get("executable") != executable:
            await db.insert_item("moonraker", KLIPPER_EXECUTABLE_KEY, executable)

    def _klipper_roots(self, klipper_path: str) -> None:
        """Register (or move) the read-only roots of Klipper's checkout at ``klipper_path``."""
        for name, sub in KLIPPER_ROOTS:
            folder = os.path.abspath(os.path.join(os.path.expanduser(klipper_path), sub))
            if not os.path.isdir(folder):
                continue
            root = self.roots.find(name)
            if root is None:
                self.roots.add(name, folder, False)
                if self.server.running:
                    self._root_update(name, folder, None)
            elif root.path != folder:
                self.set_root_path(name, folder)

    def _klippy_ready(self) -> None:
        klippy = self.server.klippy
        if klippy is None:
            return
        klippy.add_subscription(self, {"print_stats": None, "virtual_sdcard": None}).addErrback(
            lambda f: self.log.info("File manager could not subscribe to print state: {e}", e=f.getErrorMessage())
        )
        # the connection fetched Klippy's configfile during its start-up handshake
        settings = (klippy.configfile or {}).get("settings") or {}
        path = (settings.get("virtual_sdcard") or {}).get("path")
        if isinstance(path, str) and path:
            self.set_root_path("gcodes", path)

    def set_root_path(self, name: str, path: str) -> None:
        """Point a root at another directory; clients get ``root_update``."""
        root = self.roots.get(name)
        new = os.path.abspath(os.path.expanduser(path))
        if new == root.path:
            return
        if not os.path.isdir(new):
            self.log.warn("Root {name} stays at {old}: {new} is not a directory", name=name, old=root.path, new=new)
            return
        old, root.path = root.path, new
        self.log.info("Root {name} moved from {old} to {new}", name=name, old=old, new=new)
        if self.watcher is not None and name in WATCHED_ROOTS:
            self.watcher.watch(root)
        self._root_update(name, new, old)
        if name == "gcodes":
            self.manager.scan_missing()  # observed inside

    def _root_update(self, name: str, path: str, old: str | None) -> None:
        result: dict[str, Any] = {"action": "root_update", "item": {"path": path, "root": name}}
        if old is not None:
            result["source_item"] = {"path": old, "root": name}
        self.server.notify("notify_filelist_changed", result)
        self.server.emit("file_changed", action="root_update", item=result["item"], source_item=result.get("source_item"))

    # endpoints ------------------------------------------------------------------------------

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        path_arg = Arg("path", required=True, description="Path starting with the root, e.g. gcodes/sub")
        filename = Arg("filename", required=True, description="G-code file path relative to the gcodes root")
        move_args = (
            Arg("source", required=True, description="Source path starting with its root"),
            Arg("dest", required=True, description="Destination path starting with its root"),
        )
        sink = {"body_sink": self._body_sink}
        for endpoint in (
            Endpoint("server.files.list", self.list_files, "/server/files/list",
                     args=(Arg("root", default="gcodes", description="Root to list"),),
                     description="Every file of a root (gcodes: G-code files only)"),
            Endpoint("server.files.roots", self.list_roots, "/server/files/roots", description="The registered roots"),
            Endpoint("server.files.metadata", self.metadata, "/server/files/metadata", args=(filename,),
                     description="Metadata of a G-code file"),
            Endpoint("server.files.metascan", self.metascan, "/server/files/metascan", ("POST", "GET"), args=(filename,),
                     description="Extract a G-code file's metadata again"),
            Endpoint("server.files.thumbnails", self.thumbnails, "/server/files/thumbnails", args=(filename,),
                     description="Thumbnails of a G-code file"),
            Endpoint("server.files.get_directory", self.get_directory, "/server/files/directory",
                     args=(Arg("path", default="gcodes", description="Directory, starting with its root"),
                           Arg("extended", "bool", default=False, description="Include G-code metadata")),
                     description="Files and folders of one directory"),
            Endpoint("server.files.post_directory", self.post_directory, "/server/files/directory", ("POST",),
                     args=(path_arg,), description="Create a directory"),
            Endpoint("server.files.delete_directory", self.delete_directory, "/server/files/directory", ("DELETE",),
                     args=(path_arg, Arg("force", "bool", default=False, description="Delete contents too")),
                     description="Delete a directory"),
            Endpoint("server.files.move", self.move, "/server/files/move", ("POST",), args=move_args,
                     description="Move or rename a file or directory"),
            Endpoint("server.files.copy", self.copy, "/server/files/copy", ("POST",), args=move_args,
                     description="Copy a file or directory"),
            Endpoint("server.files.zip", self.zip, "/server/files/zip", ("POST",),
                     args=(Arg("items", "list", required=True, items="str", description="Files and folders, each starting with its root"),
                           Arg("dest", description="Archive path in a writable root (default config/collection-<time>.zip)"),
                           Arg("store_only", "bool", default=False, description="Store without compression")),
                     description="Pack files and folders into a zip archive"),
            Endpoint("server.files.delete_file", self.delete_file, "/server/files/*", ("DELETE",),
                     args=(Arg("path", description="File path starting with its root (JSON-RPC)"),),
                     description="Delete a file"),
            Endpoint("server.files.download", self.download, "/server/files/*", transports=HTTP,
                     description="Download a file: /server/files/{root}/{path}"),
            Endpoint("server.files.klippy_log", self.klippy_log, "/server/files/klippy.log", transports=HTTP,
                     description="Klipper's log"),
            Endpoint("server.files.moonraker_log", self.own_log, "/server/files/moonraker.log", transports=HTTP,
                     description="This server's log"),
            Endpoint("server.files.upload", self.upload, "/server/files/upload", ("POST",), transports=HTTP,
                     raw_body=True, extra=sink,
                     description="Upload a file (multipart: file, root, path, checksum, print)"),
        ):
            register(endpoint)

    def _body_sink(self, request: Any) -> UploadSink:
        return UploadSink(self.manager, request.requestHeaders.getRawHeaders(b"content-type", [None])[0])

    def list_files(self, request: APIRequest) -> Deferred:
        root = self.roots.get(request.args["root"])
        if not root.permissions:
            raise ServerError(f"Root '{root.name}' is not available", 404)
        return self.manager.in_thread(listing.list_files, root, root.name == "gcodes")

    def list_roots(self, request: APIRequest) -> list[dict[str, str]]:
        return [root.info() for root in self.roots]

    def _gcode(self, filename: str) -> tuple[str, str]:
        root = self.roots.get("gcodes")
        rel = filename.lstrip("/")
        if rel.startswith("gcodes/"):
            rel = rel[len("gcodes/"):]
        return rel, resolve(root, rel)

    async def metadata(self, request: APIRequest) -> dict[str, Any]:
        rel, full = self._gcode(request.args["filename"])
        if not os.path.isfile(full):
            raise ServerError(f"Metadata not available for <{rel}>", 404)
        meta = self.manager.store.get(rel)
        if meta is None:
            meta = await self.manager.processor.scan(rel, full)
        if meta is None:
            raise ServerError(f"Metadata not available for <{rel}>", 404)
        return meta

    async def metascan(self, request: APIRequest) -> dict[str, Any]:
        rel, full = self._gcode(request.args["filename"])
        if not os.path.isfile(full):
            raise ServerError(f"File not found: {rel}", 404)
        meta = await self.manager.processor.scan(rel, full)
        if meta is None:
            raise ServerError(f"Metadata not available for <{rel}>", 404)
        return meta

    async def thumbnails(self, request: APIRequest) -> list[dict[str, Any]]:
        meta = await self.metadata(request)
        folder = os.path.dirname(meta.get("filename", ""))
        out = []
        for thumb in meta.get("thumbnails") or []:
            info = {k: v for k, v in thumb.items() if k != "relative_path"}
            info["thumbnail_path"] = os.path.join(folder, thumb.get("relative_path", ""))
            out.append(info)
        return out

    async def get_directory(self, request: APIRequest) -> dict[str, Any]:
        root, full = self.manager.resolve(request.args["path"] or "gcodes")
        if not os.path.isdir(full):
            raise ServerError(f"Directory does not exist: {request.args['path']}", 404)
        result = await self.manager.in_thread(listing.directory_info, root, full)
        if request.args["extended"] and root.name == "gcodes":
            prefix = os.path.relpath(full, root.path)
            prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
            store = self.manager.store
            for info in result["files"]:
                meta = store.get(prefix + info["filename"])
                if meta is not None:
                    info.update({k: v for k, v in meta.items() if k != "filename"})
        return result

    def post_directory(self, request: APIRequest) -> Any:
        return self.manager.post_directory(request.args["path"])

    def delete_directory(self, request: APIRequest) -> Any:
        return self.manager.delete_directory(request.args["path"], request.args["force"])

    def move(self, request: APIRequest) -> Any:
        return self.manager.move(request.args["source"], request.args["dest"])

    def copy(self, request: APIRequest) -> Any:
        return self.manager.copy(request.args["source"], request.args["dest"])

    async def zip(self, request: APIRequest) -> dict[str, Any]:
        args = request.args
        return await archive.zip_files(self.manager, args["items"], args["dest"], args["store_only"])

    def delete_file(self, request: APIRequest) -> Any:
        path = request.args.get("path_tail") or request.args.get("path")
        if not path:
            raise ServerError("Missing required argument 'path'", 400)
        return self.manager.delete_file(path)

    def download(self, request: APIRequest) -> DownloadResource:
        root, full = self.manager.resolve(request.args.get("path_tail") or "")
        return self._file(full, request.args.get("path_tail") or "")

    def _file(self, full: str, shown: str) -> DownloadResource:
        if not os.path.isfile(full):
            raise ServerError(f"File does not exist: {shown}", 404)
        if not os.access(full, os.R_OK):
            raise ServerError(f"File is not readable: {shown}", 403)
        # twisted.web.static builds its MIME table on import: loaded with the first download
        from moontwist.plugins.files.downloads import DownloadResource

        return DownloadResource(full, os.path.basename(shown))

    def klippy_log(self, request: APIRequest) -> DownloadResource:
        return self._file(self.server.path("logs", "klippy.log"), "klippy.log")

    def own_log(self, request: APIRequest) -> DownloadResource:
        return self._file(self.server.path("logs", "moontwist.log"), "moonraker.log")

    async def _finish(self, request: APIRequest) -> dict[str, Any]:
        http = request.http_request
        sink = getattr(http, "body_sink", None)
        if sink is None:
            raise ServerError("Uploads must be multipart/form-data", 400)
        if http.body_error is not None:
            raise http.body_error
        result, location = await finish_upload(self.manager, sink, (request.user or {}).get("username"))
        http.setResponseCode(201)
        http.setHeader(b"location", location.encode())
        return result

    async def upload(self, request: APIRequest) -> Any:
        return Unwrapped(await self._finish(request))


def _sweep(roots: list[Root]) -> list[str]:
    """Remove the temporary files a killed process left in ``roots`` (blocking)."""
    return [path for root in roots for path in sweep_temp_files(Tree(root.path), TEMP_PREFIXES)]
