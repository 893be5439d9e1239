"""Applications installed from GitHub release assets (the ``web``, ``zip`` and ``executable`` types).

The installed folder carries a ``release_info.json`` (``project_name``, ``project_owner``,
``version``, optional ``asset_name``).  A refresh asks the GitHub releases API for the
newest release (``stable``: the latest release, ``beta``: pre-releases too).  An update
downloads the asset into a temporary folder, checks it (a zip must be a zip whose entries
all stay inside the folder), then swaps it in; on any failure the previous files stay.
``rollback`` installs the release tagged with the previous version again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar

from twisted.internet import threads

from moontwist import jsonutil
from moontwist.api.errors import ServerError
from moontwist.plugins.update_manager.archive import ArchiveError, extract_zip, replace_contents
from moontwist.plugins.update_manager.base import AppUpdater, Manager, UpdaterOptions
from moontwist.plugins.update_manager.github import GitHubError
from moontwist.plugins.update_manager.versions import UNKNOWN

__all__ = ["ReleaseUpdater"]

RELEASE_INFO = "release_info.json"


def _inside_git_repo(path: str) -> str | None:
    """The nearest parent folder (home excluded) holding a ``.git``."""
    home = os.path.realpath(os.path.expanduser("~"))
    current = os.path.realpath(path)
    while True:
        if os.path.exists(os.path.join(current, ".git")) and current != home:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class ReleaseUpdater(AppUpdater):
    """Common to the release-asset types; subclasses say how an asset is installed."""

    channels: ClassVar[tuple[str, ...]] = ("stable", "beta")
    keeps_files: ClassVar[bool] = True

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        self._configure_path(must_exist=False)
        self.repo = options.get("repo").strip().strip("/")
        if self.repo.count("/") != 1:
            raise options.error(f"Option 'repo' must be 'owner/name', got '{self.repo}'")
        self.owner, self.project_name = self.repo.split("/", 1)
        self.configured_repo = self.repo
        self.persistent_files: list[str] = []
        if self.keeps_files:
            self.persistent_files = [p.strip("/") for p in options.getlist("persistent_files", [])]
            for item in self.persistent_files:
                if item in (".version", RELEASE_INFO) or not item or ".." in item.split("/"):
                    raise options.error(f"Invalid value for option 'persistent_files': '{item}' can not be persistent.")
        self.asset_name: str | None = None
        self.version = UNKNOWN
        self.remote_version = UNKNOWN
        self.rollback_version = UNKNOWN
        self.rollback_repo = UNKNOWN
        self.last_error = ""
        self.dl_info: tuple[str, str, int] = (UNKNOWN, UNKNOWN, 0)
        self.prerelease = False
        self.warnings: list[str] = []
        self.anomalies: list[str] = []

    # configuration and state ------------------------------------------------------------

    def _after_virtualenv(self) -> None:
        """A virtualenv inside the folder is kept across updates."""
        if self.virtualenv is not None:
            venv = os.path.realpath(self.virtualenv)
            if venv.startswith(self.path + os.sep):
                relative = os.path.relpath(venv, self.path)
                if relative not in self.persistent_files:
                    self.persistent_files.append(relative)

    async def initialize(self, stored: dict[str, Any]) -> None:
        await super().initialize(stored)
        await self._validate()
        if self.version == UNKNOWN:
            self.version = stored.get("version", UNKNOWN)
        self.remote_version = stored.get("remote_version", UNKNOWN)
        self.rollback_version = stored.get("rollback_version", self.version)
        self.rollback_repo = stored.get("rollback_repo", self.repo if self.is_valid else UNKNOWN)
        self.last_error = stored.get("last_error", "")
        info = stored.get("dl_info", [UNKNOWN, UNKNOWN, 0])
        self.dl_info = (str(info[0]), str(info[1]), int(info[2])) if isinstance(info, list) and len(info) == 3 else self.dl_info

    def persistent(self) -> dict[str, Any]:
        return {
            **super().persistent(),
            "version": self.version,
            "remote_version": self.remote_version,
            "rollback_version": self.rollback_version,
            "rollback_repo": self.rollback_repo,
            "dl_info": list(self.dl_info),
            "last_error": self.last_error,
        }

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            {
                "name": self.name,
                "repo_name": self.project_name,
                "owner": self.owner,
                "version": self.version,
                "remote_version": self.remote_version,
                "rollback_version": self.rollback_version,
                "last_error": self.last_error,
                "warnings": list(self.warnings),
                "anomalies": list(self.anomalies) if self.report_anomalies else [],
            }
        )
        return status

    def _read_release_info(self) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.path, RELEASE_INFO), encoding="utf-8") as f:
                data = jsonutil.loads(f.read())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _validate_sync(self) -> None:
        self.is_valid = False
        self.warnings, self.anomalies = [], []
        repo_parent = _inside_git_repo(self.path)
        if not os.access(self.path if os.path.exists(self.path) else os.path.dirname(self.path), os.W_OK):
            self.warnings.append(f"Location at option 'path: {self.path}' is not writable.")
        elif not os.path.isdir(self.path):
            self.warnings.append(f"Location at option 'path: {self.path}' is not a directory.")
        elif repo_parent is not None:
            self.warnings.append(
                f"Location at option 'path: {self.path}' is within a git repo. Found .git folder at "
                f"'{os.path.join(repo_parent, '.git')}'"
            )
        else:
            info = self._read_release_info()
            if info is not None and all(isinstance(info.get(k), str) for k in ("project_name", "project_owner", "version")):
                self.is_valid = True
                self.version = info["version"]
                self.asset_name = info.get("asset_name") if isinstance(info.get("asset_name"), str) else None
                detected = f"{info['project_owner']}/{info['project_name']}"
                if detected.lower() != self.configured_repo.lower():
                    self.anomalies.append(
                        f"Value at option 'repo: {self.configured_repo}' does not match detected repo '{detected}', "
                        "falling back to detected version."
                    )
                    self.repo = detected
                    self.owner, self.project_name = info["project_owner"], info["project_name"]
                self._check_install()
            else:
                self._fallback_version()
        if not self.is_valid:
            self.warnings.append("Failed to validate installation")

    def _check_install(self) -> None:
        """Type-specific checks of a valid release_info.json."""

    def _fallback_version(self) -> None:
        """Type-specific ways to recognize an install without release_info.json."""

    async def _validate(self) -> None:
        await threads.deferToThread(self._validate_sync)

    # refresh ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        try:
            await self._validate()
            await self._read_remote()
        except ServerError as exc:
            self.log.info("{name}: refresh failed: {error}", name=self.name, error=exc.message)
        self.save()

    async def _fetch_release(self, repo: str | None = None, tag: str | None = None) -> dict[str, Any]:
        repo = repo or self.repo
        if tag is not None:
            resource = f"repos/{repo}/releases/tags/{tag}"
        elif self.channel == "stable":
            resource = f"repos/{repo}/releases/latest"
        else:
            resource = f"repos/{repo}/releases?per_page=1"
        try:
            release = await self.manager.github.api(resource)
        except GitHubError as exc:
            self.last_error = exc.message
            raise
        self.last_error = ""
        if isinstance(release, list):
            release = release[0] if release else {}
        return release if isinstance(release, dict) else {}

    def _pick_asset(self, release: dict[str, Any]) -> tuple[str, str, int]:
        assets = [a for a in release.get("assets") or [] if isinstance(a, dict)]
        wanted = self.asset_name or f"{self.name}.zip"
        chosen = next((a for a in assets if a.get("name") == wanted), None)
        if chosen is None and self.asset_name is None and assets:
            chosen = assets[0]
        if chosen is None:
            return (UNKNOWN, UNKNOWN, 0)
        return (str(chosen.get("browser_download_url", UNKNOWN)), str(chosen.get("content_type", UNKNOWN)), int(chosen.get("size", 0) or 0))

    async def _read_remote(self) -> None:
        if not self.is_valid:
            self.log.info("{name}: invalid installation, not checking for a release", name=self.name)
            return
        release = await self._fetch_release()
        if not release:
            return
        self.remote_version = str(release.get("tag_name") or release.get("name") or UNKNOWN)
        self.dl_info = self._pick_asset(release)
        self.prerelease = bool(release.get("prerelease", False))

    # update -----------------------------------------------------------------------------

    async def update(self) -> bool:
        if not self.is_valid:
            raise ServerError(f"{self.name}: Invalid install detected, aborting update", 400)
        if self.remote_version == UNKNOWN:
            await self._read_remote()
            if self.remote_version == UNKNOWN:
                raise ServerError(f"{self.name}: Unable to locate update", 400)
        if self.version == self.remote_version:
            return False
        await self._install(self.dl_info, self.remote_version, "Updating...")
        self.notify("Update Finished...", complete=True)
        return True

    async def rollback(self) -> bool:
        if UNKNOWN in (self.rollback_version, self.rollback_repo):
            raise ServerError("Incomplete Rollback Data", 400)
        if self.rollback_version == self.version:
            self.notify("Rollback not performed", complete=True)
            return False
        release = await self._fetch_release(self.rollback_repo, self.rollback_version)
        if not release:
            raise ServerError("Failed to retrieve release asset data", 400)
        await self._install(self._pick_asset(release), self.rollback_version, "Rolling Back...", rollback=True)
        self.notify("Rollback Complete", complete=True)
        return True

    def _progress(self, received: int, total: int) -> None:
        self.notify(f"Downloading {self.name}: {received // 1024} KiB / {total // 1024} KiB [{received * 100 // total}%]")

    async def _install(self, dl_info: tuple[str, str, int], new_version: str, start: str, rollback: bool = False) -> None:
        url, _content_type, size = dl_info
        if url == UNKNOWN:
            raise ServerError(f"{self.name}: Invalid download url", 400)
        self.notify(start)
        self.notify("Downloading Release...")
        before = await self.collect_dependencies()
        workdir = await threads.deferToThread(tempfile.mkdtemp, prefix=f"moontwist-{self.name}-")
        previous = self.version
        try:
            download = os.path.join(workdir, self.asset_name or f"{self.name}.zip")
            await self.manager.github.download(url, download, size, self._progress)
            self.notify(f"Download Complete, extracting release to '{self.path}'")
            try:
                await threads.deferToThread(self._deploy, download, workdir, new_version)
            except (ArchiveError, OSError) as exc:
                raise ServerError(f"{self.name}: {exc}; the installed version {previous} is unchanged", 400) from None
            try:
                await self.update_dependencies(before)
            except Exception:
                self.notify(f"Dependencies failed, restoring {previous}")
                await threads.deferToThread(self._restore, workdir)
                raise
        finally:
            await threads.deferToThread(shutil.rmtree, workdir, True)
        self.version = new_version
        await self._validate()
        if self.is_valid and not rollback:
            self.rollback_version, self.rollback_repo = previous, self.repo
        self.save(refreshed=False)
        await self.restart_services()

    def _deploy(self, download: str, workdir: str, version: str) -> None:
        """Install the downloaded asset (blocking); the old files go to ``workdir/previous``."""
        staged = os.path.join(workdir, "staged")
        backup = os.path.join(workdir, "previous")
        os.makedirs(staged)
        os.makedirs(backup)
        extract_zip(download, staged)
        replace_contents(self.path, staged, backup, self.persistent_files)

    def _restore(self, workdir: str) -> None:
        backup = os.path.join(workdir, "previous")
        if not os.path.isdir(backup):
            return
        for entry in os.listdir(self.path):
            full = os.path.join(self.path, entry)
            shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
        for entry in os.listdir(backup):
            shutil.move(os.path.join(backup, entry), os.path.join(self.path, entry))
