"""Replies and notifications have the keys and JSON types real Moonraker sends (recorded replies).

Frontends index these replies directly: KlipperScreen stayed on its splash
screen because ``server.info`` lacked ``missing_klippy_requirements``.
"""

from __future__ import annotations

import os

import pytest_twisted
import treq

from moontwist.sim.webhooks import host_cpu_info
from mtclient import start_service, wait_for
from parity.shapes import DATA, recorded, shape_diff

CONFIG = "[server]\n[simulator]\nspeed: 2000\n"
SUBSCRIBED = {
    "webhooks": None, "print_stats": None, "virtual_sdcard": None, "pause_resume": None,
    "toolhead": ["position", "homed_axes", "print_time", "estimated_print_time"], "gcode_move": None,
    "extruder": ["temperature", "target"], "heater_bed": None, "display_status": None, "idle_timeout": None,
    "fan": None,
}
# machine.system_info as current Moonraker builds it (machine.py), by key
SYSTEM_INFO = {
    "python": {"version": [3, 11, 2, "final", 0], "version_string": ""},
    "cpu_info": {
        "cpu_count": 1, "bits": "", "processor": "", "cpu_desc": "", "serial_number": "",
        "hardware_desc": "", "model": "", "total_memory": 1, "memory_units": "",
    },
    "sd_info": {},
    "distribution": {
        "name": "", "id": "", "version": "", "version_parts": {"major": "", "minor": "", "build_number": ""},
        "like": "", "codename": "", "release_info": {}, "kernel_version": "",
    },
    "virtualization": {"virt_type": "", "virt_identifier": ""},
    "provider": "",
    "network": {},
    "canbus": {},
    "available_services": [],
    "service_state": {},
    "instance_ids": {"moonraker": "", "klipper": ""},
}


async def _service(tmp_path):
    svc = await start_service(str(tmp_path / "data"), CONFIG, simulate=True)
    await wait_for(lambda: svc.server.klippy_state == "ready" and svc.server.klippy.initialized)
    return svc


@pytest_twisted.ensureDeferred
async def test_server_printer_and_machine_info_have_every_recorded_field(tmp_path):
    svc = await _service(tmp_path)
    try:
        code, body = await svc.get("/server/info")
        assert code == 200
        info = body["result"]
        assert shape_diff(recorded("server.info"), info) == []
        assert info["missing_klippy_requirements"] == []
        code, body = await svc.get("/printer/info")
        assert shape_diff(recorded("printer.info"), body["result"]) == []
        ws = await svc.ws()
        assert shape_diff(recorded("server.info"), await ws.call("server.info")) == []
        identified = await ws.call(
            "server.connection.identify", {"client_name": "t", "version": "1", "type": "other", "url": "x"}
        )
        assert shape_diff(recorded("server.connection.identify"), identified) == []
        subscribed = await ws.call("printer.objects.subscribe", {"objects": SUBSCRIBED})
        assert shape_diff(recorded("printer.objects.subscribe"), subscribed) == []
        system = (await ws.call("machine.system_info"))["system_info"]
        assert shape_diff(SYSTEM_INFO, system, maps=("$.network", "$.canbus", "$.service_state")) == []
        stats = (await ws.next_notification("notify_proc_stat_update"))["params"][0]
        assert shape_diff(recorded("notify_proc_stat_update")[0], stats, maps=("$.network", "$.system_cpu_usage")) == []
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_warnings_use_html_line_breaks_unless_raw(tmp_path):
    svc = await _service(tmp_path)
    try:
        svc.server.warnings.append("first line\nsecond line")
        warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
        assert "first line<br/>second line" in warnings
        warnings = (await svc.get("/server/info?raw=true"))[1]["result"]["warnings"]
        assert "first line\nsecond line" in warnings
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_missing_klippy_requirements_names_absent_objects(tmp_path):
    svc = await _service(tmp_path)
    try:
        svc.server.klippy.objects = [o for o in svc.server.klippy.objects if o != "pause_resume"]
        info = (await svc.get("/server/info"))[1]["result"]
        assert info["missing_klippy_requirements"] == ["pause_resume"]
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_upload_print_and_history_replies_match_moonraker(tmp_path):
    svc = await _service(tmp_path)
    try:
        ws = await svc.ws()
        path = os.path.join(DATA, "gcode_samples", "prusaslicer_cube.gcode")
        with open(path, "rb") as f:
            resp = await treq.post(svc.base + "/server/files/upload", files={"file": ("mr_cube.gcode", f)})
            upload = await resp.json()
        assert resp.code == 201
        assert shape_diff(recorded("upload"), upload) == []
        changed = await ws.next_notification("notify_filelist_changed")
        assert shape_diff(recorded("notify_filelist_changed"), changed["params"]) == []
        await wait_for(lambda: svc.server.lookup("file_manager").store.get("mr_cube.gcode"))
        assert await ws.call("printer.print.start", {"filename": "mr_cube.gcode"}) == "ok"
        added = await ws.next_notification("notify_history_changed", timeout=15)
        assert shape_diff(recorded("notify_history_changed.added"), added["params"]) == []
        finished = await ws.next_notification("notify_history_changed", timeout=30)
        assert finished["params"][0]["action"] == "finished"
        assert shape_diff(recorded("notify_history_changed.finished"), finished["params"]) == []
        listed = await ws.call("server.history.list", {"limit": 5})
        assert shape_diff(recorded("server.history.list"), listed) == []
        query = (await svc.get("/printer/objects/query?print_stats&virtual_sdcard&pause_resume&webhooks"))[1]
        assert shape_diff(recorded("printer.objects.query"), query["result"]) == []
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_simulated_klippy_reports_the_cpu_machine_system_info_reports(tmp_path):
    svc = await _service(tmp_path)
    try:
        cpu = (await svc.get("/machine/system_info"))[1]["result"]["system_info"]["cpu_info"]
        printer = (await svc.get("/printer/info"))[1]["result"]
        assert printer["cpu_info"] == f"{cpu['cpu_count']} core {cpu['cpu_desc'] or '?'}"
    finally:
        await svc.service.stopService()


def test_cpu_info_is_read_from_the_hosts_proc_cpuinfo(tmp_path):
    (tmp_path / "proc").mkdir()
    block = "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    (tmp_path / "proc" / "cpuinfo").write_text("\n".join(block.format(n=n) for n in range(4)))
    assert host_cpu_info(str(tmp_path)) == "4 core Intel(R) Xeon(R) Processor"
    (tmp_path / "proc" / "cpuinfo").write_text("processor : 0\nProcessor : ARMv7 Processor rev 4 (v7l)\n\nprocessor : 1\n")
    assert host_cpu_info(str(tmp_path)) == "2 core ARMv7 Processor rev 4 (v7l)"
