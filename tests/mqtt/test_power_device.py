"""``[power NAME] type: mqtt`` through the public API, against a real Mosquitto and a Tasmota plug on it."""

from __future__ import annotations

import json

import pytest_twisted
from mqtt.broker import Peer, wait_until
from mqtt.fake_tasmota import TasmotaPlug

from mtclient import connect_ws, sleep, start_service

INSTANCE = "printer1"
PLUG = (
    "[power plug]\ntype: mqtt\n"
    "command_topic: cmnd/plug/POWER\ncommand_payload: {command|upper}\n"
    "query_topic: cmnd/plug/POWER\nstate_topic: stat/plug/RESULT\nqos: 1\n"
    "state_response_template:\n  {% set resp = payload|fromjson %}\n  {resp['POWER']}\n"
)


def mqtt_config(port: int, extra: str = "") -> str:
    return f"[server]\nhost: 127.0.0.1\n[mqtt]\naddress: 127.0.0.1\nport: {port}\ninstance_name: {INSTANCE}\n{extra}"


def lamp(extra: str = "") -> str:
    """A second plug with Moonraker's Tasmota example: plain ON/OFF on stat/lamp/POWER."""
    return (
        "[power lamp]\ntype: mqtt\ncommand_topic: cmnd/lamp/POWER\ncommand_payload: {command}\n"
        "query_topic: cmnd/lamp/POWER\nquery_payload: ?\nstate_topic: stat/lamp/POWER\n" + extra
    )


async def start(tmp_path, port: int, power: str, **kwargs):
    svc = await start_service(str(tmp_path / "data"), mqtt_config(port, power), **kwargs)
    svc.power = svc.server.plugins.pm.get_plugin("power")
    await wait_until(lambda: all(d.state != "init" for d in svc.power.devices.values()), what="devices initialized")
    return svc


async def switch(svc, name: str, action: str):
    code, body = await svc.post("/machine/device_power/device", json={"device": name, "action": action})
    return body["result"][name] if code == 200 else (code, body["error"]["message"])


async def status(svc, name: str) -> str:
    return (await svc.get(f"/machine/device_power/device?device={name}"))[1]["result"][name]


async def changed(ws, name: str, timeout: float = 10.0) -> str:
    """The status in the next notify_power_changed for ``name``."""
    while True:
        note = await ws.next_notification("notify_power_changed", timeout)
        if note["params"][0]["device"] == name:
            return note["params"][0]["status"]


@pytest_twisted.async_yield_fixture
async def services():
    started: list = []
    yield started
    for svc in started:
        await svc.service.stopService()


@pytest_twisted.async_yield_fixture
async def plugs(broker):
    made: list[TasmotaPlug] = []

    async def make(name: str, on: bool = False) -> TasmotaPlug:
        plug = await TasmotaPlug(broker.port, name, on).start()
        made.append(plug)
        return plug

    yield make
    for plug in made:
        plug.close()


