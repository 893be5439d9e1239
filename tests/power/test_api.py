"""``machine.device_power.*`` over every transport, against fake Tasmota devices on loopback ports."""

from __future__ import annotations

import pytest_twisted
from power.fake_http import FakeTasmota
from power.service import log_text, start_power

from mtclient import connect_unix, start_service, wait_for


def tasmota(name: str, fake: FakeTasmota, extra: str = "") -> str:
    return f"[power {name}]\ntype: tasmota\naddress: {fake.address}\npassword: {fake.password}\n{extra}\n"


@pytest_twisted.ensureDeferred
async def test_every_endpoint_over_http_websocket_jsonrpc_and_unix_socket(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota(password="hunter2"))
    strip = fakes.start(FakeTasmota(relays=2, password="hunter2"))
    svc = await start_power(
        tmp_path, tasmota("printer", plug) + tasmota("lamp", strip, "output_id: 2\nlocked_while_printing: true")
    )
    services.append(svc)
    info = (await svc.get("/server/info"))[1]["result"]
    assert "power" in info["components"] and info["warnings"] == []

    code, body = await svc.get("/machine/device_power/devices")
    assert code == 200
    assert body["result"] == {"devices": [
        {"device": "printer", "status": "off", "locked_while_printing": False, "type": "tasmota"},
        {"device": "lamp", "status": "off", "locked_while_printing": True, "type": "tasmota"},
    ]}
    # the fakes saw the documented command API, with the credentials, on their own port
    first = plug.requests[0]
    assert (first.method, first.path) == ("GET", "/cm")
    assert first.query == {"user": "admin", "password": "hunter2", "cmnd": "Power1"}
    assert strip.requests[0].query["cmnd"] == "Power2"

    ws = await svc.ws()
    assert await svc.get("/machine/device_power/device?device=printer") == (200, {"result": {"printer": "off"}})
    code, body = await svc.post("/machine/device_power/device", json={"device": "printer", "action": "on"})
    assert (code, body) == (200, {"result": {"printer": "on"}})
    assert plug.requests[-1].query["cmnd"] == "Power1 on" and plug.relays[1] is True
    note = await ws.next_notification("notify_power_changed")
    assert note["params"] == [{"device": "printer", "status": "on", "locked_while_printing": False, "type": "tasmota"}]

    assert await ws.call("machine.device_power.post_device", {"device": "printer", "action": "toggle"}) == {"printer": "off"}
    assert plug.relays[1] is False
    assert (await ws.next_notification("notify_power_changed"))["params"][0]["status"] == "off"
    assert await ws.call("machine.device_power.get_device", {"device": "lamp"}) == {"lamp": "off"}

    # batch: names as arguments, unknown ones reported in place
    code, body = await svc.get("/machine/device_power/status?printer&lamp&nope")
    assert body["result"] == {"printer": "off", "lamp": "off", "nope": "device_not_found"}
    assert await ws.call("machine.device_power.on", {"printer": None, "lamp": None}) == {"printer": "on", "lamp": "on"}
    assert strip.relays == {1: False, 2: True}
    code, body = await svc.post(
        "/server/jsonrpc", json={"jsonrpc": "2.0", "method": "machine.device_power.off", "params": {"lamp": None}, "id": 3}
    )
    assert body == {"jsonrpc": "2.0", "result": {"lamp": "off"}, "id": 3}
    code, body = await svc.post("/machine/device_power/off?printer")
    assert body["result"] == {"printer": "off"}

    unix = await connect_unix(svc.server.path("comms", "moonraker.sock"))
    unix.send({"jsonrpc": "2.0", "method": "machine.device_power.devices", "id": 1})
    reply = await unix.messages.get()
    while "id" not in reply:
        reply = await unix.messages.get()
    assert [d["status"] for d in reply["result"]["devices"]] == ["off", "off"]
    unix.transport.loseConnection()
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_bad_requests_get_clear_errors_and_change_nothing(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota())
    svc = await start_power(tmp_path, tasmota("printer", plug))
    services.append(svc)
    sent = len(plug.requests)
    code, body = await svc.get("/machine/device_power/device?device=nope")
    assert code == 400 and body["error"]["message"] == "No valid device named nope"
    code, body = await svc.post("/machine/device_power/device", json={"device": "printer", "action": "explode"})
    assert code == 400 and "'explode'" in body["error"]["message"] and "printer" in body["error"]["message"]
    code, body = await svc.post("/machine/device_power/device", json={"action": "on"})
    assert code == 400 and "'device'" in body["error"]["message"]
    code, body = await svc.post("/machine/device_power/on")
    assert code == 400 and "No arguments provided" in body["error"]["message"]
    ws = await svc.ws()
    reply = await ws.rpc("machine.device_power.post_device", {"device": "nope", "action": "on"})
    assert reply["error"] == {"code": 400, "message": "No valid device named nope"}
    # a batch of JSON-RPC requests, one of them bad
    code, body = await svc.post("/server/jsonrpc", json=[
        {"jsonrpc": "2.0", "method": "machine.device_power.get_device", "params": {"device": "printer"}, "id": 1},
        {"jsonrpc": "2.0", "method": "machine.device_power.post_device", "params": {"device": "printer"}, "id": 2},
    ])
    assert body[0]["result"] == {"printer": "off"} and "'action'" in body[1]["error"]["message"]
    # a deeply nested body is refused as a whole
    nested = b'{"printer": ' + b'{"x": ' * 5000 + b"null" + b"}" * 5001
    code, body = await svc.post(
        "/machine/device_power/on", data=nested, headers={"Content-Type": "application/json"}
    )
    assert code == 400 and plug.relays[1] is False
    assert all(r.query["cmnd"] in ("Power1", "Power1 on") for r in plug.requests[sent:])
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_broken_sections_are_left_out_with_warnings(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota())
    config = (
        tasmota("good", plug)
        + "[power nothing]\ntype: teleporter\n"
        + "[power noaddress]\ntype: tasmota\n"
        + "[power badaddress]\ntype: tasmota\naddress: host:notaport\n"
        + "[power badoption]\ntype: tasmota\naddress: 127.0.0.1\noff_when_shutdown: maybe\n"
        + "[power_group stuff]\ndevices: good, ghost\n"
    )
    svc = await start_power(tmp_path, config)
    services.append(svc)
    warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
    text = "\n".join(warnings)
    assert "[power nothing]" in text and "unknown type 'teleporter'" in text and "tasmota" in text
    assert "option 'address' in section [power noaddress] is required" in text
    assert "[power badaddress]" in text and "option 'address'" in text
    assert "[power badoption]" in text and "'off_when_shutdown'" in text
    assert "[power_group stuff]" in text and "ghost" in text
    devices = (await svc.get("/machine/device_power/devices"))[1]["result"]["devices"]
    assert [d["device"] for d in devices] == ["good"]
    assert (await svc.post("/machine/device_power/device", json={"device": "good", "action": "on"}))[1] == {
        "result": {"good": "on"}
    }


