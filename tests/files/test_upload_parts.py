"""Which multipart part is the upload: only the one named ``file``, and it must name its file
(as Moonraker, which answers 400 otherwise)."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from files.upload_client import BOUNDARY, raw_upload


def part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def gcodes(fm):
    return fm.server.path("gcodes")


def stored(fm):
    """Files in the gcodes root (not .thumbs, which the metadata scan at start-up fills meanwhile)."""
    return sorted(n for n in os.listdir(gcodes(fm)) if n != ".thumbs")


@pytest.mark.parametrize(
    "parts",
    [
        (part("upload", b"G28\n", "x.gcode"),),  # a file, but not in a part named file
        (part("root", b"gcodes"), part("notfile", b"G28\n", "x.gcode")),
        (part("file", b"G28\n"),),  # a part named file that names no file
        (part("file", b"G28\n", ""),),
        (part("root", b"gcodes"),),
    ],
    ids=["other-name", "other-name-after-field", "no-filename", "empty-filename", "fields-only"],
)
@pytest_twisted.ensureDeferred
async def test_without_a_file_part_is_400_and_stores_nothing(fm, parts):
    before = stored(fm)
    proto = await raw_upload(fm.port, body(*parts))
    assert proto.status() == 400, proto.data
    assert "file" in proto.json()["error"]["message"]
    assert stored(fm) == before


@pytest_twisted.ensureDeferred
async def test_other_file_parts_are_ignored(fm):
    proto = await raw_upload(
        fm.port, body(part("extra", b"M84\n", "ignored.gcode"), part("file", b"G28\n", "kept.gcode"))
    )
    assert proto.status() == 201, proto.data
    assert proto.json()["item"]["path"] == "kept.gcode"
    assert not os.path.exists(os.path.join(gcodes(fm), "ignored.gcode"))
    with open(os.path.join(gcodes(fm), "kept.gcode"), "rb") as f:
        assert f.read() == b"G28\n"
