"""A new API key takes the old one's rights away from connections that used it."""

from __future__ import annotations

import pytest_twisted

from mtclient import RPCError, connect_ws


async def _status(ws, method: str) -> int:
    try:
        await ws.call(method)
    except RPCError as exc:
        return exc.code
    return 200


@pytest_twisted.ensureDeferred
async def test_rotation_downgrades_websockets_of_the_old_key(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        old = kit.api_key(svc)
        by_header = await connect_ws(svc.ws_url, headers={"X-Api-Key": old})
        by_identify = await connect_ws(svc.ws_url)
        await by_identify.call(
            "server.connection.identify",
            {"client_name": "t", "version": "1", "type": "other", "url": "x", "api_key": old},
        )
        by_token = await connect_ws(svc.ws_url, headers={"Authorization": f"Bearer {(await kit.create_user(svc))['token']}"})
        for ws in (by_header, by_identify, by_token):
            assert await ws.call("access.get_api_key") == old
        code, body = await svc.post("/access/api_key", headers={"X-Api-Key": old})
        assert code == 200 and body["result"] != old
        for ws in (by_header, by_identify):
            assert await _status(ws, "access.get_api_key") == 401
            assert await _status(ws, "server.info") == 401
        assert await by_token.call("access.get_api_key") == body["result"]  # a user's login is not the key
        for ws in (by_header, by_identify, by_token):
            ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_connection_that_rotates_keeps_its_rights(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        old = kit.api_key(svc)
        rotating = await connect_ws(svc.ws_url, headers={"X-Api-Key": old})
        other = await connect_ws(svc.ws_url, headers={"X-Api-Key": old})
        new = await rotating.call("access.post_api_key")
        assert await rotating.call("access.get_api_key") == new
        assert await _status(other, "access.get_api_key") == 401
        rotating.sendClose()
        other.sendClose()
    finally:
        await svc.service.stopService()
