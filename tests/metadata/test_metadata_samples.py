"""Every sample's metadata equals what real Moonraker recorded for it."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image

from moontwist import jsonutil
from moontwist.plugins.files.metadata import extract_metadata

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "gcode_samples"
NAMES = sorted(p.stem for p in SAMPLES.glob("*.gcode"))
IGNORED = {"uuid", "modified"}



def _recorded(name: str) -> dict:
    return jsonutil.loads((SAMPLES / f"{name}.metadata.json").read_bytes())["metadata"]


@pytest.fixture(params=NAMES)
def sample(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    dst = tmp_path / f"{request.param}.gcode"
    shutil.copy(SAMPLES / dst.name, dst)
    return request.param, dst


def test_matches_moonraker(sample: tuple[str, Path]) -> None:
    name, path = sample
    got = extract_metadata(str(path))
    want = _recorded(name)
    assert {k: v for k, v in got.items() if k not in IGNORED} == {
        **{k: v for k, v in want.items() if k not in IGNORED},
        "print_start_time": None,
        "job_id": None,
    }
    # same key order, and int/float kinds as recorded (1072 vs 1072.0)
    assert [k for k in got if k not in ("print_start_time", "job_id")] == list(want)
    for key, value in want.items():
        assert type(got[key]) is type(value), key
    assert uuid.UUID(got["uuid"]).version == 4
    assert got["modified"] == os.path.getmtime(path)


def test_thumbnails_match_recorded_files(sample: tuple[str, Path]) -> None:
    name, path = sample
    got = extract_metadata(str(path))
    for thumb in got.get("thumbnails", []):
        written = (path.parent / thumb["relative_path"]).read_bytes()
        assert len(written) == thumb["size"]
        with Image.open(path.parent / thumb["relative_path"]) as img:
            assert img.size == (thumb["width"], thumb["height"])
        # including the 32x32 miniature moontwist generates for the Cura sample
        expected = SAMPLES / "expected_thumbs" / Path(thumb["relative_path"]).name
        assert written == expected.read_bytes()


def test_uuid_is_fresh(sample: tuple[str, Path]) -> None:
    _, path = sample
    assert extract_metadata(str(path))["uuid"] != extract_metadata(str(path))["uuid"]


def test_thumbs_disabled_writes_nothing(sample: tuple[str, Path]) -> None:
    _, path = sample
    got = extract_metadata(str(path), thumbs=False)
    assert "thumbnails" not in got
    assert not (path.parent / ".thumbs").exists()


def test_no_thumbs_dir_without_thumbnails(tmp_path: Path) -> None:
    # Moonraker creates an empty .thumbs/ even then; we only create it when
    # a thumbnail is written.
    path = tmp_path / "prusaslicer_cube.gcode"
    shutil.copy(SAMPLES / path.name, path)
    assert "thumbnails" not in extract_metadata(str(path))
    assert not (tmp_path / ".thumbs").exists()
