"""``type: web``: a browser client (Mainsail, Fluidd) installed from a zipped GitHub release."""

from __future__ import annotations

import os
from typing import ClassVar

from moontwist import jsonutil
from moontwist.plugins.update_manager.base import Manager, UpdaterOptions
from moontwist.plugins.update_manager.release import ReleaseUpdater

__all__ = ["WebUpdater"]

# Clients recognized from their web manifest when release_info.json is missing (older installs).
KNOWN_CLIENTS = {"mainsail": "mainsail-crew", "fluidd": "fluidd-core"}


class WebUpdater(ReleaseUpdater):
    """Static files only: no services, no dependencies."""

    type_name: ClassVar[str] = "web"

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        self.managed_services = []

    def _fallback_version(self) -> None:
        try:
            with open(os.path.join(self.path, ".version"), encoding="utf-8") as f:
                self.version = f.read().strip() or self.version
        except OSError:
            pass
        for manifest in ("manifest.json", "manifest.webmanifest"):
            try:
                with open(os.path.join(self.path, manifest), encoding="utf-8") as f:
                    name = str(jsonutil.loads(f.read())["name"]).lower()
            except (OSError, ValueError, KeyError, TypeError):
                continue
            owner = KNOWN_CLIENTS.get(name)
            if owner is None:
                continue
            detected = f"{owner}/{name}"
            if detected != self.configured_repo.lower():
                self.anomalies.append(
                    f"Value at option 'repo: {self.configured_repo}' does not match detected repo '{detected}', "
                    "falling back to detected version."
                )
                self.repo, self.owner, self.project_name = detected, owner, name
            self.is_valid = True
            return
