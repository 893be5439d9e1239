"""What every deploy type shares: options, channels, refresh bookkeeping, dependencies, services.

A deploy type is a subclass of :class:`Updater` registered under its ``type`` name
through the ``register_update_types`` hook.  The update manager builds one per
``[update_manager NAME]`` section with ``cls(manager, name, options)``, restores
its stored state with :meth:`Updater.initialize`, then calls :meth:`refresh`,
:meth:`update`, :meth:`recover` and :meth:`rollback`, one at a time.  Updaters
talk to the outside only through ``manager`` (see :class:`Manager`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from twisted.internet import threads

from moontwist.api.errors import ServerError
from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.update_manager import dependencies
from moontwist.plugins.update_manager.process import ProcessResult

if TYPE_CHECKING:
    from moontwist.plugins.update_manager.github import GitHubClient

__all__ = ["AppUpdater", "Manager", "Updater", "UpdaterOptions", "CHANNELS"]

CHANNELS = ("stable", "beta", "dev")
_MISSING: Any = object()


class Manager(Protocol):
    """What the update manager offers its updaters."""

    server: Any
    reactor: Any
    github: GitHubClient
    refresh_interval: float
    debug: bool
    distro: dependencies.DistroInfo

    def notify(self, message: str, complete: bool = False) -> None:
        """Send ``notify_update_response`` for the operation under way."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        inactivity: float | None = None,
        attempts: int = 1,
        notify: bool = True,
    ) -> ProcessResult:
        """Run a command, streaming its output lines into ``notify_update_response``."""

    async def install_packages(self, packages: list[str]) -> None:
        """Install system packages through the system updater's provider."""

    async def restart_service(self, service: str, owner: str) -> None:
        """Restart a managed service now, or after a full update when ``owner`` is not the service."""

    def store(self, name: str, data: dict[str, Any]) -> None:
        """Persist an updater's state."""


class UpdaterOptions:
    """An updater's section with built-in defaults (Klipper's and moontwist's sections).

    Records every value read so a changed configuration can be noticed (``digest``).
    """

    def __init__(self, section: ConfigSection, defaults: dict[str, Any] | None = None) -> None:
        self.section = section
        self.defaults = defaults or {}
        self.read: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.section.name

    def has(self, option: str) -> bool:
        return option in self.section or self.defaults.get(option) is not None

    def _get(self, getter: str, option: str, default: Any, **kwargs: Any) -> Any:
        if option in self.defaults:
            default = self.defaults[option]
        value = getattr(self.section, getter)(option, default, **kwargs)
        self.read[option] = value
        return value

    def get(self, option: str, default: Any = _MISSING, **kwargs: Any) -> Any:
        return self._get("get", option, self._required(default), **kwargs)

    def getint(self, option: str, default: Any = _MISSING, **kwargs: Any) -> Any:
        return self._get("getint", option, self._required(default), **kwargs)

    def getboolean(self, option: str, default: Any = _MISSING) -> Any:
        return self._get("getboolean", option, self._required(default))

    def getlist(self, option: str, default: Any = _MISSING, separator: str | None = "\n") -> Any:
        return self._get("getlist", option, self._required(default), separator=separator)

    def getdict(self, option: str, default: Any = _MISSING) -> Any:
        return self._get("getdict", option, self._required(default))

    @staticmethod
    def _required(default: Any) -> Any:
        from moontwist.config import REQUIRED

        return REQUIRED if default is _MISSING else default

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"[{self.name}]: {message}")

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(self.read.items(), key=lambda kv: kv[0])).encode()).hexdigest()


