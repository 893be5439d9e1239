"""Authentication state and checks: users, API key, JWTs, oneshot tokens, trusted clients."""

from __future__ import annotations

import hmac
import socket
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread

from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest
from moontwist.config import ConfigSection
from moontwist.plugins.authorization import jwt
from moontwist.plugins.authorization.limits import LoginThrottle, OneshotTokens
from moontwist.plugins.authorization.policy import CorsPolicy, TrustedClients
from moontwist.plugins.authorization.users import (
    API_KEY_USER,
    RESERVED_USERS,
    TRUSTED_USER,
    User,
    UserStore,
)

__all__ = ["AuthManager", "API_KEY_USER", "TRUSTED_USER", "RESERVED_USERS"]

# Where builds before the API key moved to auth_users kept it; readable by clients.
LEGACY_NAMESPACE, LEGACY_KEY = "moonraker", "authorization"
JWT_LIFETIME = 3600.0
RESOLVE_INTERVAL = 300.0
# Local tools: the unix socket is guarded by file permissions, MQTT by its broker.
LOCAL_TRANSPORTS = frozenset({"unix", "mqtt"})
SOURCES = ("moonraker",)
# Transports of the access.* methods, as in Moonraker (not the unix socket or MQTT).
ACCESS_TRANSPORTS = frozenset({"http", "websocket", "jsonrpc_http"})
IDENTIFY = "server.connection.identify"


def _unauthorized(reason: str = "Unauthorized") -> ServerError:
    return ServerError(reason, 401)


_AUTH_HEADERS = (b"x-api-key", b"authorization", b"x-access-token", b"host")
_UNKNOWN = object()


