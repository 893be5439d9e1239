"""The HTTP transport, through a real socket."""

from __future__ import annotations

import json

import pytest_twisted
import treq

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import Endpoint
from moontwist.hookspecs import hookimpl
from mtclient import start_service


class EchoPlugin:
    """Endpoints that echo their typed arguments, and one that fails."""

    @hookimpl
    def register_endpoints(self, register):
        register(
            Endpoint(
                "test.echo",
                lambda req: {k: v for k, v in req.args.items()},
                "/test/echo",
                ("GET", "POST"),
                args=(
                    Arg("count", "int", default=1, description="how many"),
                    Arg("ratio", "float", description="a ratio"),
                    Arg("flag", "bool", default=False),
                    Arg("name", "str", description="a name"),
                ),
            )
        )
        register(Endpoint("test.required", lambda req: req.args["needed"], "/test/required", args=(Arg("needed", "int", required=True),)))
        register(Endpoint("test.fail", self.fail, "/test/fail", ("POST",)))
        register(Endpoint("test.crash", self.crash, "/test/crash"))

    async def fail(self, req):
        raise ServerError("Printer is on fire", 409)

    def crash(self, req):
        raise RuntimeError("boom")


@pytest_twisted.async_yield_fixture
async def echo(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\n", extra_plugins={"echo": EchoPlugin()})
    yield svc
    await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_server_info_shape(running):
    code, body = await running.get("/server/info")
    assert code == 200
    info = body["result"]
    assert info["klippy_connected"] is False
    assert info["klippy_state"] == "disconnected"
    assert "server" in info["components"]
    assert info["failed_components"] == []
    assert info["websocket_count"] == 0
    assert info["api_version"] == [1, 5, 0]
    assert info["api_version_string"] == "1.5.0"
    assert isinstance(info["warnings"], list)
    assert isinstance(info["moonraker_version"], str)


@pytest_twisted.ensureDeferred
async def test_unknown_path_is_404_and_wrong_method_405(running):
    code, body = await running.get("/server/nothing_here")
    assert code == 404
    assert body["error"]["code"] == 404
    code, body, headers = await running.request("DELETE", "/server/info")
    assert code == 405
    assert body["error"]["code"] == 405
    assert headers.getRawHeaders("allow") == ["GET"]


@pytest_twisted.ensureDeferred
async def test_query_type_hints(echo):
    code, body = await echo.get("/test/echo?count=5&ratio:float=2.5&flag:bool=true&extra:json=%7B%22a%22%3A%5B1%2C2%5D%7D&raw:int=7")
    assert code == 200
    result = body["result"]
    assert result["count"] == 5
    assert result["ratio"] == 2.5
    assert result["flag"] is True
    assert result["extra"] == {"a": [1, 2]}
    assert result["raw"] == 7
    assert result["name"] is None


@pytest_twisted.ensureDeferred
async def test_body_wins_over_query(echo):
    code, body = await echo.post("/test/echo?count=5&name=query", json={"count": 9})
    assert code == 200
    assert body["result"]["count"] == 9
    assert body["result"]["name"] == "query"
    resp = await treq.post(echo.base + "/test/echo?count=5", data={"count": "11", "name": "form"})
    result = json.loads(await resp.content())["result"]
    assert result == {"count": 11, "name": "form", "ratio": None, "flag": False}


@pytest_twisted.ensureDeferred
async def test_argument_errors_name_argument_value_and_type(echo):
    code, body = await echo.get("/test/echo?count=lots")
    assert code == 400
    assert body["error"]["message"] == "Invalid argument 'count': expected an integer, got 'lots'"
    code, body = await echo.get("/test/required")
    assert code == 400
    assert "needed" in body["error"]["message"]
    code, body = await echo.get("/test/echo?flag:bool=maybe")
    assert code == 400
    assert "'flag'" in body["error"]["message"] and "boolean" in body["error"]["message"]
    code, body = await echo.get("/test/echo?x:json=%7Bnot")
    assert code == 400
    assert "'x'" in body["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_malformed_json_body(echo):
    resp = await treq.post(echo.base + "/test/echo", data=b"{nope", headers={"content-type": "application/json"})
    assert resp.code == 400
    body = json.loads(await resp.content())
    assert body["error"]["message"] == "Request body is not valid JSON"
    resp = await treq.post(echo.base + "/test/echo", data=b"[1, 2]", headers={"content-type": "application/json"})
    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_handler_errors_carry_status(echo):
    code, body = await echo.post("/test/fail")
    assert code == 409
    assert body == {"error": {"code": 409, "message": "Printer is on fire"}}
    code, body = await echo.get("/test/crash")
    assert code == 500
    assert "boom" in body["error"]["message"]
    # the daemon keeps serving
    code, _ = await echo.get("/server/info")
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_openapi_document_generated_from_registry(echo):
    code, doc = await echo.get("/server/openapi.json")
    assert code == 200
    assert doc["openapi"] == "3.1.0"
    op = doc["paths"]["/test/echo"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["count"]["schema"]["type"] == "integer"
    assert params["count"]["description"] == "how many"
    assert doc["paths"]["/test/echo"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["ratio"]["type"] == "number"
    assert "/server/info" in doc["paths"]


@pytest_twisted.ensureDeferred
async def test_jsonrpc_over_http(echo):
    code, body = await echo.post("/server/jsonrpc", json={"jsonrpc": "2.0", "method": "test.echo", "params": {"count": "3"}, "id": 7})
    assert code == 200
    assert body["id"] == 7 and body["result"]["count"] == 3
    code, body = await echo.post("/server/jsonrpc", json=[
        {"jsonrpc": "2.0", "method": "server.info", "id": 1},
        {"jsonrpc": "2.0", "method": "no.such", "id": 2},
    ])
    assert [r["id"] for r in body] == [1, 2]
    assert body[1]["error"]["code"] == -32601
    resp = await treq.post(echo.base + "/server/jsonrpc", data=b"{bad")
    assert json.loads(await resp.content())["error"]["code"] == -32700
