"""The list of system services moontwist may manage (``moonraker.asvc``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from twisted.logger import Logger

from moontwist.api.errors import ServerError

ALLOW_FILE_NAME = "moonraker.asvc"
DEFAULT_ALLOWED = (
    "klipper_mcu",
    "webcamd",
    "MoonCord",
    "KlipperScreen",
    "moonraker-telegram-bot",
    "moonraker-obico",
    "sonar",
    "crowsnest",
    "octoeverywhere",
    "ratos-configurator",
)
# Instances of these may always be managed: "klipper", "klipper-2", "moonraker_1", ...
_ALWAYS_ALLOWED = re.compile(r"^(?:klipper|moonraker|moontwist)(?:[_-]?\d+)?$")
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]*$")


def normalize(name: str) -> str:
    """Strip whitespace and a trailing ``.service``."""
    name = name.strip()
    return name[: -len(".service")] if name.endswith(".service") else name


def parse_allow_list(text: str) -> list[str]:
    """Service names from ``moonraker.asvc`` text: one per line, ``#`` comments, no duplicates."""
    names: list[str] = []
    for line in text.splitlines():
        name = normalize(line.split("#", 1)[0])
        if name and name not in names:
            names.append(name)
    return names


class AllowedServices:
    """Which services may be controlled, and validation of requested names."""

    def __init__(self, names: Iterable[str] = DEFAULT_ALLOWED) -> None:
        self.names: list[str] = list(dict.fromkeys(normalize(n) for n in names))

    @classmethod
    def from_data_path(cls, data_path: str, log: Logger | None = None) -> AllowedServices:
        """Read ``<data_path>/moonraker.asvc``; Moonraker's defaults when it is missing or unreadable.

        A file that can't be read is told to ``log`` (the server's).
        """
        path = os.path.join(data_path, ALLOW_FILE_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                return cls(parse_allow_list(f.read()))
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            (log or Logger(namespace=__name__)).warn(
                "Cannot read {path} ({error}); using default allowed services", path=path, error=exc
            )
            return cls()

    def is_allowed(self, name: str) -> bool:
        """True when ``name`` is listed or is a klipper/moonraker/moontwist instance."""
        name = normalize(name)
        return name in self.names or _ALWAYS_ALLOWED.match(name) is not None

    def check(self, name: str) -> str:
        """Return the normalized name, or raise a 400 ServerError for a bad or disallowed one."""
        if not isinstance(name, str) or not _VALID_NAME.match(normalize(name)):
            raise ServerError(f"Invalid service name: {name!r}", 400)
        name = normalize(name)
        if not self.is_allowed(name):
            raise ServerError(
                f"Service '{name}' not allowed; add it to {ALLOW_FILE_NAME} to manage it", 400
            )
        return name
