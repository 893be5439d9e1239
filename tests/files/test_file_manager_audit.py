"""File manager behaviours the issue lists, each through the public API: every
action's notification, root moves, read-only Klipper roots, metadata at start-up
and on change, uploads of odd content, and the printing file's protection."""

from __future__ import annotations

import base64
import io
import os
import random

import pytest_twisted
import treq
from files.upload_client import BUILTINS, multipart_body, raw_upload
from PIL import Image
from twisted.internet.defer import succeed

from mtclient import sleep, start_service


def gcodes(fm, *parts):
    return fm.server.path("gcodes", *parts)


async def _notes(ws, count):
    return [(await ws.next_notification("notify_filelist_changed", timeout=5))["params"][0] for _ in range(count)]


@pytest_twisted.ensureDeferred
async def test_every_api_action_is_notified(fm):
    ws = await fm.ws()
    os.makedirs(gcodes(fm, "d1"))
    open(gcodes(fm, "d1", "a.gcode"), "w").write("G28\n")
    await sleep(0.7)  # let the watcher report these external changes first
    while ws.notifications.pending:
        ws.notifications.pending.pop(0)
    steps = [
        ("server.files.move", {"source": "gcodes/d1", "dest": "gcodes/d2"}, "move_dir"),
        ("server.files.copy", {"source": "gcodes/d2", "dest": "gcodes/d3"}, "create_dir"),
        ("server.files.copy", {"source": "gcodes/d2/a.gcode", "dest": "gcodes/b.gcode"}, "create_file"),
        ("server.files.copy", {"source": "gcodes/slic3r_cube.gcode", "dest": "gcodes/b.gcode"}, "modify_file"),
        ("server.files.delete_file", {"path": "gcodes/b.gcode"}, "delete_file"),
        ("server.files.delete_directory", {"path": "gcodes/d3", "force": True}, "delete_dir"),
    ]
    for method, params, action in steps:
        result = await ws.call(method, params)
        assert result["action"] == action, (method, result)
        [note] = await _notes(ws, 1)
        assert note["action"] == action and note["item"] == result["item"], (note, result)
        if action == "move_dir":
            assert note["source_item"] == {"path": "d1", "root": "gcodes"}
    assert (await ws.call("server.files.get_directory", {"path": "gcodes/d2"}))["files"][0]["filename"] == "a.gcode"
    # an upload over an existing file: clients hear modify_file, the reply says create_file
    proto = await raw_upload(fm.port, multipart_body("slic3r_cube.gcode", b"G1 X5\n"))
    assert proto.status() == 201 and proto.json()["action"] == "create_file"
    [note] = await _notes(ws, 1)
    assert (note["action"], note["item"]["path"]) == ("modify_file", "slic3r_cube.gcode")
    # config root: a standard upload (no print fields); non-G-code in gcodes likewise
    for root, name in (("config", "printer.cfg"), ("gcodes", "readme.txt")):
        proto = await raw_upload(fm.port, multipart_body(name, b"[printer]\n", root=root))
        assert proto.status() == 201, proto.data
        assert set(proto.json()) == {"item", "action"} and proto.json()["item"]["root"] == root
        [note] = await _notes(ws, 1)
        assert (note["action"], note["item"]["root"], note["item"]["path"]) == ("create_file", root, name)
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_external_modify_and_folder_moves(fm):
    ws = await fm.ws()
    await ws.call("server.files.metadata", {"filename": "slic3r_cube.gcode"})
    with open(gcodes(fm, "slic3r_cube.gcode"), "ab") as f:
        for _ in range(50):
            f.write(b"G1 X1\n")
            f.flush()
    [note] = await _notes(ws, 1)
    assert (note["action"], note["item"]["path"]) == ("modify_file", "slic3r_cube.gcode")
    meta = (await ws.next_notification("notify_metadata_update", timeout=5))["params"][0]
    assert meta["filename"] == "slic3r_cube.gcode" and meta["size"] == os.path.getsize(gcodes(fm, "slic3r_cube.gcode"))
    cached = await ws.call("server.files.metadata", {"filename": "slic3r_cube.gcode"})
    assert cached["size"] == meta["size"] and cached["uuid"] == meta["uuid"]  # refreshed, then served from the cache
    os.mkdir(gcodes(fm, "ext"))
    [note] = await _notes(ws, 1)
    assert note["action"] == "create_dir"
    os.rename(gcodes(fm, "ext"), gcodes(fm, "ext2"))
    [note] = await _notes(ws, 1)
    assert (note["action"], note["item"]["path"], note["source_item"]["path"]) == ("move_dir", "ext2", "ext")
    os.rmdir(gcodes(fm, "ext2"))
    [note] = await _notes(ws, 1)
    assert (note["action"], note["item"]["path"]) == ("delete_dir", "ext2")
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_metadata_processed_in_background_at_start_up(fm):
    names = {n for n in os.listdir(gcodes(fm)) if n.endswith(".gcode")}
    for _ in range(100):
        code, body = await fm.get("/server/files/directory?path=gcodes&extended=true")
        done = {f["filename"] for f in body["result"]["files"] if "slicer" in f}
        if done >= names:
            break
        await sleep(0.05)
    assert done >= names  # no metadata request was made
    cura = next(f for f in body["result"]["files"] if f["filename"] == "synthetic_cura_cube.gcode")
    assert [t["relative_path"] for t in cura["thumbnails"]][0] == ".thumbs/synthetic_cura_cube-32x32.png"
    code, thumbs = await fm.get("/server/files/thumbnails?filename=synthetic_cura_cube.gcode")
    for thumb in thumbs["result"]:
        resp = await treq.get(fm.base + "/server/files/gcodes/" + thumb["thumbnail_path"])
        assert resp.code == 200 and len(await resp.content()) == thumb["size"]


