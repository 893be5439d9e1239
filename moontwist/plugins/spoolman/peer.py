"""The connection to one Spoolman server: its REST API through treq and its websocket for live changes.

The websocket (``/api/v1/spool``) is what "connected" means, as in Moonraker:
it reconnects by itself, and every REST call has a timeout, so a Spoolman
that is down, hangs or answers garbage becomes a clear error, never a stall.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool

from moontwist import jsonutil
from moontwist.api.errors import ServerError
from moontwist.http_fetch import BodyTooLarge, read_body

__all__ = ["SpoolmanPeer", "Response", "parse_server_url"]

REQUEST_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
MAX_RESPONSE = 32 * 1024 * 1024


def parse_server_url(url: str) -> tuple[str, str]:
    """(REST base ``http(s)://host/api``, websocket URL) from ``[spoolman] server``; ValueError if unusable."""
    match = re.match(r"(?i:(?P<scheme>https?)://)?(?P<host>[^/?#\s]+)(?P<path>/[^?#\s]*)?$", url.strip())
    if match is None:
        raise ValueError(f"{url!r} is not a URL like http://host:7912")
    scheme = (match["scheme"] or "http").lower()
    base = f"{match['host']}{(match['path'] or '').rstrip('/')}"
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{scheme}://{base}/api", f"{ws_scheme}://{base}/api/v1/spool"


@dataclass
class Response:
    """A Spoolman answer: status, decoded JSON (None when the body isn't JSON) and headers."""

    status: int
    data: Any
    headers: dict[str, str]
    valid_json: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.valid_json

    def error_message(self) -> str:
        if not self.valid_json:
            return f"Spoolman answered HTTP {self.status} with a body that is not JSON"
        if isinstance(self.data, dict):
            if isinstance(self.data.get("message"), str):
                return self.data["message"]
            if "detail" in self.data:
                return f"Invalid request: {jsonutil.dumps(self.data['detail'])}"
        return f"Spoolman answered HTTP {self.status}"


class _SpoolmanSocket(WebSocketClientProtocol):
    spoolman: SpoolmanPeer  # not "peer": Autobahn uses that name

    def onOpen(self) -> None:  # noqa: N802 - Autobahn API
        self.spoolman._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        if not isBinary:
            self.spoolman._message(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        self.spoolman._closed(self, code, reason)


class SpoolmanPeer:
    """REST calls and the live websocket to Spoolman; ``on_*`` callbacks report what happens."""

    def __init__(
        self,
        reactor: Any,
        server_url: str,
        on_connected: Callable[[bool], None],
        on_event: Callable[[dict[str, Any]], None],
        log: Logger,
    ) -> None:
        self.reactor = reactor
        self.log = log
        self.base_url, self.ws_url = parse_server_url(server_url)
        self.on_connected = on_connected
        self.on_event = on_event
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 4
        self.request_timeout = REQUEST_TIMEOUT
        self.reconnect_delay = 2.0
        self.connected = False
        self._socket: _SpoolmanSocket | None = None
        self._running = False
        self._retry: Any = None
        self._attempt: Deferred | None = None
        self._last_error: str | None = None

    # websocket --------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self) -> Deferred:
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        if self._socket is not None:
            self._socket.sendClose(1000, "moontwist shutting down")
            self._socket.dropConnection(abort=True)
        return self.pool.closeCachedConnections()

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        parts = urlsplit(self.ws_url)
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        factory = WebSocketClientFactory(self.ws_url)
        factory.protocol = type("SpoolmanSocket", (_SpoolmanSocket,), {"spoolman": self})
        factory.setProtocolOptions(autoPingInterval=20, autoPingTimeout=10, openHandshakeTimeout=CONNECT_TIMEOUT,
                                   closeHandshakeTimeout=2, maxMessagePayloadSize=MAX_RESPONSE)
        endpoint: Any = HostnameEndpoint(self.reactor, parts.hostname or "", port, timeout=CONNECT_TIMEOUT)
        if secure:
            from twisted.internet.ssl import (
                optionsForClientTLS,  # pyOpenSSL: loaded only when needed
            )

            endpoint = wrapClientTLS(optionsForClientTLS(parts.hostname or ""), endpoint)
        self._attempt = connectProtocol(endpoint, factory.buildProtocol(None))
        self._attempt.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        self._attempt = None
        if failure.check(CancelledError):
            return
        self._note_error(f"Cannot connect to Spoolman at {self.ws_url}: {failure.getErrorMessage()}")
        self._schedule()

    def _note_error(self, message: str) -> None:
        if message != self._last_error:  # one log line per distinct failure, not one per retry
            self.log.info("{message}", message=message)
            self._last_error = message

    def _schedule(self) -> None:
        if self._running and (self._retry is None or not self._retry.active()):
            self._retry = self.reactor.callLater(self.reconnect_delay, self._connect)

    def _opened(self, socket: _SpoolmanSocket) -> None:
        self._attempt = None
        self._socket = socket
        self._last_error = None
        self.connected = True
        self.log.info("Connected to Spoolman at {url}", url=self.ws_url)
        self.on_connected(True)

    def _closed(self, socket: _SpoolmanSocket, code: int | None, reason: str | None) -> None:
        self._attempt = None
        if socket is not self._socket:  # a handshake that never opened
            self._note_error(f"Spoolman refused the websocket at {self.ws_url}: {code} {reason or ''}".strip())
            self._schedule()
            return
        self._socket = None
        self.connected = False
        self.log.info("Spoolman disconnected: {code} {reason}", code=code, reason=reason or "")
        self.on_connected(False)
        self._schedule()

    def _message(self, payload: bytes) -> None:
        try:
            event = jsonutil.loads(payload)
        except ValueError:
            self.log.info("Spoolman sent a websocket message that is not JSON; ignored")
            return
        if isinstance(event, dict):
            self.on_event(event)

    # REST -------------------------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None, query: str | None = None) -> Response:
        """``method`` ``/api{path}``; raises ServerError 504 on a timeout, 502 when Spoolman can't be reached."""
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        def timed_out(result: Any, timeout: float) -> None:
            raise ServerError(f"Spoolman did not answer {method} {path} within {timeout:g} s", 504)

        d = Deferred.fromCoroutine(self._exchange(method, url, body))
        d.addTimeout(self.request_timeout, self.reactor, onTimeoutCancel=timed_out)  # headers and body together
        try:
            status, headers, raw = await d
        except ServerError:
            raise
        except Exception as exc:
            raise ServerError(f"Spoolman is not reachable ({method} {path}): {exc}", 502) from None
        try:
            data, valid = (jsonutil.loads(raw), True) if raw else (None, True)
        except ValueError:
            data, valid = None, False
        return Response(status, data, headers, valid)

    async def _exchange(self, method: str, url: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        kwargs: dict[str, Any] = {"pool": self.pool, "reactor": self.reactor}
        if body is not None:
            kwargs["data"] = jsonutil.dumpb(body)
            kwargs["headers"] = {b"Content-Type": [b"application/json"]}
        resp = await treq.request(method, url, unbuffered=True, **kwargs)
        try:
            raw = await read_body(resp, MAX_RESPONSE)
        except BodyTooLarge:
            raise ServerError(f"Spoolman's answer is too large (more than {MAX_RESPONSE} bytes)", 502) from None
        headers = {k.decode("latin-1"): b", ".join(v).decode("latin-1") for k, v in resp.headers.getAllRawHeaders()}
        return resp.code, headers, raw