@pytest_twisted.ensureDeferred
async def test_plugin_not_loaded_without_power_sections(tmp_path, services):
    svc = await start_service(str(tmp_path / "data"), "[server]\n")
    services.append(svc)
    assert "power" not in (await svc.get("/server/info"))[1]["result"]["components"]
    assert (await svc.get("/machine/device_power/devices"))[0] == 404


@pytest_twisted.ensureDeferred
async def test_credentials_required_when_authorization_is_configured(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota())
    svc = await start_power(tmp_path, tasmota("printer", plug) + "[authorization]\n")
    services.append(svc)
    assert (await svc.get("/machine/device_power/devices"))[0] == 401
    code, _ = await svc.post("/machine/device_power/device", json={"device": "printer", "action": "on"})
    assert code == 401 and plug.relays[1] is False


@pytest_twisted.ensureDeferred
async def test_hung_device_errors_within_its_timeout_and_delays_nobody(tmp_path, fakes, services):
    hung = fakes.start(FakeTasmota())
    fine = fakes.start(FakeTasmota())
    svc = await start_power(tmp_path, tasmota("hung", hung, "timeout: 2") + tasmota("fine", fine))
    services.append(svc)
    ws = await svc.ws()
    hung.hang = True
    pending = svc.post("/machine/device_power/device", json={"device": "hung", "action": "on"})
    queued = svc.get("/machine/device_power/device?device=hung")
    # another device answers while the hung one is being waited for
    assert await ws.call("machine.device_power.post_device", {"device": "fine", "action": "on"}) == {"fine": "on"}
    assert not pending.called
    # requests to one device wait on each other: the second has not reached the device yet
    assert len([r for r in hung.requests if r.query["cmnd"] == "Power1"]) == 2  # start-up read + the pending one
    code, body = await pending
    assert code == 400 and "hung" in body["error"]["message"] and "no answer within 2 s" in body["error"]["message"]
    note = await ws.next_notification("notify_power_changed")
    while note["params"][0]["device"] != "hung":
        note = await ws.next_notification("notify_power_changed")
    assert note["params"][0]["status"] == "error"
    assert (await queued) == (200, {"result": {"hung": "error"}})
    # a batch with the hung device: the other is switched, the error names the hung one
    code, body = await svc.post("/machine/device_power/off", json={"hung": None, "fine": None})
    assert code == 400 and "hung" in body["error"]["message"] and fine.relays[1] is False
    # it answers again
    hung.hang = False
    assert (await svc.get("/machine/device_power/device?device=hung"))[1]["result"] == {"hung": "off"}
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_garbage_and_refused_credentials_are_errors_logged_once(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota(password="right"))
    junk = fakes.start(FakeTasmota())
    config = tasmota("printer", plug).replace("password: right", "password: wrong") + tasmota("junk", junk)
    junk.garbage = True
    svc = await start_power(tmp_path, config)
    services.append(svc)
    for _ in range(3):
        assert (await svc.get("/machine/device_power/status?printer&junk"))[1]["result"] == {
            "printer": "error", "junk": "error"
        }
    code, body = await svc.post("/machine/device_power/device", json={"device": "printer", "action": "on"})
    assert code == 400 and "refused the credentials (HTTP 401" in body["error"]["message"]
    assert "wrong" not in body["error"]["message"]  # the password in the query string is never shown
    log = log_text(svc)
    assert log.count("reading the state: refused the credentials") == 1
    assert log.count("with something that is not JSON") == 1
    assert plug.relays[1] is False


