"""Changes made outside the API, seen through inotify and reported like API changes.

File writes are debounced: a file being written produces one ``create_file``
(or ``modify_file``) once it has been quiet for ``quiet`` seconds or closed.
A rename inside a root is reported as a move when both halves arrive in the
same read.  Hidden items and paths the API itself just changed are ignored.

Every server of a process (a farm) shares one inotify instance per reactor:
the kernel allows 128 per user (``fs.inotify.max_user_instances``), not per process.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet import inotify
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from moontwist.plugins.files.listing import is_hidden
from moontwist.plugins.files.paths import relative
from moontwist.plugins.files.roots import Root

__all__ = ["Watcher", "SharedINotify"]

Handler = Callable[[str, Root, str, "tuple[Root, str] | None"], None]

MASK = (
    inotify.IN_CREATE
    | inotify.IN_MODIFY
    | inotify.IN_CLOSE_WRITE
    | inotify.IN_DELETE
    | inotify.IN_MOVED_FROM
    | inotify.IN_MOVED_TO
)
SUPPRESS_SECONDS = 3.0


_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, name length (struct inotify_event)

Callback = Callable[[FilePath, int], None]


class TreeINotify(inotify.INotify):
    """INotify over one root's tree of real folders.

    Twisted's INotify drops its whole connection (every watch of the tree) as
    soon as any watched folder reports IN_DELETE_SELF; deleting one subfolder
    of a root would silence the root. Here only that folder's watch is
    forgotten (the kernel has already removed it).  Its recursive walk also
    follows symlinks (out of the root, or round a loop, which made it fail
    and leak the inotify instance); :meth:`watch_tree` never does, and hidden
    folders (``.thumbs``) are not watched.
    """

    def watch_tree(self, path: str, mask: int, callbacks: list[Any]) -> int:
        """Watch ``path`` and every real folder under it; returns how many could not be watched."""
        self.watch(FilePath(path), mask, autoAdd=True, callbacks=callbacks)
        missed = 0
        for folder, dirs, _files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))]
            for name in dirs:
                try:
                    self.watch(FilePath(os.path.join(folder, name)), mask, autoAdd=True, callbacks=callbacks)
                except (OSError, inotify.INotifyError):
                    missed += 1
        return missed

    def _addChildren(self, iwp: Any) -> None:  # noqa: N802 - Twisted's hook
        """Watch the real subfolders of a folder that just appeared, report its files."""
        try:
            children = iwp.path.children()
        except OSError:
            return
        for child in children:
            if child.islink() or child.basename().startswith(b"."):
                continue
            if child.isdir():
                try:
                    wd = self.watch(child, mask=iwp.mask, autoAdd=True, callbacks=iwp.callbacks)
                except (OSError, inotify.INotifyError):
                    continue
                iwp._notify(child, inotify.IN_ISDIR | inotify.IN_CREATE)
                self.reactor.callLater(0, self._addChildren, self._watchpoints[wd])
            elif child.isfile():
                iwp._notify(child, inotify.IN_CREATE | inotify.IN_CLOSE_WRITE)

    def _doRead(self, in_: bytes) -> None:  # noqa: N802 - Twisted's hook
        self._buffer += in_
        while len(self._buffer) >= _EVENT.size:
            wd, mask, _cookie, length = _EVENT.unpack_from(self._buffer)
            if len(self._buffer) < _EVENT.size + length:
                return
            name = self._buffer[_EVENT.size : _EVENT.size + length].rstrip(b"\0")
            self._buffer = self._buffer[_EVENT.size + length :]
            point = self._watchpoints.get(wd)
            if point is None:
                continue
            where = point.path.asBytesMode()
            target = where.child(name) if name else where
            point._notify(target, mask)
            if point.autoAdd and mask & inotify.IN_ISDIR and mask & inotify.IN_CREATE and not name.startswith(b"."):
                self._follow(point, target)
            if mask & (inotify.IN_DELETE_SELF | inotify.IN_IGNORED):
                self._watchpoints.pop(wd, None)
                self._watchpaths.pop(point.path, None)

    def _follow(self, parent: Any, folder: FilePath) -> None:
        """Watch a new subfolder; report what was written into it before the watch existed."""
        try:
            wd = self.watch(folder, mask=parent.mask, autoAdd=True, callbacks=parent.callbacks)
        except (OSError, inotify.INotifyError):
            return  # gone already
        self.reactor.callLater(0, self._addChildren, self._watchpoints[wd])


class SharedINotify:
    """The inotify instance of every Watcher on one reactor; each event goes to the roots above it.

    A folder under two subscribed roots (two servers sharing a folder) is watched once
    and reported to both.  The instance is closed when its last subscriber leaves.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.notifier = TreeINotify(reactor)
        self.notifier.startReading()
        self.subscribers: dict[bytes, list[Callback]] = {}  # root path -> callbacks

    @classmethod
    def of(cls, reactor: Any) -> SharedINotify:
        """The reactor's shared instance (opened now if it has none)."""
        shared = _SHARED.get(id(reactor))
        if shared is None:
            shared = _SHARED[id(reactor)] = cls(reactor)
        return shared

    def subscribe(self, path: str, callback: Callback) -> int:
        """Report changes under ``path`` to ``callback(filepath, mask)``; returns the folders that can't be watched."""
        self.subscribers.setdefault(os.fsencode(path), []).append(callback)
        try:
            return self.notifier.watch_tree(path, MASK, [self._dispatch])
        except Exception:
            self.unsubscribe(path, callback)
            raise

    def unsubscribe(self, path: str, callback: Callback) -> None:
        key = os.fsencode(path)
        callbacks = self.subscribers.get(key, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self.subscribers.pop(key, None)
            for wd, point in list(self.notifier._watchpoints.items()):
                watched = point.path.path
                if _under(watched, key) and not any(_under(watched, other) for other in self.subscribers):
                    self.notifier._rmWatch(wd)
        if not self.subscribers:
            self.notifier.loseConnection()
            if _SHARED.get(id(self.reactor)) is self:
                del _SHARED[id(self.reactor)]

    def _dispatch(self, _ignored: Any, filepath: FilePath, mask: int) -> None:
        path = filepath.asBytesMode().path
        while True:
            for callback in list(self.subscribers.get(path, ())):
                callback(filepath, mask)
            parent = os.path.dirname(path)
            if parent == path:
                return
            path = parent


def _under(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root.rstrip(b"/") + b"/")


# Process-wide by design: one SharedINotify per reactor (by id), while it has subscribers.
_SHARED: dict[int, SharedINotify] = {}


class Watcher:
    """One server's watched roots; ``handler(action, root, path, source)`` per change."""

    def __init__(self, reactor: Any, handler: Handler, log: Logger, quiet: float = 0.5) -> None:
        self.reactor = reactor
        self.log = log
        self.handler = handler
        self.quiet = quiet
        self.subscriptions: dict[str, tuple[SharedINotify, str, Callback]] = {}  # root name -> where, path, callback
        self.pending: dict[str, tuple[str, Root, Any]] = {}  # path -> (action, root, timer)
        self.moved_from: dict[str, tuple[Root, str, bool]] = {}
        self.unpaired: dict[str, Any] = {}  # path -> timer reporting a move out of the roots
        self.suppressed: dict[str, float] = {}
        self.stopped = False

    def watch(self, root: Root) -> bool:
        self.unwatch(root.name)
        if self.stopped or not os.path.isdir(root.path):
            return False
        path = root.path

        def callback(filepath: FilePath, mask: int) -> None:
            self._event(root, filepath, mask)

        try:
            shared = SharedINotify.of(self.reactor)
            missed = shared.subscribe(path, callback)
        except Exception as exc:
            self.log.warn("Cannot watch {path} for changes: {error}", path=path, error=exc)
            return False
        if missed:
            self.log.warn("{count} folders under {path} can't be watched for changes", count=missed, path=path)
        self.subscriptions[root.name] = (shared, path, callback)
        return True

    def unwatch(self, name: str) -> None:
        subscription = self.subscriptions.pop(name, None)
        if subscription is not None:
            shared, path, callback = subscription
            shared.unsubscribe(path, callback)

    def stop(self) -> None:
        """Stop watching every root and cancel every timer; nothing is reported afterwards."""
        self.stopped = True
        for name in list(self.subscriptions):
            self.unwatch(name)
        for _, _, timer in self.pending.values():
            if timer.active():
                timer.cancel()
        self.pending.clear()
        for timer in self.unpaired.values():
            if timer.active():
                timer.cancel()
        self.unpaired.clear()
        self.moved_from.clear()

    def suppress(self, path: str) -> None:
        """Ignore events on ``path`` (and below) for a few seconds: the API reports them."""
        self.suppressed[path] = self.reactor.seconds() + SUPPRESS_SECONDS

    def _is_suppressed(self, path: str) -> bool:
        now = self.reactor.seconds()
        hit = False
        for known, until in list(self.suppressed.items()):
            if until < now:
                del self.suppressed[known]
            elif path == known or path.startswith(known + os.sep):
                hit = True
        return hit

    def _event(self, root: Root, filepath: FilePath, mask: int) -> None:
        path = filepath.path if isinstance(filepath.path, str) else filepath.path.decode("utf-8", "surrogateescape")
        if path == root.path or is_hidden(relative(root, path)) or self._is_suppressed(path):
            return
        is_dir = bool(mask & inotify.IN_ISDIR)
        if mask & inotify.IN_MOVED_FROM:
            self.moved_from[path] = (root, path, is_dir)
            self.unpaired[path] = self.reactor.callLater(0, self._unpaired, path)
        elif mask & inotify.IN_MOVED_TO:
            self._moved_to(root, path, is_dir)
        elif is_dir:
            if mask & inotify.IN_CREATE:
                self.handler("create_dir", root, path, None)
            elif mask & inotify.IN_DELETE:
                self.handler("delete_dir", root, path, None)
        elif mask & inotify.IN_CREATE:
            self._debounce(root, path, "create_file", self.quiet)
        elif mask & inotify.IN_MODIFY:
            self._debounce(root, path, "modify_file", self.quiet)
        elif mask & inotify.IN_CLOSE_WRITE:
            if path in self.pending:
                self._debounce(root, path, self.pending[path][0], 0.05)
        elif mask & inotify.IN_DELETE:
            pending = self.pending.pop(path, None)
            if pending is not None:
                pending[2].cancel()
                if pending[0] == "create_file":
                    return
            self.handler("delete_file", root, path, None)

    def _debounce(self, root: Root, path: str, action: str, delay: float) -> None:
        pending = self.pending.get(path)
        if pending is not None:
            action = pending[0]  # a create stays a create however often it is modified
            if pending[2].active():
                pending[2].cancel()
        timer = self.reactor.callLater(delay, self._flush, path)
        self.pending[path] = (action, root, timer)

    def _flush(self, path: str) -> None:
        pending = self.pending.pop(path, None)
        if pending is not None and os.path.exists(path):
            self.handler(pending[0], pending[1], path, None)

    def _moved_to(self, root: Root, path: str, is_dir: bool) -> None:
        source = None
        for src_path, (src_root, _, src_dir) in list(self.moved_from.items()):
            if src_dir == is_dir:
                source = (src_root, src_path)
                del self.moved_from[src_path]
                break
        if source is not None:
            pending = self.pending.pop(source[1], None)
            if pending is not None:
                pending[2].cancel()
            self.handler("move_dir" if is_dir else "move_file", root, path, source)
        elif is_dir:
            self.handler("create_dir", root, path, None)
        else:
            self._debounce(root, path, "create_file", 0.05)

    def _unpaired(self, path: str) -> None:
        self.unpaired.pop(path, None)
        entry = self.moved_from.pop(path, None)
        if entry is not None:
            root, _, is_dir = entry
            self.handler("delete_dir" if is_dir else "delete_file", root, path, None)

