"""The system updater: PackageKit over a real D-Bus (a private dbus-daemon and a fake
PackageKit), and apt-get's command lines (a recording stand-in on PATH)."""

from __future__ import annotations

import os
import stat

import pytest_twisted
from twisted.internet import reactor

from update_manager.conftest import config, ready, rpc_error, start, until_complete
from update_manager.packagekit_fake import FakePackageKit, start_bus, stop_bus


@pytest_twisted.ensureDeferred
async def test_packagekit_over_dbus(tmp_path, monkeypatch):
    tmp = str(tmp_path)
    bus, addr = start_bus(tmp)
    fake = FakePackageKit(reactor, addr)
    try:
        await fake.start()
        monkeypatch.setenv("MOONTWIST_PACKAGEKIT_BUS", addr)
        svc = await start(tmp_path, config(tmp).replace("system_provider: recording", "system_provider: auto"))
        try:
            ws = await svc.ws()
            um = await ready(svc)
            assert um.updaters["system"].provider.name == "packagekit"
            system = (await ws.call("machine.update.status"))["version_info"]["system"]
            assert system == {"name": "system", "configured_type": "system", "package_count": 2,
                              "package_list": ["libfoo", "python3-bar"]}
            assert [c[0] for c in fake.calls] == ["RefreshCache", "GetUpdates"]
            assert await ws.call("machine.update.system") == "ok"
            texts = [m["message"] for m in await until_complete(ws)]
            assert "Updating: libfoo (1.1)" in texts and texts[-1] == "Package update finished..."
            assert fake.calls[-1] == ("UpdatePackages", (2, ["libfoo;1.1;amd64;debian", "python3-bar;2.0;all;debian"]))
            # a dependency install resolves names first
            await um.updaters["system"].install_packages(["libnew"])
            assert [c[0] for c in fake.calls[-3:]] == ["RefreshCache", "Resolve", "InstallPackages"]
            assert fake.calls[-1][1] == (2, ["libnew;1.0;amd64;debian"])
            # a failed transaction is a clear error, in the reply and in notify_update_response
            fake.updates = ["libfoo;1.2;amd64;debian"]
            await ws.call("machine.update.refresh", {"name": "system"})
            fake.fail = "UpdatePackages"
            err = await rpc_error(ws, "machine.update.system")
            assert err.code == 500 and "UpdatePackages failed in the fake" in err.message
            assert (await until_complete(ws))[-1]["message"].startswith("Error updating system: ")
            ws.sendClose()
        finally:
            await svc.service.stopService()
    finally:
        fake.stop()
        stop_bus(bus)


@pytest_twisted.ensureDeferred
async def test_apt_get_commands(tmp_path, monkeypatch):
    tmp = str(tmp_path)
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir)
    log = os.path.join(tmp, "apt.log")
    script = (
        "#!/bin/sh\necho \"$(basename $0) $*\" >> " + log + "\n"
        "case \"$(basename $0) $1\" in\n"
        "  'apt list') echo 'Listing...'; echo 'libfoo/stable 1.1 amd64 [upgradable from: 1.0]';;\n"
        "  'apt-cache policy') for p in \"$@\"; do [ \"$p\" = libnew ] && echo 'libnew:'; done;;\n"
        "  'apt-get upgrade') echo 'Setting up libfoo (1.1) ...';;\n"
        "esac\nexit 0\n"
    )
    for name in ("apt", "apt-get", "apt-cache", "sudo"):
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write(script if name != "sudo" else "#!/bin/sh\nexec \"$@\"\n")
        os.chmod(path, stat.S_IRWXU)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ["PATH"])
    svc = await start(tmp_path, config(tmp).replace("system_provider: recording", "system_provider: apt"))
    try:
        ws = await svc.ws()
        um = await ready(svc)
        system = (await ws.call("machine.update.status"))["version_info"]["system"]
        assert system["package_list"] == ["libfoo"]
        assert await ws.call("machine.update.system") == "ok"
        texts = [m["message"] for m in await until_complete(ws)]
        assert "Setting up libfoo (1.1) ..." in texts
        await um.updaters["system"].install_packages(["libnew", "libmissing"])
        with open(log) as f:
            lines = f.read().splitlines()
        assert lines[:2] == ["apt-get update", "apt list --upgradable"]
        assert "apt-get upgrade --yes" in lines
        assert lines[-1] == "apt-get install --yes libnew"
        ws.sendClose()
    finally:
        await svc.service.stopService()
