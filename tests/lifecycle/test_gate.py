"""The gate every transport passes: plugin started, then authorization (never skipped)."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from moontwist.api.registry import Endpoint
from moontwist.hookspecs import hookimpl
from mtclient import start_service, wait_for


class SlowPlugin:
    """Its startup waits for the test; its endpoint must not answer before that."""

    def __init__(self) -> None:
        self.gate: Deferred | None = None
        self.starts = 0

    @hookimpl
    def register_endpoints(self, register):
        register(Endpoint("slow.hello", lambda request: "hello", "/slow/hello"))

    @hookimpl
    def startup(self, server):
        self.starts += 1
        if self.starts == 1:
            return None
        self.gate = Deferred()
        return self.gate


@pytest_twisted.ensureDeferred
async def test_endpoints_answer_503_until_their_plugin_has_started(tmp_path):
    slow = SlowPlugin()
    svc = await start_service(str(tmp_path / "data"), "[server]\n", extra_plugins={"slow": slow})
    try:
        assert await svc.get("/slow/hello") == (200, {"result": "hello"})
        code, body = await svc.post("/server/restart")
        assert code == 200
        await wait_for(lambda: slow.gate is not None)
        code, body = await svc.get("/slow/hello")
        assert code == 503 and body["error"]["message"] == "Server is restarting"
        # plugins started before it answer already
        assert (await svc.get("/server/info"))[0] == 200
        code, body, _ = await svc.request(
            "POST", "/server/jsonrpc", json={"jsonrpc": "2.0", "method": "slow.hello", "id": 1}
        )
        assert code == 200 and body["error"]["code"] == 503
        # a websocket can't open until the server runs again
        with pytest.raises(ConnectionError):
            await svc.ws()
        # a second restart request during the first joins it instead of starting another
        assert (await svc.post("/server/restart"))[0] in (200, 503)
        slow.gate.callback(None)
        await wait_for(lambda: not svc.server.restarting)
        assert await svc.get("/slow/hello") == (200, {"result": "hello"})
        assert slow.starts == 2
    finally:
        if slow.gate is not None and not slow.gate.called:
            slow.gate.callback(None)
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_no_authorization_check_means_no_access(tmp_path, monkeypatch):
    """Without the authorization plugin nothing is allowed through (it used to allow everything)."""
    monkeypatch.setenv("MOONTWIST_DISABLE_PLUGINS", "authorization")
    svc = await start_service(str(tmp_path / "data"), "[server]\n")
    try:
        code, body = await svc.get("/server/config")
        assert code == 503 and body["error"]["message"] == "Authorization is not available"
        ws = await svc.ws()
        reply = await ws.rpc("server.database.list")
        assert reply["error"]["code"] == 503
        ws.sendClose()
    finally:
        await svc.service.stopService()
