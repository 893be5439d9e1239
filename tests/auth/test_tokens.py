"""Tokens, logins, CORS, websocket authentication, HTTPS and moontwist-apikey."""

from __future__ import annotations

import base64
import datetime
import json
import os
import time

import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from moontwist import apikey
from moontwist.plugins.authorization import jwt
from moontwist.storage.moonraker_import import MOONRAKER_HASH_SCHEME
from mtclient import WSClient, connect_ws


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def _status(svc, token: str, path: str = "/server/info") -> int:
    code, _, _ = await svc.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return code


@pytest_twisted.ensureDeferred
async def test_bad_tokens_are_401(svc, kit):
    tokens = await kit.create_user(svc)
    good = tokens["token"]
    assert await _status(svc, good) == 200
    user = kit.manager(svc).users.get("alice")
    now = time.time()
    claims = {"iss": "moontwist", "iat": now, "username": "alice", "token_type": "auth"}
    header, payload, sig = good.split(".")
    bad = {
        "expired": jwt.encode({**claims, "exp": now - 1}, user.token_key),
        "tampered": header + "." + _b64({**claims, "username": "bob", "exp": now + 99}) + "." + sig,
        "wrong key": jwt.encode({**claims, "exp": now + 99}, os.urandom(32)),
        "refresh as access": tokens["refresh_token"],
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({**claims, "exp": now + 99}) + ".",
        "huge": "a" * 10_000,
    }
    for what, token in bad.items():
        code, body, _ = await svc.request("GET", "/server/info", headers={"Authorization": f"Bearer {token}"})
        assert code == 401, what
        assert body["error"]["message"].startswith("Invalid token"), (what, body)
    for header_value in ("Basic abc", "Bearer", "Bearer   ", "token"):
        code, body, _ = await svc.request("GET", "/server/info", headers={"Authorization": header_value})
        assert code == 401 and "Malformed Authorization header" in body["error"]["message"]
    code, body, _ = await svc.request("GET", "/server/info", headers={"X-Api-Key": "nope"})
    assert (code, body["error"]["message"]) == (401, "Invalid API key")
    # refresh gives a working access token; logout revokes both kinds
    code, body, _ = await svc.request("POST", "/access/refresh_jwt", json={"refresh_token": tokens["refresh_token"]})
    assert code == 200 and await _status(svc, body["result"]["token"]) == 200
    code, body, _ = await svc.request("POST", "/access/refresh_jwt", json={"refresh_token": good})
    assert code == 401
    code, body, _ = await svc.request("POST", "/access/logout", headers={"Authorization": f"Bearer {good}"})
    assert body["result"] == {"username": "alice", "action": "user_logged_out"}
    assert await _status(svc, good) == 401
    code, _, _ = await svc.request("POST", "/access/refresh_jwt", json={"refresh_token": tokens["refresh_token"]})
    assert code == 401


@pytest_twisted.ensureDeferred
async def test_password_change_delete_and_oneshot(svc, kit):
    key = kit.api_key(svc)
    tokens = await kit.create_user(svc)
    auth = {"Authorization": f"Bearer {tokens['token']}"}
    code, body, _ = await svc.request("POST", "/access/user/password", json={"password": "wrong", "new_password": "x"}, headers=auth)
    assert code == 401
    code, body, _ = await svc.request("POST", "/access/user/password", json={"password": "s3cret!", "new_password": "n3w"}, headers=auth)
    assert body["result"]["action"] == "user_password_reset"
    assert await _status(svc, tokens["token"]) == 401
    code, body, _ = await svc.request("POST", "/access/login", json={"username": "alice", "password": "n3w"})
    token = body["result"]["token"]
    code, body, _ = await svc.request("GET", "/access/oneshot_token", headers={"Authorization": f"Bearer {token}"})
    oneshot = body["result"]
    assert (await svc.request("GET", "/access/user?token=" + oneshot))[0] == 200
    assert (await svc.request("GET", "/access/user?token=" + oneshot))[0] == 401
    code, body, _ = await svc.request("DELETE", "/access/user", json={"username": "alice"}, headers={"Authorization": f"Bearer {token}"})
    assert code == 400
    code, body, _ = await svc.request("DELETE", "/access/user", json={"username": "alice"}, headers={"X-Api-Key": key})
    assert body["result"] == {"username": "alice", "action": "user_deleted"}
    assert await _status(svc, token) == 401


