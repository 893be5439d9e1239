"""Authorization is always loaded: without ``[authorization]`` every client is trusted, the
``access.*`` API still works, and CORS allows same-origin pages only (as Moonraker with no
``cors_domains``); the generated default config carries Moonraker's usual defaults."""

from __future__ import annotations

import pytest_twisted

from mtclient import connect_ws, start_service

IDENTIFY = {"client_name": "fluidd", "version": "1.34.4", "type": "web", "url": "https://fluidd.xyz"}
CROSS_ORIGIN = "http://localhost:8080"


async def _open(tmp_path):
    return await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")


async def _refuses_ws(svc, origin: str) -> bool:
    try:
        ws = await svc.ws(origin=origin)
    except ConnectionError:
        return True
    ws.sendClose()
    return False


def _mainsail_warns(version: str, minimum: str = "v0.8.0-306") -> bool:
    """Mainsail's dependency check: release before the first '-', then the build number."""

    def parts(text: str) -> tuple[tuple[int, ...], int]:
        release, _, rest = text.partition("-")
        build = rest.split("-")[0]
        return tuple(int(n) for n in release.lstrip("v").split(".")), int(build) if build.isdigit() else 0

    (have, have_build), (need, need_build) = parts(version), parts(minimum)
    return need > have or (need == have and have_build < need_build)


@pytest_twisted.ensureDeferred
async def test_fluidd_startup_without_authorization_section(tmp_path):
    svc = await _open(tmp_path)
    try:
        code, body, _ = await svc.request("GET", "/access/oneshot_token")
        assert code == 200 and isinstance(body["result"], str)
        ws = await connect_ws(svc.ws_url + "?token=" + body["result"])
        assert "connection_id" in await ws.call("server.connection.identify", IDENTIFY)
        info = await ws.call("server.info")
        assert "authorization" in info["components"] and "authorization" not in info["failed_components"]
        assert info["moontwist_version"] in info["moonraker_version"]
        assert "moontwist" in info["moonraker_version"] and not _mainsail_warns(info["moonraker_version"])
        assert _mainsail_warns("v0.1.0-moontwist")  # what earlier builds reported
        assert await ws.call("access.info") == {
            "default_source": "moonraker", "available_sources": ["moonraker"],
            "login_required": False, "trusted": True,
        }
        ws.sendClose()
        ws = await svc.ws()  # no token at all
        assert (await ws.call("access.get_user"))["username"] == "_TRUSTED_USER_"
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_users_and_api_key_without_authorization_section(tmp_path):
    svc = await _open(tmp_path)
    try:
        code, body, _ = await svc.request("POST", "/access/user", json={"username": "alice", "password": "pw"})
        assert code == 200 and body["result"]["action"] == "user_created"
        token = body["result"]["token"]
        code, body, _ = await svc.request("GET", "/access/user", headers={"Authorization": f"Bearer {token}"})
        assert body["result"]["username"] == "alice"
        assert [u["username"] for u in (await svc.get("/access/users/list"))[1]["result"]["users"]] == ["alice"]
        key = (await svc.get("/access/api_key"))[1]["result"]
        new_key = (await svc.request("POST", "/access/api_key"))[1]["result"]
        assert new_key != key
        assert (await svc.request("GET", "/server/info", headers={"X-Api-Key": new_key}))[0] == 200
        # credentials that are offered but wrong are refused even here
        for headers in ({"X-Api-Key": key}, {"Authorization": "Bearer bogus"}, {"Authorization": "Basic x"}):
            code, body, _ = await svc.request("GET", "/server/info", headers=headers)
            assert code == 401, headers
        assert (await svc.get("/server/info?token=bogus"))[0] == 401
        ws = await connect_ws(svc.ws_url + "?token=bogus")
        assert (await ws.rpc("server.info"))["error"]["code"] == 401
        ws.sendClose()
        code, body, _ = await svc.request("DELETE", "/access/user", json={"username": "alice"})
        assert code == 200 and body["result"]["action"] == "user_deleted"
    finally:
        await svc.service.stopService()


async def _preflight(svc, origin: str) -> tuple[int, list[str] | None]:
    code, _, headers = await svc.request("OPTIONS", "/server/files/upload", headers={"Origin": origin})
    return code, headers.getRawHeaders("access-control-allow-origin")


@pytest_twisted.ensureDeferred
async def test_cors_without_authorization_section_is_same_origin_only(tmp_path):
    svc = await _open(tmp_path)
    same = f"http://127.0.0.1:{svc.port}"
    try:
        assert await _preflight(svc, same) == (204, [same])
        assert await _preflight(svc, CROSS_ORIGIN) == (403, None)
        code, _, headers = await svc.request("GET", "/server/info", headers={"Origin": CROSS_ORIGIN})
        assert code == 200 and not headers.hasHeader("access-control-allow-origin")
        code, _, headers = await svc.request("GET", "/server/info", headers={"Origin": same})
        assert headers.getRawHeaders("access-control-allow-origin") == [same]
        assert not await _refuses_ws(svc, same)
        assert await _refuses_ws(svc, CROSS_ORIGIN)
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_cors_with_authorization_section(tmp_path, kit):
    # trusted_clients alone enables no cross-origin access (Moonraker checks them only with cors_domains)
    svc = await kit.start_auth(tmp_path, "trusted_clients:\n  127.0.0.0/8\n")
    try:
        assert await _preflight(svc, "http://127.0.0.1:8080") == (403, None)
        assert await _refuses_ws(svc, "http://127.0.0.1:8080")
    finally:
        await svc.service.stopService()
    svc = await kit.start_auth(tmp_path, "trusted_clients:\n  127.0.0.0/8\ncors_domains:\n  *.lan\n")
    try:
        for origin in ("http://127.0.0.1:8080", "http://printer.lan"):  # a trusted address, a pattern
            assert await _preflight(svc, origin) == (204, [origin])
            assert not await _refuses_ws(svc, origin)
        assert await _preflight(svc, "http://printer.lan.evil.io") == (403, None)
        assert await _refuses_ws(svc, "http://10.1.2.3:8080")
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_default_config_lets_a_frontend_on_another_port_in(tmp_path):
    svc = await start_service(str(tmp_path / "data"))  # writes the default config
    try:
        text = open(svc.server.config_file).read()
        assert "[authorization]" in text and "*://app.fluidd.xyz" in text
        info = (await svc.get("/server/info"))[1]["result"]
        assert not [w for w in info["warnings"] if "authorization" in w]
        for origin in ("http://localhost:8080", "http://127.0.0.1:8080", "http://printer.local", "https://my.mainsail.xyz"):
            assert await _preflight(svc, origin) == (204, [origin]), origin
        assert await _preflight(svc, "http://evil.example") == (403, None)
        ws = await svc.ws(origin=CROSS_ORIGIN)  # loopback is trusted: no credentials needed
        assert "connection_id" in await ws.call("server.connection.identify", IDENTIFY)
        assert (await ws.call("access.info"))["trusted"] is True
        ws.sendClose()
    finally:
        await svc.service.stopService()
