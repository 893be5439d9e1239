"""File names that are not UTF-8 (a USB stick written by another system): listed, shown as
``\\xHH``, and reachable through the API by that name to read, move and delete."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest_twisted
import treq
from files.upload_client import multipart_body, raw_upload

from mtclient import sleep

CAFE = b"caf\xe9.gcode"  # Latin-1 "café.gcode"
CAFE_SHOWN = "caf\\xe9.gcode"
FOLDER = b"dossi\xe9r"
FOLDER_SHOWN = "dossi\\xe9r"


def gcodes_bytes(fm, *parts: bytes) -> bytes:
    return os.path.join(os.fsencode(fm.server.path("gcodes")), *parts)


def write(path: bytes, text: str = "G28\nG1 X10\n") -> None:
    with open(path, "w") as f:
        f.write(text)


@pytest_twisted.ensureDeferred
async def test_listed_shown_and_read_by_their_shown_name(fm):
    write(gcodes_bytes(fm, CAFE))
    os.mkdir(gcodes_bytes(fm, FOLDER))
    write(gcodes_bytes(fm, FOLDER, b"inner.gcode"))
    ws = await fm.ws()
    listed = {f["path"] for f in await ws.call("server.files.list", {"root": "gcodes"})}
    assert {CAFE_SHOWN, FOLDER_SHOWN + "/inner.gcode"} <= listed
    code, body = await fm.get("/server/files/list?root=gcodes")
    assert code == 200 and CAFE_SHOWN in {f["path"] for f in body["result"]}
    top = await ws.call("server.files.get_directory", {"path": "gcodes", "extended": True})
    assert CAFE_SHOWN in {f["filename"] for f in top["files"]}
    assert FOLDER_SHOWN in {d["dirname"] for d in top["dirs"]}
    inner = await ws.call("server.files.get_directory", {"path": f"gcodes/{FOLDER_SHOWN}"})
    assert [f["filename"] for f in inner["files"]] == ["inner.gcode"]
    meta = await ws.call("server.files.metadata", {"filename": CAFE_SHOWN})
    assert meta["filename"] == CAFE_SHOWN and meta["size"] == len("G28\nG1 X10\n")
    resp = await treq.get(fm.base + "/server/files/gcodes/" + quote(CAFE_SHOWN))
    assert resp.code == 200 and await resp.content() == b"G28\nG1 X10\n"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_moved_copied_and_deleted_through_the_api(fm):
    write(gcodes_bytes(fm, CAFE))
    os.mkdir(gcodes_bytes(fm, FOLDER))
    write(gcodes_bytes(fm, FOLDER, b"inner.gcode"))
    ws = await fm.ws()
    copied = await ws.call("server.files.copy", {"source": f"gcodes/{CAFE_SHOWN}", "dest": f"gcodes/{FOLDER_SHOWN}/c.gcode"})
    assert copied["item"]["path"] == f"{FOLDER_SHOWN}/c.gcode"
    moved = await ws.call("server.files.move", {"source": f"gcodes/{CAFE_SHOWN}", "dest": "gcodes/cafe.gcode"})
    assert moved["source_item"] == {"path": CAFE_SHOWN, "root": "gcodes"}
    assert moved["item"]["path"] == "cafe.gcode"
    assert not os.path.exists(gcodes_bytes(fm, CAFE)) and os.path.exists(gcodes_bytes(fm, b"cafe.gcode"))
    # an upload into the folder named by its shown name
    proto = await raw_upload(fm.port, multipart_body("up.gcode", b"G28\n", path=FOLDER_SHOWN))
    assert proto.status() == 201 and proto.json()["item"]["path"] == f"{FOLDER_SHOWN}/up.gcode"
    assert os.path.exists(gcodes_bytes(fm, FOLDER, b"up.gcode"))
    resp = await treq.delete(fm.base + "/server/files/gcodes/" + quote(f"{FOLDER_SHOWN}/inner.gcode"))
    assert resp.code == 200
    assert not os.path.exists(gcodes_bytes(fm, FOLDER, b"inner.gcode"))
    deleted = await ws.call("server.files.delete_directory", {"path": f"gcodes/{FOLDER_SHOWN}", "force": True})
    assert deleted["item"]["path"] == FOLDER_SHOWN
    assert not os.path.exists(gcodes_bytes(fm, FOLDER))
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_a_file_literally_named_like_the_escape_wins_and_both_stay_reachable(fm):
    write(gcodes_bytes(fm, CAFE), "G28 ; bytes\n")
    write(gcodes_bytes(fm, CAFE_SHOWN.encode()), "G28 ; literal\n")
    ws = await fm.ws()
    listed = [f["path"] for f in await ws.call("server.files.list", {"root": "gcodes"})]
    assert listed.count(CAFE_SHOWN) == 2
    resp = await treq.get(fm.base + "/server/files/gcodes/" + quote(CAFE_SHOWN))
    assert await resp.content() == b"G28 ; literal\n"
    await ws.call("server.files.delete_file", {"path": f"gcodes/{CAFE_SHOWN}"})
    assert not os.path.exists(gcodes_bytes(fm, CAFE_SHOWN.encode()))
    await ws.call("server.files.delete_file", {"path": f"gcodes/{CAFE_SHOWN}"})
    assert not os.path.exists(gcodes_bytes(fm, CAFE))
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_changes_made_outside_the_api_are_notified_with_the_shown_name(fm):
    ws = await fm.ws()
    write(gcodes_bytes(fm, CAFE))
    note = await ws.next_notification("notify_filelist_changed")
    assert note["params"][0]["item"]["path"] == CAFE_SHOWN
    meta = await ws.next_notification("notify_metadata_update")
    assert meta["params"][0]["filename"] == CAFE_SHOWN
    for _ in range(100):  # the database write follows the notification
        stored = await ws.rpc("server.database.get_item", {"namespace": "gcode_metadata", "key": [CAFE_SHOWN]})
        if "result" in stored:
            break
        await sleep(0.02)
    assert stored["result"]["value"]["size"] == len("G28\nG1 X10\n")
    ws.sendClose()
