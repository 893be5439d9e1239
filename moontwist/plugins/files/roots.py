"""The registered roots: named directories clients may browse, with their permissions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from moontwist.api.errors import ServerError

__all__ = ["Root", "Roots", "GCODE_EXTENSIONS"]

GCODE_EXTENSIONS = frozenset({".gcode", ".g", ".gco", ".ufp", ".nc"})


@dataclass
class Root:
    """One root: ``name`` maps to the directory ``path``; ``writable`` roots accept changes."""

    name: str
    path: str
    writable: bool

    @property
    def permissions(self) -> str:
        if not os.path.isdir(self.path):
            return ""
        return "rw" if self.writable and os.access(self.path, os.W_OK) else "r"

    @property
    def realpath(self) -> str:
        return os.path.realpath(self.path)

    def info(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "permissions": self.permissions}


class Roots:
    """Roots by name, in registration order."""

    def __init__(self) -> None:
        self._roots: dict[str, Root] = {}

    def add(self, name: str, path: str, writable: bool) -> Root:
        root = Root(name, os.path.abspath(os.path.expanduser(path)), writable)
        self._roots[name] = root
        return root

    def get(self, name: str) -> Root:
        root = self._roots.get(name)
        if root is None:
            raise ServerError(f"Invalid root request: {name!r} is not a registered root", 400)
        return root

    def find(self, name: str) -> Root | None:
        return self._roots.get(name)

    def names(self) -> list[str]:
        return list(self._roots)

    def __iter__(self) -> Iterator[Root]:
        return iter(list(self._roots.values()))
