"""The landing page at /, GET /server/redirect, [server] route_prefix and max_websocket_connections."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq

from moontwist.config import ConfigError
from moontwist.server import Server, ServerOptions
from mtclient import connect_ws, start_service, wait_for

AUTH = "[server]\nhost: 127.0.0.1\n{server}\n[authorization]\ncors_domains:\n  *://app.fluidd.xyz\n  http://*.local\n"


async def _service(tmp_path, server_options: str = "", auth: bool = True):
    text = AUTH.format(server=server_options) if auth else "[server]\nhost: 127.0.0.1\n" + server_options
    return await start_service(str(tmp_path / "data"), text)


def _api_key(svc) -> str:
    return svc.server.lookup("identify_credentials").__self__.auth.api_key


async def _text(svc, path: str, **kwargs):
    resp = await treq.get(svc.base + path, allow_redirects=False, **kwargs)
    return resp.code, resp.headers, (await resp.content()).decode()


@pytest_twisted.ensureDeferred
async def test_landing_page_without_and_with_credentials(tmp_path):
    svc = await _service(tmp_path)
    try:
        svc.server.warnings.append("<script>alert(1)</script> in a warning")
        code, headers, page = await _text(svc, "/")
        assert code == 200
        assert headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
        assert "<h1>moontwist</h1>" in page and "not authorized" in page
        assert "Klipper" in page and "127.0.0.1" in page
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        code, _, page = await _text(svc, "/", headers={"X-Api-Key": _api_key(svc)})
        assert code == 200 and "is authorized" in page
        # HEAD and the other methods
        resp = await treq.request("POST", svc.base + "/")
        assert resp.code == 405
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_redirect_only_to_allowed_origins_and_without_credentials(tmp_path):
    svc = await _service(tmp_path)
    try:
        for url in ("http://app.fluidd.xyz/", "https://app.fluidd.xyz/#/settings", "http://printer.local/x"):
            code, headers, _ = await _text(svc, "/server/redirect", params={"url": url})
            assert code == 302, url
            assert headers.getRawHeaders("location") == [url]
        for url in ("http://evil.example/", "javascript:alert(1)", "//app.fluidd.xyz", "http://app.fluidd.xyz\r\nX: y"):
            code, _, body = await _text(svc, "/server/redirect", params={"url": url})
            assert code == 400 and "Unauthorized URL redirect" in body, url
        code, _, body = await _text(svc, "/server/redirect")
        assert code == 400 and "No url argument provided" in body
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_redirect_without_cors_settings_is_refused(tmp_path):
    svc = await _service(tmp_path, auth=False)
    try:
        code, _, body = await _text(svc, "/server/redirect", params={"url": "http://app.fluidd.xyz/"})
        assert code == 400
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_route_prefix_moves_every_route(tmp_path):
    svc = await _service(tmp_path, "route_prefix: /moonraker/printer1/\n")
    try:
        key = {"X-Api-Key": _api_key(svc)}
        code, body = await svc.get("/moonraker/printer1/server/info", headers=key)
        assert code == 200 and body["result"]["klippy_state"]
        assert (await svc.get("/server/info", headers=key))[0] == 404
        assert (await svc.get("/moonraker/printer1x/server/info", headers=key))[0] == 404
        code, _, page = await _text(svc, "/moonraker/printer1/")
        assert code == 200 and 'href="/moonraker/printer1/server/info"' in page
        assert (await _text(svc, "/moonraker/printer1"))[0] == 200
        code, _, _ = await _text(svc, "/moonraker/printer1/server/info")
        assert code == 401  # the prefix changes nothing about authorization
        ws = await connect_ws(f"ws://127.0.0.1:{svc.port}/moonraker/printer1/websocket", headers=key)
        assert "klippy_state" in await ws.call("server.info")
        ws.sendClose()
        with pytest.raises(ConnectionError):
            await connect_ws(f"ws://127.0.0.1:{svc.port}/websocket", headers=key)
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_route_prefix_without_a_path_is_a_config_error(tmp_path):
    config = tmp_path / "moontwist.conf"
    config.write_text("[server]\nroute_prefix: /\n")
    server = Server(ServerOptions(datapath=str(tmp_path / "data"), config_file=str(config), use_entry_points=False))
    try:
        with pytest.raises(ConfigError, match="route_prefix"):
            await server.start()
    finally:
        await server.stop()
        server.close_log()


@pytest_twisted.ensureDeferred
async def test_max_websocket_connections(tmp_path):
    svc = await _service(tmp_path, "max_websocket_connections: 2\n", auth=False)
    try:
        first = await svc.ws()
        second = await svc.ws()
        with pytest.raises(ConnectionError, match="503"):
            await svc.ws()
        first.sendClose()
        await wait_for(lambda: svc.server.connections.count("websocket") == 1)
        third = await connect_ws(svc.ws_url)
        assert "klippy_state" in await third.call("server.info")
        second.sendClose()
        third.sendClose()
    finally:
        await svc.service.stopService()
