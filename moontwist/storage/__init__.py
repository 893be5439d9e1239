"""Persistent storage: the SQLite database, job history and the Moonraker importer."""

from moontwist.storage.database import Database

__all__ = ["Database"]
