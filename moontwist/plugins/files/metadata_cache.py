"""G-code metadata: extracted off the reactor, cached in the ``gcode_metadata`` namespace.

:class:`MetadataStore` keeps every entry in memory (listings read it
synchronously) and mirrors writes into the database when the ``database``
service exists.  :class:`MetadataProcessor` runs the extractor in the reactor's
thread pool with a timeout, one extraction per file at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.defer import TimeoutError as DeferTimeout
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from moontwist.plugins.files.metadata import extract_metadata

__all__ = ["MetadataStore", "MetadataProcessor", "NAMESPACE", "METADATA_VERSION"]

NAMESPACE = "gcode_metadata"
# The format of the entries, kept where Moonraker keeps it (namespace moonraker, file_manager.metadata_version)
METADATA_VERSION = 3


class MetadataStore:
    """Metadata by path relative to the gcodes root; in memory, mirrored to the database."""

    def __init__(self, db: Any, log: Logger) -> None:
        self.db = db
        self.log = log
        self.entries: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        """Read the namespace from the database (nothing to do without one)."""
        if self.db is None:
            return
        try:
            self.db.reserve_namespace(NAMESPACE, owner="file_manager")
        except Exception:
            self.log.debug("gcode_metadata namespace already reserved")
        try:
            data = await self.db.get_item(NAMESPACE)
        except Exception:
            data = {}
        if isinstance(data, dict):
            self.entries = {k: v for k, v in data.items() if isinstance(v, dict)}
        await self._check_version()

    async def _check_version(self) -> None:
        """Entries of another format (an older Moonraker's) are dropped, to be extracted again."""
        try:
            version = await self.db.get_item("moonraker", "file_manager.metadata_version")
        except Exception:
            version = None
        if version == METADATA_VERSION:
            return
        if version is not None and self.entries:
            self.log.info("Metadata format {old} is not {new}: extracting it again", old=version, new=METADATA_VERSION)
            self.delete_prefix("")
        await self.db.insert_item("moonraker", "file_manager.metadata_version", METADATA_VERSION)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def keys(self) -> list[str]:
        return list(self.entries)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.entries[key] = value
        self._mirror("insert_item", key, value)

    def delete(self, key: str) -> dict[str, Any] | None:
        value = self.entries.pop(key, None)
        if value is not None:
            self._mirror("delete_item", key)
        return value

    def delete_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """Drop every entry under the directory ``prefix`` (``""`` for all)."""
        start = prefix.rstrip("/") + "/" if prefix else ""
        return [v for k in list(self.entries) if k.startswith(start) and (v := self.delete(k)) is not None]

    def _mirror(self, method: str, key: str, *value: Any) -> None:
        if self.db is None:
            return
        try:
            d = getattr(self.db, method)(NAMESPACE, [key], *value)
        except Exception:
            self.log.failure("gcode_metadata {method} failed for {key}", method=method, key=key)
            return
        if isinstance(d, Deferred):
            d.addErrback(lambda f: self.log.warn("gcode_metadata {method} {key}: {e}", method=method, key=key, e=f.getErrorMessage()))


class MetadataProcessor:
    """Extracts metadata in threads (at most ``concurrency`` at once) and stores it."""

    def __init__(
        self,
        reactor: Any,
        store: MetadataStore,
        on_update: Callable[[str, dict[str, Any]], None],
        parsers: Sequence[Any] | None = None,
        root: Callable[[], str | None] = lambda: None,
        timeout: float = 30.0,
        concurrency: int = 4,
    ) -> None:
        self.reactor = reactor
        self.log = store.log
        self.root = root  # the gcodes root's path: thumbnails are written only inside it
        self.store = store
        self.on_update = on_update
        self.parsers = parsers
        self.timeout = timeout
        self.limit = DeferredSemaphore(concurrency)
        self.pending: dict[str, Deferred] = {}
        self.stopped = False

    def stop(self) -> None:
        """The plugin is stopping: extractions still running store nothing and notify nobody."""
        self.stopped = True

    def scan(self, rel: str, full: str) -> Deferred:
        """Extract ``full`` and store it under ``rel``; fires with the metadata (or None)."""
        waiting = self.pending.get(rel)
        if waiting is not None:
            return _follow(waiting)
        d = self.limit.run(self._extract, rel, full)
        self.pending[rel] = d

        def done(result: Any) -> Any:
            if self.pending.get(rel) is d:
                del self.pending[rel]
            return result

        d.addBoth(done)
        return _follow(d)

    def _extract(self, rel: str, full: str) -> Deferred:
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._run, full, self.root())
        d.addTimeout(self.timeout, self.reactor)
        d.addCallbacks(lambda meta: self._stored(rel, full, meta), lambda f: self._failed(rel, full, f))
        # the scan never fails (every waiter gets metadata or None): a bug here is logged once
        d.addErrback(lambda f: self.log.failure("Storing the metadata of {rel} failed", f, rel=rel))
        return d

    def _run(self, full: str, root: str | None) -> dict[str, Any]:
        if self.parsers is None:
            return extract_metadata(full, root=root, log=self.log)
        return extract_metadata(full, parsers=self.parsers, root=root, log=self.log)

    def _stored(self, rel: str, full: str, meta: dict[str, Any]) -> dict[str, Any] | None:
        if self.stopped or not os.path.exists(full):
            return None
        meta["filename"] = rel
        self.store.put(rel, meta)
        self.on_update(rel, meta)
        return meta

    def _failed(self, rel: str, full: str, failure: Any) -> dict[str, Any] | None:
        if self.stopped:
            return None
        if failure.check(DeferTimeout):
            self.log.warn("Metadata extraction of {rel} timed out", rel=rel)
        elif not failure.check(OSError):
            self.log.failure("Metadata extraction of {rel} failed", failure, rel=rel)
        try:
            st = os.stat(full)
        except OSError:
            return None
        meta = {"size": st.st_size, "modified": st.st_mtime, "print_start_time": None, "job_id": None, "filename": rel}
        self.store.put(rel, meta)
        self.on_update(rel, meta)
        return meta


def _follow(d: Deferred) -> Deferred:
    """A new Deferred firing with ``d``'s result, so several callers can wait on one scan."""
    out: Deferred = Deferred()

    def relay(result: Any) -> Any:
        out.callback(result)
        return result

    d.addBoth(relay)
    return out
