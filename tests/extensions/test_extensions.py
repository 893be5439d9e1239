"""Agents over the websocket and the unix socket: list, relayed requests, events, remote methods."""

from __future__ import annotations

import json
import os

import pytest
import pytest_twisted

from mtclient import RPCError, connect_unix, sleep, start_service, wait_for

AGENT = {"client_name": "moonagent", "version": "0.0.1", "type": "agent", "url": "https://example.invalid/moonagent"}


@pytest_twisted.async_yield_fixture
async def svc(tmp_path):
    running = await start_service(str(tmp_path / "data"), "[server]\n[extensions]\nagent_timeout: 0.5\n",
                                  simulate=True)
    await wait_for(lambda: running.server.klippy_state == "ready", timeout=10)
    yield running
    await running.service.stopService()


async def agent_ws(svc, info=AGENT):
    ws = await svc.ws()
    await ws.call("server.connection.identify", info)
    return ws


def answer(ws, request: dict, **reply) -> None:
    ws.sendMessage(json.dumps({"jsonrpc": "2.0", "id": request["id"], **reply}).encode())


@pytest_twisted.ensureDeferred
async def test_list_request_and_agent_answers(svc):
    client = await svc.ws()
    agent = await agent_ws(svc)
    connected = (await client.next_notification("notify_agent_event"))["params"][0]
    assert connected == {"agent": "moonagent", "event": "connected",
                         "data": {"name": "moonagent", "version": "0.0.1", "type": "agent", "url": AGENT["url"]}}
    assert await client.call("server.extensions.list") == {"agents": [connected["data"]]}
    code, body = await svc.get("/server/extensions/list")
    assert code == 200 and body["result"]["agents"][0]["name"] == "moonagent"

    pending = client.call("server.extensions.request",
                          {"agent": "moonagent", "method": "moontest.hello_world", "arguments": {"argone": True}})
    relayed = await agent.raw.get()
    assert relayed["method"] == "moontest.hello_world" and relayed["params"] == {"argone": True}
    answer(agent, relayed, result={"greeting": "hello"})
    assert await pending == {"greeting": "hello"}

    # over HTTP, positional arguments, and an error answer from the agent
    d = svc.post("/server/extensions/request", json={"agent": "moonagent", "method": "m.fail", "arguments": [1, 2]})
    relayed = await agent.raw.get()
    assert relayed["params"] == [1, 2]
    answer(agent, relayed, error={"code": -1, "message": "nope"})
    code, body = await d
    assert code == 424 and "nope" in body["error"]["message"]
    # an answer nobody waits for is ignored, the agent stays connected
    answer(agent, {"id": 123456}, result=1)
    assert (await client.call("server.extensions.list"))["agents"]


@pytest_twisted.ensureDeferred
async def test_bad_requests(svc):
    client = await svc.ws()
    with pytest.raises(RPCError) as err:
        await client.call("server.extensions.request", {"agent": "gone", "method": "x"})
    assert err.value.code == 404 and "gone" in err.value.message
    await agent_ws(svc)
    with pytest.raises(RPCError) as err:
        await client.call("server.extensions.request", {"agent": "moonagent", "method": "x", "arguments": 5})
    assert err.value.code == 400 and "arguments" in err.value.message
    with pytest.raises(RPCError) as err:
        await client.call("server.extensions.request", {"agent": "moonagent"})
    assert "method" in err.value.message
    # a second agent under the same name is refused
    with pytest.raises(RPCError):
        await agent_ws(svc)
    # only agents send events or register remote methods
    with pytest.raises(RPCError) as err:
        await client.call("connection.send_event", {"event": "x"})
    assert err.value.code == 403
    with pytest.raises(RPCError) as err:
        await client.call("connection.register_remote_method", {"method_name": "x"})
    assert err.value.code == 403
    code, _ = await svc.post("/connection/send_event", json={"event": "x"})
    assert code == 404  # not an HTTP endpoint


