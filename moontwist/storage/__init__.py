"""Persistent storage: the SQLite database, job history and the Moonraker importer."""

from moontwist.storage.database import Database
from moontwist.storage.history import HistoryStore
from moontwist.storage.moonraker_import import import_moonraker_db, verify_moonraker_password

__all__ = ["Database", "HistoryStore", "import_moonraker_db", "verify_moonraker_password"]
