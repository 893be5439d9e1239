"""Device types on this machine: ``gpio`` and ``rf`` (libgpiod, with a stand-in chip) and
``serial_relay`` (Twisted's SerialPort on a pseudo-terminal with a fake relay board)."""

from __future__ import annotations

import pytest_twisted
from power.fake_board import FakeRelayBoard
from power.fake_gpio import FakeChip
from power.service import start_power

from moontwist.plugins.power import rf
from mtclient import wait_for


async def switch(svc, name: str, action: str):
    code, body = await svc.post("/machine/device_power/device", json={"device": name, "action": action})
    return body["result"][name] if code == 200 else (code, body["error"]["message"])


@pytest_twisted.ensureDeferred
async def test_gpio_lines_inverted_initial_state_and_timer(tmp_path, services, monkeypatch):
    chip = FakeChip().install(monkeypatch)
    chip.held.add(20)  # another program holds line 20
    svc = await start_power(
        tmp_path,
        "[power relay]\ntype: gpio\npin: gpio26\n"
        "[power led]\ntype: gpio\npin: !gpiochip0/gpio16\ninitial_state: on\n"
        "[power buzzer]\ntype: gpio\npin: gpio5\ntimer: 1\n"
        "[power ghost]\ntype: gpio\npin: gpiochip7/gpio1\n"
        "[power busy]\ntype: gpio\npin: gpio20\n"
        "[power bad]\ntype: gpio\npin: ^gpio3\n",
    )
    services.append(svc)
    settings = {r.offset: r.settings for r in chip.requests}
    assert settings[16].active_low and not settings[26].active_low
    assert {r.consumer for r in chip.requests} == {"moontwist"}
    assert chip.level(26) == 0 and chip.level(16) == 0  # off, and "on" through an inverted pin is low
    devices = {d["device"]: d["status"] for d in (await svc.get("/machine/device_power/devices"))[1]["result"]["devices"]}
    assert devices == {"relay": "off", "led": "on", "buzzer": "off", "ghost": "error", "busy": "error"}
    assert "/dev/gpiochip7 is not a GPIO chip" in svc.power.devices["ghost"].last_error
    assert "Device or resource busy" in svc.power.devices["busy"].last_error
    warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
    assert any("[power bad]" in w and "bias flag" in w for w in warnings)
    assert await switch(svc, "relay", "on") == "on" and chip.level(26) == 1
    assert await switch(svc, "led", "off") == "off" and chip.level(16) == 1
    ws = await svc.ws()
    assert await switch(svc, "buzzer", "on") == "on" and (5, 1) in chip.writes  # the timer may already have run
    note = await ws.next_notification("notify_power_changed")
    while note["params"][0]["status"] != "off":  # the timer switches it off again
        note = await ws.next_notification("notify_power_changed")
    assert note["params"][0]["device"] == "buzzer" and chip.level(5) == 0
    ws.sendClose()
    await svc.service.stopService()
    services.remove(svc)
    assert all(r.released for r in chip.requests)


def test_rf_waveform():
    steps = rf.waveform("1" + "0" * 23)
    one, zero, sync = 3 * rf.PULSE_LENGTH, rf.PULSE_LENGTH, 31 * rf.PULSE_LENGTH
    assert len(steps) == rf.REPEATS * 25 * 2
    assert steps[:4] == [(1, one), (0, zero), (1, zero), (0, one)]
    assert steps[48:50] == [(1, zero), (0, sync)]


@pytest_twisted.ensureDeferred
async def test_rf_sends_codes_off_the_reactor(tmp_path, services, monkeypatch):
    chip = FakeChip().install(monkeypatch)
    slept: list[float] = []
    monkeypatch.setattr(rf.RFDriver, "sleep", staticmethod(slept.append))  # the pulse widths, not real time
    svc = await start_power(tmp_path, "[power socket]\ntype: rf\npin: gpio17\non_code: 1011\noff_code: 110\n")
    services.append(svc)

    def played(since: int) -> list[tuple[int, float]]:
        return list(zip([lv for off, lv in chip.writes[since:] if off == 17], slept[since - 1 :]))

    assert played(1) == rf.waveform("110".zfill(24))  # at start-up: the off code (no initial_state)
    before = len(chip.writes)
    assert await switch(svc, "socket", "on") == "on"
    assert played(before) == rf.waveform("1011".zfill(24))
    assert chip.level(17) == 0  # the transmitter idles low
    sent = len(chip.writes)
    assert await switch(svc, "socket", "on") == "on" and len(chip.writes) == sent  # already on: nothing sent


@pytest_twisted.ensureDeferred
async def test_serial_relay_switches_a_board_and_survives_unplugging(tmp_path, fakes, services):
    board = fakes.start(FakeRelayBoard(str(tmp_path / "usb-relay")))
    svc = await start_power(
        tmp_path,
        f"[power relay]\ntype: serial_relay\nserial: {board.link}\nbaud: 9600\n"
        "on_command: A0 01 01 A2\noff_command: A0 01 00 A1\nreconnect_interval: 0.2\n",
    )
    services.append(svc)
    await wait_for(lambda: board.frames)
    assert board.frames == [bytes.fromhex("A00100A1")]  # takes control: off (no initial_state)
    assert await switch(svc, "relay", "on") == "on"
    await wait_for(lambda: board.relays[0])
    assert board.frames[-1] == bytes.fromhex("A00101A2")
    ws = await svc.ws()
    board.unplug()
    note = await ws.next_notification("notify_power_changed")
    assert note["params"][0]["status"] == "error"
    code, message = await switch(svc, "relay", "off")
    assert code == 400 and "usb-relay" in message
    board.plug_in()  # a new pty behind the same link: reopened, and the last state set again
    note = await ws.next_notification("notify_power_changed", timeout=5)
    assert note["params"][0]["status"] == "on"
    await wait_for(lambda: board.relays[0])
    assert await switch(svc, "relay", "off") == "off"
    await wait_for(lambda: not board.relays[0])
    ws.sendClose()


@pytest_twisted.ensureDeferred
async def test_serial_relay_that_reports_its_state(tmp_path, fakes, services):
    board = fakes.start(FakeRelayBoard(str(tmp_path / "usb-relay"), answers_queries=True))
    board.relays[1] = True
    svc = await start_power(
        tmp_path,
        f"[power ch2]\ntype: serial_relay\nserial: {board.link}\non_command: A0 02 01 A3\n"
        "off_command: A0 02 00 A2\nquery_command: FF\non_response: 43 48 32 3A 4F 4E\n"
        "off_response: 43 48 32 3A 4F 46 46\n"
        "[power missing]\ntype: serial_relay\nserial: /nonexistent/tty\non_command: 01\noff_command: 00\n",
    )
    services.append(svc)
    assert svc.power.devices["ch2"].state == "on"  # read from the board, not assumed
    assert await switch(svc, "ch2", "off") == "off" and board.relays == [False, False]
    assert svc.power.devices["missing"].state == "error"
    assert "can't open /nonexistent/tty" in svc.power.devices["missing"].last_error
