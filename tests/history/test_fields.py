"""Auxiliary per-job values registered by other plugins (``register_history_fields``)."""

from __future__ import annotations

import pytest
import pytest_twisted
from history.printing import CONFIG, write_gcodes

from moontwist.history_fields import HistoryField
from moontwist.hookspecs import hookimpl
from mtclient import start_service, wait_for


class MeterPlugin:
    """An energy meter (delta, totals) and a temperature (maximum) a test drives by hand."""

    def __init__(self) -> None:
        self.energy = HistoryField("sensor meter", "energy", "Printer energy", "delta", "kWh",
                                   precision=3, report_total=True, report_maximum=True)
        self.peak = HistoryField("sensor meter", "peak_temp", "Highest temperature", "maximum", "C")

    @hookimpl
    def register_history_fields(self, register):
        register(self.energy)
        register(self.peak)


def test_strategies_track_only_during_a_job():
    field = HistoryField("p", "avg", strategy="average")
    field.update(100)  # before the job: not counted
    field.start_job()
    for value in (1, 2, 3, None):
        field.update(value)
    assert field.end_job()["value"] == 2
    collect = HistoryField("p", "c", strategy="collect")
    collect.start_job()
    collect.update(1)
    collect.update(2)
    assert collect.value() == [1, 2]
    with pytest.raises(ValueError):
        HistoryField("p", "bad", strategy="median")


def test_delta_excludes_paused_spans():
    field = HistoryField("p", "energy", strategy="delta", exclude_paused=True)
    field.update(10.0)
    field.start_job()
    field.update(12.0)
    field.pause_job(True)
    field.update(20.0)  # used while paused: not this print's
    field.pause_job(False)
    field.update(21.0)
    assert field.end_job()["value"] == 3.0


@pytest_twisted.ensureDeferred
async def test_fields_reach_jobs_and_totals_through_the_api(tmp_path):
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"short.gcode": 60})
    meter = MeterPlugin()
    svc = await start_service(datapath, CONFIG, simulate=True, extra_plugins={"meter": meter})
    try:
        await wait_for(lambda: svc.server.klippy_state == "ready")
        ws = await svc.ws()
        meter.energy.update(5.0)
        await ws.call("printer.print.start", {"filename": "short.gcode"})
        note = await ws.next_notification("notify_history_changed", timeout=15)
        assert note["params"][0]["action"] == "added"
        meter.energy.update(5.25)
        meter.peak.update(200.0)
        meter.peak.update(210.5)
        meter.energy.update(5.5004)
        note = await ws.next_notification("notify_history_changed", timeout=15)
        job = note["params"][0]["job"]
        assert job["auxiliary_data"] == [
            {"provider": "sensor meter", "name": "energy", "value": 0.5, "description": "Printer energy",
             "units": "kWh"},
            {"provider": "sensor meter", "name": "peak_temp", "value": 210.5,
             "description": "Highest temperature", "units": "C"},
        ]
        totals = await ws.call("server.history.totals")
        assert totals["auxiliary_totals"] == [
            {"provider": "sensor meter", "field": "energy", "maximum": 0.5, "total": 0.5}
        ]
        listed = await ws.call("server.history.list")
        assert listed["jobs"][0]["auxiliary_data"] == job["auxiliary_data"]
        ws.sendClose()
    finally:
        await svc.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_field_without_a_value_is_left_out_of_the_job(tmp_path):
    # Mainsail's job details dialog (HistoryListPanelDetailsDialog.vue, get entries) calls
    # value.toString() on every auxiliary_data entry: one null value and the dialog never opens.
    datapath = str(tmp_path / "data")
    write_gcodes(datapath, {"short.gcode": 60})
    meter = MeterPlugin()
    svc = await start_service(datapath, CONFIG, simulate=True, extra_plugins={"meter": meter})
    try:
        await wait_for(lambda: svc.server.klippy_state == "ready")
        ws = await svc.ws()
        meter.energy.update(5.0)
        await ws.call("printer.print.start", {"filename": "short.gcode"})
        await ws.next_notification("notify_history_changed", timeout=15)
        meter.energy.update(5.25)  # no temperature reading during this job
        note = await ws.next_notification("notify_history_changed", timeout=15)
        job = note["params"][0]["job"]
        assert job["auxiliary_data"] == [
            {"provider": "sensor meter", "name": "energy", "value": 0.25, "description": "Printer energy",
             "units": "kWh"},
        ]
        fetched = await ws.call("server.history.get_job", {"uid": job["job_id"]})
        assert fetched["job"]["auxiliary_data"] == job["auxiliary_data"]
        ws.sendClose()
    finally:
        await svc.service.stopService()
