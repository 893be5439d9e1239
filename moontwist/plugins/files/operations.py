"""The file manager's operations: checks, the filesystem change (in a thread), notifications."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.threads import deferToThreadPool

from moontwist.api.errors import ServerError
from moontwist.plugins.files import listing
from moontwist.plugins.files.metadata.thumbnails import THUMB_DIR
from moontwist.plugins.files.metadata_cache import MetadataProcessor, MetadataStore
from moontwist.plugins.files.paths import relative, resolve, split_root
from moontwist.plugins.files.roots import Root, Roots
from moontwist.storage.confined import OutsideTree, Tree

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["FileManager", "ACTIVE_JOB_STATES"]

ACTIVE_JOB_STATES = frozenset({"printing", "paused"})


class FileManager:
    """Roots, metadata and every change to files, announced to clients and plugins."""

    def __init__(self, server: Server, roots: Roots, store: MetadataStore, parsers: Any = None) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.roots = roots
        self.store = store
        self.processor = MetadataProcessor(server.reactor, store, self._metadata_ready, parsers, self._gcodes_path)
        self.suppress: Callable[[str], None] = lambda path: None  # set by the watcher
        self.queue_uploads = False  # [file_manager] queue_gcode_uploads

    # helpers ----------------------------------------------------------------------------

    def _observed(self, d: Any, what: str) -> Any:
        """``d`` with its failure logged (background work nobody waits for)."""
        return d.addErrback(lambda f: self.log.failure("{what} failed", f, what=what))

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        reactor = self.server.reactor
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    async def change(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the filesystem change ``fn`` in a thread; its errors become clear 4xx answers."""
        try:
            return await self.in_thread(fn, *args)
        except OutsideTree:
            raise ServerError(f"Cannot {what}: the path leads outside its root", 403) from None
        except FileNotFoundError:
            raise ServerError(f"Cannot {what}: no such file or directory", 404) from None
        except OSError as exc:
            raise ServerError(f"Cannot {what}: {exc.strerror or exc}", 400) from None

    def _gcodes_path(self) -> str | None:
        root = self.roots.find("gcodes")
        return None if root is None else root.path

    def loaded_file(self) -> str | None:
        """The real path of the file virtual_sdcard prints (or has paused), else None."""
        klippy = self.server.klippy
        if klippy is None:
            return None
        try:
            status = klippy.status or {}
            state = (status.get("print_stats") or {}).get("state")
            path = (status.get("virtual_sdcard") or {}).get("file_path")
        except Exception:
            return None
        if state not in ACTIVE_JOB_STATES or not path:
            return None
        return os.path.realpath(path)

    def check_not_loaded(self, full: str, action: str) -> None:
        loaded = self.loaded_file()
        if loaded is None:
            return
        real = os.path.realpath(full)
        if loaded == real or loaded.startswith(real + os.sep):
            raise ServerError(f"File is loaded by virtual_sdcard; {action} is not permitted while printing", 403)

    def resolve(self, path: str, *, for_write: bool = False, default_root: str | None = None) -> tuple[Root, str]:
        root, rel = split_root(self.roots, path, default_root)
        return root, resolve(root, rel, for_write=for_write)

    def gcodes_rel(self, root: Root, full: str) -> str | None:
        """The metadata key of ``full`` if it is a G-code file in the gcodes root."""
        if root.name != "gcodes" or not listing.is_gcode(full):
            return None
        rel = relative(root, full)
        return None if listing.is_hidden(rel) else rel

    # notifications & metadata -------------------------------------------------------------

    def announce(self, action: str, root: Root, full: str, source: tuple[Root, str] | None = None) -> dict[str, Any]:
        """Notify clients and plugins of a change; keep metadata in step.  Returns the result."""
        item = listing.item_info(root, full)
        result: dict[str, Any] = {"item": item, "action": action}
        source_item = None
        if source is not None:
            source_item = {"path": relative(source[0], source[1]), "root": source[0].name}
            result["source_item"] = source_item
        self._update_metadata(action, root, full, source)
        self.server.notify("notify_filelist_changed", result)
        self.server.emit("file_changed", action=action, item=item, source_item=source_item)
        return result

    def _update_metadata(self, action: str, root: Root, full: str, source: tuple[Root, str] | None) -> None:
        if source is not None:
            src_root, src_full = source
            if src_root.name == "gcodes":
                old = relative(src_root, src_full)
                if action == "move_dir":
                    self._rekey(old, relative(root, full) if root.name == "gcodes" else None)
                else:
                    self._forget(src_root, src_full, old)
        if action == "delete_dir" and root.name == "gcodes":
            self.store.delete_prefix(relative(root, full))
        elif action == "delete_file":
            rel = self.gcodes_rel(root, full)
            if rel is not None:
                self._forget(root, full, rel)
        elif action in ("create_file", "modify_file", "move_file"):
            rel = self.gcodes_rel(root, full)
            if rel is not None:
                self._observed(self.processor.scan(rel, full), f"Metadata extraction of {rel}")
        elif action == "create_dir" and root.name == "gcodes":
            self.scan_missing(full)

    def _forget(self, root: Root, full: str, rel: str) -> None:
        meta = self.store.delete(rel)
        if not meta:
            return
        names = []
        for thumb in meta.get("thumbnails") or []:
            folder, _, name = str(thumb.get("relative_path", "")).partition("/")
            if folder == THUMB_DIR and name and "/" not in name and name not in (".", ".."):
                names.append(name)
        if names:
            try:  # a few unlinks in one folder: quick enough for the reactor
                _remove_thumbnails(Tree(root.path), os.path.dirname(full), names)
            except OSError as exc:
                self.log.warn("Thumbnails of {rel} not removed: {error}", rel=rel, error=exc)

    def _rekey(self, old: str, new: str | None) -> None:
        for meta in self.store.delete_prefix(old):
            if new is not None:
                rel = new + meta["filename"][len(old) :]
                self.store.put(rel, {**meta, "filename": rel})

    def _metadata_ready(self, rel: str, meta: dict[str, Any]) -> None:
        self.server.notify("notify_metadata_update", meta)

    def scan_missing(self, folder: str | None = None) -> Any:
        """Extract metadata, in the background, of G-code files that have none or changed.

        Errors are logged; the Deferred fires with the number of files looked at.
        """
        gcodes = self.roots.find("gcodes")
        if gcodes is None:
            return None
        d = self.in_thread(lambda: list(listing.walk_files(gcodes, True)))

        def queue(files: list[tuple[str, dict[str, Any]]]) -> Any:
            prefix = relative(gcodes, folder) + "/" if folder and folder != gcodes.path else ""
            for full, info in files:
                rel = info["path"]
                if not rel.startswith(prefix):
                    continue
                meta = self.store.get(rel)
                if meta is None or meta.get("size") != info["size"] or meta.get("modified") != info["modified"]:
                    self._observed(self.processor.scan(rel, full), f"Metadata extraction of {rel}")
            return len(files)

        return self._observed(d.addCallback(queue), "Metadata scan")

    # operations -----------------------------------------------------------------------------

    async def post_directory(self, path: str) -> dict[str, Any]:
        root, full = self.resolve(path, for_write=True)
        if full == root.path:
            raise ServerError(f"Directory already exists: {path}", 400)
        if os.path.exists(full):
            raise ServerError(f"Directory already exists: {path}", 400)
        self.suppress(full)
        await self.change(f"create {path}", _mkdir, Tree(root.path), full)
        return self.announce("create_dir", root, full)

    async def delete_directory(self, path: str, force: bool) -> dict[str, Any]:
        root, full = self.resolve(path, for_write=True)
        if full == root.path:
            raise ServerError("The root directory itself can't be deleted", 403)
        if not os.path.isdir(full) or os.path.islink(full):
            raise ServerError(f"Directory does not exist: {path}", 404)
        self.check_not_loaded(full, "delete")
        if not force:
            with os.scandir(full) as entries:  # stops at the first entry: no full listing on the reactor
                if next(entries, None) is not None:
                    raise ServerError(f"Directory {path} is not empty (use force)", 400)
        self.suppress(full)
        await self.change(f"delete {path}", _rmdir, Tree(root.path), full, force)
        return self.announce("delete_dir", root, full)

    async def delete_file(self, path: str) -> dict[str, Any]:
        root, full = self.resolve(path, for_write=True)
        if not os.path.isfile(full):
            raise ServerError(f"File does not exist: {path}", 404)
        self.check_not_loaded(full, "delete")
        self.suppress(full)
        await self.change(f"delete {path}", _unlink, Tree(root.path), full)
        return self.announce("delete_file", root, full)

    def _source_dest(self, source: str, dest: str, move: bool) -> tuple[Root, str, Root, str]:
        src_root, src = self.resolve(source, for_write=move)
        dst_root, dst = self.resolve(dest, for_write=True)
        if src == src_root.path:
            raise ServerError("A root directory can't be moved or copied", 403)
        if not os.path.exists(src):
            raise ServerError(f"Source does not exist: {source}", 404)
        if os.path.isdir(src) and os.path.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src))
        real_src = os.path.realpath(src)
        if os.path.isdir(src) and os.path.realpath(dst).startswith(real_src + os.sep):
            raise ServerError("A directory can't be moved or copied into itself", 400)
        if os.path.realpath(dst) == real_src:
            raise ServerError("Source and destination are the same", 400)
        if not os.path.isdir(os.path.dirname(dst)):
            raise ServerError(f"Destination folder of {dest} does not exist", 404)
        if os.path.isdir(dst) != os.path.isdir(src) and os.path.exists(dst):
            raise ServerError(f"Destination {dest} exists and is not of the same kind", 400)
        self.check_not_loaded(dst, "overwrite")
        return src_root, src, dst_root, dst

    async def move(self, source: str, dest: str) -> dict[str, Any]:
        src_root, src, dst_root, dst = self._source_dest(source, dest, move=True)
        self.check_not_loaded(src, "move")
        is_dir = os.path.isdir(src)
        self.suppress(src)
        self.suppress(dst)
        await self.change(f"move {source}", Tree(dst_root.path).move, Tree(src_root.path), src, dst)
        return self.announce("move_dir" if is_dir else "move_file", dst_root, dst, (src_root, src))

    async def copy(self, source: str, dest: str) -> dict[str, Any]:
        src_root, src, dst_root, dst = self._source_dest(source, dest, move=False)
        is_dir = os.path.isdir(src)
        existed = os.path.exists(dst)
        self.suppress(dst)
        await self.change(f"copy {source}", Tree(dst_root.path).copy, Tree(src_root.path), src, dst)
        action = "create_dir" if is_dir else ("modify_file" if existed else "create_file")
        return self.announce(action, dst_root, dst)


# blocking changes, confined to their root (run in a thread) ------------------------------


def _mkdir(tree: Tree, full: str) -> None:
    folder, name = tree.parent(full)
    with folder:
        folder.mkdir(name)


def _rmdir(tree: Tree, full: str, force: bool) -> None:
    folder, name = tree.parent(full)
    with folder:
        if force:
            folder.rmtree(name)
        else:
            folder.rmdir(name)


def _unlink(tree: Tree, full: str) -> None:
    folder, name = tree.parent(full)
    with folder:
        folder.unlink(name)


def _remove_thumbnails(tree: Tree, gcode_folder: str, names: list[str]) -> None:
    """Remove ``.thumbs/<name>`` beside a G-code file; a ``.thumbs`` symlink is never followed."""
    with tree.folder(gcode_folder) as folder:
        try:
            thumbs = folder.subfolder(THUMB_DIR, follow=False)
        except FileNotFoundError:
            return
        with thumbs:
            for name in names:
                thumbs.unlink_quietly(name)
