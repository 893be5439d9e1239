"""Symlinks under the roots: no write, rename or unlink the server makes may land outside its root.

Each scenario puts a symlink to a folder outside the data path where the server
writes (``.thumbs``, a thumbnail file, a folder of a copy, a folder swapped in
while the request waits for a thread) and checks, through the public API, that
the outside folder is left exactly as it was.
"""

from __future__ import annotations

import os
import threading

import pytest_twisted
from files.upload_client import multipart_body, raw_upload, sample
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from mtclient import wait_for

PNG_NAMES = ("synthetic_cura_cube-32x32.png", "synthetic_cura_cube-300x300.png")


def gcodes(fm, *parts):
    return fm.server.path("gcodes", *parts)


def snapshot(folder):
    """Every file under ``folder`` with its content."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def outside_folder(tmp_path, *names):
    """A folder outside the data path holding ``names`` (each with a known content)."""
    folder = tmp_path / "outside"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"precious " + name.encode())
    return folder


async def upload(fm, name, data, **fields):
    proto = await raw_upload(fm.port, multipart_body(name, data, **fields))
    return proto.status(), proto.json()


@pytest_twisted.ensureDeferred
async def test_thumbs_folder_symlinked_outside_is_never_written_or_unlinked(fm, tmp_path):
    outside = outside_folder(tmp_path, "sentinel.txt", *PNG_NAMES)
    before = snapshot(outside)
    os.makedirs(gcodes(fm, "X"))
    os.symlink(outside, gcodes(fm, "X", ".thumbs"))
    status, body = await upload(fm, "synthetic_cura_cube.gcode", sample("synthetic_cura_cube.gcode"), path="X")
    assert status == 201, body
    ws = await fm.ws()
    meta = await ws.call("server.files.metadata", {"filename": "X/synthetic_cura_cube.gcode"})
    assert meta["slicer"] == "Cura" and "thumbnails" not in meta  # nowhere safe to put them
    assert snapshot(outside) == before
    await ws.call("server.files.delete_file", {"path": "gcodes/X/synthetic_cura_cube.gcode"})
    assert snapshot(outside) == before
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_deleting_a_gcode_does_not_unlink_through_a_thumbs_symlink(fm, tmp_path):
    status, body = await upload(fm, "synthetic_cura_cube.gcode", sample("synthetic_cura_cube.gcode"), path="Y")
    assert status == 201, body
    ws = await fm.ws()
    meta = await ws.call("server.files.metadata", {"filename": "Y/synthetic_cura_cube.gcode"})
    assert {t["relative_path"] for t in meta["thumbnails"]} == {f".thumbs/{n}" for n in PNG_NAMES}
    # .thumbs is replaced by a symlink to a folder holding files of the same names
    os.rename(gcodes(fm, "Y", ".thumbs"), gcodes(fm, "Y", ".thumbs-real"))
    outside = outside_folder(tmp_path, *PNG_NAMES)
    before = snapshot(outside)
    os.symlink(outside, gcodes(fm, "Y", ".thumbs"))
    await ws.call("server.files.delete_file", {"path": "gcodes/Y/synthetic_cura_cube.gcode"})
    assert snapshot(outside) == before
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_symlinked_thumbnail_file_is_replaced_not_written_through(fm, tmp_path):
    outside = outside_folder(tmp_path, "precious.txt")
    before = snapshot(outside)
    os.makedirs(gcodes(fm, "Z", ".thumbs"))
    link = gcodes(fm, "Z", ".thumbs", PNG_NAMES[1])
    os.symlink(outside / "precious.txt", link)
    status, body = await upload(fm, "synthetic_cura_cube.gcode", sample("synthetic_cura_cube.gcode"), path="Z")
    assert status == 201, body
    ws = await fm.ws()
    meta = await ws.call("server.files.metadata", {"filename": "Z/synthetic_cura_cube.gcode"})
    assert [t["relative_path"] for t in meta["thumbnails"]] == [f".thumbs/{n}" for n in PNG_NAMES]
    assert snapshot(outside) == before
    assert not os.path.islink(link)
    with open(link, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_copy_never_writes_into_or_recreates_a_symlink_out_of_the_root(fm, tmp_path):
    outside = outside_folder(tmp_path, "secret.gcode")
    before = snapshot(outside)
    os.makedirs(gcodes(fm, "d", "sub"))
    with open(gcodes(fm, "d", "sub", "a.gcode"), "w") as f:
        f.write("G28\n")
    os.symlink(outside, gcodes(fm, "d", "link"))  # a folder symlink leading out of the root
    os.symlink(gcodes(fm, "d", "sub", "a.gcode"), gcodes(fm, "d", "inside.gcode"))  # one staying inside
    ws = await fm.ws()
    result = await ws.call("server.files.copy", {"source": "gcodes/d", "dest": "gcodes/d2"})
    assert result["action"] == "create_dir"
    assert not os.path.lexists(gcodes(fm, "d2", "link"))
    assert not os.path.islink(gcodes(fm, "d2", "inside.gcode"))
    assert open(gcodes(fm, "d2", "inside.gcode")).read() == "G28\n"
    # copying onto an existing tree whose subfolder is a symlink out of the root
    os.makedirs(gcodes(fm, "e", "d"))
    os.symlink(outside, gcodes(fm, "e", "d", "sub"))
    reply = await ws.rpc("server.files.copy", {"source": "gcodes/d", "dest": "gcodes/e"})
    assert reply["error"]["code"] == 403, reply
    assert snapshot(outside) == before
    ws.sendClose()


class HeldPool:
    """Keeps every thread of the reactor's pool busy, so the next file operation waits in the queue."""

    def __init__(self) -> None:
        self.pool = reactor.getThreadPool()
        self.release = threading.Event()
        self.busy = 0
        self.lock = threading.Lock()

    def _hold(self) -> None:
        with self.lock:
            self.busy += 1
        self.release.wait(10)

    async def hold(self) -> None:
        for _ in range(self.pool.max):
            self.pool.callInThread(self._hold)
        await wait_for(lambda: self.busy == self.pool.max)

    def queued(self) -> int:
        return self.pool._team.statistics().backloggedWorkCount

    def __enter__(self) -> HeldPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