@pytest_twisted.ensureDeferred
async def test_agent_that_hangs_or_leaves_fails_the_request_at_once(svc):
    client = await svc.ws()
    agent = await agent_ws(svc)
    with pytest.raises(RPCError) as err:
        await client.call("server.extensions.request", {"agent": "moonagent", "method": "slow"})
    assert err.value.code == 504 and "did not answer" in err.value.message
    await agent.raw.get()

    svc.server.plugins.pm.get_plugin("extensions").timeout = 30.0
    pending = client.rpc("server.extensions.request", {"agent": "moonagent", "method": "slow"})
    await agent.raw.get()
    started = svc.server.reactor.seconds()
    agent.sendClose()
    reply = await pending
    assert svc.server.reactor.seconds() - started < 5
    assert reply["error"]["code"] == 503 and "disconnected" in reply["error"]["message"]
    event = (await client.next_notification("notify_agent_event"))["params"][0]
    while event["event"] != "disconnected":
        event = (await client.next_notification("notify_agent_event"))["params"][0]
    assert event == {"agent": "moonagent", "event": "disconnected"}
    assert await client.call("server.extensions.list") == {"agents": []}
    # the name is free again
    await agent_ws(svc)


@pytest_twisted.ensureDeferred
async def test_events_and_remote_methods_from_klipper(svc):
    client = await svc.ws()
    agent = await agent_ws(svc)
    assert await agent.call("connection.send_event", {"event": "my_event", "data": {"my_arg": 1}}) == "ok"
    event = (await client.next_notification("notify_agent_event"))["params"][0]
    while event["event"] != "my_event":
        event = (await client.next_notification("notify_agent_event"))["params"][0]
    assert event == {"agent": "moonagent", "event": "my_event", "data": {"my_arg": 1}}
    with pytest.raises(RPCError) as err:
        await agent.call("connection.send_event", {"event": "connected"})
    assert "reserved" in err.value.message
    # the agent doesn't hear its own events
    with pytest.raises(TimeoutError):
        await agent.next_notification("notify_agent_event", timeout=0.3)

    # the simulator's TEST_REMOTE_METHOD calls remote method "moonraker_test" with result="test"
    assert await agent.call("connection.register_remote_method", {"method_name": "moonraker_test"}) == "ok"
    with pytest.raises(RPCError) as err:
        await agent.call("connection.register_remote_method", {"method_name": "moonraker_test"})
    assert err.value.code == 409
    await sleep(0.2)  # registration with Klippy is under way
    await client.call("printer.gcode.script", {"script": "TEST_REMOTE_METHOD"})
    call = await agent.next_notification("moonraker_test")
    assert call == {"jsonrpc": "2.0", "method": "moonraker_test", "params": {"result": "test"}}
    agent.sendClose()
    await wait_for(lambda: "moonraker_test" not in svc.server.remote_methods)


@pytest_twisted.ensureDeferred
async def test_agent_over_the_unix_socket(svc):
    client = await svc.ws()
    unix = await connect_unix(os.path.join(svc.server.datapath, "comms", "moonraker.sock"))
    unix.send({"jsonrpc": "2.0", "method": "server.connection.identify", "params": {**AGENT, "client_name": "obico"},
               "id": 1})
    assert "connection_id" in (await unix.messages.get())["result"]
    # a batch: list and request at once
    pending = client.rpc("server.extensions.request", {"agent": "obico", "method": "obico.status"})
    relayed = await unix.messages.get()
    while relayed.get("method") != "obico.status":
        relayed = await unix.messages.get()
    # the agent answers inside a batch together with a request of its own
    unix.send([{"jsonrpc": "2.0", "id": relayed["id"], "result": "fine"},
               {"jsonrpc": "2.0", "method": "server.extensions.list", "id": 7}])
    assert (await pending)["result"] == "fine"
    reply = await unix.messages.get()
    while not isinstance(reply, list):
        reply = await unix.messages.get()
    assert reply[0]["id"] == 7 and reply[0]["result"]["agents"][0]["name"] == "obico"
    pending = client.rpc("server.extensions.request", {"agent": "obico", "method": "obico.slow"})
    await unix.messages.get()
    unix.transport.loseConnection()
    assert (await pending)["error"]["code"] == 503


@pytest_twisted.ensureDeferred
async def test_without_credentials(tmp_path):
    svc = await start_service(str(tmp_path / "data"), "[server]\n[authorization]\n")
    try:
        code, body = await svc.get("/server/extensions/list")
        assert code == 401
        code, body = await svc.post("/server/extensions/request", json={"agent": "a", "method": "b"})
        assert code == 401
        ws = await svc.ws()
        with pytest.raises(RPCError) as err:
            await ws.call("server.extensions.list")
        assert err.value.code == 401
        with pytest.raises(RPCError) as err:
            await ws.call("connection.send_event", {"event": "x"})
        assert err.value.code == 401
    finally:
        await svc.service.stopService()
