"""Login attempts are counted before they are checked, so batches and parallel requests are throttled too."""

from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet.defer import Deferred, gatherResults

from mtclient import connect_ws

MAX = 4


def _login(req_id: int, password: str) -> dict:
    params = {"username": "alice", "password": password}
    return {"jsonrpc": "2.0", "method": "access.login", "params": params, "id": req_id}


@pytest_twisted.ensureDeferred
async def test_a_batch_of_logins_is_throttled(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, f"max_login_attempts: {MAX}\n")
    try:
        await kit.create_user(svc, "alice", "right")
        ws = await connect_ws(svc.ws_url)
        batch = [_login(i, f"wrong{i}") for i in range(9)] + [_login(9, "right")]
        ws.sendMessage(json.dumps(batch).encode())
        replies = {r["id"]: r for r in await ws.raw.get()}
        assert all("error" in r for r in replies.values()), replies[9]
        checked = [r for r in replies.values() if r["error"]["message"] == "Invalid username or password"]
        locked = [r for r in replies.values() if "maximum login attempts" in r["error"]["message"]]
        assert len(checked) == MAX and len(locked) == 10 - MAX
        assert replies[9] in locked  # the right password, after the lockout began, did not get in
        # ... nor reset the count: the lockout holds for the right password too
        code, body = await svc.post("/access/login", json={"username": "alice", "password": "right"})
        assert code == 401 and "maximum login attempts" in body["error"]["message"]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_parallel_http_logins_are_throttled(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, f"max_login_attempts: {MAX}\n")
    try:
        await kit.create_user(svc, "alice", "right")

        async def attempt(password: str) -> tuple[int, str]:
            resp = await treq.post(svc.base + "/access/login", json={"username": "alice", "password": password})
            return resp.code, (await resp.json())["error"]["message"]

        results = await gatherResults([Deferred.fromCoroutine(attempt(f"wrong{i}")) for i in range(12)])
        assert all(code == 401 for code, _ in results)
        assert sum(message == "Invalid username or password" for _, message in results) == MAX
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_success_before_the_limit_clears_the_count(tmp_path, kit):
    svc = await kit.start_auth(tmp_path, f"max_login_attempts: {MAX}\n")
    try:
        await kit.create_user(svc, "alice", "right")
        for _ in range(2):
            for i in range(MAX - 1):
                code, _ = await svc.post("/access/login", json={"username": "alice", "password": f"w{i}"})
                assert code == 401
            code, body = await svc.post("/access/login", json={"username": "alice", "password": "right"})
            assert code == 200, body
    finally:
        await svc.service.stopService()
