"""The farm's own plugin: ``farm.printers``, the fleet page, and every instance's events relayed."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from moontwist import jsonutil
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.hookspecs import hookimpl
from moontwist.plugins.authorization.users import TRUSTED_USER

if TYPE_CHECKING:
    from moontwist.farm.instances import Instance
    from moontwist.server import Server

__all__ = ["FleetPlugin", "may_see"]

HTML_TYPE = b"text/html; charset=utf-8"


def may_see(instance: Instance, user: dict[str, Any] | None, ip: str | None) -> bool:
    """Whether a fleet client sees ``instance``'s state and events.

    Credentials of the fleet server (its API key, its users) are the farm
    operator's and see every instance. A client the fleet trusts by its address
    sees an instance only if that instance trusts the address too: a printer
    whose ``[authorization]`` trusts nobody stays private on the fleet view. An
    instance that failed to start shows only its name, paths and error.
    """
    if user is None:
        return False
    if user.get("username") != TRUSTED_USER:
        return True
    if instance.error is not None:
        return True
    trusted = instance.server.lookup("trusted_user") if instance.server is not None else None
    return trusted is not None and trusted(ip) is not None


class FleetPlugin:
    """Serves the fleet view of ``instances`` on the farm server."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.server: Server | None = None
        self._page: bytes | None = None

    @hookimpl
    def configure(self, server: Server) -> None:
        self.server = server

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        register(Endpoint("farm.printers", self.printers, "/farm/printers", description="Every printer of this farm"))
        register(
            Endpoint(
                "farm.page",
                self.page,
                "/",
                transports=frozenset({"http"}),
                description="The fleet page (HTML)",
            )
        )

    def relay(self, printer: str, method: str, params: Any) -> None:
        """Send one instance's notification as ``notify_farm_event`` to every client that may see it."""
        server = self.server
        if server is None or not server.running:
            return
        instance = next((i for i in self.instances if i.name == printer), None)
        if instance is None:
            return
        event = {"printer": printer, "method": method, "params": params}
        data = jsonutil.dumpb({"jsonrpc": "2.0", "method": "notify_farm_event", "params": [event]})
        server.connections.broadcast(data, only=lambda conn: may_see(instance, conn.user, conn.ip))
        server.emit("notification", method="notify_farm_event", params=[event])

    def printers(self, request: APIRequest) -> dict[str, Any]:
        return {"printers": [i.describe() for i in self.instances if may_see(i, request.user, request.ip)]}

    def page(self, request: APIRequest) -> bytes:
        if self._page is None:
            self._page = resources.files("moontwist.farm").joinpath("page.html").read_bytes()
        request.http_request.setHeader(b"content-type", HTML_TYPE)
        return self._page
