"""The small HTML page served at ``/``: what a person opening the API's address in a browser sees."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from html import escape

__all__ = ["LandingInfo", "render_landing_page"]


@dataclass
class LandingInfo:
    """What the page shows; every text is escaped when rendered."""

    version: str
    prefix: str
    remote_ip: str | None
    authorized: bool
    klippy_state: str
    klippy_message: str
    websocket_count: int
    warnings: list[str] = field(default_factory=list)
    sudo_messages: list[str] = field(default_factory=list)
    hostname: str = field(default_factory=socket.gethostname)


def _items(title: str, lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f"<h2>{escape(title)}</h2><ul>{items}</ul>"


def render_landing_page(info: LandingInfo) -> bytes:
    """The page as UTF-8 HTML."""
    if info.authorized:
        access = "This device is authorized to use the API."
    else:
        access = (
            "This device is not authorized to use the API. That is expected when you log in or use an "
            "API key; otherwise add its address to trusted_clients in the [authorization] section of the config."
        )
    if info.klippy_state == "disconnected":
        klippy = "moontwist is not connected to Klipper: check that the klipper service runs and that its API socket is enabled."
    else:
        klippy = f"Klipper reports: {info.klippy_message.strip() or info.klippy_state}"
    rows = [
        ("Version", info.version),
        ("Host", info.hostname),
        ("Your address", info.remote_ip or "unknown"),
        ("Websocket connections", str(info.websocket_count)),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    base = escape(info.prefix)
    body = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>moontwist</title><style>body{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em}"
        "th{text-align:left;padding-right:1em}</style></head><body>"
        "<h1>moontwist</h1><p>A Moonraker-compatible API server for Klipper. Open a web interface such as "
        "Mainsail or Fluidd to use the printer.</p>"
        f"<table>{table}</table><p>{escape(access)}</p><p>{escape(klippy)}</p>"
        + _items("Warnings", info.warnings)
        + _items("Waiting for sudo permission", info.sudo_messages)
        + f"<p><a href=\"{base}/server/info\">Server info</a> &middot; "
        f"<a href=\"{base}/server/openapi.json\">API description (OpenAPI)</a></p></body></html>"
    )
    return body.encode("utf-8")
