"""Odd inputs and large files: only the first and last MiB are read."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from moontwist import jsonutil
from moontwist.plugins.files.metadata import CHUNK, extract_metadata

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "gcode_samples"
BASIC = {"file_processors": [], "slicer": "Unknown", "slicer_version": "?", "print_start_time": None, "job_id": None}
VOLATILE = ("uuid", "modified")


def _strip(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in VOLATILE}


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gcode"
    path.write_bytes(b"")
    assert _strip(extract_metadata(str(path))) == {"size": 0, **BASIC}


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "noise.gcode"
    path.write_bytes(random.Random(7).randbytes(3 * CHUNK))
    meta = extract_metadata(str(path))
    assert meta["size"] == 3 * CHUNK
    assert meta["slicer"] == "Unknown"


def test_text_that_is_not_gcode(tmp_path: Path) -> None:
    path = tmp_path / "notes.gcode"
    path.write_text("shopping list\n- eggs\n- G-code? no\n")
    assert _strip(extract_metadata(str(path))) == {"size": path.stat().st_size, **BASIC}


def test_unknown_slicer_reads_gcode(tmp_path: Path) -> None:
    path = tmp_path / "hand.gcode"
    path.write_text("; hand written\nM190 S55\nM109 S205\nG1 Z0.3 F600\nG1 X1 E1\nG1 Z5.5 F600\nM84\n")
    assert _strip(extract_metadata(str(path))) == {
        "size": path.stat().st_size,
        "file_processors": [],
        "slicer": "Unknown",
        "slicer_version": "?",
        "gcode_start_byte": 14,
        # Moonraker's rule: a last line that is a bare word (M84) does not
        # count, so the G-code ends after "G1 Z5.5 F600\n".
        "gcode_end_byte": path.stat().st_size - len("M84\n"),
        "object_height": 5.5,
        "first_layer_height": 0.3,
        "first_layer_extr_temp": 205.0,
        "first_layer_bed_temp": 55.0,
        "print_start_time": None,
        "job_id": None,
    }


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        extract_metadata(str(tmp_path / "nope.gcode"))


def _padded_prusa(tmp_path: Path, target: int, marker: bytes = b"") -> tuple[Path, dict, int]:
    """The PrusaSlicer sample with G-code inserted mid-file up to ``target`` bytes."""
    data = (SAMPLES / "prusaslicer_cube.gcode").read_bytes()
    cut = data.index(b";BEFORE_LAYER_CHANGE", len(data) // 2)
    line = b"G1 X110 Y100 F3000\n"
    pad = line * ((target - len(data) - len(marker)) // len(line))
    half = len(pad) // 2 // len(line) * len(line)
    pad = pad[:half] + marker + pad[half:]
    path = tmp_path / "prusaslicer_cube.gcode"
    path.write_bytes(data[:cut] + pad + data[cut:])
    recorded = jsonutil.loads((SAMPLES / "prusaslicer_cube.metadata.json").read_bytes())["metadata"]
    return path, recorded, len(pad)


@pytest.mark.parametrize("target", [CHUNK + CHUNK // 2, 2 * CHUNK - 10, 2 * CHUNK + 10])
def test_head_and_tail_overlap_or_touch(tmp_path: Path, target: int) -> None:
    path, recorded, grown = _padded_prusa(tmp_path, target)
    size = path.stat().st_size
    assert CHUNK < size
    want = {
        **_strip(recorded),
        "size": size,
        "gcode_end_byte": recorded["gcode_end_byte"] + grown,
        "print_start_time": None,
        "job_id": None,
    }
    assert _strip(extract_metadata(str(path))) == want


def test_large_file_reads_only_head_and_tail(tmp_path: Path) -> None:
    # a config line buried in the middle is outside both read windows
    path, recorded, grown = _padded_prusa(tmp_path, 5 * CHUNK, b"; total layers count = 999\n")
    meta = extract_metadata(str(path))
    assert "layer_count" not in meta
    assert meta["gcode_end_byte"] == recorded["gcode_end_byte"] + grown
    for key in ("estimated_time", "filament_total", "first_layer_bed_temp", "object_height", "filament_name"):
        assert meta[key] == recorded[key]


def test_non_ascii_header_counts_bytes(tmp_path: Path) -> None:
    data = (SAMPLES / "prusaslicer_cube.gcode").read_bytes()
    extra = "; Überhang-Test für Würfel °C\n".encode()
    nl = data.index(b"\n") + 1
    path = tmp_path / "cube.gcode"
    path.write_bytes(data[:nl] + extra + data[nl:])
    meta = extract_metadata(str(path))
    recorded = jsonutil.loads((SAMPLES / "prusaslicer_cube.metadata.json").read_bytes())["metadata"]
    assert meta["gcode_start_byte"] == recorded["gcode_start_byte"] + len(extra)
    assert meta["gcode_end_byte"] == recorded["gcode_end_byte"] + len(extra)


def test_crlf_values_have_no_carriage_return(tmp_path: Path) -> None:
    # Moonraker would report "PLA\r" here; we drop the line ending.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(SAMPLES / "prusaslicer_cube.gcode", src / "c.gcode")
    path = tmp_path / "crlf.gcode"
    path.write_bytes((src / "c.gcode").read_bytes().replace(b"\n", b"\r\n"))
    meta = extract_metadata(str(path))
    assert meta["filament_type"] == "PLA"
    assert meta["filament_name"] == "Generic PLA"
    assert meta["estimated_time"] == 1072