@pytest_twisted.ensureDeferred
async def test_login_input_imported_users_and_lockout(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "max_login_attempts: 3\n")
    try:
        manager = kit.manager(svc)
        salt = os.urandom(32).hex()
        digest = __import__("hashlib").pbkdf2_hmac("sha256", b"old-pass", bytes.fromhex(salt), 100_000).hex()
        from moontwist.plugins.authorization.users import User

        await manager.users.save(User("imported", digest, salt, MOONRAKER_HASH_SCHEME, created_on=1.0))
        code, body, _ = await svc.request("POST", "/access/login", json={"username": "imported", "password": "old-pass"})
        assert code == 200 and body["result"]["action"] == "user_logged_in"
        assert manager.users.get("imported").hash_scheme.startswith("scrypt")
        for payload, message in (
            ({"username": "bad\x07name", "password": "x"}, "control characters"),
            ({"username": "imported", "password": ""}, "must not be empty"),
        ):
            code, body, _ = await svc.request("POST", "/access/login", json=payload)
            assert code == 400 and message in body["error"]["message"]
        for _ in range(3):
            code, body, _ = await svc.request("POST", "/access/login", json={"username": "imported", "password": "guess"})
            assert code == 401 and body["error"]["message"] == "Invalid username or password"
        code, body, _ = await svc.request("POST", "/access/login", json={"username": "imported", "password": "old-pass"})
        assert code == 401 and "maximum login attempts" in body["error"]["message"]
        log = open(svc.server.path("logs", "moontwist.log")).read()
        assert "old-pass" not in log and "guess" not in log and manager.api_key not in log
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_cors_and_websocket_origins(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "cors_domains:\n  *://localhost:*\n  https://my.mainsail.xyz\n")
    try:
        code, _, headers = await svc.request("OPTIONS", "/server/info", headers={"Origin": "http://localhost:8080"})
        assert code == 204
        assert headers.getRawHeaders("access-control-allow-origin") == ["http://localhost:8080"]
        assert "X-Api-Key" in headers.getRawHeaders("access-control-allow-headers")[0]
        code, body, headers = await svc.request("OPTIONS", "/server/info", headers={"Origin": "http://evil.example"})
        assert code == 403 and not headers.hasHeader("access-control-allow-origin")
        code, _, headers = await svc.request("GET", "/access/info", headers={"Origin": "https://my.mainsail.xyz"})
        assert code == 200 and headers.hasHeader("access-control-allow-origin")
        ws = await svc.ws(origin="http://localhost:8080")
        ws.sendClose()
        ws = await svc.ws(origin=f"http://127.0.0.1:{svc.port}")  # same origin
        ws.sendClose()
        try:
            await svc.ws(origin="http://evil.example")
        except ConnectionError:
            pass
        else:
            raise AssertionError("a disallowed origin was upgraded")
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_websocket_authentication(svc, kit):
    tokens = await kit.create_user(svc)
    ws = await svc.ws()
    assert (await ws.rpc("server.info"))["error"]["code"] == 401
    info = await ws.call("access.info")
    assert info["trusted"] is False and info["login_required"] is False
    reply = await ws.rpc("server.connection.identify", {"client_name": "t", "version": "1", "type": "web", "url": "x", "access_token": "bogus"})
    assert reply["error"]["code"] == 401
    await ws.call("access.login", {"username": "alice", "password": "s3cret!"})
    assert "klippy_state" in await ws.call("server.info")
    ws.sendClose()
    code, body, _ = await svc.request("GET", "/access/oneshot_token", headers={"Authorization": f"Bearer {tokens['token']}"})
    ws = await connect_ws(svc.ws_url + "?token=" + body["result"])
    assert (await ws.call("access.get_user"))["username"] == "alice"
    await ws.call("access.logout")
    assert (await ws.rpc("server.info"))["error"]["code"] == 401
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_trusted_clients_and_force_logins(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, "trusted_clients:\n  10.0.0.0/8\n  fd00::/8\n  127.0.0.0/8\n  not a host!\nforce_logins: true\n")
    try:
        code, body = await svc.get("/server/info")
        assert code == 200 and any("not a host!" in w for w in body["result"]["warnings"])
        assert (await svc.get("/access/user"))[1]["result"]["username"] == "_TRUSTED_USER_"
        await kit.create_user(svc)
        assert (await svc.get("/server/info"))[0] == 401
        assert (await svc.get("/access/info"))[1]["result"]["login_required"] is True
    finally:
        await svc.service.stopService()


@implementer(IPolicyForHTTPS)
class _TrustOne:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem

    def creatorForNetloc(self, hostname, port):  # noqa: N802
        return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(self.pem))


def _self_signed(directory) -> tuple[str, str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "key.pem")
    with open(cert_path, "wb") as f:
        f.write(pem)
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path, pem


@pytest_twisted.ensureDeferred
async def test_https_wss_and_apikey_script(tmp_path, kit, capsys):
    cert, key, pem = _self_signed(tmp_path)
    svc = await kit.start_auth(tmp_path, "", f"ssl_port: 0\nssl_certificate_path: {cert}\nssl_key_path: {key}\n")
    try:
        port = (await svc.service.tls_port).getHost().port
        client = treq.client.HTTPClient(Agent(reactor, contextFactory=_TrustOne(pem)))
        resp = await client.get(f"https://127.0.0.1:{port}/access/info")
        assert resp.code == 200
        resp = await client.get(f"https://127.0.0.1:{port}/server/info", headers={"X-Api-Key": kit.api_key(svc)})
        assert resp.code == 200 and "klippy_state" in json.loads(await resp.content())["result"]
        factory = WebSocketClientFactory(f"wss://localhost:{port}/websocket", headers={"X-Api-Key": kit.api_key(svc)})
        factory.protocol = WSClient
        proto = factory.buildProtocol(None)
        from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol

        await connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, _TrustOne(pem).creatorForNetloc(b"", 0)), proto)
        await proto.opened
        assert "klippy_state" in await proto.call("server.info")
        proto.sendClose()
        assert apikey.main(["--datapath", svc.server.datapath]) == 0
        assert capsys.readouterr().out.strip() == kit.api_key(svc)
    finally:
        await svc.service.stopService()
