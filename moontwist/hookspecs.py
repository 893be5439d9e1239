"""Every hook a moontwist plugin can implement, grouped by when it is called.

Plugins are objects (a module, or an instance of a class, made once per
server start) with functions named like these and marked with ``hookimpl``.
Each plugin's implementation is called on its own: one that raises is logged
and listed in ``failed_components`` without stopping the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from moontwist.api.connection import Connection
    from moontwist.config import Config
    from moontwist.server import Server

hookspec = pluggy.HookspecMarker("moontwist")
hookimpl = pluggy.HookimplMarker("moontwist")


# --- loading: called once per start (and again after server.restart) ---------------


@hookspec(historic=True)
def configure(server: Server, config: Config) -> None:
    """Read this plugin's config sections with the typed getters and set up state.

    Raise ``ConfigError`` for a bad value: start-up stops with its message.
    Any other exception marks the plugin as failed.
    """


@hookspec
def register_endpoints(server: Server, register: Callable[..., Any]) -> None:
    """Declare API endpoints: ``register(Endpoint(...))``, once each.

    Endpoints registered later through ``server.registry.add`` appear on
    every transport too.
    """


@hookspec
def register_metadata_parsers(server: Server, register: Callable[[Any], None]) -> None:
    """Offer G-code metadata parsers for slicers moontwist doesn't know."""


@hookspec
def register_remote_methods(server: Server, register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Let Klipper macros call ``register(name, callback)``'s callback.

    A macro's ``{action_call_remote_method("name", key=value)}`` calls
    ``callback(key=value)`` on the reactor; moontwist registers exactly these
    names with Klippy each time it connects.  A callback may return a Deferred.
    """


@hookspec
def register_history_fields(server: Server, register: Callable[[Any], None]) -> None:
    """Add per-job values to print history: ``register(HistoryField(...))``.

    Called by the history plugin at start-up.  Each field appears in every
    job's ``auxiliary_data`` (unless its value is None) and, when it asks to,
    in ``auxiliary_totals`` (see ``moontwist.history_fields``).
    """


@hookspec
def register_power_device_types(server: Server, register: Callable[[str, Any], None]) -> None:
    """Offer power device types: ``register("type_name", DeviceClass)``.

    Called by the power plugin before it reads its ``[power NAME]`` sections.
    """


@hookspec
def register_update_types(server: Server, register: Callable[[str, Any], None]) -> None:
    """Offer update manager deploy types: ``register("type_name", UpdaterClass)``.

    Called by the update manager before it reads its ``[update_manager NAME]`` sections.
    """


# --- lifecycle ------------------------------------------------------------------------


@hookspec
def startup(server: Server) -> Any:
    """Start working; may return a Deferred, which the server waits for."""


@hookspec
def shutdown(server: Server) -> Any:
    """Stop working (server exit or restart); may return a Deferred."""


# --- events -----------------------------------------------------------------------


@hookspec
def klippy_state_changed(server: Server, state: str, message: str) -> None:
    """Klippy went to ``state`` (disconnected, startup, ready, shutdown, error)."""


@hookspec
def status_update(server: Server, status: dict[str, Any], eventtime: float) -> None:
    """Klippy pushed changed printer object fields."""


@hookspec
def gcode_response(server: Server, response: str) -> None:
    """Klippy printed a line of G-code output."""


@hookspec
def gcode_command(server: Server, script: str) -> None:
    """A client sent G-code through the API (``printer.gcode.script``, print start)."""


@hookspec
def print_requested(server: Server, filename: str, user: str | None) -> None:
    """A client asked to print ``filename`` (``user``: its username, None when unknown)."""


@hookspec
def connection_opened(server: Server, connection: Connection) -> None:
    """A websocket or unix socket client connected."""


@hookspec
def connection_identified(server: Server, connection: Connection) -> None:
    """A client identified itself (``server.connection.identify``); agents have type ``agent``."""


@hookspec
def connection_closed(server: Server, connection: Connection) -> None:
    """A websocket or unix socket client went away; drop what it owned."""


@hookspec
def notification(server: Server, method: str, params: list[Any] | None) -> None:
    """A notification was broadcast to the clients (MQTT and others can forward it)."""


@hookspec
def job_state_changed(server: Server, old: str, new: str, status: dict[str, Any]) -> None:
    """``print_stats.state`` changed (standby, printing, paused, complete, cancelled, error).

    A print that started (and maybe ended) between two status updates still
    arrives as ``old -> printing`` (then ``printing -> new``); see
    :mod:`moontwist.klippy.jobstate`.
    """


@hookspec
def file_changed(server: Server, action: str, item: dict[str, Any], source_item: dict[str, Any] | None) -> None:
    """A file or folder under a root was created, changed, moved or deleted."""