@pytest_twisted.ensureDeferred
async def test_plugs_switched_and_watched_through_every_api(tmp_path, broker, plugs, services):
    plug, lamp_plug = await plugs("plug"), await plugs("lamp", on=True)
    # [power] sections before [mqtt] in the file: plugins load in their own order, not the file's
    svc = await start_service(
        str(tmp_path / "data"),
        "[server]\nhost: 127.0.0.1\n" + PLUG + lamp()
        + f"[mqtt]\naddress: 127.0.0.1\nport: {broker.port}\ninstance_name: {INSTANCE}\n",
    )
    services.append(svc)
    svc.power = svc.server.plugins.pm.get_plugin("power")
    await wait_until(lambda: all(d.state != "init" for d in svc.power.devices.values()))
    # read at start-up with the query topic: an empty payload for one, "?" for the other
    assert plug.commands == [b""] and lamp_plug.commands == [b"?"]
    devices = (await svc.get("/machine/device_power/devices"))[1]["result"]["devices"]
    assert devices == [
        {"device": "plug", "status": "off", "locked_while_printing": False, "type": "mqtt"},
        {"device": "lamp", "status": "on", "locked_while_printing": False, "type": "mqtt"},
    ]
    ws = await svc.ws()

    assert await switch(svc, "plug", "on") == "on"
    assert plug.on and plug.commands[-1] == b"ON"  # command_payload {command|upper}
    assert await changed(ws, "plug") == "on"
    assert await switch(svc, "plug", "toggle") == "off" and not plug.on
    assert await changed(ws, "plug") == "off"

    # switched at the plug: clients are told, and the state is known without asking again
    sent = len(plug.commands)
    plug.press()
    assert await changed(ws, "plug") == "on"
    assert await status(svc, "plug") == "on" and len(plug.commands) == sent

    # several devices in one request, and a JSON-RPC batch on the websocket
    code, body = await svc.post("/machine/device_power/off?plug&lamp&nothing")
    assert code == 200 and body["result"] == {"plug": "off", "lamp": "off", "nothing": "device_not_found"}
    assert not plug.on and not lamp_plug.on
    batch = [
        {"jsonrpc": "2.0", "method": "machine.device_power.post_device", "params": {"device": "lamp", "action": "on"}, "id": 1},
        {"jsonrpc": "2.0", "method": "machine.device_power.status", "params": {"plug": None, "lamp": None}, "id": 2},
        {"jsonrpc": "2.0", "method": "machine.device_power.post_device", "params": {"device": "lamp", "action": "dim"}, "id": 3},
    ]
    ws.sendMessage(json.dumps(batch).encode())
    replies = {r["id"]: r for r in await ws.raw.get()}
    assert replies[1]["result"] == {"lamp": "on"} and lamp_plug.on
    assert replies[2]["result"] == {"plug": "off", "lamp": "on"}
    assert replies[3]["error"]["code"] == 400 and "'dim'" in replies[3]["error"]["message"]

    # and over the MQTT API itself
    peer = Peer(broker.port)
    await peer.connect()
    await peer.subscribe(f"{INSTANCE}/moonraker/api/response")
    reply = await peer.rpc(INSTANCE, "machine.device_power.post_device", {"device": "plug", "action": "on"})
    assert reply["result"] == {"plug": "on"} and plug.on
    peer.close()
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_broker_outage_error_then_recovery_without_initial_state_again(tmp_path, broker, plugs, services):
    plug = await plugs("plug")
    svc = await start(tmp_path, broker.port, PLUG + "initial_state: on\n")
    services.append(svc)
    assert plug.on and plug.commands == [b"", b"ON"]  # read, then initial_state
    assert await switch(svc, "plug", "off") == "off"
    ws = await svc.ws()

    await broker.stop()
    assert await changed(ws, "plug") == "error"
    assert await status(svc, "plug") == "error"
    code, message = await switch(svc, "plug", "on")
    assert code == 400 and message == "Error setting power device plug to on: the MQTT broker is not connected"

    await broker.start()  # the same port
    assert await changed(ws, "plug", timeout=20) == "off"  # read again, initial_state not applied again
    assert not plug.on and b"ON" not in plug.commands[2:]
    assert await switch(svc, "plug", "on") == "on" and plug.on
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_broker_away_at_start_up(tmp_path, broker, plugs, services):
    await plugs("plug", on=True)
    await broker.stop()
    svc = await start_service(str(tmp_path / "data"), mqtt_config(broker.port, PLUG + "timeout: 1\n"))
    services.append(svc)
    device = svc.server.plugins.pm.get_plugin("power").devices["plug"]
    await wait_until(lambda: device.state == "error", what="error while the broker is away")
    await broker.start()
    await wait_until(lambda: device.state == "on", timeout=20, what="the plug read once the broker is there")
    assert await status(svc, "plug") == "on"


