"""Loads built-in and pip-installed plugins and calls their hooks one plugin at a time."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.python.failure import Failure

from moontwist import hookspecs
from moontwist.config import ConfigError

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["PluginManager", "BUILTIN_PLUGINS", "BUILTIN_SECTIONS", "ENTRY_POINT_GROUP", "DISABLE_ENV"]

ENTRY_POINT_GROUP = "moontwist"
DISABLE_ENV = "MOONTWIST_DISABLE_PLUGINS"

# "name": "module:attribute" - names are Moonraker's component names, which
# frontends look for in server.info's "components".
BUILTIN_PLUGINS: dict[str, str] = {
    "server": "moontwist.plugins.server_info:ServerPlugin",
    "database": "moontwist.plugins.database:DatabasePlugin",
    "authorization": "moontwist.plugins.authorization:AuthorizationPlugin",
    "klippy_apis": "moontwist.plugins.klippy_apis:KlippyAPIsPlugin",
    "data_store": "moontwist.plugins.data_store:DataStorePlugin",
    "machine": "moontwist.plugins.machine:MachinePlugin",
    "proc_stats": "moontwist.plugins.proc_stats:ProcStatsPlugin",
    "file_manager": "moontwist.plugins.files:FileManagerPlugin",
    "history": "moontwist.plugins.history:HistoryPlugin",
    "job_queue": "moontwist.plugins.job_queue:JobQueuePlugin",
    "webcam": "moontwist.plugins.webcams:WebcamPlugin",
    "announcements": "moontwist.plugins.announcements:AnnouncementsPlugin",
    "update_manager": "moontwist.plugins.update_manager:UpdateManagerPlugin",
    # mqtt before power and sensor: their devices use its client
    "mqtt": "moontwist.plugins.mqtt:MQTTPlugin",
    "power": "moontwist.plugins.power:PowerPlugin",
    "sensor": "moontwist.plugins.sensors:SensorsPlugin",
    "extensions": "moontwist.plugins.extensions:ExtensionsPlugin",
    "octoprint_compat": "moontwist.plugins.octoprint_compat:OctoPrintPlugin",
    "notifier": "moontwist.plugins.notifier:NotifierPlugin",
    "spoolman": "moontwist.plugins.spoolman:SpoolmanPlugin",
}

# Optional built-ins and the config sections that load them (``[X]`` or ``[X NAME]``), checked
# before their module is imported: an unconfigured feature costs no memory. The plugin classes
# declare the same (``optional``, ``section``, ``section_prefixes``).
BUILTIN_SECTIONS: dict[str, tuple[str, ...]] = {
    "update_manager": ("update_manager",),
    "mqtt": ("mqtt",),
    "power": ("power", "power_group"),
    "sensor": ("sensor",),
    "octoprint_compat": ("octoprint_compat",),
    "notifier": ("notifier",),
    "spoolman": ("spoolman",),
}


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def _call(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
    """Call one implementation with just the arguments it declares, as pluggy would."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def _instantiate(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


