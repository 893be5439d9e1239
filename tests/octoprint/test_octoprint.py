"""OctoPrint emulation driven by a real OctoPrint client library (octorest) and slicer-style uploads."""

from __future__ import annotations

import io
import os
import zipfile

import octorest
import pytest
import pytest_twisted
import requests
from PIL import Image
from twisted.internet.threads import deferToThread

from mtclient import RPCError, start_service, wait_for

AUTH_CONFIG = "[server]\nmax_upload_size: 2\n[authorization]\n[octoprint_compat]\n[simulator]\nspeed: 20\n"


def gcode(moves: int = 400) -> bytes:
    lines = [";Generated with Cura_SteamEngine 5.6.0", ";TIME:1200", ";Filament used: 1.5m", "G28", "M83"]
    lines += [f"G1 X{10 + i % 2 * 20} Y{10 + i % 50} E0.5 F3000" for i in range(moves)]
    return ("\n".join(lines) + "\n").encode()


def png(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def ufp(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def api_key(svc) -> str:
    return svc.server.lookup("identify_credentials").__self__.auth.api_key


async def start(tmp_path, config: str = AUTH_CONFIG, simulate: bool = True):
    svc = await start_service(str(tmp_path / "data"), config, simulate=simulate)
    if simulate:
        await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    return svc


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start(tmp_path)
    yield running
    await running.service.stopService()


def gcodes(svc, *parts: str) -> str:
    return svc.server.path("gcodes", *parts)


def leftovers(svc) -> list[str]:
    return [n for _, _, names in os.walk(gcodes(svc)) for n in names if n.startswith(".upload-")]


@pytest_twisted.ensureDeferred
async def test_slicer_session_with_octorest(svc):
    key = api_key(svc)
    # heaters are there at once after Klippy is ready (Moonraker may report none for a moment)
    client = await deferToThread(octorest.OctoRest, url=svc.base, apikey=key)
    assert client.version["text"].startswith("OctoPrint") and client.version["api"] == "0.1"
    printer = await deferToThread(client.printer)
    assert set(printer["temperature"]) == {"tool0", "bed"}
    assert printer["state"]["text"] == "Operational" and printer["state"]["flags"]["ready"] is True
    job = await deferToThread(client.job_info)
    assert job["state"] == "Operational" and job["job"]["file"]["name"] is None
    settings = await deferToThread(client.settings)
    assert settings["plugins"]["UltimakerFormatPackage"]["installed"] is True
    assert settings["webcam"]["streamUrl"] == "/webcam/?action=stream"
    profiles = await deferToThread(client.printer_profiles)
    assert profiles["profiles"]["_default"]["heatedBed"] is True

    upload = await deferToThread(client.upload, ("cube.gcode", io.BytesIO(gcode())))
    assert upload["done"] is True and upload["files"]["local"]["name"] == "cube.gcode"
    assert upload["item"]["path"] == "cube.gcode" and upload["print_started"] is False
    await deferToThread(client.select, "cube.gcode", print=True)  # POST /api/files/local/cube.gcode
    await wait_for(lambda: svc.server.print_state == "printing", timeout=10)
    printer = await deferToThread(client.printer)
    assert printer["state"]["text"] == "Printing" and printer["state"]["flags"]["printing"] is True
    job = await deferToThread(client.job_info)
    assert job["state"] == "Printing" and job["job"]["file"]["name"] == "cube.gcode"
    assert job["job"]["estimatedPrintTime"] == 1200 and 0 <= job["progress"]["completion"] <= 100
    # a second select while printing: 409
    with pytest.raises(RuntimeError, match="409"):
        await deferToThread(client.select, "cube.gcode", print=True)
    # single 'command' (octorest sends it for one line) and 'commands'
    await deferToThread(client.gcode, "M117 from octorest")
    code, body = await svc.get("/printer/objects/query?display_status", headers={"X-Api-Key": key})
    assert body["result"]["status"]["display_status"]["message"] == "from octorest"
    await deferToThread(client.gcode, "PAUSE\nM117 paused")
    await wait_for(lambda: svc.server.print_state == "paused", timeout=10)
    # Moonraker's own select path, while paused: 409
    resp = await deferToThread(requests.post, svc.base + "/api/files/moonraker/gcodes/cube.gcode",
                               json={"command": "select", "print": True}, headers={"X-Api-Key": key})
    assert resp.status_code == 409
    assert (await deferToThread(client.printer))["state"]["text"] == "Paused"


@pytest_twisted.ensureDeferred
async def test_prusaslicer_upload_with_print(svc):
    key = api_key(svc)
    version = await deferToThread(requests.get, svc.base + "/api/version", headers={"X-Api-Key": key})
    assert version.status_code == 200 and version.json()["text"].startswith("OctoPrint")
    resp = await deferToThread(
        requests.post, svc.base + "/api/files/local", headers={"X-Api-Key": key},
        files={"file": ("part one.gcode", gcode(), "application/octet-stream")},
        data={"print": "true", "path": "slicer"},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert "result" not in body and body["print_started"] is True and body["effectivePrint"] is True
    assert resp.headers["location"].endswith("/api/files/moonraker/gcodes/slicer/part%20one.gcode")
    assert resp.headers["location"].startswith("http://127.0.0.1:")
    await wait_for(lambda: svc.server.print_state == "printing", timeout=10)
    assert (svc.server.klippy.status["print_stats"]["filename"]) == "slicer/part one.gcode"
    # a select without print is a no-op (204), an unknown command 400, a missing file 404, another root 400
    post = lambda path, body: deferToThread(requests.post, svc.base + path, json=body, headers={"X-Api-Key": key})  # noqa: E731
    assert (await post("/api/files/moonraker/gcodes/slicer/part one.gcode", {"command": "select"})).status_code == 204
    assert (await post("/api/files/moonraker/gcodes/slicer/part one.gcode", {"command": "slice"})).status_code == 400
    assert (await post("/api/files/moonraker/gcodes/nope.gcode", {"command": "select"})).status_code == 404
    assert (await post("/api/files/moonraker/config/printer.cfg", {"command": "select"})).status_code == 400
    assert (await post("/api/files/local/../../etc/passwd", {"command": "select"})).status_code in (400, 403, 404)


@pytest_twisted.ensureDeferred
async def test_ufp_upload_unpacks_gcode_and_thumbnail(svc):
    key = api_key(svc)
    package = ufp({"3D/model.gcode": gcode(20), "Metadata/thumbnail.png": png(), "../../evil.gcode": b"G28\n",
                   "[Content_Types].xml": b"<Types/>"})
    for path in ("", "cura/new"):  # an existing folder, then one the upload creates
        resp = await deferToThread(
            requests.post, svc.base + "/api/files/local", headers={"X-Api-Key": key},
            files={"file": ("benchy.ufp", package, "application/octet-stream")}, data={"path": path},
        )
        assert resp.status_code == 201, resp.text
        rel = f"{path}/benchy.gcode".lstrip("/")
        assert resp.json()["item"]["path"] == rel
        with open(gcodes(svc, *rel.split("/")), "rb") as f:
            assert f.read() == gcode(20)
        assert os.path.isfile(gcodes(svc, *os.path.dirname(rel).split("/"), ".thumbs", "benchy.png"))
        assert not os.path.exists(gcodes(svc, *os.path.dirname(rel).split("/"), "benchy.ufp"))
        code, meta = await svc.get(f"/server/files/metadata?filename={rel}", headers={"X-Api-Key": key})
        assert code == 200
        sizes = sorted((t["width"], t["height"]) for t in meta["result"]["thumbnails"])
        assert sizes == [(32, 32), (64, 64)]
    assert not os.path.exists(svc.server.path("evil.gcode")) and not os.path.exists(gcodes(svc, "evil.gcode"))
    assert not leftovers(svc)


@pytest_twisted.ensureDeferred
async def test_bad_uploads_get_clear_errors_and_leave_nothing(svc):
    key = api_key(svc)

    async def upload(name: str, data: bytes, **fields):
        return await deferToThread(requests.post, svc.base + "/api/files/local", headers={"X-Api-Key": key},
                                   files={"file": (name, data, "application/octet-stream")}, data=fields)

    resp = await upload("broken.ufp", b"this is not a zip archive")
    assert resp.status_code == 400 and "UFP" in resp.json()["error"]["message"]
    resp = await upload("empty.ufp", ufp({"Metadata/thumbnail.png": png()}))
    assert resp.status_code == 400 and "3D/model.gcode" in resp.json()["error"]["message"]
    truncated = ufp({"3D/model.gcode": gcode(2000)})
    resp = await upload("cut.ufp", truncated[: len(truncated) // 2])
    assert resp.status_code == 400
    resp = await upload("model.stl", b"solid x\nendsolid x\n")
    assert resp.status_code == 415 and ".stl" in resp.json()["error"]["message"]
    resp = await upload("x.gcode", b"G28\n", root="config")
    assert resp.status_code == 400
    resp = await upload("../escape.gcode", b"G28\n")
    assert resp.status_code in (400, 403)
    # larger than max_upload_size (2 MiB): refused before the body is read
    resp = await upload("big.gcode", b"G1 X1\n" * 400_000)
    assert resp.status_code == 413
    # a package whose G-code inflates past max_upload_size
    bomb = ufp({"3D/model.gcode": b";" * (3 * 1024 * 1024)})
    resp = await upload("bomb.ufp", bomb)
    assert resp.status_code == 413
    for name in ("broken.gcode", "empty.gcode", "cut.gcode", "model.stl", "bomb.gcode", "big.gcode"):
        assert not os.path.exists(gcodes(svc, name))
    assert not leftovers(svc)
    # the server keeps answering
    assert (await svc.get("/api/version", headers={"X-Api-Key": key}))[0] == 200


@pytest_twisted.ensureDeferred
async def test_commands_and_bad_bodies(svc):
    key = api_key(svc)
    headers = {"X-Api-Key": key}
    code, body, _ = await svc.request("POST", "/api/printer/command", json={"commands": ["M117 a", "M117 b"]},
                                      headers=headers)
    assert code == 200 and body == {}
    code, body, _ = await svc.request("POST", "/api/printer/command", json={"commands": "G28"}, headers=headers)
    assert code == 400 and "commands" in body["error"]["message"]
    code, body, _ = await svc.request("POST", "/api/printer/command", json={"commands": [1, 2]}, headers=headers)
    assert code == 400
    code, _, _ = await svc.request("POST", "/api/printer/command", data=b"{" * 1000, headers={
        **headers, "Content-Type": "application/json"})
    assert code == 400
    code, _, _ = await svc.request("POST", "/api/printer/command", data=b" " * (17 * 1024 * 1024), headers={
        **headers, "Content-Type": "application/json"})
    assert code == 413
    # HTTP only: not JSON-RPC methods
    ws = await svc.ws(headers=headers)
    with pytest.raises(RPCError) as err:
        await ws.call("octoprint.version")
    assert err.value.code == -32601
    code, body, _ = await svc.request("POST", "/server/jsonrpc", headers=headers, json=[
        {"jsonrpc": "2.0", "method": "octoprint.printer", "id": 1},
        {"jsonrpc": "2.0", "method": "server.info", "id": 2}])
    assert body[0]["error"]["code"] == -32601 and "result" in body[1]


@pytest_twisted.ensureDeferred
async def test_no_credentials(svc):
    paths = ["/api/version", "/api/server", "/api/currentuser", "/api/settings", "/api/job", "/api/printer",
             "/api/printerprofiles"]
    for path in paths:
        assert (await svc.get(path))[0] == 401, path
        assert (await svc.get(path, headers={"X-Api-Key": "wrong"}))[0] == 401, path
    for path in ("/api/login", "/api/printer/command", "/api/files/moonraker/gcodes/x.gcode",
                 "/api/files/local/x.gcode"):
        assert (await svc.request("POST", path, json={"command": "select"}))[0] == 401, path
    resp = await deferToThread(requests.post, svc.base + "/api/files/local",
                               files={"file": ("x.gcode", b"G28\n")}, headers={"X-Api-Key": "wrong"})
    assert resp.status_code == 401
    assert not os.path.exists(gcodes(svc, "x.gcode")) and not leftovers(svc)
    with pytest.raises(RuntimeError, match="401"):
        await deferToThread(octorest.OctoRest, url=svc.base, apikey="wrong")


@pytest_twisted.ensureDeferred
async def test_options_offline_and_not_configured(tmp_path):
    config = ("[server]\n[octoprint_compat]\nenable_ufp: False\nflip_h: True\nflip_v: yes\nrotate_90: 1\n"
              "stream_url: http://cam.local/stream\nwebcam_enabled: False\n")
    svc = await start(tmp_path / "a", config, simulate=False)  # no Klippy at all
    try:
        code, settings = await svc.get("/api/settings")
        assert settings == {"plugins": {}, "feature": {"sdSupport": False, "temperatureGraph": False},
                            "webcam": {"flipH": True, "flipV": True, "rotate90": True,
                                       "streamUrl": "http://cam.local/stream", "webcamEnabled": False}}
        code, printer = await svc.get("/api/printer")
        assert printer["state"]["text"] == "Offline" and printer["state"]["flags"]["closedOrError"] is True
        assert (await svc.get("/api/job"))[1]["state"] == "Offline"
        assert (await svc.get("/api/server"))[1] == {"server": "1.5.0", "safemode": "settings"}
        code, body, _ = await svc.request("POST", "/api/printer/command", json={"command": "G28"})
        assert code == 409
        resp = await deferToThread(requests.post, svc.base + "/api/files/local",
                                   files={"file": ("a.ufp", ufp({"3D/model.gcode": b"G28\n"}))})
        assert resp.status_code == 415
    finally:
        await svc.service.stopService()
    plain = await start(tmp_path / "b", "[server]\n", simulate=False)
    try:
        assert (await plain.get("/api/version"))[0] == 404
        assert "octoprint_compat" not in (await plain.get("/server/info"))[1]["result"]["components"]
    finally:
        await plain.service.stopService()


def test_ufp_unpacking_refuses_what_it_should(tmp_path):
    from moontwist.api.errors import ServerError
    from moontwist.plugins.octoprint_compat.ufp import unpack_ufp

    src = tmp_path / "a.ufp"
    dest = tmp_path / "out.gcode"
    src.write_bytes(ufp({"/3D/model.gcode": b"G28\n", "Metadata/thumbnail.png": b"not a png"}))
    assert unpack_ufp(str(src), str(dest), 1000) is None  # a thumbnail that isn't a PNG is dropped
    assert dest.read_bytes() == b"G28\n"
    src.write_bytes(ufp({"3D/model.gcode": b"x" * 2000}))
    with pytest.raises(ServerError) as err:
        unpack_ufp(str(src), str(dest), 1000)
    assert err.value.status == 413 and not dest.exists()
