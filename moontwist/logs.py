"""Each server instance's log: its own publisher, and its file ``logs/moontwist.log`` with rotation."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    PredicateResult,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = ["InstanceLog", "ServerLog", "INSTANCE_KEY", "quiet_observer"]

ROTATE_BYTES = 10 * 1024 * 1024
KEEP_ROTATED = 5
# The event key naming the InstanceLog an event came from (events of the process have none).
INSTANCE_KEY = "moontwist_instance"


class InstanceLog:
    """Where one server instance's loggers publish.

    Every event goes to this publisher's observers (the instance's file in a
    farm), then on to Twisted's global publisher (twistd's stdout) tagged with
    the instance; with a ``name``, the copy sent on shows it as the line's system,
    so a farm's shared stdout tells its printers apart.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.publisher = LogPublisher()
        self.publisher.addObserver(self._forward)

    def logger(self, namespace: str) -> Logger:
        return Logger(namespace=namespace, observer=self.publisher)

    def _forward(self, event: dict[str, Any]) -> None:
        event[INSTANCE_KEY] = self
        if self.name is not None and "log_system" not in event:
            level = event.get("log_level")
            system = f"{self.name} {event.get('log_namespace', '-')}#{level.name if level else '-'}"
            event = {**event, "log_system": system}
        globalLogPublisher(event)


class _LockedFile:
    """A LogFile written from the reactor and from worker threads: one write (or rotation) at a time."""

    def __init__(self, logfile: LogFile) -> None:
        self.logfile = logfile
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            self.logfile.write(text)

    def flush(self) -> None:
        with self.lock:
            self.logfile.flush()

    def rotate(self) -> None:
        with self.lock:
            self.logfile.rotate()

    def close(self) -> None:
        with self.lock:
            self.logfile.close()


@implementer(ILogFilterPredicate)
class _NotOtherInstances:
    """A filter predicate: events of the process and of ``own``, none of another instance's."""

    def __init__(self, own: InstanceLog) -> None:
        self.own = own

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        source = event.get(INSTANCE_KEY)
        return PredicateResult.no if source is not None and source is not self.own else PredicateResult.maybe


# Twisted's lines for every HTTP client connection opened and closed (power devices, Spoolman,
# GitHub): two info lines per outgoing request, nothing anyone reads.
_FACTORY_LINES = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


@implementer(ILogFilterPredicate)
class _NotClientConnectionNoise:
    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if event.get("log_format") in _FACTORY_LINES and type(event.get("factory")).__name__ == "_HTTP11ClientFactory":
            return PredicateResult.no
        return PredicateResult.maybe


def quiet_observer(observer: Any) -> FilteringLogObserver:
    """``observer`` without Twisted's per-connection lines of HTTP clients."""
    return FilteringLogObserver(observer, [_NotClientConnectionNoise()])


class ServerLog:
    """The rotating file ``path`` of one instance.

    A server alone in its process (``shared_process`` False) also records the
    process's own events there, as Moonraker's log does: Twisted's messages, the
    stdlib logging of libraries. In a shared process (a farm) the file gets
    only its instance's events; the process's go to stdout.
    """

    def __init__(self, path: str, instance: InstanceLog, debug: bool = False, shared_process: bool = False) -> None:
        self.path = path
        self.instance = instance
        self.shared_process = shared_process
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.logfile = _LockedFile(LogFile(
            os.path.basename(path), os.path.dirname(path), rotateLength=ROTATE_BYTES, maxRotatedFiles=KEEP_ROTATED
        ))
        predicates = [LogLevelFilterPredicate(LogLevel.debug if debug else LogLevel.info), _NotClientConnectionNoise()]
        if not shared_process:
            predicates.append(_NotOtherInstances(instance))
        self.observer = FilteringLogObserver(textFileLogObserver(self.logfile), predicates)
        self._handler = logging.StreamHandler(self.logfile)
        self._handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s"))
        self._handler.setLevel(logging.DEBUG if debug else logging.INFO)

    def start(self) -> None:
        if self.shared_process:
            self.instance.publisher.addObserver(self.observer)
            return
        # The instance's events reach the global publisher too: observing both would write them twice.
        globalLogPublisher.addObserver(self.observer)
        root = logging.getLogger()
        root.addHandler(self._handler)
        if root.level > self._handler.level:
            root.setLevel(self._handler.level)

    def stop(self) -> None:
        if self.shared_process:
            self.instance.publisher.removeObserver(self.observer)
        else:
            globalLogPublisher.removeObserver(self.observer)
            logging.getLogger().removeHandler(self._handler)
        self.logfile.close()

    def rollover(self) -> None:
        """Start a new log file now, keeping the old one as ``moontwist.log.1``."""
        self.logfile.rotate()