@pytest_twisted.ensureDeferred
async def test_a_plug_that_never_answers(tmp_path, broker, plugs, services):
    plug = await plugs("plug")
    svc = await start(tmp_path, broker.port, PLUG + "state_timeout: 0.5\n")
    services.append(svc)
    ws = await svc.ws()
    plug.mute = True
    code, message = await switch(svc, "plug", "on")
    assert (code, message) == (400, "Error setting power device plug to on: no state on stat/plug/RESULT within 0.5 s")
    assert await changed(ws, "plug") == "error"
    # asked again: the query goes unanswered too, so the plug is reported unreachable
    code, message = await switch(svc, "plug", "off")
    assert code == 400 and message.startswith("Power device plug is unreachable: reading the state: no state on")
    plug.mute = False
    plug.press()  # it publishes its state again: the device is back
    assert await changed(ws, "plug") == "off"
    assert await switch(svc, "plug", "on") == "on"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_templates_discard_query_after_command_and_retain(tmp_path, broker, plugs, services):
    echo, quiet = await plugs("echo"), await plugs("quiet")
    echo.echo_old = True  # publishes the old state first, then the new one
    quiet.quiet_commands = True  # publishes its state only when asked
    config = (
        "[power echo]\ntype: mqtt\ncommand_topic: cmnd/echo/POWER\nquery_topic: cmnd/echo/POWER\n"
        "state_topic: stat/echo/POWER\nretain_command_state: True\n"
        "command_payload:\n  {% set p = {'cmd': command} %}\n  {% do p.update({'cmd': p['cmd'] | upper}) %}\n  {p['cmd']}\n"
        "state_response_template:\n"
        "  {% if response_count == 1 and last_request.startswith('power_') %}\n    discard\n"
        "  {% else %}\n    {payload}\n  {% endif %}\n"
        "[power quiet]\ntype: mqtt\ncommand_topic: cmnd/quiet/POWER\ncommand_payload: {command}\n"
        "query_topic: cmnd/quiet/POWER\nstate_topic: stat/quiet/POWER\nquery_after_command: True\n"
        "[power kept]\ntype: mqtt\ncommand_topic: cmnd/kept/POWER\nstate_topic: stat/kept/POWER\n"
        "command_payload: {command}\n"
        "[power sneaky]\ntype: mqtt\ncommand_topic: cmnd/sneaky/POWER\nstate_topic: stat/sneaky/POWER\n"
        "command_payload: {command.__class__.__mro__}\n"
    )
    # no query topic: the state retained on the broker is read at start-up
    keeper = Peer(broker.port)
    await keeper.connect()
    await keeper.publish("stat/kept/POWER", "ON", qos=1, retain=True)
    keeper.close()
    svc = await start(tmp_path, broker.port, config)
    services.append(svc)
    assert await status(svc, "kept") == "on"
    assert await switch(svc, "echo", "on") == "on" and echo.on  # the echoed old state was discarded
    # the state is never taken as known: queried before the command and after it
    assert await switch(svc, "quiet", "on") == "on" and quiet.commands == [b"", b"", b"on", b""]

    # the command was retained: a plug that connects later still gets it
    late = Peer(broker.port)
    await late.connect()
    await late.subscribe("cmnd/echo/POWER")
    assert await late.next("cmnd/echo/POWER") == (b"ON", True)
    late.close()

    # templates are sandboxed: no reaching into Python internals, nothing published
    spy = Peer(broker.port)
    await spy.connect()
    await spy.subscribe("cmnd/sneaky/#")
    code, message = await switch(svc, "sneaky", "on")
    assert code == 400 and "unsafe" in message, message
    await sleep(0.3)
    assert spy.messages == []
    spy.close()


