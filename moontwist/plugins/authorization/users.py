"""Users in table ``auth_users`` (shared with the Moonraker importer), cached in memory.

The table also holds the API key, as the "password" of the reserved row
``_API_KEY_USER_`` (hash scheme ``api_key``), as Moonraker keeps it; reserved
rows are never loaded, saved or deleted as users.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from moontwist import jsonutil
from moontwist.storage.moonraker_import import (
    API_KEY_SCHEME,
    API_KEY_USER,
    AUTH_USERS_SQL,
    select_api_key,
)

__all__ = ["User", "UserStore", "TOKEN_KEY", "API_KEY_USER", "TRUSTED_USER", "RESERVED_USERS"]

TRUSTED_USER = "_TRUSTED_USER_"
# Names of pseudo-users: never real users, whatever the table holds.
RESERVED_USERS = frozenset({API_KEY_USER, TRUSTED_USER})

# Per-user HMAC key for that user's JWTs (in ``extra``); dropping it revokes every token.
TOKEN_KEY = "moontwist_jwt_key"


@dataclass
class User:
    username: str
    password_hash: str | None
    salt: str | None
    hash_scheme: str | None
    source: str = "moonraker"
    created_on: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def token_key(self) -> bytes | None:
        key = self.extra.get(TOKEN_KEY)
        return bytes.fromhex(key) if isinstance(key, str) else None

    def info(self) -> dict[str, Any]:
        return {"username": self.username, "source": self.source, "created_on": self.created_on}

    def row(self) -> tuple:
        return (
            self.username, self.password_hash, self.salt, self.hash_scheme,
            self.source, self.created_on, jsonutil.dumps(self.extra),
        )


def _from_row(row: tuple) -> User:
    username, password_hash, salt, scheme, source, created_on, extra = row
    try:
        extra_dict = jsonutil.loads(extra) if extra else {}
    except jsonutil.JSONDecodeError:
        extra_dict = {}
    return User(
        username, password_hash, salt, scheme, source or "moonraker",
        float(created_on or 0.0), extra_dict if isinstance(extra_dict, dict) else {},
    )


def _refuse_reserved(username: str) -> None:
    if username in RESERVED_USERS:
        raise ValueError(f"{username!r} is reserved, not a user")


class UserStore:
    """Every user, read once at start-up; changes are written through to the database."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.users: dict[str, User] = {}

    async def load(self) -> None:
        await self.db.register_table("auth_users", AUTH_USERS_SQL)
        rows = await self.db.run_read(
            lambda conn: conn.execute(
                "SELECT username, password_hash, salt, hash_scheme, source, created_on, extra FROM auth_users"
            ).fetchall()
        )
        self.users = {row[0]: _from_row(tuple(row)) for row in rows if row[0] not in RESERVED_USERS}

    def get(self, username: str) -> User | None:
        return self.users.get(username)

    async def load_api_key(self) -> str | None:
        """The API key stored in the table, or None."""
        return await self.db.run_read(select_api_key)

    async def save_api_key(self, key: str) -> None:
        """Store ``key`` as the API key (fires once on disk)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO auth_users (username, password_hash, salt, hash_scheme, source, created_on, extra) "
                "VALUES (?, ?, NULL, ?, 'moonraker', ?, '{}') ON CONFLICT (username) DO UPDATE SET "
                "password_hash = excluded.password_hash, hash_scheme = excluded.hash_scheme",
                (API_KEY_USER, key, API_KEY_SCHEME, time.time()),
            )

        await self.db.run_write(write)

    async def save(self, user: User) -> None:
        _refuse_reserved(user.username)
        row = user.row()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO auth_users (username, password_hash, salt, hash_scheme, "
                "source, created_on, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        await self.db.run_write(write)
        self.users[user.username] = user

    async def delete(self, username: str) -> None:
        _refuse_reserved(username)
        await self.db.run_write(lambda conn: conn.execute("DELETE FROM auth_users WHERE username = ?", (username,)))
        self.users.pop(username, None)

    async def set_token_key(self, user: User, fresh: bool) -> bytes | None:
        """Give ``user`` a new token key (``fresh``) or none (logged out everywhere)."""
        if fresh:
            user.extra[TOKEN_KEY] = os.urandom(32).hex()
        else:
            user.extra.pop(TOKEN_KEY, None)
        await self.save(user)
        return user.token_key
