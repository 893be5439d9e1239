"""Pages on other sites can't make a browser act on the printer (CSRF, DNS rebinding).

The service runs the config moontwist writes on first start (it trusts the LAN,
so a browser on the LAN carries the "credentials"), with the simulated printer.
"""

from __future__ import annotations

import pytest_twisted
from security import rawhttp

from moontwist.server import DEFAULT_CONFIG
from mtclient import connect_ws, start_service, wait_for

EVIL = "http://evil.example"
FORM = "application/x-www-form-urlencoded"


@pytest_twisted.async_yield_fixture
async def lan(tmp_path):
    svc = await start_service(str(tmp_path / "data"), DEFAULT_CONFIG + "\n[simulator]\nspeed: 50\n", simulate=True)
    await wait_for(lambda: svc.server.klippy_state == "ready")
    yield svc
    await svc.service.stopService()


async def _target(svc) -> float:
    code, body = await svc.get("/printer/objects/query?extruder=target")
    assert code == 200
    return body["result"]["status"]["extruder"]["target"]


async def _form_post(svc, host: str, origin: str | None, script: str) -> tuple[int, dict, object]:
    body = f"script={script.replace(' ', '+')}".encode()
    head = f"POST /printer/gcode/script HTTP/1.1\nHost: {host}\nContent-Type: {FORM}\nContent-Length: {len(body)}"
    if origin is not None:
        head += f"\nOrigin: {origin}"
    return await rawhttp.request(svc.port, head, body)


@pytest_twisted.ensureDeferred
async def test_form_post_from_another_site_is_refused(lan):
    local = f"127.0.0.1:{lan.port}"
    status, _, body = await _form_post(lan, local, EVIL, "M104 S123")
    assert status == 403 and "evil.example" in body["error"]["message"]
    # DNS rebinding: evil.example resolves to the printer, so Host and Origin agree
    status, _, _ = await _form_post(lan, f"evil.example:{lan.port}", f"http://evil.example:{lan.port}", "M104 S124")
    assert status == 403
    assert await _target(lan) == 0
    # the same form without an Origin (curl, scripts) and from a page served by this host still work
    status, _, _ = await _form_post(lan, local, None, "M104 S30")
    assert status == 200 and await _target(lan) == 30


@pytest_twisted.ensureDeferred
async def test_frontends_served_by_this_machine_and_cors_domains_keep_working(lan):
    # Mainsail/Fluidd behind nginx on port 80: nginx forwards Host as the browser sent it
    for name in ("192.168.1.50", "mainsailos", "voron.local", "[fe80::1]", "localhost"):
        status, _, body = await _form_post(lan, name, f"http://{name}", "M104 S40")
        assert status == 200, (name, body)
    # a frontend on another host named in cors_domains (*.lan), and the hosted Fluidd
    for origin in ("http://fluidd.lan", "https://app.fluidd.xyz"):
        status, headers, body = await _form_post(lan, "printer.lan", origin, "M104 S41")
        assert status == 200, (origin, body)
        assert headers["access-control-allow-origin"] == origin
    assert await _target(lan) == 41
    # a public name is only this machine when cors_domains says so
    status, _, _ = await _form_post(lan, "printer.example.com", "http://printer.example.com", "M104 S42")
    assert status == 403


@pytest_twisted.ensureDeferred
async def test_reading_is_still_allowed_without_cors_headers(lan):
    status, headers, body = await rawhttp.request(lan.port, f"GET /server/info HTTP/1.1\nHost: x\nOrigin: {EVIL}")
    assert status == 200 and "access-control-allow-origin" not in headers
    # a GET that is an alias of an action is refused to another site, with or without Origin
    for extra in (f"Origin: {EVIL}", "Sec-Fetch-Site: cross-site"):
        status, _, _ = await rawhttp.request(
            lan.port, f"GET /server/files/metascan?filename=a.gcode HTTP/1.1\nHost: x\n{extra}"
        )
        assert status == 403, extra
    status, _, _ = await rawhttp.request(
        lan.port, "GET /server/files/metascan?filename=a.gcode HTTP/1.1\nHost: x\nSec-Fetch-Site: same-origin"
    )
    assert status != 403
    # images and links from a hosted frontend (thumbnails, log downloads) still load
    status, _, _ = await rawhttp.request(
        lan.port, "GET /server/files/moonraker.log HTTP/1.1\nHost: x\nSec-Fetch-Site: cross-site"
    )
    assert status != 403


async def _upgrade(svc, host: str, origin: str) -> int:
    client = await rawhttp.connect(svc.port)
    client.send(
        f"GET /websocket HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    try:
        await wait_for(lambda: b"\r\n\r\n" in client.received)
        return int(client.received.split()[1])
    finally:
        client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_websocket_upgrades_from_other_sites_are_refused(lan):
    assert await _upgrade(lan, f"127.0.0.1:{lan.port}", EVIL) == 403
    assert await _upgrade(lan, f"evil.example:{lan.port}", f"http://evil.example:{lan.port}") == 403
    assert await _upgrade(lan, "mainsailos.local", "http://mainsailos.local") == 101
    assert await _upgrade(lan, f"127.0.0.1:{lan.port}", "http://fluidd.lan") == 101
    ws = await connect_ws(lan.ws_url, origin="http://mainsailos.local")
    assert (await ws.call("server.info"))["klippy_state"] == "ready"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_upload_from_another_site_is_refused_before_its_body(lan):
    client = await rawhttp.connect(lan.port)
    client.send(
        b"POST /server/files/upload HTTP/1.1\r\nHost: x\r\nOrigin: " + EVIL.encode()
        + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000000\r\n\r\n--b\r\n"
    )
    status, _, _ = await client.wait_response()
    assert status == 403
    assert await client.wait_closed(5)


@pytest_twisted.ensureDeferred
async def test_a_rebound_name_is_not_a_trusted_client(lan):
    # The attacker's page, rebound to this address, reads "same-origin": no Origin header at all.
    status, _, _ = await rawhttp.request(lan.port, f"GET /access/api_key HTTP/1.1\nHost: evil.example:{lan.port}")
    assert status == 401
    ws_status = await _upgrade(lan, f"evil.example:{lan.port}", f"http://evil.example:{lan.port}")
    assert ws_status == 403
    # local names, names in cors_domains and real credentials are fine
    for host in (f"127.0.0.1:{lan.port}", "mainsailos.local", "printer.lan", "voron"):
        status, _, body = await rawhttp.request(lan.port, f"GET /access/api_key HTTP/1.1\nHost: {host}")
        assert status == 200, (host, body)
    key = body["result"]
    status, _, _ = await rawhttp.request(
        lan.port, f"GET /server/info HTTP/1.1\nHost: printer.example.com\nX-Api-Key: {key}"
    )
    assert status == 200
