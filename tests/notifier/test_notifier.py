"""Notifiers send through apprise's json:// and form:// to a local receiver while the simulator prints."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from notifier.receiver import Receiver, listen

from mtclient import RPCError, sleep, start_service, wait_for

GCODE = "G28\nG90\nM83\nG1 Z0.3 F3000\n" + "".join(f"G1 X{10 + i % 2 * 20} Y{10 + i % 50} E0.5 F3000\n"
                                                   for i in range(300))


def config(port: int, extra: str = "") -> str:
    return f"""\
[server]
enable_debug_logging: True
[simulator]
speed: 20
[notifier all]
url: json://bot:hunter2@127.0.0.1:{port}/all
events: *
[notifier done]
url: form://127.0.0.1:{port}/form
events: complete, error
body_format: markdown
title: Print {{event_name}}
body: {{event_args[1].filename}} ended as {{event_args[1].state}} (klippy {{printer.webhooks.state}})
attach: http://127.0.0.1:{port}/snapshot.jpg
[notifier phone]
url: json://127.0.0.1:{port}/remote
events: gcode
title: {{% if event_message %}}Klipper says{{% endif %}}
body: {{event_message}}
{extra}"""


@pytest_twisted.async_yield_fixture
async def env(tmp_path):
    receiver = Receiver()
    port = listen(receiver)
    datapath = str(tmp_path / "data")
    os.makedirs(os.path.join(datapath, "gcodes"))
    for name, text in (("cube.gcode", GCODE), ("bad.gcode", GCODE + "G1 X9999 F3000\n")):
        with open(os.path.join(datapath, "gcodes", name), "w") as f:
            f.write(text)
    svc = await start_service(datapath, config(port.getHost().port), simulate=True)
    await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)
    svc.receiver = receiver
    svc.sim = svc.server.plugins.pm.get_plugin("klippy_apis").simulator
    yield svc
    await svc.service.stopService()
    receiver.close_hanging()
    await port.stopListening()


def at(receiver: Receiver, path: str) -> list[dict]:
    return [r for r in receiver.received if r["path"] == path]


async def wait_state(svc, state: str) -> None:
    await wait_for(lambda: svc.server.print_state == state, timeout=15)


@pytest_twisted.ensureDeferred
async def test_job_events_arrive(env):
    ws = await env.ws()
    got = env.receiver
    await ws.call("printer.print.start", {"filename": "cube.gcode"})
    await got.wait(1)
    assert at(got, "/all")[0]["json"] == {"version": "1.0", "title": "", "message": "started", "attachments": [],
                                          "type": "info"}
    await wait_state(env, "printing")
    await ws.call("printer.print.pause")
    await got.wait(2)
    await ws.call("printer.print.resume")
    await got.wait(3)
    await ws.call("printer.print.cancel")
    await got.wait(4)
    assert [r["json"]["message"] for r in at(got, "/all")] == ["started", "paused", "resumed", "cancelled"]
    assert not at(got, "/form")

    await ws.call("printer.print.start", {"filename": "cube.gcode"})
    await got.wait(7)  # started, complete (/all) and complete (/form)
    assert [r["json"]["message"] for r in at(got, "/all")][-2:] == ["started", "complete"]
    done = at(got, "/form")[0]
    assert done["form"]["title"] == "Print complete"
    assert done["form"]["message"] == "cube.gcode ended as complete (klippy ready)"
    assert done["form"]["type"] == "info"
    (name, content), = done["files"].values()
    assert name == "snapshot.jpg" and content == got.snapshot

    await ws.call("printer.print.start", {"filename": "bad.gcode"})
    await got.wait(10)
    assert [r["json"]["message"] for r in at(got, "/all")][-2:] == ["started", "error"]
    assert at(got, "/form")[1]["form"]["message"].startswith("bad.gcode ended as error")
    assert not at(got, "/remote")


@pytest_twisted.ensureDeferred
async def test_remote_method_notify(env):
    got = env.receiver
    # as Klipper sends {action_call_remote_method("notify", name="phone", message="Filament change needed!")}
    env.sim.call_remote_method("notify", {"name": "phone", "message": "Filament change needed!"})
    await got.wait(1)
    assert at(got, "/remote")[0]["json"]["message"] == "Filament change needed!"
    assert at(got, "/remote")[0]["json"]["title"] == "Klipper says"
    env.sim.call_remote_method("notify", {"name": "nobody", "message": "lost"})
    env.sim.call_remote_method("notify", {"name": "all"})
    await got.wait(2)
    assert at(got, "/all")[0]["json"]["message"] == "remote_action"
    assert (await env.get("/server/info"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_list_and_debug_test(env):
    ws = await env.ws()
    listed = await ws.call("server.notifiers.list")
    names = [n["name"] for n in listed["notifiers"]]
    assert names == ["all", "done", "phone"]
    first = listed["notifiers"][0]
    assert "hunter2" not in first["url"] and first["url"].startswith("json://bot:")
    assert first["events"] == ["*"] and first["body"] is None and first["title"] is None
    done = listed["notifiers"][1]
    assert done["events"] == ["complete", "error"] and done["body_format"] == "markdown"
    assert done["attach"].startswith("http://127.0.0.1:") and done["attach"].endswith("/snapshot.jpg")

    result = await ws.call("debug.notifiers.test", {"name": "done"})
    assert result["status"] == "success" and result["stats"]["filename"] == "notifier_test.gcode"
    assert at(env.receiver, "/form")[0]["form"]["message"].startswith("notifier_test.gcode ended as")
    with pytest.raises(RPCError) as err:
        await ws.call("debug.notifiers.test", {"name": "nope"})
    assert err.value.code == 404 and "nope" in err.value.message
    with pytest.raises(RPCError) as err:
        await ws.call("debug.notifiers.test", {})
    assert "name" in err.value.message
    code, body, _ = await env.request("POST", "/server/jsonrpc", json=[
        {"jsonrpc": "2.0", "method": "server.notifiers.list", "id": 1},
        {"jsonrpc": "2.0", "method": "debug.notifiers.test", "params": {"name": "phone"}, "id": 2}])
    assert len(body[0]["result"]["notifiers"]) == 3 and body[1]["result"]["status"] == "success"


@pytest_twisted.ensureDeferred
async def test_failing_hanging_and_bad_notifiers(tmp_path):
    receiver = Receiver()
    port = listen(receiver)
    p = port.getHost().port
    extra = f"""\
