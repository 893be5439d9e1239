"""Helpers for power tests: services with power devices, fakes stopped after each test."""

from __future__ import annotations

from mtclient import start_service, wait_for


class Fakes:
    """Starts fake devices and remembers them, so the fixture stops them all."""

    def __init__(self) -> None:
        self.started: list = []

    def start(self, fake):
        fake.start()
        self.started.append(fake)
        return fake


async def start_power(tmp_path, config: str, name: str = "data", **options):
    """A service whose config is ``[server]`` plus ``config``; waits until no device is initializing."""
    svc = await start_service(str(tmp_path / name), "[server]\n" + config, **options)
    svc.power = svc.server.plugins.pm.get_plugin("power")
    if svc.power is not None:
        await wait_for(lambda: all(d.state != "init" for d in svc.power.devices.values()), timeout=10)
    return svc


def log_text(svc) -> str:
    with open(svc.server.path("logs", "moontwist.log"), encoding="utf-8") as f:
        return f.read()
