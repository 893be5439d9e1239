"""``virtualization``: detect containers and virtual machines."""

from __future__ import annotations

import os
from typing import Any

from moontwist.machine.commands import CommandError, find_executable, run_command
from moontwist.machine.hostfs import host_path, read_line, read_text

CONTAINER_MARKERS = (("/.dockerenv", "docker"), ("/run/.containerenv", "podman"))
CGROUP_HINTS = (("docker", "docker"), ("kubepods", "kubernetes"), ("lxc", "lxc"), ("libpod", "podman"))
# DMI vendor/product substrings (lowercase) and the identifier systemd-detect-virt would use.
DMI_HINTS = (
    ("qemu", "qemu"),
    ("kvm", "kvm"),
    ("vmware", "vmware"),
    ("virtualbox", "oracle"),
    ("innotek", "oracle"),
    ("xen", "xen"),
    ("bochs", "bochs"),
    ("parallels", "parallels"),
    ("amazon ec2", "amazon"),
    ("google compute engine", "google"),
    ("microsoft corporation virtual machine", "microsoft"),
)
DMI_FILES = ("sys_vendor", "product_name", "board_vendor", "bios_vendor")


def _result(virt_type: str, ident: str) -> dict[str, str]:
    return {"virt_type": virt_type, "virt_identifier": ident}


def container_from_files(root: str = "/") -> str | None:
    """The container technology named by marker files, PID 1's environment or cgroups, if any."""
    for rel, ident in CONTAINER_MARKERS:
        if os.path.exists(host_path(root, rel)):
            return ident
    environ = read_text(root, "/proc/1/environ") or ""
    for item in environ.split("\x00"):
        if item.startswith("container=") and item[10:]:
            return item[10:]
    marker = read_line(root, "/run/systemd/container")
    if marker:
        return marker
    cgroup = read_text(root, "/proc/1/cgroup") or ""
    for hint, ident in CGROUP_HINTS:
        if hint in cgroup:
            return ident
    return None


def vm_from_files(root: str = "/") -> str | None:
    """A hypervisor named by DMI, or ``"unknown"`` when only the CPU's hypervisor flag says so."""
    dmi = " ".join(read_line(root, f"/sys/class/dmi/id/{name}") or "" for name in DMI_FILES).lower()
    for hint, ident in DMI_HINTS:
        if hint in dmi:
            return ident
    cpuinfo = read_text(root, "/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and " hypervisor" in line:
            return "unknown"
    return None


async def _detect_virt(flag: str, path_env: str | None, reactor: Any) -> str | None:
    """Ask systemd-detect-virt; None when it is absent, fails, or reports ``none``."""
    try:
        result = await run_command(
            ("systemd-detect-virt", flag), timeout=5.0, path_env=path_env, reactor=reactor
        )
    except CommandError:
        return None
    ident = result.stdout.strip()
    return ident if ident and ident != "none" else None


async def virtualization(
    root: str = "/", *, path_env: str | None = None, reactor: Any = None
) -> dict[str, str]:
    """The ``virtualization`` object: ``container``, ``vm`` or ``none`` with an identifier."""
    container = container_from_files(root)
    if container:
        return _result("container", container)
    if find_executable("systemd-detect-virt", path_env):
        container = await _detect_virt("--container", path_env, reactor)
        if container:
            return _result("container", container)
        vm = await _detect_virt("--vm", path_env, reactor)
        if vm:
            return _result("vm", vm)
    vm = vm_from_files(root)
    if vm:
        return _result("vm", vm)
    return _result("none", "none")