[notifier broken]
url: json://127.0.0.1:{p}/fail
events: started
[notifier slow]
url: json://127.0.0.1:{p}/hang
events: started
[notifier bad_url]
url: not a url
events: *
[notifier bad_event]
url: json://127.0.0.1:{p}/x
events: started, exploded
[notifier unknown_service]
url: nosuchservice://x
events: *
[notifier files]
url: json://127.0.0.1:{p}/files
events: complete
attach:
    {tmp_path}/data/gcodes/pic.png
    /etc/passwd
    {tmp_path}/data/gcodes/missing.png
[notifier bad_template]
url: json://127.0.0.1:{p}/tpl
events: started
body: {{event_args[5].nothing.here}}
"""
    os.makedirs(tmp_path / "data" / "gcodes")
    (tmp_path / "data" / "gcodes" / "pic.png").write_bytes(b"\x89PNG fake")
    svc = await start_service(str(tmp_path / "data"), config(p, extra))
    try:
        # only files inside a root are attached
        assert (await svc.post("/debug/notifiers/test", json={"name": "files"}))[0] == 200
        sent = at(receiver, "/files")[0]["json"]
        assert [a["filename"] for a in sent["attachments"]] == ["pic.png"]
        svc.server.plugins.pm.get_plugin("notifier").send_timeout = 0.5
        names = [n["name"] for n in (await svc.get("/server/notifiers/list"))[1]["result"]["notifiers"]]
        assert names == ["all", "done", "phone", "broken", "slow", "files", "bad_template"]
        warnings = "\n".join((await svc.get("/server/info"))[1]["result"]["warnings"])
        for name in ("bad_url", "bad_event", "unknown_service"):
            assert f"[notifier {name}]" in warnings
        assert "exploded" in warnings
        code, body = await svc.post("/debug/notifiers/test", json={"name": "broken"})
        assert code == 502 and "broken" in body["error"]["message"]
        started = svc.server.reactor.seconds()
        pending = svc.post("/debug/notifiers/test", json={"name": "slow"})
        await sleep(0.1)
        assert (await svc.get("/server/info"))[0] == 200  # the reactor is free while apprise waits
        code, body = await pending
        assert code == 502 and svc.server.reactor.seconds() - started < 4
        code, body = await svc.post("/debug/notifiers/test", json={"name": "bad_template"})
        assert code == 500 and "body" in body["error"]["message"]
    finally:
        await svc.service.stopService()
        receiver.close_hanging()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_without_credentials_and_without_debug(tmp_path):
    svc = await start_service(str(tmp_path / "data"),
                              "[server]\n[authorization]\n[notifier a]\nurl: json://127.0.0.1:9/x\nevents: *\n")
    try:
        assert (await svc.get("/server/notifiers/list"))[0] == 401
        # debug endpoints exist only with enable_debug_logging
        code, _ = await svc.post("/debug/notifiers/test", json={"name": "a"})
        assert code in (401, 404)
        assert svc.server.registry.by_method("debug.notifiers.test") is None
        ws = await svc.ws()
        with pytest.raises(RPCError) as err:
            await ws.call("server.notifiers.list")
        assert err.value.code == 401
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_stream_as_attachment_is_cut_off_by_size_and_time(tmp_path, monkeypatch):
    """A URL that streams for ever (a webcam's stream instead of its snapshot) can't stall or flood a notifier."""
    import moontwist.plugins.notifier as notifier_module

    monkeypatch.setattr(notifier_module, "MAX_ATTACHMENT", 1024 * 1024)
    monkeypatch.setattr(notifier_module, "FETCH_TIMEOUT", 1.0)
    receiver = Receiver()
    port = listen(receiver)
    p = port.getHost().port
    extra = f"""\
[notifier flood]
url: json://127.0.0.1:{p}/flood
events: complete
attach: http://127.0.0.1:{p}/stream
[notifier drip]
url: json://127.0.0.1:{p}/drip
events: complete
attach: http://127.0.0.1:{p}/stream?slow=1
"""
    svc = await start_service(str(tmp_path / "data"), config(p, extra))
    try:
        for name, path in (("flood", "/flood"), ("drip", "/drip")):
            pending = svc.post("/debug/notifiers/test", json={"name": name})
            pending.addTimeout(8, svc.server.reactor)
            code, _ = await pending
            assert code == 200
            # the notification went out without the attachment, and the stream was hung up on
            assert at(receiver, path)[0]["json"]["attachments"] == []
            await wait_for(lambda: receiver.streamed[-1]["closed"])
        flood, drip = receiver.streamed
        assert flood["sent"] < 4 * 1024 * 1024
        assert 0 < drip["sent"] < 100
    finally:
        await svc.service.stopService()
        await port.stopListening()