@pytest_twisted.ensureDeferred
async def test_restart_klipper_when_powered(tmp_path, broker, plugs, services):
    psu = await plugs("psu")
    config = (
        "[simulator]\nspeed: 50\n[power psu]\ntype: mqtt\ncommand_topic: cmnd/psu/POWER\ncommand_payload: {command}\n"
        "query_topic: cmnd/psu/POWER\nstate_topic: stat/psu/POWER\n"
        "restart_klipper_when_powered: True\nrestart_delay: 0.1\n"
    )
    svc = await start(tmp_path, broker.port, config, simulate=True)
    services.append(svc)
    sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    await wait_until(lambda: svc.server.klippy_state == "ready")
    await svc.post("/printer/emergency_stop")
    await wait_until(lambda: svc.server.klippy_state == "shutdown")
    assert await switch(svc, "psu", "on") == "on" and psu.on
    await wait_until(lambda: sim.restart_count == 1, what="FIRMWARE_RESTART")
    await wait_until(lambda: svc.server.klippy_state == "ready")
    psu.press()  # switched at the plug: no restart for changes made elsewhere
    psu.press()
    await wait_until(lambda: svc.power.devices["psu"].state == "on")
    await sleep(0.3)
    assert sim.restart_count == 1


@pytest_twisted.ensureDeferred
async def test_server_restart_keeps_the_device_working(tmp_path, broker, plugs, services):
    plug = await plugs("plug")
    svc = await start(tmp_path, broker.port, PLUG)
    services.append(svc)
    code, _ = await svc.post("/server/restart")
    assert code == 200
    await wait_until(lambda: svc.server.running and not svc.server.restarting)
    power = svc.server.plugins.pm.get_plugin("power")
    await wait_until(lambda: power.devices["plug"].state == "off")
    assert await switch(svc, "plug", "on") == "on" and plug.on
    ws = await svc.ws()
    plug.press()
    assert await changed(ws, "plug") == "off"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_the_mqtt_type_needs_the_mqtt_plugin(tmp_path, monkeypatch, services):
    config = "[server]\nhost: 127.0.0.1\n" + PLUG
    svc = await start_service(str(tmp_path / "a"), config)
    services.append(svc)
    info = (await svc.get("/server/info"))[1]["result"]
    assert any(
        w.startswith("Power device [power plug] not loaded:") and w.endswith("add an [mqtt] section with the broker's address")
        for w in info["warnings"]
    ), info["warnings"]
    assert (await svc.get("/machine/device_power/devices"))[1]["result"] == {"devices": []}
    code, body = await svc.get("/machine/device_power/device?device=plug")
    assert code == 400 and body["error"]["message"] == "No valid device named plug"

    # an [mqtt] section whose plugin is disabled says so
    monkeypatch.setenv("MOONTWIST_DISABLE_PLUGINS", "mqtt")
    svc = await start_service(str(tmp_path / "b"), config + "[mqtt]\naddress: 127.0.0.1\n")
    services.append(svc)
    warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
    assert any("[power plug]" in w and w.endswith("which is not loaded (it is disabled)") for w in warnings), warnings


@pytest_twisted.ensureDeferred
async def test_without_credentials(tmp_path, broker, plugs, services):
    plug = await plugs("plug")
    svc = await start(tmp_path, broker.port, PLUG + "[authorization]\n")
    services.append(svc)
    assert (await svc.get("/machine/device_power/devices"))[0] == 401
    assert (await svc.get("/machine/device_power/device?device=plug"))[0] == 401
    assert (await svc.post("/machine/device_power/device", json={"device": "plug", "action": "on"}))[0] == 401
    assert (await svc.post("/machine/device_power/on?plug"))[0] == 401
    batch = [{"jsonrpc": "2.0", "method": "machine.device_power.on", "params": {"plug": None}, "id": 1}]
    code, body = await svc.post("/server/jsonrpc", json=batch)
    assert code == 401 or body[0]["error"]["code"] == 401
    ws = await connect_ws(svc.ws_url)
    assert (await ws.rpc("machine.device_power.post_device", {"device": "plug", "action": "on"}))["error"]["code"] == 401
    ws.sendClose()
    assert not plug.on and plug.commands == [b""]  # only the start-up query reached the plug
