"""One Klippy printer instance: its objects, state and core G-code commands."""

from __future__ import annotations

import copy
import logging
from importlib import resources
from typing import Any

from twisted.internet.defer import Deferred

from ..jsonutil import loads
from .errors import GCodeError
from .gcode import BASE_COMMANDS, GCodeCommand, GCodeDispatch
from .heaters import Heaters
from .macros import MACROS, Macros
from .misc import BedMesh, Display, Fans, IdleTimeout, MCUStats, PauseResume, system_stats
from .motion import GCodeMove, Toolhead
from .printjob import PrintStats, VirtualSDCard

log = logging.getLogger(__name__)

SOFTWARE_VERSION = "v0.13.0-730-g84104bbbd"
STARTUP_MESSAGE = ("\nPrinter is not ready\nThe klippy host software is attempting to connect."
                   "  Please\nretry in a few moments.\n")
READY_MESSAGE = "Printer is ready"
SHUTDOWN_SUFFIX = ("\nOnce the underlying issue is corrected, use the\n\"FIRMWARE_RESTART\" "
                   "command to reset the firmware, reload the\nconfig, and restart the host "
                   "software.\nPrinter is shutdown\n")


def load_data(name: str) -> Any:
    """Load a JSON file shipped in ``moontwist/sim/data``."""
    return loads(resources.files(__package__).joinpath("data").joinpath(name).read_bytes())


_OBJECTS = load_data("objects.json")


