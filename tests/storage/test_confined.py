"""moontwist.storage.confined on its own: what the file manager's API tests can't reach easily
(another filesystem, the walk of the start-up sweep, folders made through a symlink)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile

import pytest

from moontwist.storage.confined import OutsideTree, Tree, sweep_temp_files


def other_filesystem(tmp_path):
    """A folder on another filesystem than ``tmp_path`` (tmpfs), or skip."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem")
    return tempfile.mkdtemp(dir="/dev/shm")


def test_move_across_filesystems_copies_then_removes(tmp_path):
    here = tmp_path / "root"
    (here / "d" / "sub").mkdir(parents=True)
    (here / "d" / "sub" / "a.gcode").write_text("G28\n")
    (here / "f.gcode").write_text("G1\n")
    os.symlink(tmp_path, here / "d" / "out")  # leads out of the root: not carried along
    there = other_filesystem(tmp_path)
    try:
        Tree(there).move(Tree(str(here)), str(here / "d"), os.path.join(there, "d"))
        Tree(there).move(Tree(str(here)), str(here / "f.gcode"), os.path.join(there, "f.gcode"))
        assert sorted(os.listdir(there)) == ["d", "f.gcode"]
        assert open(os.path.join(there, "d", "sub", "a.gcode")).read() == "G28\n"
        assert not os.path.lexists(os.path.join(there, "d", "out"))
        assert os.listdir(here) == []
        assert not [n for n in os.listdir(there) if n.endswith(".part")]
    finally:
        shutil.rmtree(there)


def test_folders_are_never_made_through_a_symlink_out_of_the_tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(OutsideTree):
        Tree(str(root)).folder(str(root / "link" / "new" / "deeper"), create=True)
    assert os.listdir(outside) == []
    inside = root / "real"
    inside.mkdir()
    os.symlink(inside, root / "alias")  # stays inside: fine
    with Tree(str(root)).folder(str(root / "alias" / "made"), create=True):
        pass
    assert (inside / "made").is_dir()


def test_sweep_walks_real_folders_only_and_spares_locked_files(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "a" / "out")
    for folder in (root, root / "a" / "b", outside):
        (folder / ".upload-dead.part").write_bytes(b"x")
    (root / ".upload-other.tmp").write_bytes(b"x")  # not a temporary name
    (root / "a" / ".zip-dead.part").write_bytes(b"x")  # another prefix, not asked for
    with open(root / ".upload-live.part", "wb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        removed = sweep_temp_files(Tree(str(root)), (".upload-",))
    assert sorted(os.path.relpath(p, root) for p in removed) == [".upload-dead.part", "a/b/.upload-dead.part"]
    assert (outside / ".upload-dead.part").exists()
    assert sorted(os.listdir(root)) == [".upload-live.part", ".upload-other.tmp", "a"]
    assert (root / "a" / ".zip-dead.part").exists()