class ReadyKlippy:
    """A ready Klippy whose configfile names a virtual_sdcard path."""

    state = "ready"
    connected = True

    def __init__(self, path: str) -> None:
        self.status: dict = {}
        self.configfile = {"settings": {"virtual_sdcard": {"path": path}}}

    def add_subscription(self, owner, objects):
        return succeed(None)


@pytest_twisted.ensureDeferred
async def test_root_update_when_virtual_sdcard_path_differs(fm, tmp_path):
    ws = await fm.ws()
    moved = tmp_path / "sdcard"
    moved.mkdir()
    (moved / "elsewhere.gcode").write_text("G28\n")
    old = gcodes(fm)
    fm.server.klippy = ReadyKlippy(str(moved))
    fm.server.emit("klippy_state_changed", state="ready", message="")
    [note] = await _notes(ws, 1)
    assert note == {
        "action": "root_update",
        "item": {"path": str(moved), "root": "gcodes"},
        "source_item": {"path": old, "root": "gcodes"},
    }
    roots = {r["name"]: r["path"] for r in await ws.call("server.files.roots")}
    assert roots["gcodes"] == str(moved)
    assert [f["path"] for f in await ws.call("server.files.list", {"root": "gcodes"})] == ["elsewhere.gcode"]
    fm.server.klippy = None
    ws.sendClose()