class Printer:
    """The printer objects of one Klippy "process lifetime" (replaced on restart)."""

    def __init__(self, clock, gcodes_path: str, hooks) -> None:
        self.clock = clock
        self.hooks = hooks
        self.sim_start = clock.sim()
        self.state = "startup"
        self.state_message = STARTUP_MESSAGE
        self.closed = False
        self._static = copy.deepcopy(_OBJECTS["objects"])
        self._point_sdcard_at(gcodes_path)
        self.gcode = GCodeDispatch(self)
        self._register_core()
        self.toolhead = Toolhead(self)
        self.gcode_move = GCodeMove(self, self.toolhead)
        self.heaters = Heaters(self)
        self.print_stats = PrintStats(self)
        self.vsd = VirtualSDCard(self, gcodes_path)
        self.pause_resume = PauseResume(self)
        self.idle = IdleTimeout(self)
        self.fans = Fans(self)
        self.display = Display(self)
        self.bed_mesh = BedMesh(self)
        self.mcu = MCUStats(self)
        self.macros = Macros(self)
        self._register_noops()
        self._providers = self._build_providers()

    # ---- state
    def set_ready(self) -> None:
        """startup -> ready."""
        if self.state == "startup":
            self.state = "ready"
            self.state_message = READY_MESSAGE
            self.gcode.respond_info("Klipper state: Ready")

    def invoke_shutdown(self, reason: str) -> None:
        """Enter the shutdown state (emergency stop, M112)."""
        if self.state == "shutdown":
            return
        was_ready = self.state == "ready"
        self.state = "shutdown"
        self.state_message = reason + SHUTDOWN_SUFFIX
        self.vsd.stop_on_shutdown(reason)
        self.heaters.turn_off()
        if was_ready:
            self.gcode.respond_info("Klipper state: Shutdown")

    def set_state(self, state: str, message: str | None = None) -> None:
        """Force a state (fault injection): startup, ready, shutdown or error."""
        if state == "shutdown":
            self.invoke_shutdown(message or "Shutdown due to webhooks request")
            return
        defaults = {"startup": STARTUP_MESSAGE, "ready": READY_MESSAGE,
                    "error": "Klipper reports: ERROR"}
        if state not in defaults:
            raise ValueError(f"unknown state {state!r}")
        self.state = state
        self.state_message = message if message is not None else defaults[state]

    def close(self) -> None:
        """Stop background work of this instance (restart/stop); waiting commands fail."""
        self.closed = True
        self.state = "shutdown"
        self.vsd.cancel()

    # ---- hooks for components
    def note_activity(self) -> None:
        """Motion was queued."""
        self.idle.note_activity()

    def note_extrude(self, delta: float) -> None:
        """The extruder moved by ``delta`` mm (toolhead coordinates)."""
        self.print_stats.note_extrude(delta, self.gcode_move.extrude_factor)

    def spawn(self, coro) -> Deferred:
        """Run a coroutine in the background, logging failures."""
        d = Deferred.fromCoroutine(coro)
        d.addErrback(lambda f: log.error("simulator task failed: %s", f.getTraceback()))
        return d

    def call_remote_method(self, method: str, params: dict) -> None:
        """action_call_remote_method: forwarded to the registered connections."""
        self.hooks.call_remote_method(method, params)

    # ---- core commands
    def _register_core(self) -> None:
        g = self.gcode
        for name in BASE_COMMANDS:
            g.register(name, getattr(self, "cmd_" + name.lower()), when_not_ready=True)
        g.register("M118", self.cmd_m118, when_not_ready=True)
        g.register("RESPOND", self.cmd_respond, when_not_ready=True)

    def _register_noops(self) -> None:
        for name in self._static["gcode"]["commands"]["example"]:
            if name not in self.gcode.handlers:
                self.gcode.register(name, lambda cmd: None)

    def cmd_m110(self, cmd: GCodeCommand) -> None:
        """Set line number (ignored)."""

    def cmd_m112(self, cmd: GCodeCommand) -> None:
        """Emergency stop."""
        self.invoke_shutdown("Shutdown due to M112 command")

    def cmd_m115(self, cmd: GCodeCommand) -> None:
        """Firmware version."""
        self.gcode.respond_info(f"FIRMWARE_NAME:Klipper FIRMWARE_VERSION:{SOFTWARE_VERSION}")

    def cmd_restart(self, cmd: GCodeCommand) -> None:
        """Host restart (connections are closed after this reply)."""
        self.hooks.request_restart()

    def cmd_firmware_restart(self, cmd: GCodeCommand) -> None:
        """Firmware restart (like RESTART in the simulator)."""
        self.hooks.request_restart()

    def cmd_echo(self, cmd: GCodeCommand) -> None:
        """Echo the command line."""
        self.gcode.respond_info(cmd.line)

    def cmd_status(self, cmd: GCodeCommand) -> None:
        """Report the printer state."""
        if self.state == "ready":
            self.gcode.respond_info("Klipper state: Ready")
            return
        raise GCodeError(self.state_message.rstrip() + "\nKlipper state: Not ready")

    def cmd_help(self, cmd: GCodeCommand) -> None:
        """List extended commands."""
        lines = [] if self.state == "ready" else [
            "Printer is not ready - not all commands available."]
        lines.append("Available extended commands:")
        for name, text in load_data("gcode_help.json").items():
            if self.state == "ready" or name in self.gcode.base:
                lines.append(f"{name:<10} : {text}")
        self.gcode.respond_info("\n".join(lines))

    def cmd_m118(self, cmd: GCodeCommand) -> None:
        """Echo a message with the default prefix."""
        self.gcode.respond_raw("// " + cmd.raw_params())

    def cmd_respond(self, cmd: GCodeCommand) -> None:
        """RESPOND [TYPE=echo|echo_no_space|command|error] [PREFIX=] MSG=."""
        kind = cmd.get("TYPE", "").lower()
        prefixes = {"": "//", "echo": "echo:", "echo_no_space": "echo:", "command": "//",
                    "error": "!!"}
        if kind not in prefixes:
            raise GCodeError(f"RESPOND TYPE '{kind}' is invalid. Must be one of "
                             "'echo', 'echo_no_space', 'command', or 'error'")
        prefix = cmd.get("PREFIX", prefixes[kind])
        sep = "" if kind == "echo_no_space" else " "
        self.gcode.respond_raw(f"{prefix}{sep}{cmd.get('MSG', '')}")

    # ---- status
    def _point_sdcard_at(self, gcodes_path: str) -> None:
        """The recorded config names the recording machine's folder; report this simulator's."""
        config = self._static.get("configfile", {})
        for field in ("config", "settings"):
            sections = config.get(field, {}).get("example", {})
            if "virtual_sdcard" in sections:
                sections["virtual_sdcard"]["path"] = gcodes_path

    def static_status(self, name: str) -> dict:
        """The recorded example value of every field of ``name``."""
        return {field: spec["example"] for field, spec in self._static[name].items()}

    def _build_providers(self) -> dict:
        heaters, fans = self.heaters, self.fans
        providers = {
            "gcode": lambda: {"commands": self.gcode.status_commands()},
            "webhooks": lambda: {"state": self.state, "state_message": self.state_message},
            "heater_bed": lambda: heaters.get_status("heater_bed"),
            "extruder": lambda: {**heaters.get_status("extruder"), "can_extrude": True,
                                 "pressure_advance": 0.0, "smooth_time": 0.04,
                                 "motion_queue": None},
            "temperature_sensor chamber": lambda: heaters.get_status("temperature_sensor chamber"),
            "heater_fan nozzle_cooling_fan": self._heater_fan,
            "fan": lambda: {"speed": fans.fan, "rpm": None},
            "fan_generic aux_fan": lambda: {"speed": fans.aux_fan, "rpm": None},
            "output_pin BEEPER_pin": lambda: fans.pin_status("BEEPER_pin"),
            "output_pin psu_pin": lambda: fans.pin_status("psu_pin"),
            "led caselight": lambda: {"color_data": [list(fans.led)]},
            "display_status": self.display.get_status,
            "pause_resume": lambda: {"is_paused": self.pause_resume.is_paused},
            "gcode_move": self.gcode_move.get_status,
            "toolhead": self.toolhead.get_status,
            "print_stats": self.print_stats.get_status,
            "virtual_sdcard": self.vsd.get_status,
            "bed_mesh": self.bed_mesh.get_status,
            "idle_timeout": self.idle.get_status,
            "stepper_enable": lambda: {"steppers": dict(self.toolhead.steppers)},
            "motion_report": self._motion_report,
            "system_stats": system_stats,
            "mcu": self.mcu.get_status,
        }
        for name in MACROS:
            providers["gcode_macro " + name] = lambda n=name: self.macros.get_status(n)
        return providers

    def _heater_fan(self) -> dict:
        ext = self.heaters.extruder
        on = ext.target >= 50.0 or ext.temperature >= 50.0
        return {"speed": 1.0 if on else 0.0, "rpm": None}

    def _motion_report(self) -> dict:
        busy = self.toolhead.lookahead() > 0
        return {"live_position": [float(v) for v in self.toolhead.position],
                "live_velocity": self.toolhead.velocity if busy else 0.0,
                "live_extruder_velocity": 0.0,
                "steppers": ["extruder", "stepper_x", "stepper_y", "stepper_z"],
                "trapq": ["extruder", "toolhead"]}

    def object_names(self) -> list[str]:
        """``objects/list`` in Klippy's order."""
        return list(_OBJECTS["objects_list"])

    def get_status(self, name: str) -> dict | None:
        """Every field of object ``name``; None for an unknown object."""
        provider = self._providers.get(name)
        if provider is not None:
            return provider()
        if name in self._static:
            return self.static_status(name)
        return None
