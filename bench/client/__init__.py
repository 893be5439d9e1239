"""Load-generating clients shared by the suites: HTTP/1.1 keep-alive and websocket JSON-RPC."""

from bench.client.http import build_request, http_load
from bench.client.ws import ws_connect, ws_rpc_load

__all__ = ["build_request", "http_load", "ws_connect", "ws_rpc_load"]
