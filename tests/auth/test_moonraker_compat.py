"""Behaviour that matches current Moonraker: CORS entries from its docs, identify on an
unauthenticated websocket, access.* transports and notifications, X-Access-Token,
enable_api_key, access.info under force_logins, and no secrets in the log."""

from __future__ import annotations

import base64
import json

import pytest_twisted

from moontwist.plugins.authorization.policy import TrustedClients
from moontwist.plugins.authorization.users import User
from mtclient import connect_unix

IDENTIFY = {"client_name": "t", "version": "1", "type": "web", "url": "x"}


async def _preflight(svc, origin: str) -> int:
    code, _, headers = await svc.request("OPTIONS", "/server/info", headers={"Origin": origin})
    assert (code == 204) == (headers.getRawHeaders("access-control-allow-origin") == [origin])
    return code


@pytest_twisted.ensureDeferred
async def test_cors_entries_from_moonrakers_docs(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "cors_domains:\n  *.local\n  *.my-domain.com:*\n  http://my-printer.*\n")
    try:
        for origin in ("http://printer.local", "https://a.b.local", "https://x.my-domain.com:8443"):
            assert await _preflight(svc, origin) == 204, origin
        for origin in ("http://printer.lan", "http://my-printer.com", "http://x.my-domain.com.evil.io:1"):
            assert await _preflight(svc, origin) == 403, origin
        warnings = (await svc.request("GET", "/server/info", headers={"X-Api-Key": kit.api_key(svc)}))[1]
        assert any("http://my-printer.*" in w for w in warnings["result"]["warnings"])
    finally:
        await svc.service.stopService()
    svc = await kit.start_auth(tmp_path, "cors_domains: *\n")
    try:
        assert await _preflight(svc, "http://anything.example:81") == 204
        (await svc.ws(origin="http://anything.example:81")).sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_identify_needs_credentials_until_authenticated(svc, kit):
    tokens = await kit.create_user(svc)
    ws = await svc.ws()
    reply = await ws.rpc("server.connection.identify", IDENTIFY)
    assert reply["error"] == {"code": 401, "message": "Unauthorized"}
    # the public methods stay callable; identify works once logged in
    assert (await ws.call("access.info"))["login_required"] is False
    await ws.call("access.login", {"username": "alice", "password": "s3cret!"})
    assert "connection_id" in await ws.call("server.connection.identify", IDENTIFY)
    ws.sendClose()
    for creds in ({"access_token": tokens["token"]}, {"api_key": kit.api_key(svc)}):
        ws = await svc.ws()
        assert "connection_id" in await ws.call("server.connection.identify", {**IDENTIFY, **creds})
        assert "klippy_state" in await ws.call("server.info")
        ws.sendClose()
    ws = await svc.ws(headers={"X-Api-Key": kit.api_key(svc)})
    assert "connection_id" in await ws.call("server.connection.identify", IDENTIFY)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_access_methods_transports_and_notifications(svc, kit):
    key = kit.api_key(svc)
    watcher = await svc.ws(headers={"X-Api-Key": key})
    tokens = await kit.create_user(svc, "bob", "pw")
    note = await watcher.next_notification("notify_user_created")
    assert note["params"] == [{"username": "bob"}]
    bob = await svc.ws()
    await bob.call("server.connection.identify", {**IDENTIFY, "access_token": tokens["token"]})
    assert (await bob.call("access.get_user"))["username"] == "bob"
    code, body, _ = await svc.request("POST", "/access/logout", headers={"Authorization": f"Bearer {tokens['token']}"})
    assert code == 200
    note = await watcher.next_notification("notify_user_logged_out")
    assert note["params"] == [{"username": "bob"}]
    assert (await bob.rpc("server.info"))["error"]["code"] == 401  # the logout reached its websocket
    await bob.call("access.login", {"username": "bob", "password": "pw"})
    assert await watcher.call("access.delete_user", {"username": "bob"}) == {"username": "bob", "action": "user_deleted"}
    note = await watcher.next_notification("notify_user_deleted")
    assert note["params"] == [{"username": "bob"}]
    assert (await bob.rpc("server.info"))["error"]["code"] == 401  # so did the deletion
    for ws in (watcher, bob):
        ws.sendClose()
    # as in Moonraker, access.* is served over HTTP and the websocket, not the unix socket
    unix = await connect_unix(svc.server.path("comms", "moonraker.sock"))
    unix.send({"jsonrpc": "2.0", "method": "access.get_api_key", "id": 1})
    reply = await unix.messages.get()
    while "id" not in reply:
        reply = await unix.messages.get()
    assert reply["error"]["code"] == -32601
    unix.transport.loseConnection()
    code, body, _ = await svc.request(
        "POST", "/server/jsonrpc", json={"jsonrpc": "2.0", "method": "access.get_api_key", "id": 1},
        headers={"X-Api-Key": key},
    )
    assert body["result"] == key


