"""Streaming multipart uploads: the body goes into a hidden temporary file as it arrives.

The sink writes the ``file`` part into ``.upload-<random>.part`` in the top
directory of the target root (the gcodes root unless a ``root`` field came
first), hashing it on the way; form fields are kept (small); parts with other
names are ignored, as Moonraker does.  The handler then checks the fields, the
checksum and the printing state, and renames the temporary file into place.
Anything that goes wrong removes it; a temporary file left by a killed process
is removed at the next start (see ``moontwist.storage.confined``).
"""

from __future__ import annotations

import errno
import hashlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from moontwist.api.errors import ServerError
from moontwist.plugins.files.paths import check_name, resolve
from moontwist.plugins.files.roots import Root
from moontwist.storage.confined import Tree

if TYPE_CHECKING:
    import multipart

    from moontwist.plugins.files.operations import FileManager

__all__ = ["UploadSink", "finish_upload", "TEMP_PREFIX"]

TEMP_PREFIX = ".upload-"
MAX_FIELD = 64 * 1024
UPLOAD_ROOTS = ("gcodes", "config")


class UploadSink:
    """Parses one multipart body incrementally (see ``moontwist.api.upload``)."""

    def __init__(self, manager: FileManager, content_type: bytes | None) -> None:
        import multipart  # loaded with the first upload, not at start-up

        self._multipart = multipart
        self.manager = manager
        ctype, options = multipart.parse_options_header((content_type or b"").decode("latin-1"))
        if ctype.lower() != "multipart/form-data":
            raise ServerError("Upload must be multipart/form-data", 400)
        boundary = options.get("boundary")
        if not boundary:
            raise ServerError("Upload has no multipart boundary", 400)
        try:
            self.parser = multipart.PushMultipartParser(boundary, max_header_size=8192, max_header_count=16)
        except Exception as exc:
            raise ServerError(f"Invalid multipart boundary: {exc}", 400) from None
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.temp_root: Root | None = None
        self.temp_name: str | None = None
        self.temp_path: str | None = None
        self.size = 0
        self.digest: str | None = None
        self._file: Any = None
        self._hash: Any = None
        self._field: str | None = None
        self._value: bytearray | None = None  # the field being read (None: none, or an ignored part)
        self._done = False

    def feed(self, data: bytes) -> None:
        try:
            for event in self.parser.parse(data):
                if event is None:
                    self._end_part()
                elif isinstance(event, self._multipart.MultipartSegment):
                    self._start_part(event)
                elif self._file is not None:
                    self._file.write(event)
                    self._hash.update(event)
                    self.size += len(event)
                elif self._value is not None:
                    self._value += event
                    if len(self._value) > MAX_FIELD:
                        raise ServerError(f"Form field '{self._field}' is too large", 400)
        except self._multipart.MultipartError as exc:
            raise ServerError(f"Malformed multipart body: {exc}", 400) from None
        except OSError as exc:
            raise ServerError(f"Cannot store the upload: {exc.strerror}", 500) from None

    def _start_part(self, segment: multipart.MultipartSegment) -> None:
        if segment.name == "file":
            if segment.filename is None or not segment.filename.strip():
                raise ServerError("Multipart filename omitted: the 'file' part must name its file", 400)
            if self.filename is not None:
                raise ServerError("Only one file may be uploaded per request", 400)
            self.filename = segment.filename
            self._open_temp()
        elif segment.filename is None:
            self._field = segment.name
        else:
            self._field = None  # another file part: ignored (only 'file' is the upload)
        self._value = bytearray() if self._field is not None else None

    def _open_temp(self) -> None:
        name = self.fields.get("root", "gcodes").strip() or "gcodes"
        root = self.manager.roots.find(name if name in UPLOAD_ROOTS else "gcodes")
        if root is None or not root.writable:
            raise ServerError(f"Root '{name}' does not accept uploads", 403)
        with Tree(root.path).folder(root.path) as top:
            self.temp_name, self._file = top.create_temp(TEMP_PREFIX)
        self.temp_root = root
        self.temp_path = os.path.join(root.path, self.temp_name)
        self._hash = hashlib.sha256()

    def _end_part(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.digest = self._hash.hexdigest()
        elif self._field is not None and self._value is not None:
            self.fields[self._field] = self._value.decode("utf-8", "replace")
        self._field = None
        self._value = None

    def finish(self) -> None:
        """The body is complete: check that the multipart stream was too."""
        try:
            for event in self.parser.parse(b""):
                if event is None:
                    self._end_part()
        except self._multipart.MultipartError as exc:
            raise ServerError(f"Malformed multipart body: {exc}", 400) from None
        if not self.parser.closed or self._file is not None:
            raise ServerError("Truncated multipart body", 400)
        if self.temp_path is None:
            raise ServerError("No file part in the upload: a part named 'file' is required", 400)

    def abort(self) -> None:
        """Remove the temporary file (no-op once it was moved into place)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.temp_root is not None and self.temp_name is not None and not self._done:
            try:
                with Tree(self.temp_root.path).folder(self.temp_root.path) as top:
                    top.unlink(self.temp_name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.manager.log.warn("Cannot remove {path}: {error}", path=self.temp_path, error=exc)

    def committed(self) -> None:
        self._done = True


def _target(manager: FileManager, sink: UploadSink) -> tuple[Root, str, str]:
    """(root, final absolute path, path relative to the root) from the form fields."""
    fields = sink.fields
    name = (fields.get("root") or "gcodes").strip()
    if name not in UPLOAD_ROOTS:
        if manager.roots.find(name) is not None:
            raise ServerError(f"Root '{name}' is read-only", 403)
        raise ServerError(f"Invalid root request: {name!r}", 400)
    root = manager.roots.get(name)
    filename = (sink.filename or "").replace("\\", "/")
    directory = fields.get("path", "").strip().strip("/")
    if not filename.strip("/"):
        raise ServerError("The uploaded file has no name", 400)
    for part in filename.strip("/").split("/"):
        check_name(part)
    rel = "/".join(p for p in (directory, filename.strip("/")) if p)
    full = resolve(root, rel, for_write=True)
    if os.path.basename(full).startswith("."):
        raise ServerError(f"Invalid file name {os.path.basename(full)!r}: hidden files can't be uploaded", 400)
    return root, full, rel


async def finish_upload(manager: FileManager, sink: UploadSink, user: str | None = None) -> tuple[dict[str, Any], str]:
    """Verify and move the uploaded file into place; announce it; start the print if asked.

    Returns the result and the new file's URL path (for the Location header).
    """
    try:
        root, full, rel = _target(manager, sink)
        checksum = sink.fields.get("checksum", "").strip().lower()
        if checksum and checksum != sink.digest:
            raise ServerError(f"File checksum mismatch: expected {checksum}, calculated {sink.digest}", 422)
        if os.path.isdir(full):
            raise ServerError(f"{rel} is a directory", 400)
        manager.check_not_loaded(full, "overwrite")
        existed = os.path.exists(full)
        folder = os.path.dirname(full)
        manager.suppress(full)
        created_dir = _first_missing(folder)
        if created_dir is not None:
            manager.suppress(created_dir)
        await manager.change("store the upload", _place, sink.temp_root, sink.temp_name, root, full)
    except ServerError:
        sink.abort()
        raise
    sink.committed()
    if created_dir is not None:
        manager.announce("create_dir", root, created_dir)
    # Clients hear modify_file for an overwrite; the reply's action is always create_file (as documented).
    item = manager.announce("modify_file" if existed else "create_file", root, full)["item"]
    result: dict[str, Any] = {"item": item, "action": "create_file"}
    rel_key = manager.gcodes_rel(root, full)
    if rel_key is not None:  # a G-code file in the gcodes root: metadata first, then maybe print
        await manager.processor.scan(rel_key, full)
        wanted = sink.fields.get("print", "false").strip().lower() == "true"
        started = wanted and await _start_print(manager, rel_key, user)
        queued = wanted and not started and manager.queue_uploads and await _queue(manager, rel_key, user)
        result["print_started"] = started
        result["print_queued"] = queued
    return result, f"/server/files/{root.name}/{quote(rel)}"


def _first_missing(folder: str) -> str | None:
    """The outermost directory of ``folder`` that doesn't exist yet (None if it exists)."""
    missing = None
    while not os.path.isdir(folder):
        missing, folder = folder, os.path.dirname(folder)
    return missing


def _place(temp_root: Root, temp: str, root: Root, full: str) -> None:
    """Move the temp file into place, making missing folders; all confined to the roots."""
    source = Tree(temp_root.path)
    with source.folder(temp_root.path) as top:
        folder, name = Tree(root.path).parent(full, create=True)
        with folder:
            try:
                top.replace(temp, folder, name)
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # the folder is on another filesystem (a mount)
                    raise
                with top.open_read(temp) as f:
                    folder.copy_in(f, name)
                top.unlink(temp)


async def _start_print(manager: FileManager, rel: str, user: str | None) -> bool:
    """Start printing the upload when the printer is free (as Moonraker, a failure just means no)."""
    klippy = manager.server.klippy
    start = manager.server.lookup("start_print")
    if start is None or klippy is None or not klippy.connected or manager.loaded_file() is not None:
        return False
    try:
        await start(rel, user)
    except Exception as exc:
        manager.log.warn("Print of uploaded {rel} did not start: {error}", rel=rel, error=exc)
        return False
    return True


async def _queue(manager: FileManager, rel: str, user: str | None) -> bool:
    queue_jobs = manager.server.lookup("queue_jobs")
    if queue_jobs is None:
        return False
    await queue_jobs([rel], user)
    return True
