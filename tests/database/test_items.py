"""server.database.get_item / post_item / delete_item / list over HTTP and the websocket."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import reactor

from mtclient import RPCError, start_service

INVALID_PARAMS = -32602  # JSON-RPC's code for a bad argument; HTTP answers 400


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\nhost: 127.0.0.1\n")
    yield running
    await running.service.stopService()


@pytest_twisted.async_yield_fixture
async def ws(svc):
    client = await svc.ws()
    yield client
    client.sendClose()


async def http(svc, method: str, path: str = "/server/database/item", **kwargs):
    code, body, _headers = await svc.request(method, path, **kwargs)
    return code, body


async def rpc_error(ws, method: str, params: dict) -> RPCError:
    with pytest.raises(RPCError) as info:
        await ws.call(method, params)
    return info.value


@pytest_twisted.ensureDeferred
async def test_post_get_delete_over_the_websocket(svc, ws):
    reply = await ws.call(
        "server.database.post_item",
        {"namespace": "superclient", "key": "settings.console.enable_autocomplete", "value": True},
    )
    assert reply == {
        "namespace": "superclient",
        "key": "settings.console.enable_autocomplete",
        "value": True,
    }
    await ws.call(
        "server.database.post_item",
        {"namespace": "superclient", "key": ["theme", "background_color"], "value": "black"},
    )
    # parents were created; the whole namespace when key is omitted
    whole = await ws.call("server.database.get_item", {"namespace": "superclient"})
    assert whole == {
        "namespace": "superclient",
        "key": None,
        "value": {
            "settings": {"console": {"enable_autocomplete": True}},
            "theme": {"background_color": "black"},
        },
    }
    got = await ws.call(
        "server.database.get_item",
        {"namespace": "superclient", "key": ["settings", "console", "enable_autocomplete"]},
    )
    assert got["value"] is True and got["key"] == ["settings", "console", "enable_autocomplete"]
    got = await ws.call("server.database.get_item", {"namespace": "superclient", "key": "settings"})
    assert got["value"] == {"console": {"enable_autocomplete": True}}
    assert "superclient" in (await ws.call("server.database.list"))["namespaces"]

    deleted = await ws.call(
        "server.database.delete_item", {"namespace": "superclient", "key": "theme.background_color"}
    )
    assert deleted == {"namespace": "superclient", "key": "theme.background_color", "value": "black"}
    # as Moonraker: a top-level record left empty goes with its last key
    err = await rpc_error(ws, "server.database.get_item", {"namespace": "superclient", "key": "theme"})
    assert err.code == 404
    await ws.call("server.database.delete_item", {"namespace": "superclient", "key": "settings"})
    # deleting the last key removes the namespace
    assert "superclient" not in (await ws.call("server.database.list"))["namespaces"]
    err = await rpc_error(ws, "server.database.get_item", {"namespace": "superclient"})
    assert err.code == 404


@pytest_twisted.ensureDeferred
async def test_keys_containing_dots_need_an_array(svc, ws):
    key = ["files", "my.model.gcode"]
    await ws.call("server.database.post_item", {"namespace": "c", "key": key, "value": {"n": 1}})
    value = (await ws.call("server.database.get_item", {"namespace": "c", "key": "files"}))["value"]
    assert value == {"my.model.gcode": {"n": 1}}
    got = await ws.call("server.database.get_item", {"namespace": "c", "key": key + ["n"]})
    assert got["value"] == 1
    # the dotted string means a different, missing path
    err = await rpc_error(
        ws, "server.database.get_item", {"namespace": "c", "key": "files.my.model.gcode"}
    )
    assert err.code == 404
    # over HTTP the array goes in a JSON body or as a key:json= query argument
    code, body = await http(
        svc, "GET", f"/server/database/item?namespace=c&key:json={quote(json.dumps(key))}"
    )
    assert code == 200 and body["result"]["value"] == {"n": 1}
    code, body = await http(svc, "DELETE", json={"namespace": "c", "key": key})
    assert code == 200 and body["result"]["value"] == {"n": 1}


@pytest_twisted.ensureDeferred
async def test_http_query_string_and_json_body(svc):
    # query string: value is a string unless it has a type hint
    code, body = await http(svc, "POST", "/server/database/item?namespace=web&key=a.b&value=100")
    assert code == 200 and body["result"] == {"namespace": "web", "key": "a.b", "value": "100"}
    code, body = await http(
        svc, "POST", "/server/database/item?namespace=web&key=a.c&value:json=" + quote('{"x":[1,2]}')
    )
    assert code == 200 and body["result"]["value"] == {"x": [1, 2]}
    code, body = await http(svc, "POST", "/server/database/item?namespace=web&key=n&value:int=7")
    assert body["result"]["value"] == 7
    code, body = await http(
        svc, "POST", json={"namespace": "web", "key": "settings.some_count", "value": 100}
    )
    assert code == 200 and body["result"]["value"] == 100
    code, body = await http(svc, "POST", json={"namespace": "web", "key": "nothing", "value": None})
    assert code == 200 and body["result"]["value"] is None
    code, body = await svc.get("/server/database/item?namespace=web")
    assert code == 200
    assert body["result"]["value"] == {
        "a": {"b": "100", "c": {"x": [1, 2]}},
        "n": 7,
        "settings": {"some_count": 100},
        "nothing": None,
    }
    code, body = await svc.get("/server/database/item?namespace=web&key=a.c.x")
    assert body["result"] == {"namespace": "web", "key": "a.c.x", "value": [1, 2]}
    code, body = await http(svc, "DELETE", "/server/database/item?namespace=web&key=a.b")
    assert code == 200 and body["result"]["value"] == "100"
    code, body = await svc.get("/server/database/list")
    assert code == 200 and "web" in body["result"]["namespaces"]
    assert body["result"]["backups"] == []


@pytest_twisted.ensureDeferred
async def test_missing_keys_and_namespaces_are_404(svc, ws):
    await ws.call("server.database.post_item", {"namespace": "x", "key": "a.b", "value": 1})
    for params in (
        {"namespace": "nope"},
        {"namespace": "nope", "key": "a"},
        {"namespace": "x", "key": "b"},
        {"namespace": "x", "key": "a.c"},
        {"namespace": "x", "key": "a.b.c"},  # below a non-object
    ):
        err = await rpc_error(ws, "server.database.get_item", params)
        assert err.code == 404, params
    for params in ({"namespace": "nope", "key": "a"}, {"namespace": "x", "key": "a.zz"}):
        err = await rpc_error(ws, "server.database.delete_item", params)
        assert err.code == 404, params
    code, body = await svc.get("/server/database/item?namespace=x&key=missing")
    assert code == 404 and "missing" in body["error"]["message"]
    code, body = await http(svc, "DELETE", "/server/database/item?namespace=nope&key=a")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_reserved_namespaces_are_read_only_but_readable(svc, ws):
    db = svc.server.lookup("database")
    await db.insert_item("moonraker", "file_manager.metadata_version", 3)  # server-internal write
    got = await ws.call(
        "server.database.get_item",
        {"namespace": "moonraker", "key": "file_manager.metadata_version"},
    )
    assert got["value"] == 3
    code, body = await svc.get("/server/database/item?namespace=moonraker")
    assert code == 200 and body["result"]["value"]["file_manager"]["metadata_version"] == 3
    db.reserve_namespace("my_plugin", "my_plugin")
    assert "my_plugin" in (await ws.call("server.database.list"))["namespaces"]
    assert (await ws.call("server.database.get_item", {"namespace": "my_plugin"}))["value"] == {}
    for namespace in ("moonraker", "gcode_metadata", "history", "my_plugin"):
        err = await rpc_error(
            ws, "server.database.post_item", {"namespace": namespace, "key": "a", "value": 1}
        )
        assert err.code == 403 and namespace in err.message
        err = await rpc_error(
            ws, "server.database.delete_item", {"namespace": namespace, "key": "a"}
        )
        assert err.code == 403
        code, body = await http(svc, "POST", json={"namespace": namespace, "key": "a", "value": 1})
        assert code == 403
    assert await db.get_item("moonraker", "file_manager.metadata_version") == 3


BAD_ITEM_ARGS = [
    ({"key": "a", "value": 1}, "namespace"),
    ({"namespace": "x", "value": 1}, "key"),
    ({"namespace": "x", "key": "", "value": 1}, "key"),
    ({"namespace": "x", "key": 5, "value": 1}, "key"),
    ({"namespace": "x", "key": {"a": 1}, "value": 1}, "key"),
    ({"namespace": "x", "key": [], "value": 1}, "key"),
    ({"namespace": "x", "key": ["a", 2], "value": 1}, "key"),
    ({"namespace": "x", "key": "a..b", "value": 1}, "key"),
    ({"namespace": "x", "key": "a"}, "value"),
    ({"namespace": "../x", "key": "a", "value": 1}, "namespace"),
    ({"namespace": "a b", "key": "a", "value": 1}, "namespace"),
    ({"namespace": "n" * 200, "key": "a", "value": 1}, "namespace"),
    ({"namespace": "", "key": "a", "value": 1}, "namespace"),
    ({"namespace": None, "key": "a", "value": 1}, "namespace"),
]


@pytest.mark.parametrize("params,argument", BAD_ITEM_ARGS)
@pytest_twisted.ensureDeferred
async def test_bad_post_arguments_are_400_naming_the_argument(svc, ws, params, argument):
    err = await rpc_error(ws, "server.database.post_item", params)
    assert err.code == INVALID_PARAMS and f"'{argument}'" in err.message, err.message
    code, body = await http(svc, "POST", json=params)
    assert code == 400 and f"'{argument}'" in body["error"]["message"]
    assert "x" not in (await ws.call("server.database.list"))["namespaces"]


@pytest_twisted.ensureDeferred
async def test_bad_get_and_delete_arguments(svc, ws):
    for method in ("server.database.get_item", "server.database.delete_item"):
        for params, argument in (
            ({}, "namespace"),
            ({"namespace": "x", "key": ""}, "key"),
            ({"namespace": "x", "key": 1.5}, "key"),
            ({"namespace": "../etc", "key": "a"}, "namespace"),
        ):
            err = await rpc_error(ws, method, params)
            assert err.code == INVALID_PARAMS, (method, err.message)
            assert f"'{argument}'" in err.message, (method, err.message)
    err = await rpc_error(ws, "server.database.delete_item", {"namespace": "x"})
    assert err.code == INVALID_PARAMS and "'key'" in err.message
    code, body = await svc.get("/server/database/item?namespace=" + quote("a b"))
    assert code == 400 and "'namespace'" in body["error"]["message"]
    code, body = await svc.get("/server/database/item?namespace=x&key=")
    assert code == 400 and "'key'" in body["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_writing_below_a_non_object_is_400(svc, ws):
    await ws.call("server.database.post_item", {"namespace": "x", "key": "a", "value": 5})
    err = await rpc_error(ws, "server.database.post_item", {"namespace": "x", "key": "a.b", "value": 1})
    assert err.code == 400
    assert (await ws.call("server.database.get_item", {"namespace": "x", "key": "a"}))["value"] == 5


@pytest_twisted.ensureDeferred
async def test_large_values(svc, ws):
    # messages up to 16 MiB reach the database on both transports; values over 10 MB get a 400
    big = "x" * 3_000_000
    reply = await ws.call("server.database.post_item", {"namespace": "big", "key": "a", "value": big})
    assert reply["value"] == big
    huge = "y" * 6_000_000
    code, body = await http(svc, "POST", json={"namespace": "big", "key": "b", "value": huge})
    assert code == 200
    code, body = await svc.get("/server/database/item?namespace=big&key=b")
    assert body["result"]["value"] == huge
    too_big = "z" * 10_500_000
    code, body = await http(svc, "POST", json={"namespace": "big", "key": "c", "value": too_big})
    assert code == 400 and "value" in body["error"]["message"]
    err = await rpc_error(ws, "server.database.post_item", {"namespace": "big", "key": "c", "value": too_big})
    assert err.code == 400 and "value" in err.message
    # a message over 16 MiB is refused by the transport itself
    code, body = await http(svc, "POST", json={"namespace": "big", "key": "c", "value": "z" * 17_000_000})
    assert code == 413 and "too large" in body["error"]["message"]
    other = await svc.ws()
    other.sendMessage(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "server.database.post_item",
                "params": {"namespace": "big", "key": "c", "value": "z" * 17_000_000},
                "id": 1,
            }
        ).encode()
    )
    code, _reason = await other.closed
    assert code == 1009
    code, body = await svc.get("/server/database/item?namespace=big")
    assert sorted(body["result"]["value"]) == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_reply_over_4_mib_reaches_a_websocket_client(svc, ws):
    """Replies are not limited like incoming messages; a big namespace is still readable."""
    db = svc.server.lookup("database")
    # random text: permessage-deflate can't shrink it below the limit
    await db.insert_item("big", "a", base64.b64encode(os.urandom(3_600_000)).decode())
    await db.insert_item("big", "b", base64.b64encode(os.urandom(3_600_000)).decode())
    d = ws.call("server.database.get_item", {"namespace": "big"})
    d.addTimeout(3, reactor)
    reply = await d
    assert sorted(reply["value"]) == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_storage_limit_is_a_400_naming_value(svc):
    """The storage layer's own limit, reached through a plugin-sized setting."""
    db = svc.server.lookup("database")
    db.max_value_size = 1000
    code, body = await http(svc, "POST", json={"namespace": "x", "key": "a", "value": "v" * 2000})
    assert code == 400 and "'value'" in body["error"]["message"]
    assert "too large" in body["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_plugin_namespace_helper(svc, ws):
    from moontwist.plugins.database import DatabaseNamespace

    db = svc.server.lookup("database")
    db.reserve_namespace("helper", owner="test")
    store = DatabaseNamespace(db, "helper")
    assert await store.get("speed", 50) == 50
    assert await store.insert("settings.speed", 100) == 100
    assert await store.get("settings.speed", 50) == 100
    assert await store.get() == {"settings": {"speed": 100}}
    # clients read it, but can't write it
    got = await ws.call("server.database.get_item", {"namespace": "helper", "key": "settings"})
    assert got["value"] == {"speed": 100}
    err = await rpc_error(ws, "server.database.delete_item", {"namespace": "helper", "key": "settings"})
    assert err.code == 403
    assert await store.delete("settings") == {"speed": 100}
    assert "helper" in (await ws.call("server.database.list"))["namespaces"]


@pytest_twisted.ensureDeferred
async def test_values_json_cannot_hold_are_400(svc, ws):
    for literal in ("nan", "inf", "-inf"):
        code, body = await http(
            svc, "POST", f"/server/database/item?namespace=x&key=a&value:float={literal}"
        )
        assert code == 400 and "'value'" in body["error"]["message"], (literal, body)
    code, body = await http(
        svc, "POST", "/server/database/item",
        data=b'{"namespace": "x", "key": "a", "value": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert code == 400
    assert "x" not in (await ws.call("server.database.list"))["namespaces"]