class PluginManager:
    """The plugins of one server start: which loaded, which failed, and hook calls."""

    def __init__(self, server: Server, builtins: dict[str, str] | None = None, use_entry_points: bool = True) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.pm = pluggy.PluginManager("moontwist")
        self.pm.add_hookspecs(hookspecs)
        self.builtins = BUILTIN_PLUGINS if builtins is None else builtins
        self.use_entry_points = use_entry_points
        self.failed: dict[str, str] = {}
        self.disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        # Plugins whose ``startup`` has completed: only their endpoints answer.
        self.started: set[str] = set()
        # Every plugin ever registered this start, failed ones included: all are shut down.
        self._shutdown_impls: list[pluggy.HookImpl] = []

    # loading ------------------------------------------------------------------------

    def load(self, extra: dict[str, Any] | None = None) -> None:
        """Import and register every built-in, the ``extra`` objects, then every entry-point plugin."""
        config = self.server.config
        for name, target in self.builtins.items():
            sections = BUILTIN_SECTIONS.get(name)
            if sections is not None and not any(
                config.has_section(s) or any(n.startswith(s + " ") for n in config.sections()) for s in sections
            ):
                continue
            self._register(name, lambda target=target: _load(target))
        for name, plugin in (extra or {}).items():
            self._register(name, lambda plugin=plugin: plugin)
        if self.use_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in self.builtins:
                    self._fail(ep.name, f"name clashes with a built-in plugin ({ep.value})")
                    continue
                self._register(ep.name, ep.load)
        self._shutdown_impls = list(self._impls("shutdown"))

    def _register(self, name: str, loader: Callable[[], Any]) -> None:
        if name in self.disabled:
            self.log.info("Plugin {name} disabled by {env}", name=name, env=DISABLE_ENV)
            return
        try:
            plugin = _instantiate(loader())
            if getattr(plugin, "optional", False) and not self._configured(plugin, name):
                return
            self.pm.register(plugin, name=name)
        except Exception:
            self._fail(name, Failure())

    def _configured(self, plugin: Any, name: str) -> bool:
        """Whether an optional plugin's ``[section]`` or a ``[section NAME]`` exists (or one of its
        ``section_prefixes``, e.g. power's ``power_group ``)."""
        config = self.server.config
        section = getattr(plugin, "section", name)
        prefixes = (section + " ", *getattr(plugin, "section_prefixes", ()))
        return config.has_section(section) or any(s.startswith(prefixes) for s in config.sections())

    def register(self, plugin: Any, name: str) -> None:
        """Register a plugin object at run time (tests, embedding)."""
        self.pm.register(plugin, name=name)

    def _fail(self, name: str, why: Failure | str) -> None:
        if isinstance(why, Failure):
            self.log.failure("Plugin {name} failed to load", why, name=name)
            message = f"{why.type.__name__}: {why.getErrorMessage()}"
        else:
            self.log.error("Plugin {name} failed to load: {why}", name=name, why=why)
            message = why
        self.failed[name] = message
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        for endpoint in list(self.server.registry):
            if endpoint.plugin == name:
                self.server.registry.remove(endpoint.method)

    def is_started(self, name: str) -> bool:
        """Whether ``name``'s endpoints may answer (its startup completed and no stop began)."""
        return name in self.started or (not name and self.server.running)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    # calling ------------------------------------------------------------------------

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """Implementations in load order (``tryfirst`` ones first, ``trylast`` ones last)."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()  # pluggy keeps registration order
        rank = {id(impl): (0 if impl.tryfirst else 2 if impl.trylast else 1, i) for i, impl in enumerate(impls)}
        return sorted(impls, key=lambda impl: rank[id(impl)])

    def call_each(self, hook: str, *, fatal: bool = False, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation separately; a raising plugin is marked failed.

        With ``fatal`` (loading hooks), a ``ConfigError`` propagates so start-up stops.
        """
        results = []
        for impl in list(self._impls(hook)):
            try:
                results.append((impl.plugin_name, _call(impl, kwargs)))
            except ConfigError:
                if fatal:
                    raise
                self._fail(impl.plugin_name, Failure())
            except Exception:
                if fatal:
                    self._fail(impl.plugin_name, Failure())
                else:
                    self.log.failure("Plugin {name} raised in hook {hook}", name=impl.plugin_name, hook=hook)
        return results

    def call_registration(self, hook: str, make_register: Callable[[str], Callable[..., Any]], **kwargs: Any) -> None:
        """Call a registration hook with a ``register`` callable bound to each plugin's name."""
        for impl in list(self._impls(hook)):
            try:
                _call(impl, {**kwargs, "register": make_register(impl.plugin_name)})
            except Exception:
                self._fail(impl.plugin_name, Failure())

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Deliver an event to every plugin; errors are logged, never propagated."""
        for impl in self._impls(hook):
            try:
                _call(impl, kwargs)
            except Exception:
                self.log.failure("Plugin {name} raised handling {hook}", name=impl.plugin_name, hook=hook)

    @inlineCallbacks
    def start_all(self, **kwargs: Any) -> Any:
        """Call ``startup`` plugin by plugin in load order, waiting for each returned Deferred.

        Built-ins go first, so the database is open before the plugins that use
        it start.  A plugin without ``startup`` counts as started at once; a
        plugin that fails is marked failed (and still shut down by ``stop_all``).
        """
        impls = list(self._impls("startup"))
        with_startup = {impl.plugin_name for impl in impls}
        self.started.update(name for name in self.names if name not in with_startup)
        for impl in impls:
            if impl.plugin_name in self.failed:
                continue
            self.log.debug("Starting plugin {name}", name=impl.plugin_name)
            try:
                yield maybeDeferred(_call, impl, kwargs)
            except Exception:
                self._fail(impl.plugin_name, Failure())
            else:
                self.started.add(impl.plugin_name)

    @inlineCallbacks
    def stop_all(self, **kwargs: Any) -> Any:
        """Call ``shutdown`` in reverse load order, failed plugins included; errors are logged."""
        self.started.clear()
        impls, self._shutdown_impls = self._shutdown_impls, []
        for impl in reversed(impls):
            try:
                yield maybeDeferred(_call, impl, kwargs)
            except Exception:
                self.log.failure("Plugin {name} failed in shutdown", Failure(), name=impl.plugin_name)
