"""Uploads are authenticated from their headers, before any body byte is read."""

from __future__ import annotations

import os

import pytest_twisted
import treq

BOUNDARY = "----moontwistAuthBoundary"


def _body(name: str, data: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_upload_needs_credentials(svc, kit):
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    gcodes = os.path.join(svc.server.datapath, "gcodes")
    resp = await treq.post(svc.base + "/server/files/upload", data=_body("stranger.gcode", b"G28\n"), headers=headers)
    assert resp.code == 401
    assert not os.listdir(gcodes)
    headers["X-Api-Key"] = kit.api_key(svc)
    resp = await treq.post(svc.base + "/server/files/upload", data=_body("owner.gcode", b"G28\n"), headers=headers)
    assert resp.code in (200, 201), await resp.text()
    assert os.path.exists(os.path.join(gcodes, "owner.gcode"))
