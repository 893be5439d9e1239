"""The update manager: Moonraker's ``machine.update.*`` API over every deploy type.

Endpoints (HTTP and JSON-RPC)::

    GET  /machine/update/status     machine.update.status     every updater's state (refresh: deprecated)
    POST /machine/update/refresh    machine.update.refresh    refresh one updater or all
    POST /machine/update/upgrade    machine.update.upgrade    update one (name) or everything
    POST /machine/update/full       machine.update.full       system, extensions, Klipper, moontwist
    POST /machine/update/moonraker  machine.update.moonraker  moontwist itself
    POST /machine/update/klipper    machine.update.klipper    Klipper
    POST /machine/update/client     machine.update.client     one extension (name) or everything
    POST /machine/update/system     machine.update.system     system packages
    POST /machine/update/recover    machine.update.recover    reset (soft) or re-clone (hard) a git repo
    POST /machine/update/rollback   machine.update.rollback   back to the version before the last update

Notifications: ``notify_update_response`` (``{message, application, proc_id, complete}``,
streamed while an operation runs, ``complete`` only on its last message) and
``notify_update_refreshed`` (the status object) after a refresh.

One operation at a time: a second one is refused (503) while one runs, and every
update, recovery, rollback and refresh is refused while a print runs or is paused.
State is kept in the reserved database namespace ``update_manager``.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredLock

import moontwist
from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config, ConfigError
from moontwist.hookspecs import hookimpl
from moontwist.plugins.database import DatabaseNamespace
from moontwist.plugins.update_manager import process
from moontwist.plugins.update_manager.base import Updater, UpdaterOptions
from moontwist.plugins.update_manager.dependencies import DistroInfo
from moontwist.plugins.update_manager.executable import ExecutableUpdater
from moontwist.plugins.update_manager.git_repo import GitRepoUpdater
from moontwist.plugins.update_manager.github import DEFAULT_API_URL, GitHubClient
from moontwist.plugins.update_manager.python import PythonUpdater
from moontwist.plugins.update_manager.system import PROVIDER_CHOICES, SystemUpdater
from moontwist.plugins.update_manager.web import WebUpdater
from moontwist.plugins.update_manager.zip import ZipUpdater

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["UpdateManagerPlugin"]

NAMESPACE = "update_manager"
SECTION_PREFIX = "update_manager "
REFRESH_SPAM_WINDOW = 60.0
KLIPPY_RECONNECT_TIMEOUT = 120.0
KLIPPER_ORIGIN = "https://github.com/Klipper3d/klipper.git"
BUILTIN_TYPES: dict[str, type[Updater]] = {
    "git_repo": GitRepoUpdater,
    "web": WebUpdater,
    "zip": ZipUpdater,
    "executable": ExecutableUpdater,
    "python": PythonUpdater,
}
# Options of [update_manager klipper] / [update_manager moonraker] besides their built-in defaults.
OVERRIDES = ("channel", "pinned_commit", "refresh_interval", "report_anomalies")


def source_root() -> str:
    """The folder this moontwist was imported from (a git checkout, or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(moontwist.__file__)))


def _is_git_checkout(path: str) -> bool:
    return os.path.exists(os.path.join(path, ".git"))


