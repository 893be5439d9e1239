"""``system``: the host's packages (apt through PackageKit or apt-get), always named ``system``.

It reports which packages can be upgraded, upgrades them, and installs the system
dependencies other updaters ask for.  The provider is chosen at start-up
(``system_provider: auto`` picks PackageKit when its D-Bus service answers, else
``apt-get`` when present, else none with a warning).
"""

from __future__ import annotations

from typing import Any, ClassVar

from moontwist.api.errors import ServerError
from moontwist.plugins.update_manager.base import Manager, Updater
from moontwist.plugins.update_manager.packagekit import PackageKitProvider
from moontwist.plugins.update_manager.packages import (
    AptProvider,
    PackageProvider,
    RecordingPackageProvider,
)

__all__ = ["SystemUpdater", "PROVIDER_CHOICES"]

PROVIDER_CHOICES = ("auto", "packagekit", "apt", "recording", "none")
PROVIDERS: dict[str, type[PackageProvider]] = {
    "packagekit": PackageKitProvider,
    "apt": AptProvider,
    "recording": RecordingPackageProvider,
    "none": PackageProvider,
}


class SystemUpdater(Updater):
    type_name: ClassVar[str] = "system"

    def __init__(self, manager: Manager, name: str, provider: str = "auto") -> None:
        super().__init__(manager, name)
        self.kind = provider
        self.provider: PackageProvider = PackageProvider(manager)
        self.available: list[str] = []
        self.config_hash = "system"

    async def initialize(self, stored: dict[str, Any]) -> None:
        await super().initialize(stored)
        self.available = [p for p in stored.get("packages", []) if isinstance(p, str)]
        candidates = ["packagekit", "apt"] if self.kind == "auto" else [self.kind]
        for kind in candidates:
            provider = PROVIDERS[kind](self.manager)
            try:
                await provider.start()
            except Exception as exc:
                self.log.info("System package provider {kind} unavailable: {error}", kind=kind, error=exc)
                continue
            self.provider = provider
            break
        if self.provider.name == "none" and self.kind != "none":
            distro = self.manager.distro.id or "unknown"
            self.server.config.extra_warnings.append(
                f"Unable to initialize System Update Provider for distribution: {distro}"
            )
        self.log.info("System package provider: {name}", name=self.provider.name)

    def persistent(self) -> dict[str, Any]:
        return {**super().persistent(), "packages": list(self.available)}

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configured_type": "system",
            "package_count": len(self.available),
            "package_list": list(self.available),
        }

    async def refresh(self) -> None:
        try:
            await self.provider.refresh_cache()
            self.available = await self.provider.upgradable()
        except Exception as exc:
            self.log.info("Error refreshing system packages: {error}", error=getattr(exc, "message", exc))
        self.save()

    async def update(self) -> bool:
        if not self.available:
            return False
        self.notify("Updating packages...")
        try:
            await self.provider.refresh_cache(notify=True)
            await self.provider.upgrade()
        except ServerError as exc:
            raise ServerError(f"Error updating system packages: {exc.message}", exc.status if exc.status >= 400 else 500) from None
        self.available = []
        self.save(refreshed=False)
        self.notify("Package update finished...", complete=True)
        return True

    async def install_packages(self, packages: list[str]) -> None:
        await self.provider.install(packages)

    async def close(self) -> None:
        await self.provider.close()