class Updater:
    """The base deploy type (also what reports ``{}`` for an application that isn't installed)."""

    type_name: ClassVar[str] = ""
    channels: ClassVar[tuple[str, ...]] = CHANNELS
    default_channel: ClassVar[str] = "stable"

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions | None = None) -> None:
        self.manager = manager
        self.server = manager.server
        self.log = self.server.logger(type(self).__module__)
        self.name = name
        self.options = options
        self.refresh_interval = manager.refresh_interval
        self.last_refresh_time = 0.0
        self.last_config_hash = ""
        self.config_hash = ""

    def finish_config(self) -> None:
        """Called once every option is read: fixes the configuration digest."""
        if self.options is not None:
            hours = self.options.getint("refresh_interval", None, minval=1)
            if hours is not None:
                self.refresh_interval = hours * 3600.0
            self.config_hash = self.options.digest()

    # state --------------------------------------------------------------------------

    async def initialize(self, stored: dict[str, Any]) -> None:
        """Restore what was stored at the last refresh."""
        self.last_refresh_time = float(stored.get("last_refresh_time", 0.0) or 0.0)
        self.last_config_hash = str(stored.get("last_config_hash", ""))

    def needs_refresh(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.config_hash != self.last_config_hash or now >= self.last_refresh_time + self.refresh_interval

    def persistent(self) -> dict[str, Any]:
        return {"last_config_hash": self.config_hash, "last_refresh_time": self.last_refresh_time}

    def save(self, refreshed: bool = True) -> None:
        if refreshed:
            self.last_refresh_time = time.time()
            self.last_config_hash = self.config_hash
        self.manager.store(self.name, self.persistent())

    # operations -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Find out what is installed and what is available."""

    async def update(self) -> bool:
        """Install what is available; False when there was nothing to do."""
        return False

    async def recover(self, hard: bool = False) -> None:
        raise ServerError(f"Updater {self.name} is not a Git Repo Type", 400)

    async def rollback(self) -> bool:
        raise ServerError(f"Rollback not available for {self.name}", 400)

    def status(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        """The server stops."""

    # messages -----------------------------------------------------------------------

    def notify(self, message: str, complete: bool = False) -> None:
        self.manager.notify(message, complete)


class AppUpdater(Updater):
    """An application on disk: a path, a channel, dependencies and services to restart."""

    prefix: ClassVar[str] = ""

    def __init__(self, manager: Manager, name: str, options: UpdaterOptions) -> None:
        super().__init__(manager, name, options)
        self.type = options.get("type", self.type_name)
        channel = options.get("channel", self.default_channel, choices=CHANNELS)
        self.channel_invalid = channel not in self.channels
        if self.channel_invalid:
            manager.server.config.extra_warnings.append(
                f"[{options.name}]: Invalid value '{channel}' for option 'channel'. Type '{self.type_name}' "
                f"supports the following channels: {list(self.channels)}.  Falling back to channel "
                f"'{self.default_channel}'"
            )
            channel = self.default_channel
        self.channel = channel
        self.report_anomalies = options.getboolean("report_anomalies", True)
        self.info_tags: list[str] = options.getlist("info_tags", [])
        self.is_valid = False
        self.path = ""
        self.virtualenv: str | None = None
        self.python: str | None = None
        self.pip_env: dict[str, str] = {}
        self.requirements: str | None = None
        self.system_deps: str | None = None
        self.install_script: str | None = None
        self.managed_services: list[str] = []

    # configuration helpers ------------------------------------------------------------

    def _configure_path(self, must_exist: bool = True) -> None:
        assert self.options is not None
        self.path = os.path.realpath(os.path.expanduser(self.options.get("path")))
        if must_exist and not os.path.exists(self.path):
            raise self.options.error(f"Invalid path for option 'path': Path '{self.path}' does not exist")

    def _check_file(self, option: str, path: str) -> str:
        assert self.options is not None
        if not os.path.isfile(path):
            raise self.options.error(f"Invalid path for option '{option}': Path '{path}' is not a file")
        return path

    def _configure_virtualenv(self) -> None:
        opts = self.options
        assert opts is not None
        venv = opts.get("virtualenv", None)
        env = opts.get("env", None)
        if venv is not None:
            venv = os.path.expanduser(venv)
            if not os.path.isabs(venv):
                venv = os.path.join(self.path, venv)
        elif env is not None:  # deprecated form: the venv's python executable
            python = os.path.expanduser(env)
            if not os.access(python, os.X_OK):
                raise opts.error(f"Invalid path for option 'env': Path '{python}' is not executable")
            venv = os.path.dirname(os.path.dirname(os.path.abspath(python)))
        if venv is not None:
            python = os.path.join(venv, "bin", "python")
            if not os.path.isfile(os.path.join(venv, "bin", "activate")) or not os.access(python, os.X_OK):
                raise opts.error(
                    f"Invalid virtualenv at path {venv}. Verify that the 'virtualenv' option is set "
                    "to a valid virtualenv path."
                )
            self.virtualenv = venv
            self.python = python
        self.pip_env = {k: v or "" for k, v in (opts.getdict("pip_environment_variables", {}) or {}).items()}
        opts.get("venv_args", None)

    def _configure_dependencies(self) -> None:
        opts = self.options
        assert opts is not None
        if self.python is not None:
            self.requirements = os.path.join(self.path, opts.get("requirements"))
        elif opts.has("requirements"):
            opts.get("requirements")
        deps = opts.get("system_dependencies", None)
        if deps is not None:
            self.system_deps = os.path.realpath(os.path.join(self.path, deps))
        script = opts.get("install_script", None)
        if script is not None and deps is None:
            self.install_script = os.path.realpath(os.path.join(self.path, script))
        opts.getboolean("enable_node_updates", False)

    def _configure_services(self) -> None:
        opts = self.options
        assert opts is not None
        default = [self.name] if opts.getboolean("is_system_service", True) else []
        services: list[str] = opts.getlist("managed_services", default, separator=None)
        choices = list(dict.fromkeys([self.name, "klipper", "moonraker"]))
        bad = [svc for svc in services if svc not in choices]
        if bad:
            self.server.config.extra_warnings.append(
                f"[{opts.name}]: Option 'managed_services: {' '.join(services)}' contains an invalid value "
                f"'{bad[0]}'.  All values must be one of the following choices: {choices}"
            )
        self.managed_services = [svc for svc in choices if svc in services]

    # dependencies -------------------------------------------------------------------

    def _read_system_packages(self) -> list[str]:
        if self.system_deps is not None:
            try:
                return dependencies.packages_from_json(dependencies.load_json_file(self.system_deps), self.manager.distro)
            except (OSError, ValueError):
                return []
        if self.install_script is not None:
            try:
                with open(self.install_script, encoding="utf-8") as f:
                    return dependencies.packages_from_install_script(f.read())
            except OSError:
                return []
        return []

    def _read_python_requirements(self) -> list[str]:
        if self.requirements is None:
            return []
        try:
            return dependencies.read_requirements(self.requirements)
        except OSError:
            return []

    def _dependency_snapshot(self) -> dict[str, Any]:
        return {"packages": self._read_system_packages(), "python": self._read_python_requirements()}

    async def collect_dependencies(self) -> dict[str, Any]:
        """System packages and Python requirements as they are now (before an update)."""
        return await threads.deferToThread(self._dependency_snapshot)

    async def update_dependencies(self, before: dict[str, Any], force: bool = False) -> None:
        """Install system packages and Python requirements that are new since ``before``."""
        after = await self.collect_dependencies()
        packages = after["packages"] if force else [p for p in after["packages"] if p not in before["packages"]]
        python_changed = force or set(after["python"]) != set(before["python"])
        if packages:
            self.notify("Installing system dependencies...")
            await self.manager.install_packages(packages)
        if python_changed and after["python"] and self.requirements is not None:
            await self.pip_install(["-r", self.requirements])

    def pip_command(self) -> list[str]:
        """pip for the virtualenv: its own, or this interpreter's pip aimed at it (``--python``)."""
        assert self.python is not None and self.virtualenv is not None
        if os.path.isfile(os.path.join(self.virtualenv, "bin", "pip")):
            return [self.python, "-m", "pip"]
        return [sys.executable, "-m", "pip", "--python", self.python]

    async def pip_install(self, args: list[str], timeout: float = 1200.0) -> None:
        self.notify("Updating python packages...")
        await self.manager.run(
            [*self.pip_command(), "install", "--disable-pip-version-check", *args],
            env=self.pip_env,
            timeout=timeout,
            inactivity=300.0,
        )

    async def restart_services(self) -> None:
        for service in self.managed_services:
            await self.manager.restart_service(service, self.name)

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "debug_enabled": self.manager.debug,
            "channel_invalid": self.channel_invalid,
            "is_valid": self.is_valid,
            "configured_type": self.type_name,
            "info_tags": list(self.info_tags),
        }

    def persistent(self) -> dict[str, Any]:
        return {**super().persistent(), "is_valid": self.is_valid}
