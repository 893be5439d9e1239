"""The ``/access/*`` endpoints (``access.*`` over JSON-RPC)."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from typing import Any

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.plugins.authorization.manager import (
    ACCESS_TRANSPORTS,
    RESERVED_USERS,
    SOURCES,
    AuthManager,
)
from moontwist.plugins.authorization.passwords import SCRYPT_SCHEME, hash_password, verify_password
from moontwist.plugins.authorization.users import User

__all__ = ["AccessEndpoints"]

MAX_USERNAME = 64
MAX_PASSWORD = 1024


def _check_username(name: str) -> str:
    if not name:
        raise ServerError("Invalid argument 'username': must not be empty", 400)
    if len(name) > MAX_USERNAME:
        raise ServerError(f"Invalid argument 'username': longer than {MAX_USERNAME} characters", 400)
    if any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name) or name != name.strip():
        raise ServerError(
            "Invalid argument 'username': control characters and surrounding whitespace are not allowed", 400
        )
    return name


def _check_password(password: str, name: str = "password") -> str:
    if not password:
        raise ServerError(f"Invalid argument '{name}': must not be empty", 400)
    if len(password) > MAX_PASSWORD:
        raise ServerError(f"Invalid argument '{name}': longer than {MAX_PASSWORD} characters", 400)
    return password


class AccessEndpoints:
    """Handlers bound to one AuthManager."""

    def __init__(self, server: Any, auth: AuthManager) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.auth = auth

    def endpoints(self) -> list[Endpoint]:
        user = Arg("username", required=True, description="The user's login name")
        password = Arg("password", required=True, description="The user's password")
        return [replace(endpoint, transports=ACCESS_TRANSPORTS) for endpoint in self._endpoints(user, password)]

    def _endpoints(self, user: Arg, password: Arg) -> list[Endpoint]:
        return [
            Endpoint("access.login", self.login, "/access/login", ("POST",), auth=False,
                     args=(user, password, Arg("source", default=self.auth.default_source, choices=SOURCES,
                                               description="Authentication source")),
                     description="Log in; returns an access token and a refresh token"),
            Endpoint("access.logout", self.logout, "/access/logout", ("POST",),
                     description="Log the current user out everywhere"),
            Endpoint("access.get_user", self.get_user, "/access/user", ("GET",), description="The current user"),
            Endpoint("access.post_user", self.create_user, "/access/user", ("POST",), args=(user, password),
                     description="Create a user (and log it in)"),
            Endpoint("access.delete_user", self.delete_user, "/access/user", ("DELETE",), args=(user,),
                     description="Delete another user"),
            Endpoint("access.users.list", self.list_users, "/access/users/list", description="Every user"),
            Endpoint("access.user.password", self.reset_password, "/access/user/password", ("POST",),
                     args=(password, Arg("new_password", required=True, description="The new password")),
                     description="Change the current user's password"),
            Endpoint("access.refresh_jwt", self.refresh, "/access/refresh_jwt", ("POST",), auth=False,
                     args=(Arg("refresh_token", required=True, description="A refresh token from login"),),
                     description="A new access token for a refresh token"),
            Endpoint("access.oneshot_token", self.oneshot, "/access/oneshot_token",
                     description="A token for one request's query string (?token=), valid 5 s"),
            Endpoint("access.info", self.info, "/access/info", auth=False,
                     description="Authentication sources and whether a login is required"),
            Endpoint("access.get_api_key", self.get_api_key, "/access/api_key", description="The API key"),
            Endpoint("access.post_api_key", self.post_api_key, "/access/api_key", ("POST",),
                     description="Replace the API key with a new one"),
        ]

    @property
    def users(self) -> Any:
        if self.auth.users is None:
            raise ServerError("Authorization is not ready", 503)
        return self.auth.users

    def _current(self, request: APIRequest) -> User:
        info = request.user
        user = self.users.get(info["username"]) if info else None
        if user is None:
            name = info["username"] if info else None
            raise ServerError(f"No user logged in (request made as {name})" if name else "No user logged in", 400)
        return user

    async def _verify(self, user: User | None, password: str) -> bool:
        if user is None:  # hash anyway: an unknown name costs as long as a wrong password
            await deferToThread(hash_password, password)
            return False
        return await deferToThread(verify_password, password, user.password_hash, user.salt, user.hash_scheme)

    async def _failed(self, ip: str, what: str) -> ServerError:
        delay = self.auth.throttle.failed(ip)
        await deferLater(self.server.reactor, delay, lambda: None)
        return ServerError(f"Invalid {what}", 401)

    def _begin_attempt(self, ip: str) -> None:
        """Count a password attempt now, before any await: a batch's attempts are all counted."""
        left = self.auth.throttle.begin(ip)
        if left:
            raise ServerError(
                f"Unauthorized, maximum login attempts reached from {ip}; try again in {int(left) + 1} s", 401
            )

    async def _set_password(self, user: User, password: str) -> None:
        user.password_hash, user.salt, user.hash_scheme = await deferToThread(hash_password, password)

    async def login(self, request: APIRequest) -> dict[str, Any]:
        name = _check_username(request.get("username", ""))
        password = _check_password(request.get("password", ""))
        ip = request.ip or "unknown"
        self._begin_attempt(ip)
        user = self.users.get(name)
        if not await self._verify(user, password):
            self.log.info("Failed login as {name!r} from {ip}", name=name, ip=ip)
            raise await self._failed(ip, "username or password")
        assert user is not None
        self.auth.throttle.succeeded(ip)
        if user.hash_scheme != SCRYPT_SCHEME:
            await self._set_password(user, password)  # upgrade an imported hash
        if user.token_key is None:
            await self.users.set_token_key(user, fresh=True)
        else:
            await self.users.save(user)
        if request.connection is not None:
            request.connection.user = user.info()
        self.log.info("User {name!r} logged in from {ip}", name=name, ip=ip)
        return {"username": name, **self.auth.issue_tokens(user), "source": user.source, "action": "user_logged_in"}

    async def logout(self, request: APIRequest) -> dict[str, str]:
        user = self._current(request)
        await self.users.set_token_key(user, fresh=False)
        self.auth.forget_user(user.username)
        self.server.notify("notify_user_logged_out", {"username": user.username})
        return {"username": user.username, "action": "user_logged_out"}

    def get_user(self, request: APIRequest) -> dict[str, Any]:
        info = request.user or {}
        return {"username": info.get("username"), "source": info.get("source"), "created_on": info.get("created_on")}

    async def create_user(self, request: APIRequest) -> dict[str, Any]:
        name = _check_username(request.get("username", ""))
        password = _check_password(request.get("password", ""))
        if name in RESERVED_USERS:
            raise ServerError(f"Invalid argument 'username': '{name}' is reserved", 400)
        if self.users.get(name) is not None:
            raise ServerError(f"User '{name}' already exists", 400)
        user = User(name, None, None, None)
        await self._set_password(user, password)
        await self.users.set_token_key(user, fresh=True)
        self.server.notify("notify_user_created", {"username": name})
        return {"username": name, **self.auth.issue_tokens(user), "source": user.source, "action": "user_created"}

    async def delete_user(self, request: APIRequest) -> dict[str, str]:
        name = _check_username(request.get("username", ""))
        if request.user is not None and request.user.get("username") == name:
            raise ServerError("A user can't delete its own account; ask another authorized client", 400)
        if self.users.get(name) is None:
            raise ServerError(f"No such user: '{name}'", 404)
        await self.users.delete(name)
        self.auth.forget_user(name)
        self.server.notify("notify_user_deleted", {"username": name})
        return {"username": name, "action": "user_deleted"}

    def list_users(self, request: APIRequest) -> dict[str, list[dict[str, Any]]]:
        return {"users": [u.info() for u in self.users.users.values()]}

    async def reset_password(self, request: APIRequest) -> dict[str, str]:
        user = self._current(request)
        password = _check_password(request.get("password", ""))
        new_password = _check_password(request.get("new_password", ""), "new_password")
        ip = request.ip or "unknown"
        self._begin_attempt(ip)
        if not await self._verify(user, password):
            raise await self._failed(ip, "password")
        self.auth.throttle.succeeded(ip)
        await self._set_password(user, new_password)
        await self.users.set_token_key(user, fresh=False)
        self.auth.forget_user(user.username)
        return {"username": user.username, "action": "user_password_reset"}

    def refresh(self, request: APIRequest) -> dict[str, Any]:
        token = request.get("refresh_token", "")
        user = self.auth.check_jwt(token, "refresh")
        return {"username": user.username, "token": self.auth.issue_tokens(user)["token"],
                "source": user.source, "action": "user_jwt_refresh"}

    def oneshot(self, request: APIRequest) -> str:
        return self.auth.oneshot.issue(request.ip, request.user)

    def info(self, request: APIRequest) -> dict[str, Any]:
        return {
            "default_source": self.auth.default_source,
            "available_sources": list(SOURCES),
            "login_required": self.auth.login_required,
            "trusted": self.auth.is_trusted(request),
        }

    def get_api_key(self, request: APIRequest) -> str:
        if self.auth.api_key is None:
            raise ServerError("Authorization is not ready", 503)
        return self.auth.api_key

    async def post_api_key(self, request: APIRequest) -> str:
        key = await self.auth.new_api_key()
        # Like a password change: connections that authenticated with the old key lose it.
        self.auth.forget_api_key(keep=request.connection)
        return key