class UpdateManagerPlugin:
    """``[update_manager]``: updaters by name, one operation at a time, timed refreshes."""

    optional = True
    section = "update_manager"
    # How often the automatic refresh looks whether a refresh is due (Moonraker: hourly).
    AUTO_REFRESH_CHECK = 3600.0
    PRINTING_RETRY = 60.0

    server: Server

    # configuration -------------------------------------------------------------------

    @hookimpl
    def register_update_types(self, register: Callable[[str, Any], None]) -> None:
        for name, cls in BUILTIN_TYPES.items():
            register(name, cls)

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.reactor = server.reactor
        section = config.section("update_manager")
        self.auto_refresh = section.getboolean("enable_auto_refresh", False)
        self.refresh_window = self._parse_window(section.get("refresh_window", "0-5"))
        self.refresh_interval = section.getint("refresh_interval", 672, minval=1) * 3600.0
        enable_system = section.getboolean("enable_system_updates", True)
        packagekit = section.getboolean("enable_packagekit", True)
        provider = section.get("system_provider", "auto", choices=PROVIDER_CHOICES)
        channel = section.get("channel", None, choices=("stable", "beta", "dev"))
        self.debug = bool(server.options.debug) or section.getboolean("enable_repo_debug", False)
        self.fetch_timeout = section.getfloat("fetch_timeout", 120.0, above=0.0)
        self.fetch_attempts = 3
        self.lock_wait = 60.0
        api_url = section.get("github_api_url", DEFAULT_API_URL)
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"[update_manager] github_api_url must be an http(s) URL, got {api_url!r}")
        for removed in ("client_repo", "client_path"):
            if section.get(removed, None) is not None:
                raise ConfigError(
                    f"[update_manager] the deprecated '{removed}' option has been removed: configure "
                    "clients in [update_manager NAME] sections"
                )
        self.github = GitHubClient(self.reactor, api_url)
        self.distro = DistroInfo.detect()
        self.types: dict[str, type[Updater]] = {}
        plugins = server.plugins
        assert plugins is not None
        plugins.call_registration("register_update_types", self._type_registrar, server=server)

        self.updaters: dict[str, Updater] = {}
        if enable_system:
            self.updaters["system"] = SystemUpdater(self, "system", provider if not (provider == "auto" and not packagekit) else "apt")
        self.updaters["moonraker"] = self._builtin_updater(config, "moonraker", self._moontwist_defaults(channel))
        self.updaters["klipper"] = self._builtin_updater(config, "klipper", self._klipper_defaults(config, channel))
        for name in config.sections():
            if not name.startswith(SECTION_PREFIX):
                continue
            app = name[len(SECTION_PREFIX):].strip()
            if app.startswith("client "):
                app = app[len("client "):].strip()
            if app in ("klipper", "moonraker"):
                continue
            if app in self.updaters:
                config.extra_warnings.append(f"[update_manager]: Extension {app} already added")
                continue
            options = UpdaterOptions(config.section(name))
            try:
                kind = options.get("type")
                cls = self.types.get(kind)
                if cls is None or kind == "system":
                    config.extra_warnings.append(f"Invalid type '{kind}' for section [{name}]")
                    continue
                self.updaters[app] = self._make(cls, app, options)
            except (ConfigError, ValueError) as exc:
                config.extra_warnings.append(f"[update_manager]: Failed to load extension {app}: {exc}")

        self.lock = DeferredLock()
        self.proc_ids = itertools.count(int(time.time() * 1000) % 1_000_000_000)
        self.current_app: str | None = None
        self.proc_id: int | None = None
        self.full_update = False
        self.full_complete = False
        self.pending_restarts: set[str] = set()
        self.step = ""
        self.initial_refresh_complete = False
        self.timer: Any = None
        self.running = False
        self.klippy_waiters: list[Deferred] = []
        self.clock: Callable[[], float] = time.time
        db = server.lookup("database")
        if db is None:
            raise RuntimeError("the database plugin is not loaded")
        db.reserve_namespace(NAMESPACE, owner="update_manager")
        self.store_ns = DatabaseNamespace(db, NAMESPACE)

    def _type_registrar(self, plugin: str) -> Callable[[str, Any], None]:
        def register(name: str, cls: Any) -> None:
            if name in self.types:
                raise ValueError(f"Update type '{name}' is already registered")
            self.types[name] = cls

        return register

    @staticmethod
    def _parse_window(text: str) -> tuple[int, int]:
        try:
            start, end = (int(part) for part in text.split("-"))
        except ValueError:
            raise ConfigError(f"[update_manager] refresh_window: expected 'START-END' hours, got {text!r}") from None
        if not (0 <= start <= 23 and 0 <= end <= 23):
            raise ConfigError("The hours specified in 'refresh_window' must be between 0 and 23.")
        if start == end:
            raise ConfigError("The start and end hours specified in 'refresh_window' cannot be the same.")
        return start, end

    def _make(self, cls: type[Updater], name: str, options: UpdaterOptions) -> Updater:
        updater = cls(self, name, options)
        updater.finish_config()
        return updater

    def _builtin_updater(self, config: Config, name: str, defaults: dict[str, Any] | None) -> Updater:
        section = config.section(SECTION_PREFIX + name)
        if defaults is None and "path" not in section:
            for option in OVERRIDES:
                section.get(option, None)
            return Updater(self, name)
        options = UpdaterOptions(section, defaults or {})
        kind = options.get("type", "git_repo")
        cls = self.types.get(kind)
        if cls is None or kind == "system":
            raise ConfigError(f"[{section.name}] invalid type '{kind}'")
        try:
            return self._make(cls, name, options)
        except ConfigError as exc:
            config.extra_warnings.append(f"[update_manager]: {name} updates are not available: {exc}")
            return Updater(self, name)

    def _moontwist_defaults(self, channel: str | None) -> dict[str, Any] | None:
        root = source_root()
        defaults: dict[str, Any] = {"managed_services": ["moonraker"]}
        if channel:
            defaults["channel"] = channel
        if _is_git_checkout(root):
            return {**defaults, "type": "git_repo", "path": root, "primary_branch": "main"}
        if sys.prefix != sys.base_prefix:
            return {**defaults, "type": "python", "virtualenv": sys.prefix, "project_name": "moontwist"}
        return None

    def _klipper_defaults(self, config: Config, channel: str | None) -> dict[str, Any] | None:
        path = os.path.expanduser(config.section("file_manager").get("klipper_path", "~/klipper"))
        defaults: dict[str, Any] = {
            "type": "git_repo",
            "path": path,
            "origin": KLIPPER_ORIGIN,
            "moved_origin": "https://github.com/kevinoconnor/klipper.git",
            "requirements": "scripts/klippy-requirements.txt",
            "install_script": "scripts/install-octopi.sh",
            "managed_services": ["klipper"],
        }
        if channel:
            defaults["channel"] = channel
        env = os.path.expanduser("~/klippy-env")
        if os.path.isfile(os.path.join(env, "bin", "activate")):
            defaults["virtualenv"] = env
        if not _is_git_checkout(path) and "path" not in config.section(SECTION_PREFIX + "klipper"):
            return None
        return defaults

    # lifecycle --------------------------------------------------------------------------

    @hookimpl
    def startup(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._startup())

    async def _startup(self) -> None:
        stored = await self.store_ns.get(None, {})
        stored = stored if isinstance(stored, dict) else {}
        for key in list(stored):
            if key not in self.updaters:
                self.log.info("Removing stale update_manager data: {key}", key=key)
                self.store_ns.delete(key)
        machine = self.server.lookup("machine_provider")
        for name, updater in self.updaters.items():
            data = stored.get(name)
            await updater.initialize(data if isinstance(data, dict) else {})
            services = getattr(updater, "managed_services", [])
            if machine is not None and name in services and not machine.allowed.is_allowed(name):
                self.server.config.extra_warnings.append(
                    f"[update_manager {name}]: moontwist is not permitted to restart service '{name}'.  To enable "
                    f"management of this service add {name} to the bottom of the file "
                    f"{self.server.path('moonraker.asvc')}.  To disable management for this service set "
                    "'is_system_service: False' in the configuration for this section."
                )
                services.remove(name)
        self.running = True
        self.timer = self.reactor.callLater(0, self._auto_refresh)

    @hookimpl
    def shutdown(self, server: Server) -> Deferred:
        return Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        self.running = False
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        for waiter in self.klippy_waiters:
            if not waiter.called:
                waiter.callback(False)
        for updater in self.updaters.values():
            await updater.close()
        await self.github.close()

    @hookimpl
    def klippy_state_changed(self, state: str) -> None:
        if state == "ready":
            waiters, self.klippy_waiters = self.klippy_waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(True)

    # automatic refresh ----------------------------------------------------------------

    def within_window(self) -> bool:
        hour = time.localtime(self.clock()).tm_hour
        start, end = self.refresh_window
        if start < end:
            return start <= hour < end
        return hour >= start or hour < end

    def _schedule(self, delay: float) -> None:
        if self.running and (self.auto_refresh or not self.initial_refresh_complete):
            self.timer = self.reactor.callLater(delay, self._auto_refresh)

    def _auto_refresh(self) -> Deferred:
        return Deferred.fromCoroutine(self._auto_refresh_once())

    async def _auto_refresh_once(self) -> None:
        if not self.running:
            return
        if self.server.printing:
            self.log.info("Klippy is printing, update refresh postponed")
            self._schedule(self.AUTO_REFRESH_CHECK if self.initial_refresh_complete else self.PRINTING_RETRY)
            return
        if self.initial_refresh_complete and not self.within_window():
            self._schedule(self.AUTO_REFRESH_CHECK)
            return
        if self.lock.locked or self.current_app is not None:
            self._schedule(self.PRINTING_RETRY)
            return
        refreshed = False
        await self.lock.acquire()
        try:
            for updater in list(self.updaters.values()):
                if self.server.printing:
                    break
                if updater.needs_refresh(self.clock()):
                    await updater.refresh()
                    refreshed = True
        except Exception:
            self.log.failure("Unable to refresh update status")
        finally:
            self.initial_refresh_complete = True
            self.lock.release()
        if refreshed:
            self.notify_refreshed()
        self._schedule(self.AUTO_REFRESH_CHECK)

    # the Manager interface used by updaters ----------------------------------------------

    def notify(self, message: str, complete: bool = False) -> None:
        """``notify_update_response`` for the operation under way (nothing during a refresh)."""
        if self.current_app is None:
            self.log.debug("update_manager: {message}", message=message)
            return
        if self.full_update:
            complete = complete and self.full_complete
        self.server.notify(
            "notify_update_response",
            {"message": message.strip(), "application": self.current_app, "proc_id": self.proc_id, "complete": complete},
        )

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
        on_line: Callable[[str], None] | None = None,
    ) -> process.ProcessResult:
        def line(text: str) -> None:
            if notify:
                self.notify(text)
            if on_line is not None:
                on_line(text)

        def retry(exc: process.ProcessError) -> None:
            self.notify(f"{exc.message}; retrying")

        return await process.run(
            argv, reactor=self.reactor, cwd=cwd, env=env, timeout=timeout, inactivity=inactivity,
            attempts=attempts, on_line=line, on_retry=retry,
        )

    async def install_packages(self, packages: list[str]) -> None:
        system = self.updaters.get("system")
        if not isinstance(system, SystemUpdater):
            self.notify(f"System updates are disabled, not installing {' '.join(packages)}")
            return
        await system.install_packages(packages)

    async def restart_service(self, service: str, owner: str) -> None:
        if self.full_update and service != owner:
            self.notify(f"Service {service} restart postponed...")
            self.pending_restarts.add(service)
            return
        self.pending_restarts.discard(service)
        provider = self.server.lookup("machine_provider")
        if provider is None:
            self.notify(f"Unable to restart service {service}: no system provider")
            return
        unit = provider.self_unit if service == "moonraker" else service
        self.notify(f"Restarting service {unit}...")
        try:
            await provider.restart(unit)
        except ServerError as exc:
            self.notify(f"Unable to restart service {unit}: {exc.message}")

    def store(self, name: str, data: dict[str, Any]) -> None:
        d = self.store_ns.insert(name, data)
        d.addErrback(lambda f: self.log.failure("Unable to store update state of {name}", f, name=name))

    # status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            **self.github.stats(),
            "version_info": {name: updater.status() for name, updater in self.updaters.items()},
            "busy": self.current_app is not None,
        }

    def notify_refreshed(self, delay: float = 0.2) -> None:
        """``notify_update_refreshed`` with the status as it is now, shortly after the reply."""
        status = self.status()

        def send() -> None:
            if self.running:
                self.server.notify("notify_update_refreshed", status)

        self.reactor.callLater(delay, send)

    # endpoints --------------------------------------------------------------------------

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        post = ("POST",)
        name = Arg("name", nullable=True, description="The updater's name (default: all)")
        required = Arg("name", required=True, description="The updater's name")
        register(Endpoint("machine.update.status", self.handle_status, "/machine/update/status",
                          args=(Arg("refresh", "bool", False, description="Deprecated: refresh first"),),
                          description="Update state of every configured updater"))
        register(Endpoint("machine.update.refresh", self.handle_refresh, "/machine/update/refresh", post,
                          args=(name,), description="Refresh one updater (name) or all"))
        for kind, desc in (
            ("upgrade", "Update one application (name) or everything"),
            ("client", "Deprecated: update one client (name) or everything"),
        ):
            register(Endpoint(f"machine.update.{kind}", self.handle_update, f"/machine/update/{kind}", post,
                              args=(name,), description=desc))
        for kind, desc in (
            ("moonraker", "Deprecated: update moontwist"),
            ("klipper", "Deprecated: update Klipper"),
            ("system", "Deprecated: update system packages"),
        ):
            register(Endpoint(f"machine.update.{kind}", self.handle_update, f"/machine/update/{kind}", post,
                              description=desc))
        register(Endpoint("machine.update.full", self.handle_full, "/machine/update/full", post,
                          description="Deprecated: update system packages, extensions, Klipper and moontwist"))
        register(Endpoint("machine.update.recover", self.handle_recover, "/machine/update/recover", post,
                          args=(required, Arg("hard", "bool", False, description="Re-clone instead of reset"),
                                Arg("update_deps", "bool", False, description="Reinstall every dependency")),
                          description="Recover a damaged or modified git repo"))
        register(Endpoint("machine.update.rollback", self.handle_rollback, "/machine/update/rollback", post,
                          args=(required,), description="Return to the version before the last update"))

    def _not_found(self, request: APIRequest, name: str) -> ServerError:
        # Moonraker answers a JSON-RPC request for an unknown updater with -32601
        return ServerError(f"Updater {name} not available", 404 if request.transport == "http" else -32601)

    def _refuse(self, app: str, message: str, status: int) -> ServerError:
        """An error reply that also appears in ``notify_update_response`` (when nothing else runs)."""
        if self.current_app is None:
            self.server.notify(
                "notify_update_response",
                {"message": message, "application": app, "proc_id": next(self.proc_ids), "complete": True},
            )
        return ServerError(message, status)

    def _busy(self) -> bool:
        return self.current_app is not None or self.lock.locked

    async def handle_status(self, request: APIRequest) -> dict[str, Any]:
        refresh = request.args["refresh"]
        if refresh and (self._busy() or self.server.printing or not self.initial_refresh_complete):
            self.log.info("update_manager: bypassing refresh request")
            refresh = False
        if refresh:
            latest = max((u.last_refresh_time for u in self.updaters.values()), default=0.0)
            if time.time() < latest + REFRESH_SPAM_WINDOW:
                refresh = False
        if not refresh:
            return self.status()
        await self.lock.acquire()
        try:
            for updater in list(self.updaters.values()):
                await updater.refresh()
        finally:
            self.lock.release()
        self.notify_refreshed()
        return self.status()

    async def handle_refresh(self, request: APIRequest) -> dict[str, Any]:
        name = request.args["name"]
        if name is not None and name not in self.updaters:
            raise self._not_found(request, name)
        if self._busy() or self.server.printing or not self.initial_refresh_complete:
            raise ServerError("Server is busy, cannot perform refresh", 503)
        await self.lock.acquire()
        try:
            for updater_name, updater in list(self.updaters.items()):
                if name is None or updater_name == name:
                    await updater.refresh()
        finally:
            self.lock.release()
        self.notify_refreshed()
        return self.status()

    def _begin(self, app: str, full: bool = False) -> None:
        self.current_app = app
        self.proc_id = next(self.proc_ids)
        self.full_update = full
        self.full_complete = not full
        self.pending_restarts.clear()

    def _end(self) -> None:
        self.current_app = self.proc_id = None
        self.full_update = self.full_complete = False
        self.pending_restarts.clear()

    async def _exclusive(
        self, app: str, action: Callable[[], Any], error_prefix: str | Callable[[], str], full: bool = False
    ) -> str:
        """Run one operation under the lock with ``app`` as the notifications' application."""
        if self._busy():
            current = self.current_app or "a refresh"
            raise ServerError(f"Update Refused: {current} is in progress" if current != app
                              else f"Item {app} is currently updating", 503)
        await self.lock.acquire()
        self._begin(app, full)
        try:
            await action()
        except Exception as exc:
            self.full_complete = True
            message = exc.message if isinstance(exc, ServerError) else f"{exc.__class__.__name__}: {exc}"
            prefix = error_prefix() if callable(error_prefix) else error_prefix
            self.notify(f"{prefix}: {message}", complete=True)
            if isinstance(exc, ServerError):
                raise
            self.log.failure("Update of {app} failed", app=app)
            raise ServerError(message, 500) from None
        finally:
            self._end()
            self.lock.release()
            self.notify_refreshed()
        return "ok"

    async def handle_update(self, request: APIRequest) -> str:
        kind = request.endpoint.method.rsplit(".", 1)[1]
        app = kind
        if kind in ("upgrade", "client"):
            if request.args.get("name") is None:
                return await self.handle_full(request)
            app = request.args["name"]
        if self.server.printing:
            raise self._refuse(app, "Update Refused: Klippy is printing", 503)
        updater = self.updaters.get(app)
        if updater is None:
            raise self._not_found(request, app)

        async def action() -> None:
            if not await updater.update():
                self.notify(f"{app} is already up to date", complete=True)

        return await self._exclusive(app, action, f"Error updating {app}")

    async def handle_full(self, request: APIRequest) -> str:
        if self.server.printing:
            raise self._refuse("full", "Update Refused: Klippy is printing", 503)
        return await self._exclusive("full", self._full_update, lambda: f"Error updating {self.step}", full=True)

    async def _full_update(self) -> None:
        self.notify("Preparing full software update...")
        order = [n for n in ("system",) if n in self.updaters]
        order += [n for n in self.updaters if n not in ("system", "klipper", "moonraker")]
        for name in order:
            self.step = name
            await self.updaters[name].update()
        self.step = "klipper"
        klipper = self.updaters["klipper"]
        restarted = await klipper.update()
        if "klipper" in self.pending_restarts:
            await self.restart_service("klipper", "klipper")
            restarted = True
        if restarted and self.server.klippy is not None:
            self.notify("Waiting for Klippy to reconnect (this may take up to 2 minutes)...")
            waiter: Deferred = Deferred()
            self.klippy_waiters.append(waiter)
            timeout = self.reactor.callLater(KLIPPY_RECONNECT_TIMEOUT, lambda: waiter.called or waiter.callback(False))
            ok = await waiter
            if timeout.active():
                timeout.cancel()
            self.notify("Klippy Reconnected" if ok else "Klippy reconnect timed out...")
        self.step = "moonraker"
        moontwist_updater = self.updaters["moonraker"]
        await moontwist_updater.update()
        if "moonraker" in self.pending_restarts:
            await self.restart_service("moonraker", "moonraker")
        self.full_complete = True
        self.notify("Full Update Complete", complete=True)

    async def handle_recover(self, request: APIRequest) -> str:
        app = request.args["name"]
        if self.server.printing:
            raise self._refuse(f"recover_{app}", "Recovery Attempt Refused: Klippy is printing", 400)
        updater = self.updaters.get(app)
        if updater is None:
            raise self._not_found(request, app)
        if not isinstance(updater, GitRepoUpdater):
            raise ServerError(f"Updater {app} is not a Git Repo Type", 400)
        hard = request.args["hard"]
        return await self._exclusive(f"recover_{app}", lambda: updater.recover(hard), f"Error Recovering {app}")

    async def handle_rollback(self, request: APIRequest) -> str:
        app = request.args["name"]
        if self.server.printing:
            raise self._refuse(f"rollback_{app}", "Rollback Attempt Refused: Klippy is printing", 400)
        updater = self.updaters.get(app)
        if updater is None:
            raise self._not_found(request, app)
        return await self._exclusive(f"rollback_{app}", updater.rollback, f"Error Rolling Back {app}")
