"""A power device: the options every type shares, and its state machine.

A device type is a :class:`PowerDriver` subclass that only knows how to talk to
its device (read the state, switch it, maybe read an energy meter).
:class:`PowerDevice` wraps one driver with what every type shares: one request
at a time, a time limit on every call to the device (``timeout``, 5 s by
default: a device that hangs reaches ``error`` within it), ``notify_power_changed``
on every change, polling, ``initial_state``, ``locked_while_printing``, bound
services, ``restart_klipper_when_powered`` and ``off_when_shutdown``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet.defer import CancelledError, Deferred, DeferredLock, ensureDeferred
from twisted.internet.task import LoopingCall, deferLater

from moontwist.api.errors import ServerError
from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.templates import TemplateFailed

if TYPE_CHECKING:
    from moontwist.plugins.power.plugin import PowerPlugin

__all__ = ["PowerDevice", "PowerDriver", "DeviceError", "DeviceTimeout", "STATES", "ACTIONS"]

STATES = ("init", "on", "off", "error")
ACTIONS = ("on", "off", "toggle")
DEFAULT_TIMEOUT = 5.0
INIT_RETRY = 5.0  # seconds between attempts to reach a device that never answered yet


class DeviceError(Exception):
    """The device could not be reached, refused, or answered nonsense; the message says which."""


class DeviceTimeout(DeviceError):
    """The device did not answer within the device's ``timeout``."""


