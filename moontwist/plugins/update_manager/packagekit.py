"""System packages through PackageKit over the D-Bus system bus.

Each action is one PackageKit transaction: ``CreateTransaction``, then a method on the
transaction object (``RefreshCache``, ``GetUpdates``, ``Resolve``, ``InstallPackages``,
``UpdatePackages``), whose ``Package``, ``ErrorCode`` and ``Finished`` signals carry the
result.  Progress is streamed into ``notify_update_response``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from jeepney import Message, new_method_call
from jeepney.bus_messages import MatchRule
from twisted.internet import defer

from moontwist.api.errors import ServerError
from moontwist.plugins.update_manager.dbus import DBusConnection, DBusError, address, connect
from moontwist.plugins.update_manager.packages import PackageProvider

if TYPE_CHECKING:
    from moontwist.plugins.update_manager.base import Manager

__all__ = ["PackageKitProvider", "BUS_NAME", "INFO_NAMES", "EXIT_SUCCESS"]

BUS_NAME = "org.freedesktop.PackageKit"
ROOT_PATH = "/org/freedesktop/PackageKit"
TRANSACTION_IFACE = "org.freedesktop.PackageKit.Transaction"
BUS_ENV = "MOONTWIST_PACKAGEKIT_BUS"  # another bus address than the system bus (tests, containers)
FILTER_NONE = 1 << 1
FILTER_NOT_INSTALLED = 1 << 3
FILTER_NEWEST = 1 << 16
FILTER_ARCH = 1 << 18
FILTER_BASENAME = 1 << 22
FLAG_ONLY_TRUSTED = 1 << 1
EXIT_SUCCESS = 1
# PkInfoEnum names for the values a transaction reports while it works
INFO_NAMES = {
    1: "Installed", 2: "Available", 3: "Low", 4: "Enhancement", 5: "Normal", 6: "Bugfix", 7: "Important",
    8: "Security", 9: "Blocked", 10: "Downloading", 11: "Updating", 12: "Installing", 13: "Removing",
    14: "Cleanup", 15: "Obsoleting", 16: "Collection-installed", 17: "Collection-available", 18: "Finished",
    19: "Reinstalling", 20: "Downgrading", 21: "Preparing", 22: "Decompressing", 23: "Untrusted", 24: "Trusted",
    25: "Unavailable",
}
EXIT_NAMES = {1: "success", 2: "failed", 3: "cancelled", 4: "key-required", 5: "eula-required", 6: "killed"}


class PackageKitProvider(PackageProvider):
    name = "packagekit"

    def __init__(self, manager: Manager) -> None:
        super().__init__(manager)
        self.bus: DBusConnection | None = None

    async def start(self) -> None:
        self.bus = await connect(self.manager.reactor, os.environ.get(BUS_ENV) or "SYSTEM")
        if not (await self.bus.name_has_owner(BUS_NAME) or BUS_NAME in await self.bus.activatable()):
            self.bus.close()
            self.bus = None
            raise DBusError("PackageKit is not available on the system bus")

    async def close(self) -> None:
        if self.bus is not None:
            self.bus.close()
            self.bus = None

    async def _transaction(self, method: str, signature: str, body: tuple, notify: bool) -> list[tuple[str, str, str]]:
        bus = self.bus
        if bus is None or not bus.connected:
            raise DBusError("PackageKit: no D-Bus connection")
        root = address(ROOT_PATH, BUS_NAME, BUS_NAME)
        (path,) = await bus.call(new_method_call(root, "CreateTransaction"))
        packages: list[tuple[str, str, str]] = []
        errors: list[str] = []
        finished: defer.Deferred = defer.Deferred()

        def on_signal(msg: Message) -> None:
            member = msg.header.fields.get(3)
            if member == "Package":
                info, package_id, summary = msg.body
                name = INFO_NAMES.get(info & 0xFFFF, str(info))
                packages.append((name, package_id, summary))
                if notify and name != "Finished":
                    parts = package_id.split(";")
                    self.manager.notify(f"{name}: {parts[0]} ({parts[1] if len(parts) > 1 else ''})")
            elif member == "ErrorCode":
                errors.append(f"{msg.body[0]}: {msg.body[1]}")
                if notify:
                    self.manager.notify(f"PackageKit error: {msg.body[1]}")
            elif member == "Finished" and not finished.called:
                finished.callback(msg.body[0])

        rule = MatchRule(type="signal", interface=TRANSACTION_IFACE, path=path)
        remove = await bus.add_match(rule, on_signal)
        try:
            await bus.call(new_method_call(address(path, BUS_NAME, TRANSACTION_IFACE), method, signature, body))
            timer = self.manager.reactor.callLater(
                3600.0, lambda: finished.called or finished.errback(DBusError(f"PackageKit {method} timed out"))
            )
            exit_code = await finished
            if timer.active():
                timer.cancel()
        finally:
            remove()
        if exit_code != EXIT_SUCCESS:
            why = errors[-1] if errors else EXIT_NAMES.get(exit_code, str(exit_code))
            raise ServerError(f"PackageKit {method} failed: {why}", 500)
        if notify:
            self.manager.notify(f"Transaction {method}: Exit {EXIT_NAMES.get(exit_code, exit_code)}")
        return packages

    async def refresh_cache(self, notify: bool = False) -> None:
        await self._transaction("RefreshCache", "b", (False,), notify)

    async def upgradable(self) -> list[str]:
        packages = await self._transaction("GetUpdates", "t", (FILTER_NONE,), False)
        return [package_id.split(";")[0] for _info, package_id, _summary in packages]

    async def install(self, packages: list[str]) -> None:
        await self.refresh_cache(notify=True)
        flags = FILTER_NEWEST | FILTER_NOT_INSTALLED | FILTER_BASENAME | FILTER_ARCH
        found = await self._transaction("Resolve", "tas", (flags, list(packages)), False)
        ids = [package_id for _info, package_id, _summary in found]
        if ids:
            await self._transaction("InstallPackages", "tas", (FLAG_ONLY_TRUSTED, ids), True)

    async def upgrade(self) -> None:
        updates = await self._transaction("GetUpdates", "t", (FILTER_NONE,), False)
        ids = [package_id for _info, package_id, _summary in updates]
        if ids:
            await self._transaction("UpdatePackages", "tas", (FLAG_ONLY_TRUSTED, ids), True)


