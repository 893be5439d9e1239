"""HTTP for the network device types: where a device lives, and one client per server.

``address`` may carry a port (``host:port``, ``[v6addr]:port``) and a path
prefix (``host:8123/ha``) for every HTTP type; a ``port`` option gives the
port instead.  The client reads at most ``MAX_BODY`` bytes of an answer; the
device's own ``timeout`` limits each exchange as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

import treq
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from moontwist import jsonutil
from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver

__all__ = ["HTTPPeer", "HTTPResponse", "DeviceHTTP", "HTTPDriver", "MAX_BODY"]

MAX_BODY = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HTTPPeer:
    """Protocol, host, port and path prefix of one device (or bridge, or hub)."""

    protocol: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def from_section(
        cls, section: ConfigSection, default_port: int | None = None, default_protocol: str = "http",
        default_address: str | None = None,
    ) -> HTTPPeer:
        """From ``address`` (required unless ``default_address``), ``port`` and ``protocol``."""
        raw = section.get("address") if default_address is None else section.get("address", default_address)
        protocol = section.get("protocol", default_protocol).lower()
        if protocol not in _DEFAULT_PORTS:
            raise ConfigError(f"Config error in section [{section.name}], option 'protocol': {protocol!r} is not http or https")
        port_option = section.getint("port", None, minval=1, maxval=65535)

        def bad(why: str) -> ConfigError:
            return ConfigError(f"Config error in section [{section.name}], option 'address': {raw!r} {why}")

        text = raw.strip()
        if "://" in text:
            scheme, _, text = text.partition("://")
            if scheme.lower() not in _DEFAULT_PORTS:
                raise bad("has a scheme that is not http or https")
            protocol = scheme.lower()
        hostport, _, path = text.strip("/").partition("/")
        try:
            parts = urlsplit(f"//{hostport}")
            host, port = parts.hostname, parts.port
        except ValueError:
            raise bad("is not host, host:port or [address]:port") from None
        if not host or parts.username is not None:
            raise bad("is not host, host:port or [address]:port")
        if port is not None and port_option is not None and port != port_option:
            raise bad(f"names port {port} but option 'port' says {port_option}")
        port = port or port_option or default_port or _DEFAULT_PORTS[protocol]
        prefix = "/".join(quote(part) for part in path.split("/") if part)
        return cls(protocol, host, port, f"/{prefix}" if prefix else "")

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}{self.prefix}"

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        """``path`` (already quoted) below the prefix, with an encoded query."""
        url = self.base + "/" + path.lstrip("/")
        return f"{url}?{urlencode(query)}" if query else url


@dataclass
class HTTPResponse:
    """A complete answer: status, headers (lower-case names), body."""

    code: int
    headers: dict[str, str]
    body: bytes
    url: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return jsonutil.loads(self.body)
        except ValueError:
            raise DeviceError(f"answered {_where(self.url)} with something that is not JSON") from None

    def check(self) -> HTTPResponse:
        """Self, or DeviceError for an error status (401/403 say: credentials refused)."""
        if self.code in (401, 403):
            raise DeviceError(f"refused the credentials (HTTP {self.code} from {_where(self.url)})")
        if self.code >= 400:
            raise DeviceError(f"answered HTTP {self.code} from {_where(self.url)}")
        return self


def _where(url: str) -> str:
    """A URL without its query string (it may hold a password)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class DeviceHTTP:
    """The HTTP client of one power plugin: no connection reuse (small devices handle it badly)."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = HTTPClient(Agent(reactor, pool=self.pool))

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        auth: tuple[str, str] | None = None,
    ) -> HTTPResponse:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if json is not None:
            kwargs["json"] = json
        elif data is not None:
            kwargs["data"] = data.encode() if isinstance(data, str) else data
        if auth is not None:
            kwargs["auth"] = auth
        try:
            response = await self.client.request(method, url, **kwargs)
        except DeviceError:
            raise
        except Exception as exc:
            raise DeviceError(f"unreachable at {_where(url)}: {_reason(exc)}") from None
        chunks: list[bytes] = []
        size = [0]

        def collect(chunk: bytes) -> None:
            size[0] += len(chunk)
            if size[0] > MAX_BODY:
                raise DeviceError(f"answered {_where(url)} with more than {MAX_BODY} bytes")
            chunks.append(chunk)

        try:
            await treq.collect(response, collect)
        except DeviceError:
            raise
        except Exception as exc:
            if size[0] > MAX_BODY:
                raise DeviceError(f"answered {_where(url)} with more than {MAX_BODY} bytes") from None
            raise DeviceError(f"broke off its answer from {_where(url)}: {_reason(exc)}") from None
        headers_out = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
        }
        return HTTPResponse(response.code, headers_out, b"".join(chunks), url)

    def close(self) -> Any:
        return self.pool.closeCachedConnections()


def _reason(exc: BaseException) -> str:
    reasons = getattr(exc, "reasons", None)  # ResponseFailed & co wrap Failures
    if reasons:
        return "; ".join(r.getErrorMessage() or r.type.__name__ for r in reasons)
    return str(exc) or type(exc).__name__


class HTTPDriver(PowerDriver):
    """Base of the HTTP device types: ``address`` (``host:port`` works), ``port``, ``protocol``,
    and, when ``credentials`` is set, the ``user``/``password`` templates."""

    default_port: ClassVar[int | None] = None
    default_protocol: ClassVar[str] = "http"
    default_address: ClassVar[str | None] = None
    credentials: ClassVar[bool] = True
    default_user: ClassVar[str] = ""
    default_password: ClassVar[str] = ""

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        self.peer = HTTPPeer.from_section(section, self.default_port, self.default_protocol, self.default_address)
        self.user = self.password = ""
        if self.credentials:
            self.user = device.templates.rendered(section, "user", self.default_user) or ""
            self.password = device.templates.rendered(section, "password", self.default_password) or ""

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.user and self.password else None

    async def http(self, method: str, path: str, query: dict[str, Any] | None = None, **kwargs: Any) -> HTTPResponse:
        return await self.device.http.request(method, self.peer.url(path, query), **kwargs)

    async def get_json(self, path: str, query: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return (await self.http("GET", path, query, **kwargs)).check().json()