@pytest_twisted.ensureDeferred
async def test_polling_notices_changes_made_elsewhere(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota())
    svc = await start_power(tmp_path, tasmota("printer", plug, "poll_interval: 1\ntimeout: 0.5"))
    services.append(svc)
    ws = await svc.ws()
    plug.relays[1] = True  # someone pressed the button on the plug
    note = await ws.next_notification("notify_power_changed", timeout=5)
    assert note["params"][0] == {"device": "printer", "status": "on", "locked_while_printing": False, "type": "tasmota"}
    plug.hang = True  # the plug stops answering: polling reports it
    assert (await ws.next_notification("notify_power_changed", timeout=5))["params"][0]["status"] == "error"
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_server_restart_rebuilds_devices_and_stops_the_old_ones(tmp_path, fakes, services):
    plug = fakes.start(FakeTasmota())
    svc = await start_power(
        tmp_path,
        tasmota("printer", plug, "poll_interval: 1\nbound_services:\n  nosuchservice\n  klipper")
        + "[machine]\nprovider: recording\n",
    )
    services.append(svc)
    warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
    assert any("bound service 'nosuchservice' ignored: it is not in moonraker.asvc" in w for w in warnings)
    assert svc.power.devices["printer"].bound_services == ["klipper"]
    old = svc.power.devices["printer"]
    assert await svc.post("/server/restart") == (200, {"result": "ok"})
    code, body = await svc.get("/machine/device_power/devices")
    assert code in (200, 503)

    def restarted():
        plugins = svc.server.plugins
        return svc.server.running and plugins is not None and plugins.pm.get_plugin("power") not in (None, svc.power)

    await wait_for(restarted)
    new = svc.server.plugins.pm.get_plugin("power")
    await wait_for(lambda: new.devices["printer"].state == "off")
    assert old._stopped and old._poller is not None and not old._poller.running
    assert (await svc.post("/machine/device_power/on?printer"))[1] == {"result": {"printer": "on"}}
    assert plug.relays[1]
