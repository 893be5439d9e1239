"""The ``power`` plugin: Moonraker's ``machine.device_power.*`` API over every device type.

Loaded when any ``[power NAME]`` or ``[power_group NAME]`` section exists.

Endpoints (HTTP and JSON-RPC)::

    GET  /machine/device_power/devices  machine.device_power.devices     every device with its state
    GET  /machine/device_power/device   machine.device_power.get_device  {name: state}
    POST /machine/device_power/device   machine.device_power.post_device action on, off or toggle
    GET  /machine/device_power/status   machine.device_power.status      {name: state} for ?dev1&dev2
    POST /machine/device_power/on       machine.device_power.on          switch several devices on
    POST /machine/device_power/off      machine.device_power.off         switch several devices off

Every change is broadcast as ``notify_power_changed`` with the device's entry
from the device list.  Klipper macros call ``set_device_power(device=, state=,
force=)``.  Device types come from the ``register_power_device_types`` hook: the
built-in ones are registered by this plugin exactly as a third-party plugin
registers its own.  A device whose section is wrong (unknown type, missing
option) is left out with a warning; the rest of the server runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import DeferredList, ensureDeferred

from moontwist.api.args import Arg
from moontwist.api.errors import ServerError
from moontwist.api.registry import APIRequest, Endpoint
from moontwist.config import Config, ConfigError
from moontwist.hookspecs import hookimpl
from moontwist.plugins.power.device import ACTIONS, PowerDevice, PowerDriver
from moontwist.plugins.power.energy import EnergyRecorder
from moontwist.plugins.power.group import PowerGroup
from moontwist.plugins.power.httpclient import DeviceHTTP
from moontwist.plugins.power.idle import SUBSCRIPTION, IdleWatch
from moontwist.plugins.power.templates import Templates

if TYPE_CHECKING:
    from moontwist.server import Server

__all__ = ["PowerPlugin", "BUILTIN_TYPES"]

# type name -> "module:class" inside moontwist.plugins.power; imported when registered
BUILTIN_TYPES: dict[str, str] = {
    "gpio": "gpio:GpioDriver",
    "rf": "rf:RFDriver",
    "klipper_device": "klipper_device:KlipperDeviceDriver",
    "tplink_smartplug": "tplink:TPLinkDriver",
    "tasmota": "tasmota:TasmotaDriver",
    "shelly": "shelly:ShellyDriver",
    "homeseer": "homeseer:HomeSeerDriver",
    "homeassistant": "homeassistant:HomeAssistantDriver",
    "loxonev1": "loxone:LoxoneDriver",
    "smartthings": "smartthings:SmartThingsDriver",
    "mqtt": "mqtt:MQTTDriver",
    "hue": "hue:HueDriver",
    "http": "generic_http:GenericHTTPDriver",
    "uhubctl": "uhubctl:UHubCtlDriver",
    "serial_relay": "serial_relay:SerialRelayDriver",
}
DEVICE_PREFIX = "power "
GROUP_PREFIX = "power_group "
_NOT_DEVICES = frozenset({"access_token", "api_key"})


def _import_type(target: str) -> type[PowerDriver]:
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f"moontwist.plugins.power.{module}"), name)


class PowerPlugin:
    """Power devices and groups; serves ``machine.device_power.*``."""

    optional = True
    section_prefixes = (DEVICE_PREFIX, GROUP_PREFIX)
    server: Server

    @hookimpl
    def configure(self, server: Server, config: Config) -> None:
        self.server = server
        self.log = server.logger(__name__)
        self.types: dict[str, type[PowerDriver]] = {}
        self.type_owners: dict[str, str] = {}
        server.plugins.call_registration("register_power_device_types", self._type_registrar, server=server)
        self.templates = Templates(server.reactor, config.secrets(), server.logger(Templates.__module__))
        self.http = DeviceHTTP(server.reactor)
        self.devices: dict[str, PowerDevice] = {}
        self.groups: dict[str, PowerGroup] = {}
        self.warnings = config.extra_warnings
        for section_name in config.sections():
            if section_name.startswith(DEVICE_PREFIX):
                self._load(section_name, lambda name, s=section_name: self._device(config, s, name))
        for section_name in config.sections():
            if section_name.startswith(GROUP_PREFIX):
                self._load(section_name, lambda name, s=section_name: self._group(config, s, name))
        self.idle = IdleWatch(self)
        self.energy = EnergyRecorder(self)
        self.log.info("Power devices: {names}", names=", ".join(self.devices) or "none")
        server.provide("power", self)  # Home Assistant discovery shows the devices as switches

    def _type_registrar(self, plugin: str) -> Any:
        def register(name: str, driver: Any) -> None:
            if name in self.types:
                raise ValueError(f"Power device type '{name}' is already registered by '{self.type_owners[name]}'")
            if isinstance(driver, str):
                driver = _import_type(driver)
            if not (isinstance(driver, type) and issubclass(driver, PowerDriver)):
                raise TypeError(f"Power device type '{name}': {driver!r} is not a PowerDriver subclass")
            self.types[name] = driver
            self.type_owners[name] = plugin

        return register

    @hookimpl
    def register_power_device_types(self, register: Any) -> None:
        for name, target in BUILTIN_TYPES.items():
            register(name, target)

    def _load(self, section_name: str, build: Any) -> None:
        name = section_name.split(maxsplit=1)[1].strip() if " " in section_name else ""
        try:
            if not name:
                raise ConfigError(f"Config error: section [{section_name}] has no device name")
            if name in self.devices or name in self.groups:
                raise ConfigError(f"Config error in section [{section_name}]: the name '{name}' is already taken")
            built = build(name)
        except ConfigError as exc:
            self._warn(f"Power device [{section_name}] not loaded: {exc}")
            return
        except Exception as exc:
            self.log.failure("Power device [{section}] failed to load", section=section_name)
            self._warn(f"Power device [{section_name}] not loaded: {type(exc).__name__}: {exc}")
            return
        if isinstance(built, PowerGroup):
            self.groups[name] = built
        else:
            self.devices[name] = built

    def _warn(self, message: str) -> None:
        self.log.warn("{message}", message=message)
        self.warnings.append(message)

    def _device(self, config: Config, section_name: str, name: str) -> PowerDevice:
        section = config.section(section_name)
        type_name = section.get("type")
        driver = self.types.get(type_name)
        if driver is None:
            known = ", ".join(sorted(self.types))
            raise ConfigError(
                f"Config error in section [{section_name}], option 'type': unknown type '{type_name}' (known: {known})"
            )
        return PowerDevice(self, name, type_name, driver, section)

    def _group(self, config: Config, section_name: str, name: str) -> PowerGroup:
        return PowerGroup(self.server, name, config.section(section_name), self.devices)

    # hooks ------------------------------------------------------------------------------------

    @hookimpl
    def register_endpoints(self, register: Any) -> None:
        device_arg = Arg("device", required=True, description="A power device (or group) name")
        for endpoint in (
            Endpoint(
                "machine.device_power.devices",
                self.list_devices,
                "/machine/device_power/devices",
                description="Every power device and group with its state",
            ),
            Endpoint(
                "machine.device_power.get_device",
                self.get_device,
                "/machine/device_power/device",
                args=(device_arg,),
                description="One device's state",
            ),
            Endpoint(
                "machine.device_power.post_device",
                self.post_device,
                "/machine/device_power/device",
                ("POST",),
                args=(
                    device_arg,
                    Arg("action", required=True, description="on, off or toggle"),
                ),
                description="Switch one device on or off, or toggle it",
            ),
            Endpoint(
                "machine.device_power.status",
                self.batch,
                "/machine/device_power/status",
                description="The state of each device named as an argument (?dev_one&dev_two)",
            ),
            Endpoint(
                "machine.device_power.on",
                self.batch,
                "/machine/device_power/on",
                ("POST",),
                description="Switch on each device named as an argument",
            ),
            Endpoint(
                "machine.device_power.off",
                self.batch,
                "/machine/device_power/off",
                ("POST",),
                description="Switch off each device named as an argument",
            ),
        ):
            register(endpoint)

    @hookimpl
    def register_remote_methods(self, register: Any) -> None:
        register("set_device_power", self._remote_set_device_power)

    @hookimpl
    def register_history_fields(self, register: Any) -> None:
        self.energy.register_fields(register)

    @hookimpl
    def startup(self, server: Server) -> None:
        self._check_bound_services()
        for device in list(self.devices.values()):
            ensureDeferred(device.start()).addErrback(
                lambda f, name=device.name: self.log.failure("Power device {name} failed to start", f, name=name)
            )
        if server.klippy is not None and self.idle.devices:
            server.klippy.add_subscription("power", SUBSCRIPTION).addErrback(lambda f: None)
        self.energy.start()

    @hookimpl
    async def shutdown(self, server: Server) -> None:
        self.idle.stop()
        self.energy.stop()
        await DeferredList([ensureDeferred(d.stop()) for d in self.devices.values()], consumeErrors=True)
        await self.http.close()

    def _check_bound_services(self) -> None:
        provider = self.server.lookup("machine_provider")
        for device in self.devices.values():
            for service in list(device.bound_services):
                why = None
                if provider is None:
                    why = "no machine provider is available"
                elif service == provider.self_unit:
                    why = "moontwist's own service can't be bound"
                elif not provider.allowed.is_allowed(service):
                    why = "it is not in moonraker.asvc"
                elif device.type == "klipper_device" and service.startswith("klipper"):
                    why = "a klipper_device can't be bound to Klipper"
                if why is not None:
                    device.bound_services.remove(service)
                    self._warn(f"Power device {device.name}: bound service '{service}' ignored: {why}")

    @hookimpl
    def klippy_state_changed(self, state: str) -> None:
        for device in self.devices.values():
            device.klippy_state_changed(state)
        self.idle.update()

    @hookimpl
    def status_update(self, status: dict[str, Any]) -> None:
        for device in self.devices.values():
            device.driver.status_update(status)
        if "idle_timeout" in status:
            self.idle.update()

    @hookimpl
    def job_state_changed(self, new: str) -> None:
        if new == "printing":
            self.energy.read_all()
        self.idle.update()

    @hookimpl
    def print_requested(self) -> None:
        self.energy.read_all()

    @hookimpl
    def notification(self, method: str, params: list[Any] | None) -> None:
        if method != "notify_job_queue_changed" or not params or not isinstance(params[0], dict):
            return
        change = params[0]
        if change.get("action") != "jobs_added":
            return
        queue = change.get("updated_queue") or []
        filename = queue[0].get("filename", "unknown") if queue and isinstance(queue[0], dict) else "unknown"
        for device in self.devices.values():
            if device.on_when_job_queued:
                self.log.info("Power device {name}: job {filename} queued, powering on", name=device.name, filename=filename)
                self.set_device_power(device.name, "on")

    # called by devices ----------------------------------------------------------------------

    def device_changed(self, device: PowerDevice) -> None:
        """A device's state may have changed: its groups and idle countdown follow."""
        for group in self.groups.values():
            if device in group.members:
                group.publish()
        self.idle.check(device)

    def unload(self, device: PowerDevice, why: str) -> None:
        """Leave out a device that can't work after all (a plugin it needs is missing)."""
        self.devices.pop(device.name, None)
        for group in self.groups.values():
            if device in group.members:
                group.members.remove(device)
        self._warn(f"Power device [{device.section_name}] not loaded: {why}")

    def set_device_power(self, name: str, state: str, force: bool = False) -> None:
        """Switch a device or group in the background (timers, remote methods, events)."""
        target = self.find(name)
        if target is None:
            self.log.warn("set_device_power: no power device named {name}", name=name)
            return

        def failed(failure: Any) -> None:
            error = failure.value
            self.log.warn(
                "Power device {name}: {action} failed: {error}", name=name, action=state,
                error=error.message if isinstance(error, ServerError) else failure.getErrorMessage(),
            )

        ensureDeferred(target.request(state, force)).addErrback(failed)

    def _remote_set_device_power(self, device: Any = None, state: Any = None, force: Any = False, **extra: Any) -> None:
        if isinstance(state, bool):
            action = "on" if state else "off"
        elif isinstance(state, str):
            action = {"true": "on", "false": "off"}.get(state.strip().lower(), state.strip().lower())
        else:
            action = ""
        if action not in ACTIONS:
            self.log.warn("set_device_power: invalid state {state!r} (on, off or toggle)", state=state)
            return
        if not isinstance(device, str):
            self.log.warn("set_device_power: invalid device {device!r}", device=device)
            return
        self.set_device_power(device, action, force=force is True or str(force).lower() == "true")

    # endpoints -----------------------------------------------------------------------------

    def find(self, name: str) -> PowerDevice | PowerGroup | None:
        return self.devices.get(name) or self.groups.get(name)

    def _all(self) -> list[PowerDevice | PowerGroup]:
        return [*self.devices.values(), *self.groups.values()]

    def list_devices(self, request: APIRequest) -> dict[str, Any]:
        return {"devices": [target.info() for target in self._all()]}

    def _target(self, name: str) -> PowerDevice | PowerGroup:
        target = self.find(name)
        if target is None:
            raise ServerError(f"No valid device named {name}", 400)
        return target

    async def get_device(self, request: APIRequest) -> dict[str, str]:
        name = request.args["device"]
        return {name: await self._target(name).request("status")}

    async def post_device(self, request: APIRequest) -> dict[str, str]:
        name = request.args["device"]
        action = str(request.args["action"]).lower()
        target = self._target(name)
        if action not in ACTIONS:
            raise ServerError(f"Invalid requested action '{action}' for device {name} (on, off or toggle)", 400)
        return {name: await target.request(action)}

    async def batch(self, request: APIRequest) -> dict[str, str]:
        action = request.endpoint.method.rpartition(".")[2]
        names = [n for n in request.args if n not in _NOT_DEVICES or self.find(n) is not None]
        if not names:
            raise ServerError("No arguments provided: name at least one device", 400)
        targets = {name: self.find(name) for name in names}
        pending = {name: ensureDeferred(t.request(action)) for name, t in targets.items() if t is not None}
        results = await DeferredList(list(pending.values()), consumeErrors=True)
        outcome = dict(zip(pending, results))
        answer: dict[str, str] = {}
        errors: list[str] = []
        for name in names:
            if name not in outcome:
                answer[name] = "device_not_found"
                continue
            ok, value = outcome[name]
            if ok:
                answer[name] = value
            else:
                error = value.value
                errors.append(error.message if isinstance(error, ServerError) else f"{name}: {value.getErrorMessage()}")
        if errors:
            raise ServerError("; ".join(errors), 400)
        return answer
