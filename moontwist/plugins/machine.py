"""``machine.*``: system info, services, power, sudo and peripherals on the host layer.

The ``recording`` provider is a dry run for tests and demos: it pretends Klipper and
moontwist are installed and records (and logs) each action instead of touching the host.
"""

from __future__ import annotations

import getpass
import os
import time
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, threads
from twisted.logger import Logger

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.hookspecs import hookimpl
from moontwist.machine.canbus import query_can_uuids
from moontwist.machine.commands import CommandError, find_executable, run_command
from moontwist.machine.peripherals import serial_devices, usb_devices, video_devices
from moontwist.machine.providers import PROVIDERS, ServiceProvider, make_provider
from moontwist.machine.services import AllowedServices, normalize
from moontwist.machine.sudo import SudoAlerts
from moontwist.machine.sysinfo import static_info, system_info

if TYPE_CHECKING:
    from moontwist.config import Config
    from moontwist.server import Server

SYSTEMD_KINDS = ("systemd_dbus", "systemd_cli")
POLL_INTERVAL = 5.0
KLIPPER_UNIT = "klipper"


def own_unit(cgroup_file: str = "/proc/self/cgroup", default: str = "moontwist") -> str:
    """The systemd unit this process runs in (from its cgroup), else ``default``."""
    try:
        with open(cgroup_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return default
    for line in lines:
        for part in reversed(line.rpartition(":")[2].split("/")):
            if part.endswith(".service"):
                return normalize(part)
    return default


def choose_provider_kind(kind: str, virtualization: dict[str, str], log: Logger, root: str = "/") -> str:
    """``kind``, or ``none`` when the default systemd provider can't work on this host.

    The default (``systemd_dbus``) falls back when systemd is not running (containers);
    explicitly chosen providers only need their command on PATH.
    """
    if kind == "systemd_dbus" and not os.path.isdir(os.path.join(root, "run/systemd/system")):
        where = virtualization.get("virt_identifier") if virtualization.get("virt_type") == "container" else None
        log.warn(
            "systemd is not running{where}; service management disabled (provider 'none')",
            where=f" (in a {where} container)" if where else "",
        )
        return "none"
    command = {"systemd_dbus": "systemctl", "systemd_cli": "systemctl", "supervisord_cli": "supervisorctl"}.get(kind)
    if command is not None and find_executable(command) is None:
        log.warn("{command} not found; service management disabled (provider 'none')", command=command)
        return "none"
    return kind


class MachinePlugin:
    """Host description, service control, shutdown/reboot, sudo status, peripherals."""

    server: Server
    provider: ServiceProvider

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        section = config.section("machine")
        self.kind = section.get("provider", "systemd_dbus", choices=tuple(PROVIDERS))
        self.shutdown_action = section.get("shutdown_action", "poweroff", choices=("poweroff", "halt"))
        self.timeout = section.getfloat("command_timeout", 10.0, above=0.0)
        self.supervisord_config = section.get("supervisord_config_path", None)
        for option in ("validate_service", "validate_config", "force_validation"):
            if section.getboolean(option, False):
                self.log.info("[machine] {option}: moontwist does not rewrite service units; ignored", option=option)
        if section.get("sudo_password", None) is not None:
            self.log.warn(
                "[machine] sudo_password is not used: moontwist runs privileged commands with "
                "'sudo -n' (or directly as root); configure passwordless sudo for systemctl instead"
            )
        self.self_unit = own_unit()
        self.sudo = SudoAlerts(lambda alert: server.notify("notify_sudo_alert", alert))
        self.static: dict[str, Any] = {}
        self.rolling_over = False

    @hookimpl
    def startup(self, server: Server) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._start(server))

    async def _start(self, server: Server) -> None:
        self.static = await static_info(reactor=server.reactor)
        virt = self.static["virtualization"]
        kind = choose_provider_kind(self.kind, virt, self.log)
        in_container = virt["virt_type"] == "container" and kind != "recording"  # a dry run acts as a host
        kwargs: dict[str, Any] = {
            "self_unit": self.self_unit,
            "container_id": virt["virt_identifier"] if in_container else None,
            "reactor": server.reactor,
            "log": server.logger(ServiceProvider.__module__),
        }
        if kind in SYSTEMD_KINDS:
            kwargs.update(timeout=self.timeout, shutdown_action=self.shutdown_action)
        elif kind == "supervisord_cli":
            kwargs.update(timeout=self.timeout, config_path=self.supervisord_config)
        self.provider = make_provider(kind, AllowedServices.from_data_path(server.datapath, self.log), **kwargs)
        if kind == "recording":
            for unit in (KLIPPER_UNIT, self.self_unit):
                self.provider.set_state(unit, "active", "running")
        self.provider.add_state_listener(self._state_changed)
        self.provider.sudo_listener = self._sudo_result
        self.provider.start_polling(POLL_INTERVAL)
        server.provide("machine_provider", self.provider)
        server.provide("klippy_log_rollover", self.klippy_log_rollover)
        server.provide("sudo_alerts", self.sudo)
        self.log.info("System provider: {kind}, own unit {unit}", kind=kind, unit=self.self_unit)

    @hookimpl
    def shutdown(self, server: Server) -> None:
        provider = getattr(self, "provider", None)
        if provider is not None:
            provider.stop_polling()
            provider.remove_state_listener(self._state_changed)

    def _state_changed(self, change: dict[str, Any]) -> None:
        self.server.notify("notify_service_state_changed", change)

    def _sudo_result(self, action: str, needed: bool) -> None:
        if needed:
            self.sudo.needed(action)
        else:
            self.sudo.succeeded(action)

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        post = ("POST",)
        service = (Arg("service", required=True, description="Service (unit) name"),)
        for name, desc in (
            ("system_info", "Host, OS, network and service details"),
            ("peripherals/serial", "Serial ports"),
            ("peripherals/usb", "USB devices"),
            ("peripherals/video", "V4L2 and libcamera capture devices"),
        ):
            method = "machine." + name.replace("/", ".")
            handler = getattr(self, name.replace("/", "_"))
            register(Endpoint(method, handler, f"/machine/{name}", description=desc))
        register(Endpoint("machine.shutdown", self.power, "/machine/shutdown", post, description="Power off the host"))
        register(Endpoint("machine.reboot", self.power, "/machine/reboot", post, description="Reboot the host"))
        for action in ("restart", "stop", "start"):
            register(
                Endpoint(
                    f"machine.services.{action}",
                    self.service_action,
                    f"/machine/services/{action}",
                    post,
                    args=service,
                    description=f"{action.capitalize()} an allowed system service",
                )
            )
        register(
            Endpoint(
                "machine.peripherals.canbus",
                self.peripherals_canbus,
                "/machine/peripherals/canbus",
                args=(Arg("interface", default="can0", description="CAN interface to query"),),
                description="Unassigned Klipper/Katapult CAN node UUIDs",
            )
        )
        register(
            Endpoint(
                "machine.sudo.info",
                self.sudo_info,
                "/machine/sudo/info",
                args=(Arg("check_access", "bool", default=False, description="Try a sudo command"),),
                description="Whether privileged commands can run",
            )
        )
        register(
            Endpoint(
                "machine.sudo.password",
                self.sudo_password,
                "/machine/sudo/password",
                post,
                args=(Arg("password", required=True, description="The Linux user's password"),),
                description="Accepted for compatibility; moontwist never stores sudo passwords",
            )
        )

    # handlers ---------------------------------------------------------------------------

    async def system_info(self, request: APIRequest) -> dict[str, Any]:
        info = await system_info(
            self.provider,
            instance_ids={"moonraker": self.self_unit, "klipper": KLIPPER_UNIT},
            static=self.static,
            reactor=self.server.reactor,
        )
        return {"system_info": info}

    @hookimpl
    def register_remote_methods(self, register: Any) -> None:
        # Klipper macros: {action_call_remote_method("shutdown_machine")}, as with Moonraker.
        register("shutdown_machine", lambda: defer.ensureDeferred(self.provider.shutdown()))
        register("reboot_machine", lambda: defer.ensureDeferred(self.provider.reboot()))

    async def power(self, request: APIRequest) -> str:
        if request.endpoint.method == "machine.shutdown":
            await self.provider.shutdown()
        else:
            await self.provider.reboot()
        return "ok"

    async def service_action(self, request: APIRequest) -> str:
        action = request.endpoint.method.rpartition(".")[2]
        await getattr(self.provider, action)(request.args["service"])
        return "ok"

    def peripherals_serial(self, request: APIRequest) -> defer.Deferred[dict[str, Any]]:
        return threads.deferToThread(lambda: {"serial_devices": serial_devices()})

    def peripherals_usb(self, request: APIRequest) -> defer.Deferred[dict[str, Any]]:
        return threads.deferToThread(lambda: {"usb_devices": usb_devices()})

    def peripherals_video(self, request: APIRequest) -> defer.Deferred[dict[str, Any]]:
        return threads.deferToThread(video_devices)

    async def peripherals_canbus(self, request: APIRequest) -> dict[str, Any]:
        uuids = await query_can_uuids(request.args["interface"], reactor=self.server.reactor)
        return {"can_uuids": uuids}

    async def sudo_info(self, request: APIRequest) -> dict[str, Any]:
        access: bool | None = None
        if request.args["check_access"]:
            access = os.geteuid() == 0 or await self._sudo_works()
        return {
            "sudo_access": access,
            "linux_user": _user(),
            "sudo_requested": self.sudo.requested,
            "request_messages": self.sudo.messages,
        }

    async def _sudo_works(self) -> bool:
        try:
            await run_command(("sudo", "-n", "true"), timeout=5.0, reactor=self.server.reactor)
        except CommandError:
            return False
        return True

    def sudo_password(self, request: APIRequest) -> dict[str, Any]:
        if os.geteuid() == 0:
            message = "moontwist runs as root: no sudo password is needed"
        else:
            message = (
                "moontwist does not keep sudo passwords: it runs privileged commands with "
                "'sudo -n', so allow them without a password in sudoers"
            )
        return {"sudo_responses": [message], "is_restarting": False}

    # Klipper's log ---------------------------------------------------------------------------

    def klippy_log_rollover(self) -> defer.Deferred:
        """Check that Klipper's log can be rolled over, then stop Klipper, rename it, start Klipper.

        Raises ServerError when it can't; the Deferred fires when Klipper is started again.
        """
        if self.server.printing:
            raise ServerError("Cannot roll over Klipper's log while printing", 409)
        if self.provider.name == "none":
            raise ServerError("Cannot roll over Klipper's log: no system provider to restart Klipper", 503)
        if KLIPPER_UNIT not in self.provider.available_services():
            raise ServerError("Unable to detect the Klipper service, cannot roll over its log", 503)
        if self.rolling_over:
            raise ServerError("A rollover of Klipper's log is already in progress", 409)
        path = self._klippy_log_path()
        if not os.path.isfile(path):
            raise ServerError(f"No file at {path}, cannot roll over Klipper's log", 404)
        self.rolling_over = True
        d = defer.ensureDeferred(self._rollover(path))

        def done(result: object) -> object:
            self.rolling_over = False
            return result

        return d.addBoth(done)

    def _klippy_log_path(self) -> str:
        info = getattr(self.server.klippy, "info", None)
        path = info.get("log_file") if isinstance(info, dict) else None
        return os.path.realpath(os.path.expanduser(path or self.server.path("logs", "klippy.log")))

    async def _rollover(self, path: str) -> None:
        await self.provider.stop(KLIPPER_UNIT)
        try:
            suffix = _timestamp(self.server.reactor.seconds())
            await threads.deferToThread(os.replace, path, f"{path}.{suffix}")
        finally:
            await self.provider.start(KLIPPER_UNIT)


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(seconds))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())
