"""``type: executable``: one prebuilt binary from a GitHub release, named by ``asset_name``
in the folder's ``release_info.json``; the rest of the folder is left alone."""

from __future__ import annotations

import os
import shutil
import stat
from typing import ClassVar

from moontwist import jsonutil
from moontwist.plugins.update_manager.base import Manager, UpdaterOptions
from moontwist.plugins.update_manager.release import RELEASE_INFO, ReleaseUpdater

__all__ = ["ExecutableUpdater"]


class ExecutableUpdater(ReleaseUpdater):
    type_name: ClassVar[str] = "executable"
    keeps_files: ClassVar[bool] = False

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        deps = options.get("system_dependencies", None)
        if deps is not None:
            self.system_deps = os.path.realpath(os.path.join(self.path, deps))
        self._configure_services()

    def _check_install(self) -> None:
        if self.asset_name is None:
            self.warnings.append("Executable types require the 'asset_name' field in release_info.json")
            self.is_valid = False
        elif "/" in self.asset_name or self.asset_name in ("", ".", ".."):
            self.warnings.append(f"Invalid 'asset_name' in release_info.json: '{self.asset_name}'")
            self.is_valid = False
        elif not os.path.exists(os.path.join(self.path, self.asset_name)):
            self.warnings.append(f"File {self.asset_name} not found in configured path for executable type")
            self.is_valid = False

    def _deploy(self, download: str, workdir: str, version: str) -> None:
        assert self.asset_name is not None
        target = os.path.join(self.path, self.asset_name)
        backup = os.path.join(workdir, "previous")
        os.makedirs(backup)
        if os.path.exists(target):
            shutil.copy2(target, os.path.join(backup, self.asset_name))
        mode = os.stat(download).st_mode
        os.chmod(download, stat.S_IMODE(mode) | stat.S_IXUSR | stat.S_IXGRP | stat.S_IRUSR)
        os.replace(download, target) if os.stat(download).st_dev == os.stat(self.path).st_dev else shutil.move(download, target)
        info_path = os.path.join(self.path, RELEASE_INFO)
        with open(info_path, encoding="utf-8") as f:
            info = jsonutil.loads(f.read())
        if info.get("version") != version:
            shutil.copy2(info_path, os.path.join(backup, RELEASE_INFO))
            info["version"] = version
            with open(info_path + ".tmp", "wb") as f:
                f.write(jsonutil.dumpb(info))
            os.replace(info_path + ".tmp", info_path)

    def _restore(self, workdir: str) -> None:
        backup = os.path.join(workdir, "previous")
        for entry in os.listdir(backup) if os.path.isdir(backup) else []:
            shutil.copy2(os.path.join(backup, entry), os.path.join(self.path, entry))
