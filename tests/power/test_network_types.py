"""Every network device type toggled through the API against a fake that speaks its wire protocol."""

from __future__ import annotations

import pytest_twisted
from power.fake_http import (
    FakeHomeAssistant,
    FakeHomeSeer,
    FakeHue,
    FakeLoxone,
    FakeShellyGen1,
    FakeShellyGen2,
    FakeSmartThings,
    FakeTasmota,
)
from power.fake_mqtt import FakeMQTT, FakeMQTTPlugin
from power.fake_tplink import FakeTPLink
from power.service import start_power


async def switch(svc, name: str, action: str):
    code, body = await svc.post("/machine/device_power/device", json={"device": name, "action": action})
    return body["result"][name] if code == 200 else (code, body["error"]["message"])


async def status(svc, name: str) -> str:
    return (await svc.get(f"/machine/device_power/device?device={name}"))[1]["result"][name]


@pytest_twisted.ensureDeferred
async def test_tasmota_relay_two_and_delayed_off(tmp_path, fakes, services):
    strip = fakes.start(FakeTasmota(relays=2))
    svc = await start_power(
        tmp_path,
        f"[power a]\ntype: tasmota\naddress: {strip.address}\noutput_id: 2\n"
        f"[power b]\ntype: tasmota\naddress: http://{strip.address}/\ntimer: 5\n",
    )
    services.append(svc)
    assert await switch(svc, "a", "on") == "on" and strip.relays == {1: False, 2: True}
    assert await switch(svc, "b", "on") == "on" and strip.relays[1] is True
    assert await switch(svc, "b", "off") == "off"
    assert strip.requests[-1].query["cmnd"] == "Backlog Delay 50; Power1 off"  # Delay counts tenths
    # every request opened and closed an HTTP connection, and the log doesn't say so each time
    with open(svc.server.path("logs", "moontwist.log"), encoding="utf-8") as f:
        log = f.read()
    assert "Power device a" in log or "tasmota" in log.lower()
    assert "Starting factory" not in log and "Stopping factory" not in log


@pytest_twisted.ensureDeferred
async def test_shelly_gen1_with_basic_auth_and_gen2_rpc(tmp_path, fakes, services):
    gen1 = fakes.start(FakeShellyGen1(auth=("admin", "pw1")))
    gen2 = fakes.start(FakeShellyGen2())
    svc = await start_power(
        tmp_path,
        f"[power one]\ntype: shelly\naddress: {gen1.address}\npassword: pw1\n"
        f"[power two]\ntype: shelly\naddress: {gen2.address}\n",
    )
    services.append(svc)
    assert await switch(svc, "one", "on") == "on" and gen1.on
    sent = gen1.requests[-1]
    assert (sent.path, sent.query, sent.basic_auth) == ("/relay/0", {"turn": "on"}, ("admin", "pw1"))
    assert await switch(svc, "one", "off") == "off" and not gen1.on
    assert await switch(svc, "two", "on") == "on" and gen2.on
    assert [(r.path, r.query) for r in gen2.requests if r.path == "/rpc/Switch.Set"] == [
        ("/rpc/Switch.Set", {"id": "0", "on": "true"})
    ]
    assert gen2.requests[0].path == "/shelly"  # the generation was asked once
    assert [r.path for r in gen2.requests].count("/shelly") == 1
    assert await status(svc, "two") == "on"


@pytest_twisted.ensureDeferred
async def test_shelly_wrong_password_is_an_error(tmp_path, fakes, services):
    gen1 = fakes.start(FakeShellyGen1(auth=("admin", "pw1")))
    svc = await start_power(tmp_path, f"[power one]\ntype: shelly\naddress: {gen1.address}\npassword: nope\n")
    services.append(svc)
    assert await status(svc, "one") == "error"
    code, message = await switch(svc, "one", "on")
    assert code == 400 and "refused the credentials" in message and not gen1.on


