"""The farm's own plugin: ``farm.printers``, the fleet page, and every instance's events relayed."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from moontwist.api.registry import APIRequest, Endpoint
from moontwist.hookspecs import hookimpl

if TYPE_CHECKING:
    from moontwist.farm.instances import Instance
    from moontwist.server import Server

__all__ = ["FleetPlugin"]

HTML_TYPE = b"text/html; charset=utf-8"


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
        """Broadcast one instance's notification as ``notify_farm_event``."""
        server = self.server
        if server is not None and server.running:
            server.notify("notify_farm_event", {"printer": printer, "method": method, "params": params})

    def printers(self, request: APIRequest) -> dict[str, Any]:
        return {"printers": [instance.describe() for instance in self.instances]}

    def page(self, request: APIRequest) -> bytes:
        if self._page is None:
            self._page = resources.files("moontwist.farm").joinpath("page.html").read_bytes()
        request.http_request.setHeader(b"content-type", HTML_TYPE)
        return self._page
