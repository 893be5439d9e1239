"""The generic ``http`` type (Moonraker's templates, in Jinja2's sandbox) and ``uhubctl`` (a fake program)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import pytest_twisted
from power.fake_http import FakeHomeAssistant, FakeTasmota
from power.service import start_power
from twisted.logger import Logger

from moontwist.config import Config, ConfigError
from moontwist.plugins.power.templates import Templates


async def switch(svc, name: str, action: str):
    code, body = await svc.post("/machine/device_power/device", json={"device": name, "action": action})
    return body["result"][name] if code == 200 else (code, body["error"]["message"])


@pytest_twisted.ensureDeferred
async def test_generic_http_as_moonraker_documents_it(tmp_path, fakes, services):
    ha = fakes.start(FakeHomeAssistant(token="tok-from-secrets", report_changes=False))
    ha.add("switch.test_switch", "off")
    tas = fakes.start(FakeTasmota(password="pw"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "moonraker.secrets").write_text(json.dumps({"homeassistant": {"token": "tok-from-secrets"}}))
    base = f"http://{ha.address}"
    config = f"""
[power generic_homeassistant]
type: http
on_url: {base}/api/services/switch/turn_on
off_url: {base}/api/services/switch/turn_off
status_url: {base}/api/states/switch.test_switch
request_template:
  {{% do http_request.add_header("Authorization", "Bearer %s" % secrets.homeassistant.token) %}}
  {{% if command in ["on", "off"] %}}
    {{% do http_request.set_method("POST") %}}
    {{% do http_request.set_body({{"entity_id": "switch.test_switch"}}) %}}
  {{% endif %}}
  {{% do http_request.send() %}}
response_template:
  {{% if command in ["on", "off"] %}}
    {{% do async_sleep(0.05) %}}
    {{% do http_request.set_method("GET") %}}
    {{% do http_request.set_body(None) %}}
    {{% do http_request.set_url(urls.status) %}}
    {{% set response = http_request.send() %}}
    {{% do response.raise_for_status() %}}
  {{% endif %}}
  {{% set resp = http_request.last_response().json() %}}
  {{resp["state"]}}

[power generic_tasmota]
type: http
on_url:
  {{% set qs = {{"user": "admin", "password": "pw", "cmnd": "Power1 on"}} %}}
  http://{tas.address}/cm?{{qs|urlencode}}
off_url: http://{tas.address}/cm?user=admin&password=pw&cmnd=Power1%20off
status_url: http://{tas.address}/cm?user=admin&password=pw&cmnd=Power1
response_template:
  {{% set resp = http_request.last_response().json() %}}
  {{resp["POWER"].lower()}}

[power escape]
type: http
on_url: http://{tas.address}/cm
off_url: http://{tas.address}/cm
status_url: http://{tas.address}/cm?user=admin&password=pw&cmnd=Power1
response_template:
  {{ http_request.__class__.__mro__ }}
"""
    svc = await start_power(tmp_path, config, name="data")
    services.append(svc)
    assert await switch(svc, "generic_homeassistant", "on") == "on"
    assert ha.entities["switch.test_switch"]["state"] == "on"
    post, get = ha.requests[-2:]
    assert (post.method, post.path, post.json()) == ("POST", "/api/services/switch/turn_on", {"entity_id": "switch.test_switch"})
    assert post.headers["authorization"] == "Bearer tok-from-secrets"
    assert post.headers["content-type"] == "application/json"
    assert (get.method, get.path, get.body) == ("GET", "/api/states/switch.test_switch", b"")
    assert await switch(svc, "generic_tasmota", "on") == "on" and tas.relays[1]
    assert tas.requests[-1].query == {"user": "admin", "password": "pw", "cmnd": "Power1 on"}
    # the sandbox refuses what a template must not reach
    assert svc.power.devices["escape"].state == "error"
    assert "__class__" in svc.power.devices["escape"].last_error


def test_templates_are_sandboxed():
    templates = Templates(None, {"s": {"k": "v"}}, Logger())
    assert templates.compile("{secrets.s.k}-{ 'a b'|upper }").render() == "v-A B"
    with pytest.raises(Exception, match="unsafe|access"):
        templates.compile("{ ''.__class__.__mro__[1].__subclasses__() }").render()
    config = Config.from_string("[power x]\non_url: {% if %}\n")
    with pytest.raises(ConfigError, match=r"\[power x\], option 'on_url': invalid template"):
        templates.option(config.section("power x"), "on_url")


UHUBCTL = '''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_UHUBCTL_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
state_file = os.environ["FAKE_UHUBCTL_STATE"]
ports = json.load(open(state_file)) if os.path.exists(state_file) else {{"1": True, "2": False}}
opts = dict(zip(args[::2], args[1::2]))
if opts.get("-l") != "1-1":
    print("No compatible devices detected!", file=sys.stderr)
    sys.exit(1)
def show(title):
    print(f"{{title}} status for hub 1-1 [0424:2514, USB 2.00, 4 ports, ppps]")
    for port, on in sorted(ports.items()):
        if "-p" not in opts or opts["-p"] == port:
            print(f"  Port {{port}}: {{'0100 power' if on else '0000 off'}}")
print("Current status for hub 1-1.1 [0424:2514, USB 2.00, 3 ports, ppps]")
print("  Port 2: 0503 power highspeed enable connect [0424:7800]")
show("Current")
if "-a" in opts:
    for port in ports:
        if "-p" not in opts or opts["-p"] == port:
            ports[port] = opts["-a"] == "on"
    json.dump(ports, open(state_file, "w"))
    print("Sent power %s request" % opts["-a"])
    show("New")
'''


@pytest_twisted.ensureDeferred
async def test_uhubctl_runs_the_program(tmp_path, services, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "uhubctl"
    program.write_text(UHUBCTL.format(python=sys.executable))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_UHUBCTL_LOG", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_UHUBCTL_STATE", str(tmp_path / "ports.json"))
    svc = await start_power(
        tmp_path,
        "[power usb]\ntype: uhubctl\nlocation: 1-1\nport: 2\n"
        "[power wrong]\ntype: uhubctl\nlocation: 9-9\n",
    )
    services.append(svc)
    assert svc.power.devices["usb"].state == "off"
    assert await switch(svc, "usb", "on") == "on"
    assert json.loads((tmp_path / "ports.json").read_text()) == {"1": True, "2": True}
    calls = [json.loads(line) for line in (tmp_path / "calls").read_text().splitlines()]
    assert ["-l", "1-1", "-p", "2", "-a", "on"] in calls and ["-l", "1-1", "-p", "2"] in calls
    code, message = await switch(svc, "wrong", "on")
    assert code == 400 and "No compatible devices detected" in message


@pytest_twisted.ensureDeferred
async def test_uhubctl_missing_program_is_a_warning(tmp_path, services, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    svc = await start_power(tmp_path, "[power usb]\ntype: uhubctl\nlocation: 1-1\n")
    services.append(svc)
    warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
    assert any("[power usb]" in w and "'uhubctl' program is not installed" in w for w in warnings)
