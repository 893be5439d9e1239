"""System providers: start/stop/restart services, shut down or reboot the host, track unit state.

All actions are coroutines meant for Twisted (``defer.ensureDeferred(provider.restart("klipper"))``);
host commands go through :func:`moontwist.machine.commands.run_command`, so they never block the
reactor and fail within their timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from moontwist.api.errors import ServerError
from moontwist.machine.commands import DEFAULT_TIMEOUT, CommandError, run_command
from moontwist.machine.services import AllowedServices, normalize
from moontwist.machine.sudo import needs_password

ServiceState = dict[str, str]
StateListener = Callable[[dict[str, ServiceState]], None]
_UNKNOWN: ServiceState = {"active_state": "unknown", "sub_state": "unknown"}


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def default_sudo_prefix() -> tuple[str, ...]:
    """``sudo -n`` unless already root (non-interactive: fail rather than prompt)."""
    return () if os.geteuid() == 0 else ("sudo", "-n")


class ServiceProvider:
    """Base provider: validation, state bookkeeping and listeners. Acts as the ``none`` provider."""

    name = "none"

    def __init__(
        self,
        allowed: AllowedServices | None = None,
        *,
        self_unit: str = "moontwist",
        container_id: str | None = None,
        reactor: Any = None,
        log: Logger | None = None,
    ) -> None:
        self.log = log if log is not None else Logger(namespace=__name__)
        self.allowed = allowed if allowed is not None else AllowedServices()
        self.self_unit = normalize(self_unit)
        self.container_id = container_id
        self.reactor = reactor if reactor is not None else _default_reactor()
        self._states: dict[str, ServiceState] = {}
        self._listeners: list[StateListener] = []
        # called with (action, needed) after a command run through sudo: refused for a password, or ran
        self.sudo_listener: Callable[[str, bool], None] | None = None
        self._poller: task.LoopingCall | None = None

    # -- state -----------------------------------------------------------------------------
    def available_services(self) -> list[str]:
        """Allowed services found on this host."""
        return list(self._states)

    def service_state(self) -> dict[str, ServiceState]:
        """``{service: {"active_state", "sub_state"}}`` for every available service (a copy)."""
        return {name: dict(state) for name, state in self._states.items()}

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener({service: state})`` whenever a service's state changes."""
        self._listeners.append(listener)

    def remove_state_listener(self, listener: StateListener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def _sudo_result(self, action: str, needed: bool) -> None:
        if self.sudo_listener is not None:
            self.sudo_listener(action, needed)

    def _set_states(self, states: dict[str, ServiceState], *, replace: bool = False) -> None:
        """Record new states and notify listeners of each one that changed."""
        if replace:
            for gone in set(self._states) - set(states):
                del self._states[gone]
        for name, state in states.items():
            if self._states.get(name) == state:
                continue
            known = name in self._states
            self._states[name] = dict(state)
            if not known and state == _UNKNOWN:
                continue
            for listener in list(self._listeners):
                try:
                    listener({name: dict(state)})
                except Exception:
                    self.log.failure("Service state listener failed")

    async def refresh(self) -> None:
        """Detect allowed services and their states (nothing to do for ``none``)."""

    def start_polling(self, interval: float = 2.0) -> None:
        """Refresh states every ``interval`` seconds on the reactor."""
        if self._poller is not None:
            return

        def poll() -> defer.Deferred[None]:
            d = defer.ensureDeferred(self.refresh())
            d.addErrback(lambda f: self.log.warn("Service state refresh failed: {error}", error=f.value))
            return d

        self._poller = task.LoopingCall(poll)
        self._poller.clock = self.reactor
        self._poller.start(interval, now=True)

    def stop_polling(self) -> None:
        """Stop the periodic refresh."""
        if self._poller is not None:
            if self._poller.running:
                self._poller.stop()
            self._poller = None

    # -- actions ---------------------------------------------------------------------------
    async def start(self, service: str) -> None:
        """Start an allowed service."""
        await self._service_request("start", service)

    async def stop(self, service: str) -> None:
        """Stop an allowed service."""
        await self._service_request("stop", service)

    async def restart(self, service: str) -> None:
        """Restart an allowed service; our own unit restarts shortly after this returns."""
        await self._service_request("restart", service)

    async def shutdown(self) -> None:
        """Power off the host."""
        await self._power_request("shutdown")

    async def reboot(self) -> None:
        """Reboot the host."""
        await self._power_request("reboot")

    async def _service_request(self, action: str, service: str) -> None:
        name = self.allowed.check(service)
        self._check_supported()
        if name == self.self_unit:
            if action != "restart":
                raise ServerError(f"Service action '{action}' not available for {name}", 400)
            self.reactor.callLater(0.2, self._restart_self)
            return
        if name not in self._states:
            await self.refresh()
            if name not in self._states:
                raise ServerError(f"Service '{name}' not installed", 400)
        await self._service_action(action, name)

    def _restart_self(self) -> None:
        d = defer.ensureDeferred(self._service_action("restart", self.self_unit))
        d.addErrback(lambda f: self.log.error("Restart of {unit} failed: {error}", unit=self.self_unit, error=f.value))

    async def _power_request(self, action: str) -> None:
        self._check_supported()
        if self.container_id is not None:
            raise ServerError(f"Cannot {action} from within a {self.container_id} container", 400)
        await self._power_action(action)

    def _check_supported(self) -> None:
        if self.name == "none":
            where = f" (running in a {self.container_id} container)" if self.container_id else ""
            raise ServerError(f"Service management is not available: no system provider{where}", 503)

    async def _service_action(self, action: str, name: str) -> None:
        raise NotImplementedError

    async def _power_action(self, action: str) -> None:
        raise ServerError(f"Host {action} is not supported by the {self.name} provider", 503)


def parse_systemctl_show(text: str) -> dict[str, ServiceState]:
    """Parse ``systemctl show -p Id -p ActiveState -p SubState`` blocks into states by name."""
    states: dict[str, ServiceState] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit = props.get("Id")
        if unit:
            states[normalize(unit)] = {
                "active_state": props.get("ActiveState", "unknown"),
                "sub_state": props.get("SubState", "unknown"),
            }
    return states


class SystemctlProvider(ServiceProvider):
    """systemd through the ``systemctl`` command line (``sudo -n`` when not root)."""

    name = "systemd_cli"

    def __init__(
        self,
        allowed: AllowedServices | None = None,
        *,
        path_env: str | None = None,
        sudo: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        shutdown_action: str = "poweroff",
        **kwargs: Any,
    ) -> None:
        super().__init__(allowed, **kwargs)
        self.path_env = path_env
        self.sudo = tuple(default_sudo_prefix() if sudo is None else sudo)
        self.timeout = timeout
        if shutdown_action not in ("poweroff", "halt"):
            raise ValueError(f"shutdown_action must be 'poweroff' or 'halt', not {shutdown_action!r}")
        self.shutdown_action = shutdown_action

    async def _systemctl(self, *args: str, privileged: str | None = None) -> str:
        """Run systemctl; ``privileged`` (what it does, for sudo alerts) runs it through sudo."""
        with_sudo = bool(privileged and self.sudo)
        argv = (*self.sudo, "systemctl", *args) if with_sudo else ("systemctl", *args)
        try:
            result = await run_command(
                argv, timeout=self.timeout, path_env=self.path_env, reactor=self.reactor
            )
        except CommandError as exc:
            if with_sudo and exc.result is not None and needs_password(exc.result.stderr):
                self._sudo_result(privileged, needed=True)
                raise CommandError(
                    f"sudo needs a password to {privileged}: allow "
                    f"'{' '.join(argv[len(self.sudo):])}' without a password in sudoers",
                    result=exc.result,
                ) from None
            raise
        if with_sudo:
            self._sudo_result(privileged, needed=False)
        return result.stdout

    async def refresh(self) -> None:
        """List service units, keep the allowed ones, and read their states."""
        listing = await self._systemctl(
            "list-units", "--all", "--type=service", "--plain", "--no-legend", "--no-pager"
        )
        units = []
        for line in listing.splitlines():
            parts = line.split()
            if parts and parts[0].endswith(".service") and self.allowed.is_allowed(parts[0]):
                units.append(parts[0])
        states: dict[str, ServiceState] = {}
        if units:
            shown = await self._systemctl(
                "show", "-p", "Id", "-p", "ActiveState", "-p", "SubState", "--", *units
            )
            states = parse_systemctl_show(shown)
        self._set_states(states, replace=True)

    async def _service_action(self, action: str, name: str) -> None:
        await self._systemctl(action, "--", f"{name}.service", privileged=f"{action} the {name} service")
        d = defer.ensureDeferred(self.refresh())
        d.addErrback(lambda f: self.log.warn("Service state refresh failed: {error}", error=f.value))

    async def _power_action(self, action: str) -> None:
        verb = self.shutdown_action if action == "shutdown" else "reboot"
        await self._systemctl(verb, privileged="shut down the host" if action == "shutdown" else "reboot the host")


_SUPERVISOR_ACTIVE = {
    "running": "active",
    "starting": "activating",
    "stopping": "deactivating",
    "backoff": "failed",
    "fatal": "failed",
}


def parse_supervisor_status(text: str) -> dict[str, ServiceState]:
    """Parse ``supervisorctl status`` lines (``name  STATE  details``) into states by name."""
    states: dict[str, ServiceState] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        sub = parts[1].lower()
        states[parts[0]] = {"active_state": _SUPERVISOR_ACTIVE.get(sub, "inactive"), "sub_state": sub}
    return states


class SupervisordProvider(ServiceProvider):
    """supervisord through ``supervisorctl`` (host shutdown/reboot unsupported)."""

    name = "supervisord_cli"

    def __init__(
        self,
        allowed: AllowedServices | None = None,
        *,
        config_path: str | None = None,
        path_env: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(allowed, **kwargs)
        self.config_args = ("-c", config_path) if config_path else ()
        self.path_env = path_env
        self.timeout = timeout

    async def _supervisorctl(self, *args: str) -> str:
        result = await run_command(
            ("supervisorctl", *self.config_args, *args),
            timeout=self.timeout,
            ok_codes=(0, 3),  # 3: some programs are not running
            path_env=self.path_env,
            reactor=self.reactor,
        )
        return result.stdout

    async def refresh(self) -> None:
        """Read every program's state and keep the allowed ones."""
        states = parse_supervisor_status(await self._supervisorctl("status"))
        allowed = {n: s for n, s in states.items() if self.allowed.is_allowed(n.split(":")[-1])}
        self._set_states(allowed, replace=True)

    async def _service_action(self, action: str, name: str) -> None:
        out = await self._supervisorctl(action, name)
        if "ERROR" in out:
            raise CommandError(f"supervisorctl {action} {name} failed: {out.strip()}")
        await self.refresh()


class RecordingProvider(ServiceProvider):
    """Records requested actions and simulates their effect; never touches the host (tests)."""

    name = "recording"

    def __init__(self, allowed: AllowedServices | None = None, **kwargs: Any) -> None:
        super().__init__(allowed, **kwargs)
        self.commands: list[tuple[str, ...]] = []

    def set_state(self, service: str, active_state: str, sub_state: str) -> None:
        """Make ``service`` available with this state (notifies listeners on change)."""
        self._set_states({normalize(service): {"active_state": active_state, "sub_state": sub_state}})

    async def _service_action(self, action: str, name: str) -> None:
        self.log.info("Dry run (recording provider): {action} {name}", action=action, name=name)
        self.commands.append((action, name))
        if action == "stop":
            self.set_state(name, "inactive", "dead")
        else:
            self.set_state(name, "active", "running")

    async def _power_action(self, action: str) -> None:
        self.log.info("Dry run (recording provider): {action} the host", action=action)
        self.commands.append((action,))


PROVIDERS: dict[str, type[ServiceProvider]] = {
    "none": ServiceProvider,
    "systemd_cli": SystemctlProvider,
    # No D-Bus library is a dependency; systemctl itself talks to systemd over D-Bus.
    "systemd_dbus": SystemctlProvider,
    "supervisord_cli": SupervisordProvider,
    "recording": RecordingProvider,
}


def make_provider(kind: str, allowed: AllowedServices | None = None, **kwargs: Any) -> ServiceProvider:
    """Build the provider named ``kind`` (see PROVIDERS); unknown kinds raise ValueError."""
    try:
        cls = PROVIDERS[kind]
    except KeyError:
        raise ValueError(f"Unknown system provider {kind!r}; choose from {sorted(PROVIDERS)}") from None
    return cls(allowed, **kwargs)

