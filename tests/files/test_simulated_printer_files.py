"""The simulated printer's files, as a new user with no printer sees them: a printer.cfg in the
config root (written once, never over the user's), real paths in printer.info, and the read-only
config_examples and docs roots registered from Klippy's klipper_path, as Moonraker does."""

from __future__ import annotations

import os
import sys

import pytest_twisted
import treq

from mtclient import start_service, wait_for

CONFIG = "[server]\nhost: 127.0.0.1\n"


async def ready(svc):
    await wait_for(lambda: svc.server.klippy_state == "ready", timeout=10)


@pytest_twisted.ensureDeferred
async def test_printer_cfg_real_paths_and_klipper_roots(tmp_path):
    data = tmp_path / "data"
    svc = await start_service(str(data), CONFIG, simulate=True)
    try:
        await ready(svc)
        ws = await svc.ws()
        info = await ws.call("printer.info")
        assert info["config_file"] == str(data / "config" / "printer.cfg")
        assert info["log_file"] == str(data / "logs" / "klippy.log")
        assert info["python_path"] == sys.executable
        klipper = info["klipper_path"]
        assert os.path.isdir(os.path.join(klipper, "config")) and os.path.isdir(os.path.join(klipper, "docs"))
        text = (data / "config" / "printer.cfg").read_text()
        assert "[printer]" in text and "kinematics: cartesian" in text
        assert f"[virtual_sdcard]\npath: {data / 'gcodes'}\n" in text
        assert "[gcode_macro PRINT_START]\ngcode:\n  {% set MATERIAL" in text  # macros keep their lines
        status = await ws.call("printer.objects.query", {"objects": {"configfile": ["settings"]}})
        assert status["status"]["configfile"]["settings"]["virtual_sdcard"]["path"] == str(data / "gcodes")
        # the config root lists it (frontends' config editor)
        listed = [f["path"] for f in await ws.call("server.files.list", {"root": "config"})]
        assert "printer.cfg" in listed
        roots = {r["name"]: r for r in await ws.call("server.files.roots")}
        assert roots["config_examples"]["path"] == os.path.join(klipper, "config")
        assert roots["docs"]["path"] == os.path.join(klipper, "docs")
        assert roots["config_examples"]["permissions"] == roots["docs"]["permissions"] == "r"
        assert {"config_examples", "docs"} <= set((await ws.call("server.info"))["registered_directories"])
        examples = [f["path"] for f in await ws.call("server.files.list", {"root": "config_examples"})]
        assert examples and all(p.endswith(".cfg") for p in examples)
        docs = [f["path"] for f in await ws.call("server.files.list", {"root": "docs"})]
        assert "README.md" in docs
        resp = await treq.get(svc.base + "/server/files/config_examples/" + examples[0])
        assert resp.code == 200 and b"[" in await resp.content()
        reply = await ws.rpc("server.files.delete_file", {"path": f"config_examples/{examples[0]}"})
        assert reply["error"]["code"] == 403
        # remembered where Moonraker keeps it, so the roots exist before Klippy answers next time
        stored = await ws.call("server.database.get_item", {"namespace": "moonraker", "key": "klippy_connection"})
        assert stored["value"] == {"path": klipper, "executable": sys.executable}
        ws.sendClose()
    finally:
        await svc.service.stopService()
    # without a printer at all, the roots come from what was remembered
    svc = await start_service(str(data), CONFIG, simulate=False)
    try:
        code, body = await svc.get("/server/files/roots")
        assert {r["name"]: r["path"] for r in body["result"]}["config_examples"] == os.path.join(klipper, "config")
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_users_printer_cfg_is_never_overwritten(tmp_path):
    data = tmp_path / "data"
    (data / "config").mkdir(parents=True)
    (data / "config" / "printer.cfg").write_text("[printer]\nkinematics: corexy\n# mine\n")
    svc = await start_service(str(data), CONFIG, simulate=True)
    try:
        await ready(svc)
        await svc.server.restart()
        await ready(svc)
        code, body = await svc.post("/printer/restart")
        assert code == 200
        await ready(svc)
        assert (data / "config" / "printer.cfg").read_text() == "[printer]\nkinematics: corexy\n# mine\n"
        code, body = await svc.get("/printer/info")
        assert body["result"]["config_file"] == str(data / "config" / "printer.cfg")
    finally:
        await svc.service.stopService()