@pytest_twisted.ensureDeferred
async def test_x_access_token_and_disabled_api_key(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "enable_api_key: false\n")
    try:
        key = kit.api_key(svc)
        code, body, _ = await svc.request("GET", "/server/info", headers={"X-Api-Key": key})
        assert (code, body["error"]["message"]) == (401, "API key authentication is disabled")
        ws = await svc.ws()
        reply = await ws.rpc("server.connection.identify", {**IDENTIFY, "api_key": key})
        assert reply["error"]["code"] == 401
        ws.sendClose()
        user = kit.manager(svc).users
        await user.save(User("carol", None, None, None))
        await user.set_token_key(user.get("carol"), fresh=True)
        token = kit.manager(svc).issue_tokens(user.get("carol"))["token"]
        code, _, _ = await svc.request("GET", "/server/info", headers={"X-Access-Token": token})
        assert code == 200
        code, body, _ = await svc.request("GET", "/server/info", headers={"X-Access-Token": token + "x"})
        assert code == 401 and body["error"]["message"].startswith("Invalid token")
        ws = await svc.ws(headers={"X-Access-Token": token})
        assert "klippy_state" in await ws.call("server.info")
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_info_trusted_under_force_logins_and_bad_user_input(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "trusted_clients:\n  127.0.0.1\nforce_logins: true\n")
    try:
        key = kit.api_key(svc)
        tokens = await kit.create_user(svc)
        info = (await svc.get("/access/info"))[1]["result"]
        assert info == {"default_source": "moonraker", "available_sources": ["moonraker"],
                        "login_required": True, "trusted": True}
        assert (await svc.get("/server/info"))[0] == 401
        for payload, message in (
            ({"username": "ctl\x1bname", "password": "pw"}, "control characters"),
            ({"username": "dave", "password": ""}, "must not be empty"),
            ({"username": "", "password": "pw"}, "must not be empty"),
            ({"username": "_API_KEY_USER_", "password": "pw"}, "reserved"),
            ({"username": "x" * 65, "password": "pw"}, "longer than"),
        ):
            code, body, _ = await svc.request("POST", "/access/user", json=payload, headers={"X-Api-Key": key})
            assert code == 400 and message in body["error"]["message"], payload
        # tokens and keys used in every place leave no trace in the log
        oneshot = (await svc.request("GET", "/access/oneshot_token", headers={"X-Api-Key": key}))[1]["result"]
        for path in (f"/server/info?access_token={tokens['token']}", f"/server/info?token={oneshot}",
                     f"/server/info?token={oneshot}", "/server/info?access_token=" + "A" * 9000):
            await svc.request("GET", path)
        await svc.request("POST", "/access/refresh_jwt", json={"refresh_token": tokens["refresh_token"]})
        await svc.request("POST", "/access/login", json={"username": "alice", "password": "wrong-secret"})
        log = open(svc.server.path("logs", "moontwist.log")).read()
        for secret in (key, tokens["token"], tokens["refresh_token"], oneshot, "s3cret!", "wrong-secret"):
            assert secret not in log
    finally:
        await svc.service.stopService()


def _claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest_twisted.ensureDeferred
async def test_trusted_host_name_login_timeout_and_default_source(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "trusted_clients:\n  localhost\n  ::1\nlogin_timeout: 2\ndefault_source: ldap\n")
    try:
        code, body = await svc.get("/access/user")  # 127.0.0.1 is trusted through the name 'localhost'
        assert code == 200 and body["result"]["username"] == "_TRUSTED_USER_"
        info = (await svc.get("/server/info"))[1]["result"]
        assert any("default_source" in w and "ldap" in w for w in info["warnings"])
        assert (await svc.get("/access/info"))[1]["result"]["default_source"] == "moonraker"
        tokens = await kit.create_user(svc)
        access, refresh = _claims(tokens["token"]), _claims(tokens["refresh_token"])
        assert abs(access["exp"] - access["iat"] - 3600) < 1
        assert abs(refresh["exp"] - refresh["iat"] - 2 * 86400) < 1
    finally:
        await svc.service.stopService()


def test_trusted_client_entries():
    trusted = TrustedClients(["192.168.1.0/24", "fd00::/8", "2001:db8::7", "10.0.0.5", "10.0.0.1/24", "-bad-"])
    assert trusted.invalid == ["10.0.0.1/24", "-bad-"]  # host bits set, not a name
    for ip in ("192.168.1.77", "fdab::1", "2001:db8::7", "10.0.0.5", "::ffff:192.168.1.3", "fd00::1%eth0"):
        assert trusted.is_trusted(ip), ip
    for ip in ("192.168.2.1", "fe80::1", "2001:db8::8", "10.0.0.6", "", None, "not-an-ip"):
        assert not trusted.is_trusted(ip), ip


@pytest_twisted.ensureDeferred
async def test_notifications_reach_only_authenticated_websockets(svc, kit):
    """As in Moonraker, a websocket without credentials gets no broadcasts until it authenticates,
    and none again once its user logs out."""
    key = kit.api_key(svc)
    watcher = await svc.ws(headers={"X-Api-Key": key})
    stranger = await svc.ws()
    tokens = await kit.create_user(svc, "carol", "pw")
    await watcher.next_notification("notify_user_created")
    await stranger.call("access.info")  # a round trip: anything broadcast before it has arrived
    assert not stranger.notifications.pending
    # agents' events too
    agent = await svc.ws(headers={"X-Api-Key": key})
    await agent.call("server.connection.identify", {**IDENTIFY, "type": "agent", "client_name": "probe"})
    await agent.call("connection.send_event", {"event": "ping", "data": {}})
    await watcher.next_notification("notify_agent_event")
    await stranger.call("access.info")
    assert not stranger.notifications.pending
    # once it logs in it hears them; after its user logs out, no more
    await stranger.call("access.login", {"username": "carol", "password": "pw"})
    await kit.create_user(svc, "dave", "pw")
    assert (await stranger.next_notification("notify_user_created"))["params"] == [{"username": "dave"}]
    await watcher.next_notification("notify_user_created")
    code, _, _ = await svc.request("POST", "/access/logout", headers={"Authorization": f"Bearer {tokens['token']}"})
    assert code == 200
    await stranger.call("access.info")
    stranger.notifications.pending.clear()
    await kit.create_user(svc, "erin", "pw")
    await watcher.next_notification("notify_user_created")
    await stranger.call("access.info")
    assert not stranger.notifications.pending
    for ws in (watcher, stranger, agent):
        ws.sendClose()
