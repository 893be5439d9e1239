"""File manager through real sockets: listing, operations, uploads, downloads, safety, notifications."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest_twisted
import treq
from files.upload_client import (
    BOUNDARY,
    SAMPLES,
    multipart_body,
    raw_connect,
    raw_upload,
    sample,
    upload_head,
)

from mtclient import RPCError, sleep


def gcodes(fm, *parts):
    return fm.server.path("gcodes", *parts)


def leftovers(fm):
    return [n for n in os.listdir(gcodes(fm)) if n.startswith(".upload-")]


@pytest_twisted.ensureDeferred
async def test_roots_list_and_directory(fm):
    code, info = await fm.get("/server/info")
    assert {"gcodes", "config", "logs"} <= set(info["result"]["registered_directories"])
    code, roots = await fm.get("/server/files/roots")
    assert {r["name"]: r["permissions"] for r in roots["result"]}["logs"] == "r"
    os.makedirs(gcodes(fm, "sub", "deeper"))
    open(gcodes(fm, "sub", "deeper", "x.gcode"), "w").write("G1 X1\n")
    open(gcodes(fm, "notes.txt"), "w").write("hello")
    code, body = await fm.get("/server/files/list?root=gcodes")
    paths = {f["path"] for f in body["result"]}
    assert "sub/deeper/x.gcode" in paths and "notes.txt" not in paths
    code, body = await fm.get("/server/files/directory?path=gcodes&extended=true")
    result = body["result"]
    assert "notes.txt" in {f["filename"] for f in result["files"]}
    assert {d["dirname"] for d in result["dirs"]} == {"sub"}
    assert result["root_info"] == {"name": "gcodes", "permissions": "rw"}
    assert result["disk_usage"]["total"] > 0
    code, body = await fm.get("/server/files/list?root=nope")
    assert code == 400


@pytest_twisted.ensureDeferred
async def test_metadata_and_thumbnails(fm):
    ws = await fm.ws()
    meta = await ws.call("server.files.metadata", {"filename": "synthetic_orcaslicer_cube.gcode"})
    expected = json.loads(sample("synthetic_orcaslicer_cube.metadata.json"))["metadata"]
    assert meta["slicer"] == expected["slicer"] and meta["filename"] == "synthetic_orcaslicer_cube.gcode"
    thumbs = await ws.call("server.files.thumbnails", {"filename": "synthetic_orcaslicer_cube.gcode"})
    assert thumbs and all(t["thumbnail_path"].startswith(".thumbs/") for t in thumbs)
    again = await ws.call("server.files.metascan", {"filename": "synthetic_orcaslicer_cube.gcode"})
    assert again["slicer"] == meta["slicer"]
    code, body = await fm.get("/server/files/directory?path=gcodes&extended=true")
    orca = [f for f in body["result"]["files"] if f["filename"] == "synthetic_orcaslicer_cube.gcode"][0]
    assert orca["slicer"] == meta["slicer"] and orca["filename"] == "synthetic_orcaslicer_cube.gcode"
    try:
        await ws.call("server.files.metadata", {"filename": "missing.gcode"})
    except RPCError as exc:
        assert exc.code == 404
    else:
        raise AssertionError("missing file has metadata")
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_directory_move_copy_delete_with_notifications(fm):
    ws = await fm.ws()
    result = await ws.call("server.files.post_directory", {"path": "gcodes/newdir"})
    assert result["action"] == "create_dir" and result["item"]["path"] == "newdir"
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["action"] == "create_dir"
    moved = await ws.call("server.files.move", {"source": "gcodes/slic3r_cube.gcode", "dest": "gcodes/newdir/s.gcode"})
    assert moved["action"] == "move_file"
    assert moved["source_item"] == {"path": "slic3r_cube.gcode", "root": "gcodes"}
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["source_item"]["path"] == "slic3r_cube.gcode"
    copied = await ws.call("server.files.copy", {"source": "gcodes/newdir", "dest": "gcodes/copydir"})
    assert copied["action"] == "create_dir" and os.path.exists(gcodes(fm, "copydir", "s.gcode"))
    try:
        await ws.call("server.files.delete_directory", {"path": "gcodes/newdir"})
    except RPCError as exc:
        assert exc.code == 400 and "not empty" in exc.message
    deleted = await ws.call("server.files.delete_directory", {"path": "gcodes/newdir", "force": True})
    assert deleted["action"] == "delete_dir" and not os.path.exists(gcodes(fm, "newdir"))
    resp = await treq.delete(fm.base + "/server/files/gcodes/copydir/s.gcode")
    body = json.loads(await resp.content())
    assert resp.code == 200 and body["result"]["action"] == "delete_file"
    result = await ws.call("server.files.delete_file", {"path": "gcodes/prusaslicer_cube.gcode"})
    assert result["item"]["root"] == "gcodes" and not os.path.exists(gcodes(fm, "prusaslicer_cube.gcode"))
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_safety_refusals(fm):
    ws = await fm.ws()
    os.symlink("/etc", gcodes(fm, "escape"))
    for method, params in (
        ("server.files.get_directory", {"path": "gcodes/../config"}),
        ("server.files.get_directory", {"path": "gcodes/escape"}),
        ("server.files.post_directory", {"path": "gcodes/../../evil"}),
        ("server.files.post_directory", {"path": "logs/newdir"}),
        ("server.files.delete_file", {"path": "gcodes//etc/passwd"}),
        ("server.files.move", {"source": "gcodes/slic3r_cube.gcode", "dest": "logs/x.gcode"}),
        ("server.files.delete_directory", {"path": "gcodes"}),
        ("server.files.metadata", {"filename": "../config/moontwist.conf"}),
        ("server.files.post_directory", {"path": "gcodes/bad\x01name"}),
    ):
        reply = await ws.rpc(method, params)
        assert 400 <= reply["error"]["code"] < 500, (method, params, reply)
        assert reply["error"]["message"]
    for path in ("/server/files/gcodes/..%2F..%2Fetc/passwd", "/server/files/gcodes/escape/passwd", "/server/files/config/../../x"):
        resp = await treq.get(fm.base + path)
        assert 400 <= resp.code < 500
        await resp.content()
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_download_with_range_and_logs(fm):
    resp = await treq.get(fm.base + "/server/files/gcodes/slic3r_cube.gcode")
    data = await resp.content()
    assert resp.code == 200 and data == sample("slic3r_cube.gcode")
    assert resp.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    resp = await treq.get(fm.base + "/server/files/gcodes/slic3r_cube.gcode", headers={"Range": "bytes=10-19"})
    assert resp.code == 206 and await resp.content() == sample("slic3r_cube.gcode")[10:20]
    open(fm.server.path("logs", "klippy.log"), "w").write("klippy says hi\n")
    resp = await treq.get(fm.base + "/server/files/klippy.log")
    assert resp.code == 200 and await resp.content() == b"klippy says hi\n"
    resp = await treq.get(fm.base + "/server/files/moonraker.log")
    assert resp.code == 200 and b"moontwist" in await resp.content()
    # browsers save downloads under the file's name (Mainsail's log buttons rely on it)
    assert resp.headers.getRawHeaders("content-disposition") == [
        "attachment; filename=\"moonraker.log\"; filename*=UTF-8''moonraker.log"
    ]
    code, body = await fm.get("/server/files/gcodes/none.gcode")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_upload_with_path_checksum_and_metadata(fm):
    ws = await fm.ws()
    data = sample("synthetic_cura_cube.gcode")
    body = multipart_body("cube.gcode", data, root="gcodes", path="a/b", checksum=hashlib.sha256(data).hexdigest())
    resp = await treq.post(
        fm.base + "/server/files/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    result = json.loads(await resp.content())
    assert resp.code == 201, result
    assert result["item"]["path"] == "a/b/cube.gcode" and result["action"] == "create_file"
    assert result["print_started"] is False
    assert resp.headers.getRawHeaders("location") == ["/server/files/gcodes/a/b/cube.gcode"]
    with open(gcodes(fm, "a", "b", "cube.gcode"), "rb") as f:
        assert f.read() == data
    meta = await ws.call("server.files.metadata", {"filename": "a/b/cube.gcode"})
    assert meta["slicer"] == "Cura"
    notes = []
    while not notes or notes[-1]["action"] != "create_file":
        notes.append((await ws.next_notification("notify_filelist_changed"))["params"][0])
    assert [(n["action"], n["item"]["path"]) for n in notes] == [("create_dir", "a"), ("create_file", "a/b/cube.gcode")]
    assert not leftovers(fm)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_upload_refusals_leave_nothing(fm):
    port = fm.port
    data = b"G1 X1\n" * 100
    cases = [
        (multipart_body("c.gcode", data, checksum="0" * 64), 422),
        (multipart_body("c.gcode", data, root="logs"), 403),
        (multipart_body("c.gcode", data, root="nope"), 400),
        (multipart_body("c.gcode", data, path="../../x"), 403),
        (multipart_body("bad\x01.gcode", data), 400),
        (multipart_body("x" * 300 + ".gcode", data), 400),
        (multipart_body("c.gcode", data)[:-40], 400),  # truncated
        (multipart_body(None, b"", root="gcodes"), 400),  # no file part
        (b"garbage without any boundary" * 10, 400),
    ]
    for body, status in cases:
        proto = await raw_upload(port, body)
        assert proto.status() == status, (status, proto.data[:300])
        assert proto.json()["error"]["message"]
    # missing boundary parameter
    proto = await raw_connect(port)
    proto.transport.write(
        b"POST /server/files/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: multipart/form-data\r\nContent-Length: 10\r\n\r\n0123456789"
    )
    await proto.done
    assert proto.status() == 400
    # a huge header line inside the body
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.gcode\"\r\nX-Long: " + "a" * 20000 + "\r\n\r\nG1\r\n").encode()
    proto = await raw_upload(port, body)
    assert proto.status() == 400
    # too large: refused from Content-Length before the body is sent
    proto = await raw_connect(port)
    proto.transport.write(upload_head(5 * 1024 * 1024, extra="Expect: 100-continue\r\n", version="1.1"))
    await proto.done
    assert proto.status() == 413 and b"100 Continue" not in proto.data
    assert not leftovers(fm)
    assert not any(n.startswith("c.gcode") or n.startswith("bad") for n in os.listdir(gcodes(fm)))


@pytest_twisted.ensureDeferred
async def test_disconnect_mid_upload_and_concurrent_uploads(fm):
    body = multipart_body("big.gcode", b"G1 X2\n" * 50000)
    proto = await raw_connect(fm.port)
    proto.transport.write(upload_head(len(body)) + body[: len(body) // 2])
    await sleep(0.2)
    assert leftovers(fm)  # streaming into the temporary file
    proto.transport.abortConnection()
    await sleep(0.2)
    assert not leftovers(fm) and not os.path.exists(gcodes(fm, "big.gcode"))
    import twisted.internet.defer as defer

    uploads = [raw_upload(fm.port, multipart_body(f"c{i}.gcode", f"G1 X{i}\n".encode() * 20000)) for i in range(4)]
    protos = await defer.gatherResults([defer.ensureDeferred(u) for u in uploads])
    assert [p.status() for p in protos] == [201] * 4
    for i in range(4):
        assert open(gcodes(fm, f"c{i}.gcode"), "rb").read() == f"G1 X{i}\n".encode() * 20000
    assert not leftovers(fm)


class FakeKlippy:
    state = "ready"
    connected = True

    def __init__(self, file_path):
        self.status = {"print_stats": {"state": "printing"}, "virtual_sdcard": {"file_path": file_path}}
        self.scripts = []

    def gcode(self, script):
        from twisted.internet.defer import succeed

        self.scripts.append(script)
        return succeed("ok")


@pytest_twisted.ensureDeferred
async def test_printing_file_is_protected(fm):
    fm.server.klippy = FakeKlippy(gcodes(fm, "slic3r_cube.gcode"))
    ws = await fm.ws()
    for method, params in (
        ("server.files.delete_file", {"path": "gcodes/slic3r_cube.gcode"}),
        ("server.files.move", {"source": "gcodes/slic3r_cube.gcode", "dest": "gcodes/y.gcode"}),
        ("server.files.move", {"source": "gcodes/curaengine_cube.gcode", "dest": "gcodes/slic3r_cube.gcode"}),
    ):
        reply = await ws.rpc(method, params)
        assert reply["error"]["code"] == 403, reply
    copied = await ws.call("server.files.copy", {"source": "gcodes/slic3r_cube.gcode", "dest": "gcodes/copy.gcode"})
    assert copied["action"] == "create_file"
    proto = await raw_upload(fm.port, multipart_body("slic3r_cube.gcode", b"G1\n"))
    assert proto.status() == 403 and not leftovers(fm)
    fm.server.klippy.status["print_stats"]["state"] = "standby"
    # the printer plugin's print starter, as klippy_apis provides it
    fm.server.provide("start_print", lambda name, user=None: fm.server.klippy.gcode(f'SDCARD_PRINT_FILE FILENAME="{name}"'))
    proto = await raw_upload(fm.port, multipart_body("go.gcode", b"G1\n", print="true"))
    assert proto.status() == 201 and proto.json()["print_started"] is True
    assert fm.server.klippy.scripts == ['SDCARD_PRINT_FILE FILENAME="go.gcode"']
    fm.server.klippy = None
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_external_changes_are_notified_once(fm):
    ws = await fm.ws()
    path = gcodes(fm, "external.gcode")
    with open(path, "wb") as f:
        for _ in range(200):
            f.write(sample("slic3r_cube.gcode")[:1000])
            f.flush()
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["action"] == "create_file" and note["params"][0]["item"]["path"] == "external.gcode"
    meta = await ws.next_notification("notify_metadata_update")
    assert meta["params"][0]["filename"] == "external.gcode"
    os.rename(path, gcodes(fm, "renamed.gcode"))
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["action"] == "move_file"
    assert note["params"][0]["source_item"]["path"] == "external.gcode"
    os.unlink(gcodes(fm, "renamed.gcode"))
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["action"] == "delete_file"
    os.mkdir(gcodes(fm, "extdir"))
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["action"] == "create_dir"
    await sleep(0.6)
    while ws.notifications.pending:
        extra = ws.notifications.pending.pop(0)
        assert extra["method"] != "notify_filelist_changed", extra
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_files_written_into_a_new_folder_at_once_are_found(fm):
    """A folder made and filled faster than its inotify watch is added still gets every file."""
    ws = await fm.ws()
    folder = os.path.join(fm.server.datapath, "gcodes", "burst")
    os.mkdir(folder)
    for i in range(40):
        shutil.copyfile(os.path.join(SAMPLES, "slic3r_cube.gcode"), os.path.join(folder, f"f{i}.gcode"))
    names = set()
    while len(names) < 40:
        note = await ws.next_notification("notify_filelist_changed", timeout=10)
        item = note["params"][0]
        if item["action"] == "create_file":
            names.add(item["item"]["path"])
    assert names == {f"burst/f{i}.gcode" for i in range(40)}
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_deleting_a_watched_folder_keeps_the_rest_watched(fm):
    ws = await fm.ws()
    gcodes = os.path.join(fm.server.datapath, "gcodes")
    os.mkdir(os.path.join(gcodes, "doomed"))
    await sleep(0.3)
    with open(os.path.join(gcodes, "doomed", "a.gcode"), "w") as f:
        f.write("G28\n")
    await sleep(0.8)
    shutil.rmtree(os.path.join(gcodes, "doomed"))
    await sleep(0.3)
    os.mkdir(os.path.join(gcodes, "later"))
    await sleep(0.3)
    shutil.copyfile(os.path.join(SAMPLES, "slic3r_cube.gcode"), os.path.join(gcodes, "later", "b.gcode"))
    seen = []
    while ("create_file", "later/b.gcode") not in seen:
        note = await ws.next_notification("notify_filelist_changed", timeout=5)
        seen.append((note["params"][0]["action"], note["params"][0]["item"]["path"]))
    assert ("delete_dir", "doomed") in seen
    ws.sendClose()
