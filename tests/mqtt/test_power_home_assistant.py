"""Power devices as Home Assistant switches, seen and used the way Home Assistant does it.

Home Assistant here is an MQTT peer that subscribes to ``homeassistant/#``,
reads each switch's discovery config, follows its state and availability
topics through the config's templates (rendered with Jinja2, ``value`` and
``value_json`` as Home Assistant provides them) and publishes ``payload_on`` /
``payload_off`` to the ``command_topic``.  The devices are fake Tasmota plugs
speaking HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest_twisted
from mqtt.broker import Peer, wait_until
from power.fake_http import FakeTasmota

from mtclient import sleep, start_service

INSTANCE = "printer1"
SWITCHES = f"homeassistant/switch/{INSTANCE}"


def _render(template: str | None, payload: bytes) -> str:
    text = payload.decode()
    if template is None:
        return text
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value=text, value_json=value_json).strip()


class HomeAssistant(Peer):
    """Discovers switches under ``homeassistant/`` and keeps their state as Home Assistant would."""

    async def start(self) -> HomeAssistant:
        await self.connect()
        await self.subscribe("homeassistant/#")
        return self

    def switches(self) -> dict[str, dict[str, Any]]:
        """Every switch config retained or announced so far, by object id; a cleared one is removed."""
        found: dict[str, dict[str, Any]] = {}
        for topic, payload, _ in self.messages:
            parts = topic.split("/")
            if parts[:3] == ["homeassistant", "switch", INSTANCE] and parts[-1] == "config":
                if payload:
                    found[parts[3]] = json.loads(payload)
                else:
                    found.pop(parts[3], None)
        return found

    async def follow(self, config: dict[str, Any]) -> None:
        topics = {config["state_topic"]} | {a["topic"] for a in config["availability"]}
        for topic in topics:
            await self.subscribe(topic)

    def _last(self, topic: str) -> bytes | None:
        for t, payload, _ in reversed(self.messages):
            if t == topic:
                return payload
        return None

    def state(self, config: dict[str, Any]) -> str | None:
        """on, off, None (unknown) or "unavailable"."""
        for item in config["availability"]:
            payload = self._last(item["topic"])
            if payload is None or _render(item.get("value_template"), payload) != item.get("payload_available", "online"):
                return "unavailable"
        payload = self._last(config["state_topic"])
        if payload is None:
            return None
        value = _render(config.get("value_template"), payload)
        return {config["state_on"]: "on", config["state_off"]: "off"}.get(value)

    async def turn(self, config: dict[str, Any], on: bool) -> None:
        await self.publish(config["command_topic"], config["payload_on" if on else "payload_off"], qos=0)


def mqtt_section(port: int, discovery: bool = True) -> str:
    return (
        f"[server]\nhost: 127.0.0.1\n[mqtt]\naddress: 127.0.0.1\nport: {port}\ninstance_name: {INSTANCE}\n"
        f"home_assistant_discovery: {discovery}\n"
    )


def tasmota(name: str, fake: FakeTasmota, extra: str = "") -> str:
    return f"[power {name}]\ntype: tasmota\naddress: {fake.address}\n{extra}"


@pytest_twisted.async_yield_fixture
async def tasmotas():
    made: list[FakeTasmota] = []

    def make() -> FakeTasmota:
        fake = FakeTasmota()
        fake.start()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        await fake.stop()


@pytest_twisted.ensureDeferred
async def test_switches_work_from_home_assistant(tmp_path, broker, tasmotas):
    from history.printing import write_gcodes

    psu, lamp = tasmotas(), tasmotas()
    write_gcodes(str(tmp_path / "data"), {"long.gcode": 3000})
    config = (
        mqtt_section(broker.port) + "[simulator]\nspeed: 50\n"
        + tasmota("printer psu", psu, "locked_while_printing: True\n")
        + tasmota("lamp", lamp)
        + "[power_group everything]\ndevices: printer psu, lamp\n"
    )
    svc = await start_service(str(tmp_path / "data"), config, simulate=True)
    ha = None
    try:
        power = svc.server.plugins.pm.get_plugin("power")
        await wait_until(lambda: svc.server.lookup("mqtt").is_connected() and svc.server.klippy_state == "ready", timeout=15)
        await wait_until(lambda: all(d.state == "off" for d in power.devices.values()))
        await sleep(0.3)
        ha = await HomeAssistant(broker.port).start()
        await wait_until(lambda: len(ha.switches()) == 3, what="three switch configs")
        switches = ha.switches()
        assert set(switches) == {"power_printer_psu", "power_lamp", "power_everything"}
        psu_switch = switches["power_printer_psu"]
        assert psu_switch["name"] == "printer psu"
        assert psu_switch["unique_id"] == f"moontwist_{INSTANCE}_power_printer_psu"
        assert psu_switch["command_topic"] == f"{INSTANCE}/moontwist/power/printer_psu/set"
        assert psu_switch["state_topic"] == f"{INSTANCE}/moontwist/power/printer_psu/state"
        assert (psu_switch["payload_on"], psu_switch["payload_off"]) == ("ON", "OFF")
        assert psu_switch["device"]["identifiers"] == [f"moontwist_{INSTANCE}"]
        assert psu_switch["availability_mode"] == "all"
        for config in switches.values():
            await ha.follow(config)
        await wait_until(lambda: all(ha.state(c) == "off" for c in switches.values()), what="every switch off")

        # Home Assistant turns the lamp on: the plug switches, the state topic follows
        await ha.turn(switches["power_lamp"], on=True)
        await wait_until(lambda: lamp.relays[1], what="the lamp on")
        await wait_until(lambda: ha.state(switches["power_lamp"]) == "on", what="the lamp switch on")
        assert [r.query["cmnd"] for r in lamp.requests][-1] == "Power1 on"
        # ...and the group: every member on
        await ha.turn(switches["power_everything"], on=True)
        await wait_until(lambda: psu.relays[1] and ha.state(switches["power_everything"]) == "on")
        await wait_until(lambda: ha.state(switches["power_printer_psu"]) == "on")

        # switched through the API: Home Assistant sees it
        code, _ = await svc.post("/machine/device_power/device", json={"device": "lamp", "action": "off"})
        assert code == 200
        await wait_until(lambda: ha.state(switches["power_lamp"]) == "off", what="the lamp switch off")
        # the group's state follows its member's in a message of its own
        await wait_until(lambda: ha.state(switches["power_everything"]) == "off", what="the group switch off")

        # while printing, locked_while_printing refuses Home Assistant too; the state is published again
        ws = await svc.ws()
        assert await ws.call("printer.print.start", {"filename": "long.gcode"}) == "ok"
        await wait_until(lambda: svc.server.printing)
        state_topic = psu_switch["state_topic"]
        published = sum(1 for t, _, _ in ha.messages if t == state_topic)
        await ha.turn(psu_switch, on=False)
        await wait_until(lambda: sum(1 for t, _, _ in ha.messages if t == state_topic) > published, what="state again")
        assert psu.relays[1] and ha.state(psu_switch) == "on"
        await ws.call("printer.print.cancel")
        ws.sendClose()

        # a plug that stops answering: the switch becomes unavailable, and available again after
        lamp.hang = True
        power.devices["lamp"].timeout = 0.5
        assert (await svc.get("/machine/device_power/device?device=lamp"))[1]["result"] == {"lamp": "error"}
        await wait_until(lambda: ha.state(switches["power_lamp"]) == "unavailable", what="the lamp unavailable")
        lamp.hang = False
        assert (await svc.get("/machine/device_power/device?device=lamp"))[1]["result"] == {"lamp": "off"}
        await wait_until(lambda: ha.state(switches["power_lamp"]) == "off")

        # what Home Assistant can't mean is ignored
        requests = len(lamp.requests)
        await ha.publish(switches["power_lamp"]["command_topic"], "EXPLODE")
        await ha.publish(switches["power_lamp"]["command_topic"], b"ON" * 100_000)
        await ha.publish(f"{INSTANCE}/moontwist/power/nothing/set", "ON")
        await sleep(0.3)
        assert len(lamp.requests) == requests
    finally:
        if ha is not None:
            ha.close()
        await svc.service.stopService()
    # the server went away: every switch is unavailable (the printer's status went offline)
    ha = await HomeAssistant(broker.port).start()
    await wait_until(lambda: len(ha.switches()) == 3)
    for config in ha.switches().values():
        await ha.follow(config)
    await sleep(0.3)
    assert {ha.state(c) for c in ha.switches().values()} == {"unavailable"}
    ha.close()


@pytest_twisted.ensureDeferred
async def test_switches_removed_with_their_device_or_the_option(tmp_path, broker, tasmotas):
    psu, lamp = tasmotas(), tasmotas()
    # a retained command (someone's mistake) must not switch anything at each start
    mistaken = Peer(broker.port)
    await mistaken.connect()
    await mistaken.publish(f"{INSTANCE}/moontwist/power/lamp/set", "ON", qos=1, retain=True)
    mistaken.close()

    async def run(config: str) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Start, let it settle, stop: what a newly started Home Assistant then finds retained."""
        svc = await start_service(str(tmp_path / "data"), config)
        try:
            await wait_until(svc.server.lookup("mqtt").is_connected)
            power = svc.server.plugins.pm.get_plugin("power")
            if power is not None:
                await wait_until(lambda: all(d.state != "init" for d in power.devices.values()))
            await sleep(0.5)
        finally:
            await svc.service.stopService()
        ha = await HomeAssistant(broker.port).start()
        await ha.subscribe(f"{INSTANCE}/moontwist/power/+/state")
        await sleep(0.5)
        ha.close()
        states = {t.split("/")[-2]: p for t, p, retained in ha.messages if retained and t.endswith("/state") and p}
        return ha.switches(), states

    switches, states = await run(mqtt_section(broker.port) + tasmota("psu", psu) + tasmota("lamp", lamp))
    assert set(switches) == {"power_psu", "power_lamp"} and states == {"psu": b"off", "lamp": b"off"}
    assert not lamp.relays[1] and all(r.query["cmnd"] == "Power1" for r in lamp.requests)

    # the lamp's section is gone: its switch and its state go too
    switches, states = await run(mqtt_section(broker.port) + tasmota("psu", psu))
    assert set(switches) == {"power_psu"} and states == {"psu": b"off"}

    # discovery turned off: no switch, no state left behind; the sensors' configs are gone as well
    switches, states = await run(mqtt_section(broker.port, discovery=False) + tasmota("psu", psu))
    assert switches == {} and states == {}
    ha = await HomeAssistant(broker.port).start()
    await sleep(0.5)
    ha.close()
    assert [t for t, p, retained in ha.messages if retained and p] == []
