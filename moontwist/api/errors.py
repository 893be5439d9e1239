"""Errors are values with a status: HTTP turns them into a status code, JSON-RPC into a code."""

from __future__ import annotations


class ServerError(Exception):
    """A request failed; ``status`` is the HTTP status code (and the JSON-RPC error code)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"ServerError({self.message!r}, {self.status})"


class ArgumentError(ServerError):
    """An argument is missing or has the wrong type; the message names it."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message, 400)
        self.name = name