class AuthManager:
    """Everything the authorization plugin knows; ``start`` loads it from the database.

    With ``open_access`` (no ``[authorization]`` section) every address is trusted.
    """

    def __init__(self, server: Any, section: ConfigSection, open_access: bool = False) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.open_access = open_access
        self.trusted = TrustedClients(section.getlist("trusted_clients", []))
        self.cors = CorsPolicy(section.getlist("cors_domains", []), self.trusted, (socket.gethostname(),))
        self.force_logins: bool = section.getboolean("force_logins", False)
        self.enable_api_key: bool = section.getboolean("enable_api_key", True)
        self.login_timeout: int = section.getint("login_timeout", 90, minval=1)
        max_attempts = section.getint("max_login_attempts", 10, minval=1)
        self.default_source: str = section.get("default_source", "moonraker").lower()
        if self.default_source not in SOURCES:  # e.g. Moonraker's "ldap": warn and fall back, as it does
            server.config.extra_warnings.append(
                f"[authorization]: option 'default_source': '{self.default_source}' is not available; "
                "using 'moonraker'"
            )
            self.default_source = "moonraker"
        for entry in self.trusted.invalid:
            server.config.extra_warnings.append(
                f"[authorization]: invalid entry '{entry}' in option 'trusted_clients' (ignored)"
            )
        for entry in self.cors.invalid:
            server.config.extra_warnings.append(
                f"[authorization]: unsafe or invalid domain '{entry}' in option 'cors_domains' (ignored)"
            )
        self.users: UserStore | None = None
        self.api_key: str | None = None
        self.oneshot = OneshotTokens(server.reactor)
        self.throttle = LoginThrottle(max_attempts, server.reactor)
        self.started_on = time.time()
        self._resolver: LoopingCall | None = None

    # lifecycle -----------------------------------------------------------------------

    async def start(self, db: Any) -> None:
        users = UserStore(db)
        await users.load()
        self.users = users
        key = await self._stored_api_key(db, users)
        if key is None:
            key = await self.new_api_key()
        self.api_key = key
        if self.trusted.hostnames:
            await deferToThread(self.trusted.resolve)
            self._resolver = LoopingCall(deferToThread, self.trusted.resolve)
            self._resolver.clock = self.server.reactor
            self._resolver.start(RESOLVE_INTERVAL, now=False)

    def stop(self) -> None:
        if self._resolver is not None and self._resolver.running:
            self._resolver.stop()
        self.users = None

    async def _stored_api_key(self, db: Any, users: UserStore) -> str | None:
        """The stored API key; one an earlier build left in a namespace is moved to the table.

        A key already in the table (e.g. imported from Moonraker since) wins.
        """
        key = await users.load_api_key()
        try:
            record = await db.get_item(LEGACY_NAMESPACE, LEGACY_KEY)
        except ServerError:
            return key
        if not isinstance(record, dict) or "api_key" not in record:
            return key
        legacy = record["api_key"]
        if key is None and isinstance(legacy, str) and legacy:
            await users.save_api_key(legacy)
            key = legacy
        only_key = set(record) == {"api_key"}
        await db.delete_item(LEGACY_NAMESPACE, LEGACY_KEY if only_key else [LEGACY_KEY, "api_key"])
        self.log.info(
            "API key removed from database namespace {namespace!r}; it is kept in table auth_users",
            namespace=LEGACY_NAMESPACE,
        )
        return key

    async def new_api_key(self) -> str:
        """Generate, store and use a new API key."""
        if self.users is None:
            raise ServerError("Authorization is not ready", 503)
        key = uuid.uuid4().hex
        await self.users.save_api_key(key)
        self.api_key = key
        return key

    # who is asking -------------------------------------------------------------------

    @property
    def login_required(self) -> bool:
        return self.force_logins and bool(self.users and self.users.users)

    def trusted_user(self, ip: str | None, host: str | None = None) -> dict[str, Any] | None:
        """The trusted pseudo-user for ``ip``, unless forced logins override trust.

        A browser request for a ``host`` that isn't local (see ``CorsPolicy.local_host``) is
        never trusted: that is a page whose name was rebound to this machine's address, run by
        a browser on the trusted network, reading what it isn't allowed to.
        """
        if self.login_required or not (self.open_access or self.trusted.is_trusted(ip)):
            return None
        if host is not None and not self.cors.local_host(host):
            return None
        return {"username": TRUSTED_USER, "source": "moonraker", "created_on": self.started_on}

    def is_trusted(self, request: APIRequest) -> bool:
        """``access.info``'s ``trusted``: the request comes from a trusted client (whatever force_logins says)."""
        user = request.user or {}
        return self.open_access or user.get("username") == TRUSTED_USER or self.trusted.is_trusted(request.ip)

    def check_api_key(self, key: str) -> dict[str, Any]:
        if not self.enable_api_key:
            raise _unauthorized("API key authentication is disabled")
        expected = self.api_key
        if expected is None or not _same(key, expected):
            raise _unauthorized("Invalid API key")
        return {"username": API_KEY_USER, "source": "moonraker", "created_on": self.started_on}

    def _key_for(self, payload: dict[str, Any]) -> bytes | None:
        username = payload.get("username")
        user = self.users.get(username) if self.users is not None and isinstance(username, str) else None
        return user.token_key if user is not None else None

    def check_jwt(self, token: str, token_type: str = "auth") -> User:
        if self.users is None:
            raise _unauthorized("Authorization is not ready")
        try:
            payload = jwt.decode(token, self._key_for, token_type)
        except jwt.TokenError as exc:
            raise _unauthorized(f"Invalid token: {exc}") from None
        user = self.users.get(payload["username"])
        if user is None:
            raise _unauthorized("Invalid token: unknown user")
        return user

    def check_oneshot(self, token: str, ip: str | None) -> dict[str, Any]:
        valid, user = self.oneshot.consume(token, ip)
        if not valid or user is None:
            raise _unauthorized("Invalid or expired oneshot token")
        return user

    def issue_tokens(self, user: User) -> dict[str, str]:
        key = user.token_key
        assert key is not None
        now = time.time()
        claims = {"iss": "moontwist", "iat": now, "username": user.username}
        return {
            "token": jwt.encode({**claims, "exp": now + JWT_LIFETIME, "token_type": "auth"}, key),
            "refresh_token": jwt.encode(
                {**claims, "exp": now + self.login_timeout * 86400.0, "token_type": "refresh"}, key
            ),
        }

    def credentials(
        self, headers: dict[str, str], query: dict[str, str], ip: str | None
    ) -> dict[str, Any] | None:
        """The user named by the credentials offered, the trusted user, or None.

        Credentials that are offered but wrong raise 401, even from a trusted address.
        """
        api_key = headers.get("x-api-key")
        if api_key is not None:
            return self.check_api_key(api_key)
        auth = headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ServerError("Malformed Authorization header: expected 'Bearer <token>'", 401)
            return self.check_jwt(token.strip()).info()
        access_token = headers.get("x-access-token")
        if access_token is not None:
            return self.check_jwt(access_token.strip()).info()
        if "access_token" in query:
            return self.check_jwt(query["access_token"]).info()
        if "token" in query:
            return self.check_oneshot(query["token"], ip)
        return self.trusted_user(ip, headers.get("host"))

    def http_user(self, request: APIRequest) -> dict[str, Any] | None:
        """Who an HTTP request is; the verdict is kept on the request, so a oneshot token is spent once.

        (A request with a body is authenticated on its headers and again when it is dispatched.)
        """
        http = request.http_request
        known = getattr(http, "moontwist_user", _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        user = self._http_user(http, request.ip)
        http.moontwist_user = user
        return user

    def _http_user(self, http: Any, ip: str | None) -> dict[str, Any] | None:
        headers = {}
        for name in _AUTH_HEADERS:
            value = http.getHeader(name)
            if value is not None:
                headers[name.decode()] = value.decode("latin-1")
        raw_query = http.uri.partition(b"?")[2]
        query = {}
        if b"token" in raw_query:  # access_token= or token=
            text = raw_query.decode("utf-8", "surrogateescape")
            query = {k: v for k, v in parse_qsl(text, keep_blank_values=True) if k in ("access_token", "token")}
        return self.credentials(headers, query, ip)

    def connection_user(self, conn: Any) -> dict[str, Any] | None:
        """Authenticate a websocket from its upgrade request; bad credentials leave it anonymous."""
        headers = {k.lower(): v for k, v in (getattr(conn, "http_headers", None) or {}).items()}
        params = getattr(conn, "http_params", None) or {}
        query = {k: v[0] for k, v in params.items() if k in ("access_token", "token") and v}
        try:
            return self.credentials(headers, query, conn.ip)
        except ServerError as exc:
            self.log.info("Websocket {id} from {ip}: {reason}", id=conn.connection_id, ip=conn.ip, reason=exc.message)
            return None

    # the check every request passes ------------------------------------------------------

    def authorize(self, request: APIRequest) -> None:
        endpoint = request.endpoint
        transport = request.transport
        if transport in LOCAL_TRANSPORTS:
            if request.user is None:
                request.user = {"username": TRUSTED_USER, "source": "moonraker", "created_on": self.started_on}
            return
        if transport == "http":
            try:
                request.user = self.http_user(request)
            except ServerError:
                if endpoint.auth:
                    raise
                request.user = None
        # jsonrpc_http: the dispatcher passes on the user of the carrying HTTP request
        if endpoint.auth and request.user is None:
            raise _unauthorized()
        if endpoint.method == IDENTIFY and request.user is None and not _offers_credentials(request.args):
            raise _unauthorized()  # as Moonraker: clients learn here that they must log in

    def forget_api_key(self, keep: Any = None) -> None:
        """Downgrade every connection authenticated by the API key (but ``keep``) after a new key."""
        for conn in self.server.connections:
            user = getattr(conn, "user", None)
            if conn is not keep and user is not None and user.get("username") == API_KEY_USER:
                self.log.info("Connection {id}: the API key it used was replaced", id=conn.connection_id)
                conn.user = self.trusted_user(conn.ip, _upgrade_host(conn))
                conn.need_auth = conn.user is None

    def forget_user(self, username: str) -> None:
        """Drop ``username`` from every websocket it authenticated (logout, deletion)."""
        for conn in self.server.connections:
            user = getattr(conn, "user", None)
            if user is not None and user.get("username") == username:
                conn.user = None
                conn.need_auth = True


def _upgrade_host(conn: Any) -> str | None:
    """The Host header of a websocket's upgrade request."""
    for name, value in (getattr(conn, "http_headers", None) or {}).items():
        if name.lower() == "host":
            return value
    return None


def _offers_credentials(params: Any) -> bool:
    return isinstance(params, dict) and any(params.get(name) for name in ("access_token", "api_key"))


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))