@pytest_twisted.ensureDeferred
async def test_homeassistant_any_domain_token_and_status_read_back(tmp_path, fakes, services):
    ha = fakes.start(FakeHomeAssistant(token="long-lived"))
    ha.add("light.desk", "off")
    ha.add("switch.printer", "off")
    quiet = fakes.start(FakeHomeAssistant(token="long-lived", report_changes=False))
    quiet.add("fan.enclosure", "off")
    svc = await start_power(
        tmp_path,
        f"[power desk]\ntype: homeassistant\naddress: {ha.address}\ndevice: light.desk\ndomain: light\n"
        "token: long-lived\n"
        f"[power fan]\ntype: homeassistant\naddress: 127.0.0.1\nport: {quiet.port.getHost().port}\n"
        "device: fan.enclosure\ndomain: fan\ntoken: long-lived\nstatus_delay: 0.1\n"
        f"[power bad]\ntype: homeassistant\naddress: {ha.address}\ndevice: switch.printer\ntoken: stale\n",
    )
    services.append(svc)
    assert await switch(svc, "desk", "on") == "on" and ha.entities["light.desk"]["state"] == "on"
    call = [r for r in ha.requests if r.method == "POST"][-1]
    assert call.path == "/api/services/light/turn_on" and call.json() == {"entity_id": "light.desk"}
    assert call.headers["authorization"] == "Bearer long-lived"
    assert call.headers["content-type"].startswith("application/json")
    # an older Home Assistant that doesn't list the changed states: the state is read back
    assert await switch(svc, "fan", "on") == "on"
    assert [(r.method, r.path) for r in quiet.requests[-2:]] == [
        ("POST", "/api/services/fan/turn_on"), ("GET", "/api/states/fan.enclosure")
    ]
    assert await status(svc, "bad") == "error"
    assert "refused the credentials" in svc.power.devices["bad"].last_error


@pytest_twisted.ensureDeferred
async def test_hue_light_and_group(tmp_path, fakes, services):
    bridge = fakes.start(FakeHue("apikey123"))
    svc = await start_power(
        tmp_path,
        f"[power lamp]\ntype: hue\naddress: {bridge.address}\nuser: apikey123\ndevice_id: 1\n"
        f"[power room]\ntype: hue\naddress: {bridge.address}\nuser: apikey123\ndevice_id: 1\ndevice_type: group\n"
        f"[power stranger]\ntype: hue\naddress: {bridge.address}\nuser: nobody\ndevice_id: 1\n",
    )
    services.append(svc)
    assert await switch(svc, "lamp", "on") == "on" and bridge.lights == {"1": True, "2": False}
    put = bridge.requests[-1]
    assert (put.method, put.path, put.json()) == ("PUT", "/api/apikey123/lights/1/state", {"on": True})
    assert await status(svc, "room") == "off"  # not all on
    assert await switch(svc, "room", "on") == "on" and bridge.lights == {"1": True, "2": True}
    assert bridge.requests[-1].path == "/api/apikey123/groups/1/action"
    code, message = await switch(svc, "stranger", "off")
    assert code == 400 and "unauthorized user" in message


@pytest_twisted.ensureDeferred
async def test_homeseer_loxone_smartthings(tmp_path, fakes, services):
    seer = fakes.start(FakeHomeSeer(password="pw", ref=42))
    lox = fakes.start(FakeLoxone("Printer"))
    things = fakes.start(FakeSmartThings("st-token", "dev-1"))
    svc = await start_power(
        tmp_path,
        f"[power seer]\ntype: homeseer\naddress: {seer.address}\ndevice: 42\npassword: pw\n"
        f"[power lox]\ntype: loxonev1\naddress: {lox.address}\noutput_id: Printer\n"
        f"[power things]\ntype: smartthings\nprotocol: http\naddress: {things.address}\ntoken: st-token\n"
        "device: dev-1\n",
    )
    services.append(svc)
    assert await switch(svc, "seer", "on") == "on" and seer.status == "On"
    assert seer.requests[-1].query == {
        "user": "admin", "pass": "pw", "request": "controldevicebylabel", "ref": "42", "label": "On"
    }
    assert await switch(svc, "lox", "on") == "on" and lox.value == 1
    assert lox.requests[-1].path == "/jdev/sps/io/Printer/on" and lox.requests[-1].basic_auth == ("admin", "admin")
    assert await switch(svc, "things", "on") == "on" and things.on
    post = things.requests[-1]
    assert post.path == "/v1/devices/dev-1/commands"
    assert post.json() == {"commands": [{"component": "main", "capability": "switch", "command": "on"}]}
    assert post.headers["authorization"] == "Bearer st-token"
    assert await switch(svc, "things", "off") == "off" and not things.on