async def swapped_while_queued(fm, tmp_path, start, folder="sub"):
    """Start a request whose path check passes, then swap ``gcodes/<folder>`` for a symlink out of
    the root while its file operation waits for a thread; returns the reply."""
    outside = tmp_path / "outside"
    manager = fm.server.lookup("file_manager")
    held = HeldPool()
    await wait_for(lambda: not manager.processor.pending and held.queued() == 0)
    with held:
        await held.hold()
        d = start()
        await wait_for(lambda: held.queued() >= 1)
        os.rename(gcodes(fm, folder), gcodes(fm, folder + "-moved"))
        os.symlink(outside, gcodes(fm, folder))
    return await d


@pytest_twisted.ensureDeferred
async def test_delete_through_a_folder_swapped_for_a_symlink_is_refused(fm, tmp_path):
    outside = outside_folder(tmp_path, "a.gcode")
    before = snapshot(outside)
    os.makedirs(gcodes(fm, "sub"))
    open(gcodes(fm, "sub", "a.gcode"), "w").write("G28\n")
    ws = await fm.ws()
    reply = await swapped_while_queued(
        fm, tmp_path, lambda: ws.rpc("server.files.delete_file", {"path": "gcodes/sub/a.gcode"})
    )
    assert reply["error"]["code"] == 403, reply
    assert snapshot(outside) == before
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_move_and_upload_into_a_folder_swapped_for_a_symlink_are_refused(fm, tmp_path):
    outside = outside_folder(tmp_path)
    os.makedirs(gcodes(fm, "sub"))
    ws = await fm.ws()
    reply = await swapped_while_queued(
        fm, tmp_path, lambda: ws.rpc("server.files.move", {"source": "gcodes/slic3r_cube.gcode", "dest": "gcodes/sub/m.gcode"})
    )
    assert reply["error"]["code"] == 403, reply
    assert os.path.exists(gcodes(fm, "slic3r_cube.gcode"))
    os.unlink(gcodes(fm, "sub"))
    os.rename(gcodes(fm, "sub-moved"), gcodes(fm, "sub"))

    async def start_upload():
        proto = await raw_upload(fm.port, multipart_body("u.gcode", b"G28\n", path="sub"))
        return proto.status()

    status = await swapped_while_queued(fm, tmp_path, lambda: Deferred.fromCoroutine(start_upload()))
    assert status == 403
    os.unlink(gcodes(fm, "sub"))
    os.rename(gcodes(fm, "sub-moved"), gcodes(fm, "sub"))
    reply = await swapped_while_queued(
        fm, tmp_path, lambda: ws.rpc("server.files.zip", {"items": ["gcodes/slic3r_cube.gcode"], "dest": "gcodes/sub/a.zip"})
    )
    assert reply["error"]["code"] == 403, reply
    assert snapshot(outside) == {}
    assert not [n for n in os.listdir(gcodes(fm)) if n.endswith(".part")]
    ws.sendClose()
