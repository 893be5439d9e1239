"""Agents: clients that identify as ``agent`` extend the API (``server.extensions.*``, ``connection.*``).

An agent (moonraker-obico, OctoEverywhere...) connects over the websocket or the
unix socket and identifies with ``type: agent``.  Other clients list agents and
call the methods they serve (``server.extensions.request``, relayed as a
JSON-RPC request to the agent); an agent broadcasts ``notify_agent_event`` with
``connection.send_event`` and lets Klipper macros reach it with
``connection.register_remote_method``.  An agent that leaves fails the
requests still waiting for it at once, and its remote methods go with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError

from moontwist import jsonutil
from moontwist.api.args import Arg
from moontwist.api.connection import Connection
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config
from moontwist.hookspecs import hookimpl

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["ExtensionsPlugin"]

PERSISTENT = frozenset({"websocket", "unix"})
RESERVED_EVENTS = ("connected", "disconnected")


def agent_info(conn: Connection) -> dict[str, Any]:
    return {"name": conn.client_name, "version": conn.client_version, "type": conn.client_type, "url": conn.client_url}


class ExtensionsPlugin:
    """Moonraker's ``extensions`` component."""

    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.timeout = config.section("extensions").getfloat("agent_timeout", 60.0, above=0.0)
        # remote methods each agent registered, by connection id
        self.methods: dict[int, list[str]] = {}

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        register(Endpoint("server.extensions.list", self.list_agents, "/server/extensions/list",
                          description="Connected agents"))
        register(
            Endpoint(
                "server.extensions.request",
                self.request,
                "/server/extensions/request",
                ("POST",),
                args=(
                    Arg("agent", required=True, description="Name of the connected agent"),
                    Arg("method", required=True, description="The agent's method to call"),
                    Arg("arguments", "any", nullable=True,
                        description="Positional (array) or keyword (object) arguments; null sends none"),
                ),
                description="Call a method an agent serves; answers with the agent's result",
            )
        )
        register(
            Endpoint(
                "connection.send_event",
                self.send_event,
                transports=PERSISTENT,
                args=(
                    Arg("event", required=True, description="Event name (not 'connected' or 'disconnected')"),
                    Arg("data", "any", description="Any JSON value sent with the event"),
                ),
                description="Agents only: broadcast notify_agent_event to the other clients",
            )
        )
        register(
            Endpoint(
                "connection.register_remote_method",
                self.register_remote_method,
                transports=PERSISTENT,
                args=(Arg("method_name", required=True, description="Name Klipper macros call"),),
                description="Agents only: receive action_call_remote_method calls from Klipper",
            )
        )

    # events --------------------------------------------------------------------------

    @hookimpl
    def connection_identified(self, connection: Connection) -> None:
        if connection.client_type == "agent":
            self.log.info("Agent {name} connected", name=connection.client_name)
            self._agent_event(connection, {"agent": connection.client_name, "event": "connected",
                                           "data": agent_info(connection)})

    @hookimpl
    def connection_closed(self, connection: Connection) -> None:
        if connection.client_type != "agent" or not connection.identified:
            return
        for name in self.methods.pop(connection.connection_id, []):
            self.server.remote_methods.pop(name, None)
        if self.server.connections.agent(connection.client_name or "") is None:
            self.log.info("Agent {name} disconnected", name=connection.client_name)
            self._agent_event(connection, {"agent": connection.client_name, "event": "disconnected"})

    def _agent_event(self, sender: Connection, event: dict[str, Any]) -> None:
        """``notify_agent_event`` to every client but the agent itself (as Moonraker)."""
        data = jsonutil.dumpb({"jsonrpc": "2.0", "method": "notify_agent_event", "params": [event]})
        self.server.connections.broadcast(data, exclude=sender)
        self.server.emit("notification", method="notify_agent_event", params=[event])

    # handlers ------------------------------------------------------------------------

    def list_agents(self, request: APIRequest) -> dict[str, Any]:
        agents = [agent_info(c) for c in self.server.connections if c.client_type == "agent" and c.identified]
        return {"agents": agents}

    async def request(self, request: APIRequest) -> Any:
        name, method, arguments = request.args["agent"], request.args["method"], request.args["arguments"]
        if arguments is not None and not isinstance(arguments, (list, dict)):
            raise ServerError("Invalid argument 'arguments': expected an array, an object or null", 400)
        conn = self.server.connections.agent(name)
        if conn is None:
            raise ServerError(f"Agent '{name}' is not connected", 404)
        d = conn.call_method(method, arguments)
        timer = self.server.reactor.callLater(self.timeout, d.cancel)
        try:
            return await d
        except CancelledError:
            raise ServerError(f"Agent '{name}' did not answer '{method}' within {self.timeout:g} s", 504) from None
        finally:
            if timer.active():
                timer.cancel()

    def _agent(self, request: APIRequest, what: str) -> Connection:
        conn = request.connection
        if conn is None or conn.client_type != "agent":
            raise ServerError(f"Only connections identified as 'agent' can {what}", 403)
        return conn

    def send_event(self, request: APIRequest) -> str:
        conn = self._agent(request, "send events")
        event = request.args["event"]
        if event in RESERVED_EVENTS:
            raise ServerError(f"Invalid argument 'event': '{event}' is reserved", 400)
        payload: dict[str, Any] = {"agent": conn.client_name, "event": event}
        if request.args.get("data") is not None:
            payload["data"] = request.args["data"]
        self._agent_event(conn, payload)
        return "ok"

    def register_remote_method(self, request: APIRequest) -> str:
        conn = self._agent(request, "register remote methods")
        name = request.args["method_name"]
        if not name.strip():
            raise ServerError("Invalid argument 'method_name': it is empty", 400)
        if name in self.server.remote_methods:
            raise ServerError(f"Remote method '{name}' is already registered", 409)
        klippy = self.server.klippy
        if klippy is None:
            raise ServerError("Klippy connection is not available", 503)

        def call_agent(**params: Any) -> None:
            data: dict[str, Any] = {"jsonrpc": "2.0", "method": name}
            if params:
                data["params"] = params
            conn.send_bytes(jsonutil.dumpb(data))

        klippy.register_remote_method(name, call_agent)
        self.methods.setdefault(conn.connection_id, []).append(name)
        return "ok"
