"""server.files.zip through HTTP and the websocket: contents, compression, refusals, notification."""

from __future__ import annotations

import io
import os
import zipfile

import pytest_twisted
import treq

from mtclient import RPCError, sleep


def data(fm, *parts):
    return fm.server.path(*parts)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def unzip(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: (zf.read(info), info.compress_type) for info in zf.infolist()}


async def rpc_error(ws, params):
    try:
        await ws.call("server.files.zip", params)
    except RPCError as exc:
        return exc
    raise AssertionError(f"zip succeeded: {params}")


@pytest_twisted.ensureDeferred
async def test_zip_file_and_folder_over_http(fm):
    write(data(fm, "gcodes", "parts", "a.gcode"), "G1 X1\n" * 200)
    write(data(fm, "gcodes", "parts", "deep", "b.gcode"), "G1 X2\n")
    write(data(fm, "config", "printer.cfg"), "[printer]\nkinematics: none\n")
    ws = await fm.ws()
    code, body = await fm.post(
        "/server/files/zip",
        json={"items": ["config/printer.cfg", "gcodes/parts"], "dest": "gcodes/out.zip"},
    )
    assert code == 200, body
    result = body["result"]
    assert result["action"] == "zip_files"
    dest = result["destination"]
    assert (dest["root"], dest["path"], dest["permissions"]) == ("gcodes", "out.zip", "rw")
    assert dest["size"] == os.path.getsize(data(fm, "gcodes", "out.zip")) and dest["modified"] > 0
    members = unzip(data(fm, "gcodes", "out.zip"))
    assert {name: content for name, (content, _) in members.items()} == {
        "config/printer.cfg": b"[printer]\nkinematics: none\n",
        "gcodes/parts/a.gcode": b"G1 X1\n" * 200,
        "gcodes/parts/deep/b.gcode": b"G1 X2\n",
    }
    assert {kind for _, kind in members.values()} == {zipfile.ZIP_DEFLATED}
    notes = []
    while not notes or notes[-1]["item"] != dest:  # the watcher also reports the files written above
        notes.append((await ws.next_notification("notify_filelist_changed"))["params"][0])
    assert notes[-1] == {"action": "create_file", "item": dest}
    assert not [n for n in notes if n["item"]["path"].startswith(".zip-")]
    await sleep(0.6)  # the watcher does not announce the archive a second time
    later = [m["params"][0] for m in ws.notifications.pending if m["method"] == "notify_filelist_changed"]
    assert not [n for n in later if n["item"]["path"] == "out.zip"], later
    assert not [n for n in os.listdir(data(fm, "gcodes")) if n.startswith(".zip-")]
    # the archive downloads like any file
    resp = await treq.get(fm.base + "/server/files/gcodes/out.zip")
    archive = await resp.content()
    assert zipfile.ZipFile(io.BytesIO(archive)).namelist() == list(members)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_store_only_default_dest_and_read_only_source(fm):
    write(data(fm, "logs", "klippy.log"), "log line\n" * 50)
    ws = await fm.ws()
    # Mainsail joins root and path with a doubled slash: "gcodes//name"
    result = await ws.call("server.files.zip", {"items": ["logs", "gcodes//slic3r_cube.gcode"], "store_only": True})
    dest = result["destination"]
    assert dest["root"] == "config" and dest["path"].startswith("collection-") and dest["path"].endswith(".zip")
    members = unzip(data(fm, "config", dest["path"]))
    assert members["logs/klippy.log"] == (b"log line\n" * 50, zipfile.ZIP_STORED)
    with open(data(fm, "gcodes", "slic3r_cube.gcode"), "rb") as f:
        assert members["gcodes/slic3r_cube.gcode"] == (f.read(), zipfile.ZIP_STORED)
    # an existing archive is replaced
    again = await ws.call("server.files.zip", {"items": ["logs/klippy.log"], "dest": "config/" + dest["path"]})
    assert list(unzip(data(fm, "config", again["destination"]["path"]))) == ["logs/klippy.log"]
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_bad_items_and_destinations_are_refused(fm, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, data(fm, "gcodes", "link.txt"))
    os.makedirs(data(fm, "gcodes", "folder"))
    os.symlink(outside, data(fm, "gcodes", "folder", "leak.txt"))
    write(data(fm, "gcodes", "folder", "ok.gcode"), "G28\n")
    ws = await fm.ws()
    exc = await rpc_error(ws, {"items": ["gcodes/nope.gcode", "gcodes/slic3r_cube.gcode", "config/gone.cfg"]})
    assert exc.code == 404 and "gcodes/nope.gcode" in exc.message and "config/gone.cfg" in exc.message
    assert (await rpc_error(ws, {"items": []})).code == 400
    assert (await rpc_error(ws, {"items": ["nosuchroot/a"]})).code == 400
    for item in ("gcodes/../config/printer.cfg", "gcodes/link.txt", "/etc/passwd", "gcodes/sub/../../x"):
        exc = await rpc_error(ws, {"items": [item]})
        assert exc.code in (400, 403), (item, exc)
    for dest in ("logs/out.zip", "gcodes/../../out.zip", "gcodes/missing_dir/out.zip", "gcodes/folder", "gcodes"):
        exc = await rpc_error(ws, {"items": ["gcodes/slic3r_cube.gcode"], "dest": dest})
        assert 400 <= exc.code < 500, (dest, exc)
    assert not os.path.exists(data(fm, "logs", "out.zip")) and not os.path.exists(tmp_path / "out.zip")
    # a symlink inside a folder that leads out of the root is left out
    result = await ws.call("server.files.zip", {"items": ["gcodes/folder"], "dest": "gcodes/f.zip"})
    assert list(unzip(data(fm, "gcodes", result["destination"]["path"]))) == ["gcodes/folder/ok.gcode"]
    # HTTP: the exact route wins over /server/files/*, read-only root refused with 403
    code, body = await fm.post("/server/files/zip", json={"items": ["gcodes/folder"], "dest": "logs/x.zip"})
    assert code == 403, body
    code, body = await fm.post("/server/files/zip", json={"dest": "gcodes/x.zip"})
    assert code == 400 and "items" in body["error"]["message"]
    ws.sendClose()
