"""Request bodies are authorized and bounded on the headers, before a byte of them is read."""

from __future__ import annotations

import pytest_twisted
from security import rawhttp

from moontwist.api.limits import ANONYMOUS_MAX_BODY, DEFAULT_MAX_BODY

GIB = 1024 * 1024 * 1024


async def _headers_only(svc, head: str) -> tuple[int, dict, object, rawhttp.RawClient]:
    client = await rawhttp.connect(svc.port)
    client.send(head.replace("\n", "\r\n").encode() + b"\r\n\r\n")
    status, headers, body = await client.wait_response(5)
    return status, headers, body, client


@pytest_twisted.ensureDeferred
async def test_a_strangers_body_is_refused_on_its_headers(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        status, headers, body, client = await _headers_only(
            svc, f"POST /server/database/item HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: {GIB}"
        )
        assert status == 401 and headers["connection"] == "close"
        assert await client.wait_closed(5)
        # streaming the body anyway: the server hangs up instead of storing it
        client = await rawhttp.connect(svc.port)
        client.send(f"POST /server/database/item HTTP/1.1\r\nHost: x\r\nContent-Length: {GIB}\r\n\r\n".encode())
        for _ in range(64):
            if not client.open:
                break
            client.send(b"x" * 65536)
        assert await client.wait_closed(5)
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_every_endpoint_has_a_body_limit(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        key = kit.api_key(svc)
        # the default for argument bodies
        status, _, body, _ = await _headers_only(
            svc, f"POST /printer/gcode/script HTTP/1.1\nHost: x\nX-Api-Key: {key}\nContent-Length: {DEFAULT_MAX_BODY + 1}"
        )
        assert status == 413 and "too large" in body["error"]["message"]
        # a public endpoint, for a client that hasn't authenticated
        status, _, _, _ = await _headers_only(
            svc, f"POST /access/login HTTP/1.1\nHost: x\nContent-Length: {ANONYMOUS_MAX_BODY + 1}"
        )
        assert status == 413
        # unknown routes too
        status, _, _, _ = await _headers_only(svc, f"POST /no/such/route HTTP/1.1\nHost: x\nContent-Length: {GIB}")
        assert status == 413
        # the database declares a larger limit
        value = "v" * (2 * DEFAULT_MAX_BODY)
        code, body = await svc.post("/server/database/item", json={"namespace": "n", "key": "k", "value": value},
                                    headers={"X-Api-Key": key})
        assert code == 200, body
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_is_counted_as_it_arrives(tmp_path, kit):
    svc = await kit.start_auth(tmp_path)
    try:
        client = await rawhttp.connect(svc.port)
        client.send(
            f"POST /printer/gcode/script HTTP/1.1\r\nHost: x\r\nX-Api-Key: {kit.api_key(svc)}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        for _ in range(DEFAULT_MAX_BODY // len(chunk) + 2):
            if not client.open:
                break
            client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, body = await client.wait_response()
        assert status == 413
        assert await client.wait_closed(5)
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_bodies_below_a_route_prefix_are_vetted_too(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, extra="", server_options="route_prefix: moonraker\n")
    try:
        status, _, _, client = await _headers_only(
            svc, f"POST /moonraker/server/database/item HTTP/1.1\nHost: x\nContent-Length: {GIB}"
        )
        assert status == 401
        status, _, _, _ = await _headers_only(
            svc, f"POST /moonraker/access/login HTTP/1.1\nHost: x\nContent-Length: {ANONYMOUS_MAX_BODY + 1}"
        )
        assert status == 413
    finally:
        await svc.service.stopService()