@pytest_twisted.ensureDeferred
async def test_tplink_plug_strip_outlet_and_countdown(tmp_path, fakes, services):
    plug = fakes.start(FakeTPLink())
    strip = fakes.start(FakeTPLink(outlets=3))
    svc = await start_power(
        tmp_path,
        f"[power plug]\ntype: tplink_smartplug\naddress: {plug.address}\n"
        f"[power outlet]\ntype: tplink_smartplug\naddress: 127.0.0.1/2\nport: {strip.port.getHost().port}\n"
        f"[power momentary]\ntype: tplink_smartplug\naddress: {plug.address}\ntimer: 30\n",
    )
    services.append(svc)
    assert await switch(svc, "plug", "on") == "on" and plug.relay == 1
    assert plug.commands[-1] == {"system": {"set_relay_state": {"state": 1}}}
    assert await switch(svc, "outlet", "on") == "on"
    assert [c["state"] for c in strip.children] == [0, 0, 1]
    assert strip.commands[-1]["context"] == {"child_ids": ["8006AABBCCDD02"]}
    assert await switch(svc, "momentary", "off") == "off"
    assert plug.commands[-2:] == [
        {"count_down": {"delete_all_rules": None}},
        {"count_down": {"add_rule": {"enable": 1, "delay": 30, "act": 0, "name": "turn off"}}},
    ]
    plug.hang = True
    svc.power.devices["plug"].timeout = 0.5
    assert await status(svc, "plug") == "error"


@pytest_twisted.ensureDeferred
async def test_mqtt_device_against_the_mqtt_interface(tmp_path, services):
    broker = FakeMQTT()
    broker.devices["plug"] = "OFF"
    config = (
        "[power plug]\ntype: mqtt\ncommand_topic: cmnd/plug/POWER\ncommand_payload: {command}\n"
        "query_topic: cmnd/plug/POWER\nstate_topic: stat/plug/POWER\nqos: 1\n"
        "state_response_template:\n  {% if payload == 'BROKEN' %}nonsense{% else %}{payload}{% endif %}\n"
    )
    svc = await start_power(tmp_path, config, extra_plugins={"fake_mqtt": FakeMQTTPlugin(broker)})
    services.append(svc)
    assert await status(svc, "plug") == "off"
    assert broker.published[0] == ("cmnd/plug/POWER", None, 1, False)  # the start-up query
    assert await switch(svc, "plug", "on") == "on" and broker.devices["plug"] == "ON"
    assert broker.published[-1] == ("cmnd/plug/POWER", "on", 1, False)
    ws = await svc.ws()
    broker.deliver("stat/plug/POWER", b"OFF")  # switched at the plug: pushed to clients
    assert (await ws.next_notification("notify_power_changed"))["params"][0]["status"] == "off"
    broker.deliver("stat/plug/POWER", b"BROKEN")
    assert (await ws.next_notification("notify_power_changed"))["params"][0]["status"] == "error"
    broker.mute = True
    code, message = await switch(svc, "plug", "on")
    assert code == 400 and "no state on stat/plug/POWER within 2 s" in message
    broker.mute, broker.connected = False, False
    code, message = await switch(svc, "plug", "on")
    assert code == 400 and "not connected" in message
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_mqtt_type_without_the_mqtt_plugin_is_left_out(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota())
    config = (
        "[power plug]\ntype: mqtt\ncommand_topic: a\ncommand_payload: {command}\nstate_topic: b\n"
        f"[power other]\ntype: tasmota\naddress: {plug.address}\n"
    )
    svc = await start_power(tmp_path, config)
    services.append(svc)
    warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
    assert any("[power plug]" in w and "requires the [mqtt] section / mqtt plugin" in w for w in warnings)
    assert [d["device"] for d in (await svc.get("/machine/device_power/devices"))[1]["result"]["devices"]] == ["other"]
    assert await switch(svc, "other", "on") == "on"
