"""The calls KlipperScreen makes from connecting to its main screen, and the keys it indexes.

Learned by running KlipperScreen against ``moontwist --simulate`` under Xvfb
(screen.py ``init_moonraker_components`` .. ``_finish_init``, printer.py
``reinit``): a missing key there raises KeyError and leaves it on its splash
screen.
"""

from __future__ import annotations

import pytest_twisted

from mtclient import start_service, wait_for

CONFIG = "[server]\n[simulator]\nspeed: 50\n"


@pytest_twisted.ensureDeferred
async def test_klipperscreen_start_up_sequence(tmp_path):
    svc = await start_service(str(tmp_path / "data"), CONFIG, simulate=True)
    try:
        await wait_for(lambda: svc.server.klippy_state == "ready" and svc.server.klippy.initialized)
        ws = await svc.ws()
        await ws.call(
            "server.connection.identify",
            {"client_name": "KlipperScreen", "version": "v0.4.6", "type": "display", "url": "https://x"},
        )
        info = await ws.call("server.info", {})
        for key, kind in (
            ("warnings", list), ("failed_components", list), ("missing_klippy_requirements", list),
            ("components", list), ("klippy_connected", bool), ("klippy_state", str),
        ):
            assert isinstance(info[key], kind), key
        assert info["klippy_connected"] is True
        if "webcam" in info["components"]:
            assert isinstance((await ws.call("server.webcams.list", {}))["webcams"], list)
        printer_info = await ws.call("printer.info", {})
        assert isinstance(printer_info["software_version"], str)
        configfile = (await ws.call("printer.objects.query", {"objects": {"configfile": None}}))["status"]
        config = configfile["configfile"]["config"]
        assert "extruder" in config and "heater_bed" in config
        objects = (await ws.call("printer.objects.list", {}))["objects"]
        status = (await ws.call("printer.objects.query", {"objects": {o: None for o in objects}}))["status"]
        assert set(objects) <= set(status)
        assert isinstance(status["extruder"]["temperature"], float)
        assert isinstance(status["heater_bed"]["target"], float)
        assert isinstance(status["webhooks"]["state"], str)
        assert isinstance(await ws.call("printer.gcode.help", {}), dict)
        assert isinstance((await ws.call("machine.system_info", {}))["system_info"], dict)
        server_config = await ws.call("server.config", {})
        assert isinstance(server_config["config"]["data_store"]["temperature_store_size"], int)
        store = await ws.call("server.temperature_store", {})
        for sensor in ("extruder", "heater_bed", "temperature_sensor chamber"):
            assert isinstance(store[sensor]["temperatures"], list)
        assert isinstance(store["extruder"]["targets"], list)
        files = await ws.call("server.files.list", {})
        assert isinstance(files, list)
        ws.sendClose()
    finally:
        await svc.service.stopService()
