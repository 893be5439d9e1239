"""System package providers for the ``system`` updater.

``packagekit`` talks to PackageKit over the D-Bus system bus (see ``packagekit.py``),
``apt`` runs ``apt-get`` (through ``sudo -n`` unless root), ``recording`` is a dry run for
tests and demos that records what it was asked and changes nothing, and ``none`` refuses.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from moontwist.api.errors import ServerError

if TYPE_CHECKING:
    from moontwist.plugins.update_manager.base import Manager

__all__ = ["PackageProvider", "AptProvider", "RecordingPackageProvider"]


class PackageProvider:
    """The ``none`` provider: every action fails with a clear message."""

    name = "none"

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def start(self) -> None:
        """Connect or check the tools; raise when this provider can't work here."""

    async def close(self) -> None:
        """The server stops."""

    def _unavailable(self, action: str) -> ServerError:
        return ServerError(f"Cannot {action}: no system package provider is available", 503)

    async def refresh_cache(self, notify: bool = False) -> None:
        raise self._unavailable("refresh packages")

    async def upgradable(self) -> list[str]:
        raise self._unavailable("list package updates")

    async def install(self, packages: list[str]) -> None:
        raise self._unavailable("install packages")

    async def upgrade(self) -> None:
        raise self._unavailable("upgrade packages")


class RecordingPackageProvider(PackageProvider):
    """Pretends: ``upgradable`` lists what tests put there; every call is recorded."""

    name = "recording"

    def __init__(self, manager: Manager) -> None:
        super().__init__(manager)
        self.commands: list[tuple[Any, ...]] = []
        self.available: list[str] = []
        self.installed: list[str] = []
        self.fail: str | None = None  # an action name that fails (tests of error paths)

    def _record(self, *command: Any) -> None:
        self.commands.append(command)
        if self.fail == command[0]:
            raise ServerError(f"Dry run (recording provider): {command[0]} failed", 500)

    async def refresh_cache(self, notify: bool = False) -> None:
        self._record("refresh")
        if notify:
            self.manager.notify("Dry run: package lists refreshed")

    async def upgradable(self) -> list[str]:
        self._record("list")
        return list(self.available)

    async def install(self, packages: list[str]) -> None:
        self._record("install", list(packages))
        self.installed.extend(packages)
        self.manager.notify(f"Dry run: installed {' '.join(packages)}")

    async def upgrade(self) -> None:
        self._record("upgrade", list(self.available))
        for package in self.available:
            self.manager.notify(f"Dry run: upgraded {package}")
        self.available = []


class AptProvider(PackageProvider):
    """``apt-get`` and ``apt list`` (Debian and derivatives)."""

    name = "apt"

    def _apt_get(self, *args: str) -> list[str]:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        return [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *args]

    async def start(self) -> None:
        if shutil.which("apt-get") is None:
            raise ServerError("apt-get not found", 503)

    async def refresh_cache(self, notify: bool = False) -> None:
        await self.manager.run(self._apt_get("update"), timeout=600.0, inactivity=300.0, notify=notify)

    async def upgradable(self) -> list[str]:
        result = await self.manager.run(["apt", "list", "--upgradable"], timeout=60.0, notify=False)
        return [line.split("/", 1)[0] for line in result.stdout.splitlines() if "/" in line and "[upgradable" in line]

    async def install(self, packages: list[str]) -> None:
        await self.refresh_cache(notify=True)
        result = await self.manager.run(["apt-cache", "policy", *packages], timeout=120.0, notify=False)
        known = {line.rstrip(":").strip() for line in result.stdout.splitlines() if line and not line[0].isspace()}
        resolved = [p for p in packages if p in known]
        if not resolved:
            self.manager.notify("No packages detected")
            return
        await self.manager.run(self._apt_get("install", "--yes", *resolved), timeout=3600.0, inactivity=600.0, attempts=3)

    async def upgrade(self) -> None:
        await self.manager.run(self._apt_get("upgrade", "--yes"), timeout=3600.0, inactivity=600.0)
