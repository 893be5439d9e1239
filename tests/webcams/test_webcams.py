"""server.webcams.* through HTTP and the websocket, against a running service."""

from __future__ import annotations

import json
import shutil
import uuid
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.logger import Logger

from moontwist.config import Config, ConfigError
from moontwist.plugins.webcams import WebcamPlugin
from mtclient import REPO, RPCError, free_port, start_service

CONFIG = """\
[server]
[webcam door]
location: door
service: webrtc-camerastreamer
target_fps: 30
stream_url: /webcam/stream
snapshot_url: http://camera.lan/snap
rotation: 90
aspect_ratio: 16:9
"""
MOONRAKER_DB = f"{REPO}/tests/data/moonraker_db/moonraker-sql.db"
BED_CAM_UID = "97f7caeb-addf-47f6-b63c-738af8e35b7b"
JSON = {"headers": {"Content-Type": "application/json"}}


def _body(**fields) -> dict:
    return {"data": json.dumps(fields).encode(), **JSON}


@pytest_twisted.async_yield_fixture
async def service(tmp_path):
    svc = await start_service(str(tmp_path / "data"), CONFIG)
    yield svc
    await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_create_update_delete(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\n")
    try:
        assert "webcam" in (await svc.get("/server/info"))[1]["result"]["components"]
        assert await svc.get("/server/webcams/list") == (200, {"result": {"webcams": []}})
        ws = await svc.ws()
        code, body = await svc.post(
            "/server/webcams/item", **_body(name="Cam", stream_url="/webcam/?action=stream")
        )
        assert code == 200
        cam = body["result"]["webcam"]
        expected = {
            "name": "Cam",
            "location": "printer",
            "service": "mjpegstreamer",
            "enabled": True,
            "icon": "mdiWebcam",
            "target_fps": 15,
            "target_fps_idle": 5,
            "stream_url": "/webcam/?action=stream",
            "snapshot_url": "",
            "flip_horizontal": False,
            "flip_vertical": False,
            "rotation": 0,
            "aspect_ratio": "4:3",
            "extra_data": {},
            "source": "database",
            "uid": cam["uid"],
        }
        assert cam == expected and list(cam) == list(expected)  # the documented order
        note = await ws.next_notification("notify_webcams_changed")
        assert note["params"] == [{"webcams": [cam]}]
        uid = cam["uid"]
        assert await ws.call("server.webcams.get_item", {"uid": uid}) == {"webcam": cam}
        assert (await svc.get("/server/webcams/item?name=Cam"))[1]["result"] == {"webcam": cam}
        # update by uid: only the given fields change (query-string arguments too)
        updated = await ws.call(
            "server.webcams.post_item",
            {
                "uid": uid,
                "name": "Bed",
                "rotation": 180,
                "flip_vertical": True,
                "extra_data": {"k": 1},
            },
        )
        assert updated["webcam"] == {
            **cam,
            "name": "Bed",
            "rotation": 180,
            "flip_vertical": True,
            "extra_data": {"k": 1},
        }
        assert (await ws.next_notification("notify_webcams_changed"))["params"][0]["webcams"] == [
            updated["webcam"]
        ]
        code, body = await svc.post("/server/webcams/item?name=Bed&target_fps=25&enabled=false")
        assert code == 200 and body["result"]["webcam"]["target_fps"] == 25
        assert (
            body["result"]["webcam"]["enabled"] is False and body["result"]["webcam"]["uid"] == uid
        )
        await ws.next_notification("notify_webcams_changed")
        second = (
            await ws.call(
                "server.webcams.post_item", {"name": "Nozzle", "stream_url": "http://x/s"}
            )
        )["webcam"]
        await ws.next_notification("notify_webcams_changed")
        assert [c["name"] for c in (await ws.call("server.webcams.list"))["webcams"]] == [
            "Bed",
            "Nozzle",
        ]
        with pytest.raises(RPCError) as err:  # a rename onto another webcam's name
            await ws.call("server.webcams.post_item", {"uid": second["uid"], "name": "Bed"})
        assert err.value.code == 400 and "Bed" in err.value.message
        code, body, _ = await svc.request("DELETE", f"/server/webcams/item?uid={uid}")
        assert code == 200 and body["result"]["webcam"]["name"] == "Bed"
        assert (await ws.next_notification("notify_webcams_changed"))["params"][0]["webcams"] == [
            second
        ]
        deleted = await ws.call("server.webcams.delete_item", {"name": "Nozzle"})
        assert deleted == {"webcam": second}
        assert (await ws.next_notification("notify_webcams_changed"))["params"][0] == {
            "webcams": []
        }
        code, _ = await svc.get(f"/server/webcams/item?uid={uid}")
        assert code == 404
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_config_webcams(service):
    instance = uuid.UUID(open(f"{service.server.datapath}/.moonraker.uuid").read().strip())
    door = {
        "name": "door",
        "location": "door",
        "service": "webrtc-camerastreamer",
        "enabled": True,
        "icon": "mdiWebcam",
        "target_fps": 30,
        "target_fps_idle": 5,
        "stream_url": "/webcam/stream",
        "snapshot_url": "http://camera.lan/snap",
        "flip_horizontal": False,
        "flip_vertical": False,
        "rotation": 90,
        "aspect_ratio": "16:9",
        "extra_data": {},
        "source": "config",
        "uid": str(uuid.uuid5(instance, "moonraker.webcam.door")),
    }
    assert (await service.get("/server/webcams/list"))[1]["result"] == {"webcams": [door]}
    ws = await service.ws()
    for method, params in (
        ("server.webcams.post_item", {"name": "door", "rotation": 0}),
        ("server.webcams.post_item", {"uid": door["uid"], "location": "x"}),
        ("server.webcams.delete_item", {"uid": door["uid"]}),
        ("server.webcams.delete_item", {"name": "door"}),
    ):
        with pytest.raises(RPCError) as err:
            await ws.call(method, params)
        assert (
            err.value.code == 400
            and "door" in err.value.message
            and "configuration" in err.value.message
        )
    # a database row by the same name is hidden; the configured webcam stays first
    await ws.call(
        "server.database.post_item",
        {"namespace": "webcams", "key": "u1", "value": {"name": "door", "urlStream": "/x"}},
    )
    await ws.call(
        "server.database.post_item",
        {"namespace": "webcams", "key": "u2", "value": {"name": "side", "urlStream": "/y"}},
    )
    names = [(c["name"], c["source"]) for c in (await ws.call("server.webcams.list"))["webcams"]]
    assert names == [("door", "config"), ("side", "database")]
    info = (await service.get("/server/info"))[1]["result"]
    assert not any("webcam" in w for w in info["warnings"])


@pytest_twisted.ensureDeferred
async def test_persistence_and_moonraker_import(tmp_path):
    datapath = tmp_path / "data"
    (datapath / "database").mkdir(parents=True)
    shutil.copy(MOONRAKER_DB, datapath / "database" / "moonraker-sql.db")
    svc = await start_service(str(datapath), CONFIG)
    try:
        cams = (await svc.get("/server/webcams/list"))[1]["result"]["webcams"]
        assert [c["name"] for c in cams] == ["door", "Bed Cam"]
        door_uid = cams[0]["uid"]
        assert cams[1] == {
            "name": "Bed Cam",
            "location": "printer",
            "service": "mjpegstreamer-adaptive",
            "enabled": True,
            "icon": "mdiWebcam",
            "target_fps": 15,
            "target_fps_idle": 5,
            "stream_url": "/webcam/?action=stream",
            "snapshot_url": "/webcam/?action=snapshot",
            "flip_horizontal": False,
            "flip_vertical": True,
            "rotation": 0,
            "aspect_ratio": "4:3",
            "extra_data": {},
            "source": "database",
            "uid": BED_CAM_UID,
        }
        code, body = await svc.post("/server/webcams/item", **_body(uid=BED_CAM_UID, target_fps=10))
        assert code == 200 and body["result"]["webcam"]["target_fps"] == 10
        code, body = await svc.post(
            "/server/webcams/item", **_body(name="New", stream_url="/n", icon="mdiDoor")
        )
        new = body["result"]["webcam"]
        # stored with Moonraker's field names, readable by frontends through the database API
        code, body = await svc.get(f"/server/database/item?namespace=webcams&key={new['uid']}")
        assert (
            body["result"]["value"]["urlStream"] == "/n"
            and body["result"]["value"]["icon"] == "mdiDoor"
        )
    finally:
        await svc.service.stopService()
    svc = await start_service(str(datapath), CONFIG)
    try:
        cams = (await svc.get("/server/webcams/list"))[1]["result"]["webcams"]
        assert [(c["name"], c["uid"]) for c in cams] == [
            ("door", door_uid),
            ("Bed Cam", BED_CAM_UID),
            ("New", new["uid"]),
        ]
        assert cams[1]["target_fps"] == 10 and cams[2] == new
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_bad_input(service):
    ws = await service.ws()
    assert (await service.get("/server/webcams/item?uid=nope"))[0] == 404
    assert (await service.get("/server/webcams/item?name=nope"))[0] == 404
    code, body, _ = await service.request("DELETE", "/server/webcams/item?name=nope")
    assert code == 404 and "nope" in body["error"]["message"]
    # argument errors are JSON-RPC "invalid params" (-32602), 400 over HTTP
    for method, params, status, word in (
        ("server.webcams.get_item", {}, -32602, "uid"),
        ("server.webcams.post_item", {"uid": "nope", "name": "x"}, 404, "nope"),
        ("server.webcams.post_item", {"stream_url": "/s"}, -32602, "name"),
        ("server.webcams.post_item", {"name": "x"}, -32602, "stream_url"),
        ("server.webcams.post_item", {"name": "", "stream_url": "/s"}, -32602, "name"),
        (
            "server.webcams.post_item",
            {"name": "x", "stream_url": "/s", "target_fps": "fast"},
            -32602,
            "target_fps",
        ),
        (
            "server.webcams.post_item",
            {"name": "x", "stream_url": "/s", "enabled": "maybe"},
            -32602,
            "enabled",
        ),
        (
            "server.webcams.post_item",
            {"name": "x", "stream_url": "/s", "rotation": 45},
            -32602,
            "rotation",
        ),
        (
            "server.webcams.post_item",
            {"name": "x", "stream_url": "/s", "aspect_ratio": "wide"},
            -32602,
            "aspect_ratio",
        ),
        (
            "server.webcams.post_item",
            {"name": "x", "stream_url": "/s", "extra_data": [1]},
            -32602,
            "extra_data",
        ),
        ("server.webcams.post_item", {"name": "x", "stream_url": ["/s"]}, -32602, "stream_url"),
        ("server.webcams.test", {"uid": "nope"}, 404, "nope"),
    ):
        with pytest.raises(RPCError) as err:
            await ws.call(method, params)
        assert (err.value.code, word in err.value.message) == (status, True), (
            method,
            params,
            err.value.message,
        )
    code, body = await service.post("/server/webcams/item?name=x&stream_url=/s&target_fps=fast")
    assert code == 400 and "target_fps" in body["error"]["message"]
    code, body = await service.post(
        "/server/webcams/item", **_body(name="x", stream_url="/s", aspect_ratio="4-3")
    )
    assert code == 400 and "aspect_ratio" in body["error"]["message"]
    assert (await service.get("/server/webcams/item"))[0] == 400
    assert [c["name"] for c in (await ws.call("server.webcams.list"))["webcams"]] == ["door"]


@pytest_twisted.ensureDeferred
async def test_webcam_test(service):
    ws = await service.ws()
    closed = free_port()
    for name, stream, snapshot in (
        ("up", "/stream", f"{service.base}/server/info"),
        ("down", "rtsp://cam.lan/s", f"http://127.0.0.1:{closed}/snap"),
        ("missing", "/s", f"{service.base}/nothing"),  # answers 404
    ):
        await ws.call(
            "server.webcams.post_item",
            {"name": name, "stream_url": stream, "snapshot_url": snapshot},
        )
    up = await ws.call("server.webcams.get_item", {"name": "up"})
    code, body = await service.post(f"/server/webcams/test?uid={up['webcam']['uid']}")
    assert code == 200 and body["result"] == {
        "name": "up",
        "snapshot_reachable": True,
        "snapshot_url": f"{service.base}/server/info",
        "stream_url": "http://127.0.0.1/stream",
    }
    result = await ws.call("server.webcams.test", {"name": "down"})
    assert result == {
        "name": "down",
        "snapshot_reachable": False,
        "snapshot_url": f"http://127.0.0.1:{closed}/snap",
        "stream_url": "rtsp://cam.lan/s",
    }
    result = await ws.call("server.webcams.test", {"name": "missing"})
    assert result["snapshot_reachable"] is False and result["stream_url"] == "http://127.0.0.1/s"
    # relative URLs resolve on the host the client used; a non-http snapshot isn't probed
    code, body = await service.post(
        "/server/webcams/test?name=door", headers={"Host": "printer.lan:7125"}
    )
    assert body["result"] == {
        "name": "door",
        "snapshot_reachable": False,
        "snapshot_url": "http://camera.lan/snap",
        "stream_url": "http://printer.lan/webcam/stream",
    }


@pytest.mark.parametrize(
    "options, word",
    [
        ("", "stream_url"),
        ("stream_url: /s\nrotation: 45", "rotation"),
        ("stream_url: /s\naspect_ratio: wide", "aspect_ratio"),
    ],
)
def test_config_errors(tmp_path, options, word):
    config = Config.from_string(f"[webcam cam]\n{options}\n")
    server = SimpleNamespace(lookup=lambda name: object(), datapath=str(tmp_path), logger=Logger)
    with pytest.raises(ConfigError, match=word):
        WebcamPlugin().configure(server=server, config=config)
