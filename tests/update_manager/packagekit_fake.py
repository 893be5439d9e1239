"""A fake PackageKit daemon on a private D-Bus bus (a real dbus-daemon started by the test).

It owns ``org.freedesktop.PackageKit``, answers ``CreateTransaction`` with a transaction
object, and answers each transaction method with ``Package`` signals then ``Finished``,
as packagekitd does.  ``calls`` records (method, arguments); ``updates`` is what
``GetUpdates`` reports; ``fail`` names a method that ends with ``ErrorCode``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Any

from jeepney import HeaderFields, Message, new_method_return, new_signal
from jeepney.bus_messages import message_bus

from moontwist.plugins.update_manager.dbus import DBusConnection, address, connect
from moontwist.plugins.update_manager.packagekit import BUS_NAME, ROOT_PATH, TRANSACTION_IFACE

INFO_NORMAL, INFO_INSTALLING, INFO_UPDATING, INFO_FINISHED = 5, 12, 11, 18


def start_bus(folder: str) -> tuple[subprocess.Popen, str]:
    """A private dbus-daemon; returns (process, address)."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        raise RuntimeError("dbus-daemon is not installed (apt-get install dbus-daemon)")
    config = os.path.join(folder, "bus.conf")
    with open(config, "w") as f:
        f.write(
            "<busconfig><type>session</type><listen>unix:path=" + os.path.join(folder, "bus.sock") + "</listen>"
            "<auth>EXTERNAL</auth><policy context='default'><allow send_destination='*' eavesdrop='true'/>"
            "<allow eavesdrop='true'/><allow own='*'/></policy></busconfig>"
        )
    proc = subprocess.Popen([exe, "--config-file", config, "--nofork", "--print-address"], stdout=subprocess.PIPE, text=True)
    addr = proc.stdout.readline().strip()
    return proc, addr


def stop_bus(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(5)


class FakePackageKit:
    def __init__(self, reactor: Any, bus_address: str) -> None:
        self.reactor = reactor
        self.address = bus_address
        self.bus: DBusConnection | None = None
        self.calls: list[tuple[str, tuple]] = []
        self.updates = ["libfoo;1.1;amd64;debian", "python3-bar;2.0;all;debian"]
        self.fail: str | None = None
        self.count = 0

    async def start(self) -> None:
        self.bus = await connect(self.reactor, self.address)
        self.bus.method_handler = self.handle
        await self.bus.call(message_bus.RequestName(BUS_NAME))

    def stop(self) -> None:
        if self.bus is not None:
            self.bus.close()

    def handle(self, msg: Message) -> None:
        assert self.bus is not None
        member = msg.header.fields.get(HeaderFields.member)
        path = msg.header.fields.get(HeaderFields.path)
        if path == ROOT_PATH and member == "CreateTransaction":
            self.count += 1
            self.bus.send(new_method_return(msg, "o", (f"/{self.count}_fake",)))
            return
        self.calls.append((member, msg.body))
        self.bus.send(new_method_return(msg))
        self.reactor.callLater(0.01, self.finish, path, member, msg.body)

    def finish(self, path: str, member: str, body: tuple) -> None:
        assert self.bus is not None
        emitter = address(path, BUS_NAME, TRANSACTION_IFACE)
        if member == self.fail:
            self.bus.send(new_signal(emitter, "ErrorCode", "us", (7, f"{member} failed in the fake")))
            self.bus.send(new_signal(emitter, "Finished", "uu", (2, 10)))
            return
        packages: list[tuple[int, str]] = []
        if member == "GetUpdates":
            packages = [(INFO_NORMAL, pid) for pid in self.updates]
        elif member == "Resolve":
            packages = [(2, f"{name};1.0;amd64;debian") for name in body[1]]
        elif member == "InstallPackages":
            packages = [(INFO_INSTALLING, pid) for pid in body[1]] + [(INFO_FINISHED, pid) for pid in body[1]]
        elif member == "UpdatePackages":
            packages = [(INFO_UPDATING, pid) for pid in body[1]]
            self.updates = []
        for info, pid in packages:
            self.bus.send(new_signal(emitter, "Package", "uss", (info, pid, "summary")))
        self.bus.send(new_signal(emitter, "Finished", "uu", (1, 10)))
