"""The daemon's own log file (``logs/moontwist.log``) with size-based rotation."""

from __future__ import annotations

import logging
import os

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

__all__ = ["ServerLog"]

ROTATE_BYTES = 10 * 1024 * 1024
KEEP_ROTATED = 5


class ServerLog:
    """Attaches a rotating file to Twisted's global log publisher (and stdlib logging)."""

    def __init__(self, path: str, debug: bool = False) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.logfile = LogFile(
            os.path.basename(path), os.path.dirname(path), rotateLength=ROTATE_BYTES, maxRotatedFiles=KEEP_ROTATED
        )
        predicate = LogLevelFilterPredicate(LogLevel.debug if debug else LogLevel.info)
        self.observer = FilteringLogObserver(textFileLogObserver(self.logfile), [predicate])
        self._handler = logging.StreamHandler(self.logfile)
        self._handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s"))
        self._handler.setLevel(logging.DEBUG if debug else logging.INFO)

    def start(self) -> None:
        globalLogPublisher.addObserver(self.observer)
        logging.getLogger().addHandler(self._handler)
        if logging.getLogger().level > self._handler.level:
            logging.getLogger().setLevel(self._handler.level)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self.observer)
        logging.getLogger().removeHandler(self._handler)
        self.logfile.close()

    def rollover(self) -> None:
        """Start a new log file now, keeping the old one as ``moontwist.log.1``."""
        self.logfile.rotate()
