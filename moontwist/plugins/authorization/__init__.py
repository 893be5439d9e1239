"""``[authorization]``: users, JWTs, the API key, trusted clients and CORS.

Always loaded, as Moonraker's core component.  Without the section every client
is trusted (moontwist's open default) and CORS allows same-origin pages only.
The plugin installs the server's ``authorize``, ``origin_allowed`` and
``http_prepare`` hooks and the ``identify_credentials`` service used by
``server.connection.identify``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from moontwist.api.errors import ServerError
from moontwist.hookspecs import hookimpl
from moontwist.plugins.authorization.cors import prepare_http
from moontwist.plugins.authorization.endpoints import AccessEndpoints
from moontwist.plugins.authorization.manager import AuthManager

__all__ = ["AuthorizationPlugin"]


class AuthorizationPlugin:
    """Moonraker's ``authorization`` component."""

    def __init__(self) -> None:
        self.auth: AuthManager | None = None

    @hookimpl
    def configure(self, server: Any, config: Any) -> None:
        open_access = not config.has_section("authorization")
        auth = AuthManager(server, config.section("authorization"), open_access)
        self.auth = auth
        # Until the users and the API key are loaded every request is told to come back (503).
        server.authorize = _not_ready
        server.origin_allowed = auth.cors.allowed
        server.http_prepare = lambda request: prepare_http(auth.cors, request)
        server.provide("identify_credentials", self.identify_credentials)
        # Whom this server trusts by address (the farm's fleet view asks each instance).
        server.provide("trusted_user", auth.trusted_user)

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        assert self.auth is not None
        for endpoint in AccessEndpoints(self.auth.server, self.auth).endpoints():
            register(endpoint)

    # Runs right after the database plugin's (it is listed before this one), so requests are
    # authorized as early as possible in a start or restart.
    @hookimpl
    def startup(self, server: Any) -> Deferred:
        db = server.lookup("database")
        if db is None:
            raise RuntimeError("[authorization] needs the database plugin")
        auth = self.auth
        assert auth is not None

        def ready(_: Any) -> None:
            server.authorize = auth.authorize

        return Deferred.fromCoroutine(auth.start(db)).addCallback(ready)

    @hookimpl
    def shutdown(self, server: Any) -> None:
        if self.auth is not None:
            self.auth.stop()
        server.authorize = server.origin_allowed = server.http_prepare = None

    @hookimpl
    def connection_opened(self, connection: Any) -> None:
        if self.auth is not None and connection.user is None and connection.transport_name == "websocket":
            connection.user = self.auth.connection_user(connection)
            connection.need_auth = connection.user is None

    def identify_credentials(self, conn: Any, access_token: str | None, api_key: str | None) -> None:
        """Authenticate a connection from ``server.connection.identify``'s arguments."""
        assert self.auth is not None
        if api_key:
            conn.user = self.auth.check_api_key(api_key)
        elif access_token:
            conn.user = self.auth.check_jwt(access_token).info()
        else:
            raise ServerError("Unauthorized", 401)


def _not_ready(request: Any) -> None:
    raise ServerError("Authorization is not ready", 503)