class PowerDriver:
    """Base class of a device type (what ``register_power_device_types`` registers).

    ``__init__`` reads the type's own options from ``section`` (a ``ConfigError``
    makes the device fail to load with a warning; the rest of the server runs).
    Every method that talks to the device is a coroutine (or returns a Deferred);
    the device limits each call to its ``timeout`` and turns any exception into
    the ``error`` state.  ``self.device`` offers ``server``, ``reactor``, ``name``,
    ``http`` (the plugin's HTTP client), ``templates`` and ``report(state)`` for
    changes the device announces by itself.
    """

    #: ``poll_interval`` applies (devices that push their state don't need it)
    can_poll: ClassVar[bool] = True
    #: False: the driver calls ``device.initialize()`` itself once it can (Klippy ready...)
    starts_ready: ClassVar[bool] = True
    #: the ``timer`` option: switch off this many seconds after switching on (moontwist keeps the time)
    local_timer: ClassVar[bool] = False
    #: shared options this type can't honour; setting them is a config error
    refused_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        self.device = device
        self.log = device.server.logger(type(self).__module__)
        #: whether ``read_energy`` works (set by types with an energy meter)
        self.reports_energy = False

    async def start(self) -> None:
        """Open what the driver needs (a port, a subscription); called once at start-up."""

    async def stop(self) -> None:
        """Release it again (server stop or restart)."""

    async def read_state(self) -> str:
        """The device's state now: ``"on"`` or ``"off"``."""
        raise NotImplementedError

    async def set_state(self, state: str) -> str:
        """Switch to ``state`` (``"on"``/``"off"``); returns the state the device then reports."""
        raise NotImplementedError

    async def read_energy(self) -> float:
        """The energy meter's total in kWh (only when ``reports_energy``)."""
        raise DeviceError(f"type '{self.device.type}' has no energy meter")

    def info(self) -> dict[str, Any]:
        """Extra fields for this device in the device list."""
        return {}

    def klippy_state_changed(self, state: str) -> None:
        """Klippy went to ``state``."""

    def status_update(self, status: dict[str, Any]) -> None:
        """Printer objects changed (only what some client or plugin subscribed to)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"unexpected answer (no {exc.args[0]!r} in it)"
    if isinstance(exc, (TypeError, ValueError, IndexError, AttributeError)):
        return f"unexpected answer ({type(exc).__name__}: {exc})"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, (ServerError, TemplateFailed, OSError)) else f"{type(exc).__name__}: {text}"


class PowerDevice:
    """One ``[power NAME]`` device: its driver, state and shared options."""

    def __init__(
        self, plugin: PowerPlugin, name: str, type_name: str, driver_cls: type[PowerDriver], section: ConfigSection
    ) -> None:
        self.plugin = plugin
        self.server = plugin.server
        self.log = plugin.log
        self.reactor = self.server.reactor
        self.name = name
        self.type = type_name
        self.section_name = section.name
        self.state = "init"
        self.published: str | None = None  # the state clients were last told
        self.lock = DeferredLock()
        self.last_error: str | None = None
        self.last_update = 0.0
        self._read_shared(section, driver_cls)
        self.driver = driver_cls(self, section)
        for option in driver_cls.refused_options:
            if getattr(self, option, None):
                raise ConfigError(
                    f"Config error in section [{section.name}], option '{option}': "
                    f"not available for type '{type_name}'"
                )
        self.timer = section.getfloat("timer", None, above=0.0) if driver_cls.local_timer else None
        self.record_energy = section.getboolean("record_energy", False)
        self.energy_interval = section.getfloat("energy_interval", 30.0, minval=1.0)
        if self.record_energy and not self.driver.reports_energy:
            raise ConfigError(
                f"Config error in section [{section.name}], option 'record_energy': "
                f"this '{type_name}' device has no energy meter"
            )
        self.energy_field: Any = None
        self._poller: LoopingCall | None = None
        self._init: Deferred | None = None
        self._init_round = 0  # a newer initialize() ends the loop of an older one
        self.read_error: DeviceError | None = None
        self._timer_call: Any = None
        self._shutdown_call: Any = None
        self._restart_call: Any = None
        self.need_restart = False
        self._services_lock = DeferredLock()
        self._stopped = False

    def _read_shared(self, section: ConfigSection, driver_cls: type[PowerDriver]) -> None:
        self.initial_state: bool | None = section.getboolean("initial_state", None)
        self.off_when_shutdown = section.getboolean("off_when_shutdown", False)
        self.off_when_shutdown_delay = section.getfloat("off_when_shutdown_delay", 0.0, minval=0.0)
        queued = section.getboolean("on_when_job_queued", False)
        if "on_when_upload_queued" in section:  # Moonraker's older name
            queued = section.getboolean("on_when_upload_queued", False)
        self.on_when_job_queued = queued
        self.locked_while_printing = section.getboolean("locked_while_printing", False)
        self.restart_klipper_when_powered = section.getboolean("restart_klipper_when_powered", False)
        self.restart_delay = section.getfloat("restart_delay", 1.0, above=0.0)
        services = list(section.getlist("bound_services", []))
        if "bound_service" in section:  # Moonraker's older, single-valued name
            services.append(section.get("bound_service"))
        self.bound_services: list[str] = []
        for service in services:
            service = service.strip()
            service = service[: -len(".service")] if service.endswith(".service") else service
            if service and service not in self.bound_services:
                self.bound_services.append(service)
        self.restrict_actions = section.getboolean("restrict_action_processing", True)
        self.poll_interval = section.getfloat("poll_interval", None, minval=1.0) if driver_cls.can_poll else None
        self.timeout = section.getfloat("timeout", DEFAULT_TIMEOUT, above=0.0)
        self.off_when_idle = section.getfloat("off_when_idle", None, above=0.0)

    # what drivers use ---------------------------------------------------------------------

    @property
    def http(self) -> Any:
        return self.plugin.http

    @property
    def templates(self) -> Any:
        return self.plugin.templates

    def report(self, state: str) -> None:
        """The driver learnt a new state without being asked (a push, a lost port)."""
        if state not in STATES:
            return
        self.state = state
        self.last_update = self.reactor.seconds()
        if not self.lock.locked and state != self.published:
            self._in_background(self._external_change(), "handling a state change")

    def initialize(self) -> None:
        """Read the state (retrying every few seconds until the device answers), then apply
        ``initial_state`` and start polling.  Drivers that aren't ready at start-up call it later."""
        if self._stopped:
            return
        self._init_round += 1
        if self._init is not None:
            self._init.cancel()
        self._init = ensureDeferred(self._initialize(self._init_round))
        self._init.addErrback(lambda f: f.trap(CancelledError))

    # the API ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "device": self.name,
            "status": self.state,
            "locked_while_printing": self.locked_while_printing,
            "type": self.type,
            **self.driver.info(),
        }

    async def request(self, action: str, force: bool = False) -> str:
        """``status``, ``on``, ``off`` or ``toggle``; requests to one device wait on each other."""
        if action not in ("status", *ACTIONS):
            raise ServerError(f"Unsupported power request: {action}", 400)
        async with self.lock:
            read_ok = await self._refresh()
            current = self.state
            if action == "status":
                self._settle_external()
                return self.state
            if action == "toggle":
                action = "on" if current == "off" else "off"
            if action == current:
                self._settle_external()
                return current
            if not read_ok and isinstance(self.read_error, DeviceTimeout):
                self._publish()
                raise ServerError(f"Power device {self.name} is unreachable: {self.last_error}", 400)
            if not force and self.locked_while_printing and self.server.printing:
                self._publish()
                raise ServerError(f"Unable to change power for {self.name} while printing", 400)
            self._cancel_timer()
            try:
                new = self._check_state(await self._call(self.driver.set_state(action)))
            except DeviceError as exc:
                self.state = "error"
                self._failed(f"turning {action}", exc)
                self._publish()
                self.plugin.device_changed(self)
                raise ServerError(f"Error setting power device {self.name} to {action}: {exc}", 400) from None
            self._succeeded()
            self.state = new
            self.last_update = self.reactor.seconds()
            if new == "on" and self.timer is not None:
                self._timer_call = self.reactor.callLater(self.timer, self.plugin.set_device_power, self.name, "off")
            self._changed(external=False)
            return self.state

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._call(self.driver.start())
        except ConfigError as exc:  # a missing dependency (the mqtt plugin...): the device is left out
            self._stopped = True
            self.plugin.unload(self, str(exc))
            return
        except DeviceError as exc:
            self.state = "error"
            self._failed("starting", exc)
            self._publish()
        if self.driver.starts_ready:
            self.initialize()

    async def stop(self) -> None:
        self._stopped = True
        if self._init is not None:
            self._init.cancel()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        for call in (self._timer_call, self._shutdown_call, self._restart_call):
            if call is not None and call.active():
                call.cancel()
        try:
            await self._call(self.driver.stop())
        except DeviceError as exc:
            self.log.warn("Power device {name}: stopping failed: {error}", name=self.name, error=_describe(exc))

    async def _initialize(self, round_: int) -> None:
        while not self._stopped and round_ == self._init_round:
            async with self.lock:
                if self._stopped or round_ != self._init_round:
                    return
                ok = await self._refresh()
                if ok:
                    await self._apply_initial_state()
                self._publish()
                self.plugin.device_changed(self)
            if ok:
                self._start_polling()
                return
            await deferLater(self.reactor, INIT_RETRY, lambda: None)

    async def _apply_initial_state(self) -> None:
        if self.initial_state is None:
            return
        wanted = "on" if self.initial_state else "off"
        if self.state != wanted:
            self.log.info("Power device {name}: initial state {state}", name=self.name, state=wanted)
            try:
                self.state = self._check_state(await self._call(self.driver.set_state(wanted)))
            except DeviceError as exc:
                self.state = "error"
                self._failed(f"setting the initial state {wanted}", exc)
                return
            if self.state == "on" and self.timer is not None:
                self._timer_call = self.reactor.callLater(self.timer, self.plugin.set_device_power, self.name, "off")
        self._sync_services()

    def _start_polling(self) -> None:
        if self.poll_interval is None or self._poller is not None or self._stopped:
            return
        self._poller = LoopingCall(self._poll)
        self._poller.clock = self.reactor
        self._poller.start(self.poll_interval, now=False)

    def _poll(self) -> Deferred | None:
        if self.lock.locked or self.reactor.seconds() - self.last_update < (self.poll_interval or 0) * 0.9:
            return None
        return ensureDeferred(self.request("status")).addErrback(lambda f: None)

    # events from the plugin ---------------------------------------------------------------

    def klippy_state_changed(self, state: str) -> None:
        self.driver.klippy_state_changed(state)
        if state == "shutdown" and self.off_when_shutdown:
            if self._shutdown_call is not None and self._shutdown_call.active():
                self._shutdown_call.cancel()
            self._shutdown_call = self.reactor.callLater(self.off_when_shutdown_delay, self._off_for_shutdown)
        if self.need_restart and state not in ("disconnected", "startup"):
            self._restart_klipper(state)

    def _off_for_shutdown(self) -> None:
        if self.server.klippy_state == "shutdown":
            self.log.info("Power device {name}: Klippy is shut down, powering off", name=self.name)
            self.plugin.set_device_power(self.name, "off")

    # internals ----------------------------------------------------------------------------

    async def _call(self, work: Awaitable[Any] | Deferred) -> Any:
        """Run one driver call with the device's time limit; every failure becomes DeviceError."""
        d = ensureDeferred(work)
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self.reactor.callLater(self.timeout, expire)
        try:
            return await d
        except Exception as exc:
            if expired:
                raise DeviceTimeout(f"no answer within {self.timeout:g} s") from None
            if isinstance(exc, (DeviceError, ConfigError)):
                raise
            raise DeviceError(_describe(exc)) from None
        finally:
            if timer.active():
                timer.cancel()

    def _check_state(self, state: Any) -> str:
        if state not in ("on", "off"):
            raise DeviceError(f"unexpected state {state!r}")
        return state

    async def _refresh(self) -> bool:
        """Read the state; on failure the state is ``error`` (logged once) and False is returned."""
        self.read_error = None
        try:
            state = self._check_state(await self._call(self.driver.read_state()))
        except DeviceError as exc:
            self.read_error = exc
            self.state = "error"
            self._failed("reading the state", exc)
            return False
        self._succeeded()
        self.state = state
        self.last_update = self.reactor.seconds()
        return True

    def _failed(self, what: str, exc: DeviceError) -> None:
        message = f"{what}: {exc}"
        if message != self.last_error and not self._stopped:
            self.log.warn("Power device {name}: {message}", name=self.name, message=message)
        self.last_error = message

    def _succeeded(self) -> None:
        if self.last_error is not None:
            self.log.info("Power device {name} answers again", name=self.name)
        self.last_error = None

    def _publish(self) -> bool:
        """Tell clients the state if it changed since they were last told."""
        if self.state == self.published:
            return False
        self.published = self.state
        self.server.notify("notify_power_changed", self.info())
        return True

    def _settle_external(self) -> None:
        """A change seen by reading the state (polling, a status request) or pushed by the device."""
        if self.state != self.published and self.published is not None:
            self._changed(external=True)
        else:
            self._publish()
            self.plugin.device_changed(self)

    async def _external_change(self) -> None:
        async with self.lock:
            self._settle_external()

    def _changed(self, external: bool) -> None:
        self._publish()
        self.plugin.device_changed(self)
        if external and self.restrict_actions:
            return
        self._sync_services()
        if self.state == "on" and self.restart_klipper_when_powered:
            self.need_restart = True
            state = self.server.klippy_state
            if state not in ("disconnected", "startup"):
                self._restart_klipper(state)

    def _cancel_timer(self) -> None:
        if self._timer_call is not None and self._timer_call.active():
            self._timer_call.cancel()
        self._timer_call = None

    def _restart_klipper(self, klippy_state: str) -> None:
        self.need_restart = False
        if klippy_state == "ready":
            self.log.info("Power device {name}: Klippy is ready, no FIRMWARE_RESTART needed", name=self.name)
            return
        if self._restart_call is not None and self._restart_call.active():
            return
        self.log.info("Power device {name}: FIRMWARE_RESTART in {delay} s", name=self.name, delay=self.restart_delay)
        self._restart_call = self.reactor.callLater(self.restart_delay, self._firmware_restart)

    def _firmware_restart(self) -> None:
        klippy = self.server.klippy
        if klippy is None:
            return
        d = klippy.request("gcode/script", {"script": "FIRMWARE_RESTART"}, timeout=None)
        # Klippy may drop the connection before it replies
        d.addErrback(lambda f: self.log.info("FIRMWARE_RESTART: {error}", error=f.getErrorMessage()))

    def _sync_services(self) -> None:
        if not self.bound_services or self.state not in ("on", "off"):
            return
        action = "start" if self.state == "on" else "stop"
        self._services_lock.run(lambda: ensureDeferred(self._service_action(action)))

    async def _service_action(self, action: str) -> None:
        provider = self.server.lookup("machine_provider")
        if provider is None:
            self.log.warn("Power device {name}: no machine provider to {action} bound services", name=self.name, action=action)
            return
        for service in self.bound_services:
            self.log.info("Power device {name}: {action} bound service {service}", name=self.name, action=action, service=service)
            try:
                await getattr(provider, action)(service)
            except Exception as exc:
                self.log.warn(
                    "Power device {name}: could not {action} bound service {service}: {error}",
                    name=self.name, action=action, service=service, error=_describe(exc),
                )

    def _in_background(self, work: Any, what: str) -> None:
        def failed(failure: Any) -> None:
            self.log.failure("Power device {name}: {what} failed", failure, name=self.name, what=what)

        ensureDeferred(work).addErrback(failed)

    async def read_energy(self) -> float | None:
        """The meter's total in kWh (None when it can't be read; the failure is logged once)."""
        async with self.lock:
            try:
                value = await self._call(self.driver.read_energy())
            except DeviceError as exc:
                self._failed("reading the energy meter", exc)
                return None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self._failed("reading the energy meter", DeviceError(f"unexpected value {value!r}"))
            return None
        return float(value)
