"""``type: zip``: an application installed from a zipped GitHub release, with a virtualenv,
system and Python dependencies and services, like a ``git_repo`` deployed from releases."""

from __future__ import annotations

from typing import ClassVar

from moontwist.plugins.update_manager.base import Manager, UpdaterOptions
from moontwist.plugins.update_manager.release import ReleaseUpdater

__all__ = ["ZipUpdater"]


class ZipUpdater(ReleaseUpdater):
    type_name: ClassVar[str] = "zip"

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        self._configure_virtualenv()
        self._configure_dependencies()
        self._configure_services()
        self._after_virtualenv()