@pytest_twisted.async_yield_fixture
async def klipper_roots(tmp_path):
    klipper = tmp_path / "klipper"
    (klipper / "config").mkdir(parents=True)
    (klipper / "docs").mkdir()
    (klipper / "config" / "printer-example.cfg").write_text("[printer]\n")
    config = f"[server]\nhost: 127.0.0.1\n[file_manager]\nklipper_path: {klipper}\n"
    svc = await start_service(str(tmp_path / "data"), config, builtins=BUILTINS)
    yield svc
    await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_klipper_roots_are_read_only(klipper_roots):
    svc = klipper_roots
    code, info = await svc.get("/server/info")
    assert {"config_examples", "docs"} <= set(info["result"]["registered_directories"])
    code, roots = await svc.get("/server/files/roots")
    perms = {r["name"]: r["permissions"] for r in roots["result"]}
    assert (perms["config_examples"], perms["docs"], perms["gcodes"], perms["config"]) == ("r", "r", "rw", "rw")
    code, listing = await svc.get("/server/files/list?root=config_examples")
    assert [f["path"] for f in listing["result"]] == ["printer-example.cfg"]
    ws = await svc.ws()
    for method, params in (
        ("server.files.post_directory", {"path": "docs/new"}),
        ("server.files.delete_file", {"path": "config_examples/printer-example.cfg"}),
        ("server.files.move", {"source": "config_examples/printer-example.cfg", "dest": "config/p.cfg"}),
        ("server.files.copy", {"source": "config/moontwist.conf", "dest": "docs/m.conf"}),
    ):
        reply = await ws.rpc(method, params)
        assert reply["error"]["code"] == 403 and "read-only" in reply["error"]["message"], (method, reply)
    copied = await ws.call("server.files.copy", {"source": "config_examples/printer-example.cfg", "dest": "config/p.cfg"})
    assert copied["action"] == "create_file"  # reading from a read-only root is fine
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_odd_uploads(fm, tmp_path):
    ws = await fm.ws()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.gcode").write_text("G28\n")
    os.symlink(tmp_path / "elsewhere", gcodes(fm, "outside"))
    garbage = random.Random(5).randbytes(300_000)
    proto = await raw_upload(fm.port, multipart_body("noise.gcode", garbage))
    assert proto.status() == 201
    meta = await ws.call("server.files.metadata", {"filename": "noise.gcode"})
    assert meta["slicer"] == "Unknown" and meta["size"] == len(garbage)
    png = io.BytesIO()
    Image.new("RGB", (300, 300), (9, 9, 9)).save(png, format="PNG")
    b64 = base64.b64encode(png.getvalue()[:80]).decode()  # a PNG cut off after its header
    body = f"; generated by PrusaSlicer 2.6.0 on x\n; thumbnail begin 300x300 {len(b64)}\n; {b64}\n; thumbnail end\nG28\n"
    proto = await raw_upload(fm.port, multipart_body("corrupt.gcode", body.encode()))
    assert proto.status() == 201
    meta = await ws.call("server.files.metadata", {"filename": "corrupt.gcode"})
    assert meta["slicer"] == "PrusaSlicer"
    # stored as sent (as Moonraker does); no 32x32 miniature can be made of it
    assert [t["relative_path"] for t in meta["thumbnails"]] == [".thumbs/corrupt-300x300.png"]
    for body in (multipart_body("nul\x00.gcode", b"G1\n"), multipart_body("c.gcode", b"G1\n", path="outside")):
        proto = await raw_upload(fm.port, body)
        assert 400 <= proto.status() < 500 and proto.json()["error"]["message"], proto.data
    assert os.listdir(tmp_path / "elsewhere") == ["secret.gcode"]
    listed = [f["path"] for f in await ws.call("server.files.list", {"root": "gcodes"})]
    assert not any(p.startswith("outside/") for p in listed)
    assert not [n for n in os.listdir(gcodes(fm)) if n.startswith(".upload-") or n.startswith("nul")]
    ws.sendClose()


class PrintingKlippy:
    state = "ready"
    connected = True

    def __init__(self, file_path: str) -> None:
        self.status = {"print_stats": {"state": "paused"}, "virtual_sdcard": {"file_path": file_path}}


@pytest_twisted.ensureDeferred
async def test_folder_of_printing_file_and_copy_onto_it_are_refused(fm):
    os.makedirs(gcodes(fm, "job"))
    os.rename(gcodes(fm, "slic3r_cube.gcode"), gcodes(fm, "job", "p.gcode"))
    fm.server.klippy = PrintingKlippy(gcodes(fm, "job", "p.gcode"))
    ws = await fm.ws()
    for method, params in (
        ("server.files.delete_directory", {"path": "gcodes/job", "force": True}),
        ("server.files.move", {"source": "gcodes/job", "dest": "gcodes/job2"}),
        ("server.files.copy", {"source": "gcodes/curaengine_cube.gcode", "dest": "gcodes/job/p.gcode"}),
    ):
        reply = await ws.rpc(method, params)
        assert reply["error"]["code"] == 403 and "virtual_sdcard" in reply["error"]["message"], (method, reply)
    assert os.path.getsize(gcodes(fm, "job", "p.gcode")) > 0
    copied = await ws.call("server.files.copy", {"source": "gcodes/job", "dest": "gcodes/jobcopy"})
    assert copied["action"] == "create_dir"
    fm.server.klippy = None
    ws.sendClose()
