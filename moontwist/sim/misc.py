"""Small printer objects: fans, pins, LED, display, pause state, idle timeout, stats."""

from __future__ import annotations

import os
import time

from .errors import GCodeError
from .gcode import GCodeCommand

# Klipper's idle_timeout: Printing lasts this long (simulated seconds) after the motion queue drained.
READY_TIMEOUT = 0.5


class Fans:
    """Part fan (M106/M107), the generic fan, output pins and the case LED."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.fan = 0.0
        self.aux_fan = 0.0
        self.pins = {"BEEPER_pin": (0.0, 1000.0), "psu_pin": (1.0, 1.0)}
        self.led = [0.0, 0.0, 0.0, 0.0]
        g = printer.gcode
        for name, handler in (("M106", self.cmd_m106), ("M107", self.cmd_m107),
                              ("SET_FAN_SPEED", self.cmd_set_fan_speed), ("SET_PIN", self.cmd_set_pin),
                              ("SET_LED", self.cmd_set_led)):
            g.register(name, self._timed(handler))

    def _timed(self, handler):
        """Like Klipper, a fan, pin or LED change is scheduled on the print time."""
        def run(cmd: GCodeCommand) -> None:
            handler(cmd)
            self.printer.toolhead.sync_print_time()
        return run

    def cmd_m106(self, cmd: GCodeCommand) -> None:
        """Set the part fan (S 0-255)."""
        self.fan = min(1.0, max(0.0, cmd.get_float("S", 255.0, minval=0.0) / 255.0))

    def cmd_m107(self, cmd: GCodeCommand) -> None:
        """Turn the part fan off."""
        self.fan = 0.0

    def cmd_set_fan_speed(self, cmd: GCodeCommand) -> None:
        """SET_FAN_SPEED FAN=aux_fan SPEED=<0-1>."""
        name = cmd.get("FAN")
        if name != "aux_fan":
            raise GCodeError(f"The value '{name}' is not valid for FAN")
        self.aux_fan = cmd.get_float("SPEED", 0.0, minval=0.0, maxval=1.0)

    def cmd_set_pin(self, cmd: GCodeCommand) -> None:
        """SET_PIN PIN=<name> VALUE=<value>."""
        name = cmd.get("PIN")
        if name not in self.pins:
            raise GCodeError(f"The value '{name}' is not valid for PIN")
        scale = self.pins[name][1]
        value = cmd.get_float("VALUE", minval=0.0, maxval=scale)
        self.pins[name] = (value / scale, scale)

    def cmd_set_led(self, cmd: GCodeCommand) -> None:
        """SET_LED LED=caselight WHITE=<0-1>."""
        name = cmd.get("LED")
        if name != "caselight":
            raise GCodeError(f"The value '{name}' is not valid for LED")
        self.led = [cmd.get_float(c, 0.0, minval=0.0, maxval=1.0)
                    for c in ("RED", "GREEN", "BLUE", "WHITE")]

    def pin_status(self, name: str) -> dict:
        """An ``output_pin`` object."""
        return {"value": self.pins[name][0]}


class Display:
    """display_status: M117 message and M73 progress."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.message: str | None = None
        self.m73: float | None = None
        g = printer.gcode
        g.register("M117", self.cmd_m117)
        g.register("M73", self.cmd_m73)
        g.register("SET_DISPLAY_TEXT", self.cmd_set_display_text)

    def cmd_m117(self, cmd: GCodeCommand) -> None:
        """Set (or clear) the display message."""
        self.message = cmd.raw_params() or None

    def cmd_set_display_text(self, cmd: GCodeCommand) -> None:
        """SET_DISPLAY_TEXT [MSG=...]."""
        self.message = cmd.get("MSG", None) or None

    def cmd_m73(self, cmd: GCodeCommand) -> None:
        """Set the progress shown (percent)."""
        progress = cmd.get_float("P", None)
        if progress is not None:
            self.m73 = min(100.0, max(0.0, progress)) / 100.0

    def get_status(self) -> dict:
        """The ``display_status`` object."""
        vsd = self.printer.vsd
        progress = vsd.progress() if vsd.file_path or self.m73 is None else self.m73
        return {"progress": progress, "message": self.message}


class IdleTimeout:
    """idle_timeout: Idle/Ready -> Printing -> Ready -> Idle after the timeout.

    As in Klipper, anything that asks the toolhead for print time (moves,
    dwells, heater, fan, pin and LED commands, heater waits) switches to
    ``Printing`` at once; ``Ready`` follows ``READY_TIMEOUT`` after motion
    has drained, once no G-code is running.
    """

    def __init__(self, printer) -> None:
        self.printer = printer
        self.state = "Idle"
        self.timeout = 600.0
        self.printing_since = 0.0
        self.ready_since = 0.0
        printer.gcode.register("SET_IDLE_TIMEOUT", self.cmd_set_idle_timeout)

    def note_activity(self) -> None:
        """The toolhead got new motion."""
        if self.state != "Printing":
            self.state = "Printing"
            self.printing_since = self.printer.clock.eventtime()

    def update(self) -> None:
        """Move to Ready when motion stopped, to Idle after the (simulated) timeout."""
        printer = self.printer
        if self.state == "Printing":
            busy = printer.vsd.active or printer.gcode.lock.locked
            if printer.toolhead.lookahead() <= -READY_TIMEOUT and not busy:
                self.state = "Ready"
                self.ready_since = printer.clock.sim()
        elif self.state == "Ready" and not printer.pause_resume.is_paused:
            if printer.clock.sim() - self.ready_since >= self.timeout:
                self.state = "Idle"
                printer.heaters.extruder.target = 0.0
                printer.toolhead.motor_off()

    def cmd_set_idle_timeout(self, cmd: GCodeCommand) -> None:
        """SET_IDLE_TIMEOUT TIMEOUT=<seconds>."""
        self.timeout = cmd.get_float("TIMEOUT", self.timeout, above=0.0)
        self.printer.gcode.respond_info(f"idle_timeout: Timeout set to {self.timeout:.2f} s")

    def get_status(self) -> dict:
        """The ``idle_timeout`` object."""
        self.update()
        printing_time = 0.0
        if self.state == "Printing":
            printing_time = self.printer.clock.eventtime() - self.printing_since
        return {"state": self.state, "printing_time": printing_time,
                "idle_timeout": self.timeout}


class PauseResume:
    """pause_resume state plus BASE_PAUSE / BASE_RESUME / BASE_CANCEL_PRINT / CLEAR_PAUSE."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.is_paused = False
        g = printer.gcode
        g.register("BASE_PAUSE", self.cmd_pause)
        g.register("BASE_RESUME", self.cmd_resume)
        g.register("BASE_CANCEL_PRINT", self.cmd_cancel)
        g.register("CLEAR_PAUSE", self.cmd_clear_pause)

    async def cmd_pause(self, cmd: GCodeCommand) -> None:
        """Pause the SD print and save the G-code state."""
        gcode = self.printer.gcode
        if self.is_paused:
            gcode.respond_info("Print already paused")
            return
        self.printer.vsd.pause()
        await gcode.run_from_command("SAVE_GCODE_STATE NAME=PAUSE_STATE")
        self.is_paused = True

    async def cmd_resume(self, cmd: GCodeCommand) -> None:
        """Return to the saved position and continue the SD print."""
        gcode = self.printer.gcode
        if not self.is_paused:
            gcode.respond_info("Print is not paused, resume aborted")
            return
        speed = cmd.get_float("VELOCITY", 50.0, above=0.0)
        await gcode.run_from_command(
            f"RESTORE_GCODE_STATE NAME=PAUSE_STATE MOVE=1 MOVE_SPEED={speed:.4f}")
        self.is_paused = False
        self.printer.vsd.resume()

    def cmd_cancel(self, cmd: GCodeCommand) -> None:
        """Klipper's own cancel: print_stats becomes ``cancelled``."""
        self.printer.vsd.cancel()
        self.is_paused = False

    def cmd_clear_pause(self, cmd: GCodeCommand) -> None:
        """Forget the paused state."""
        self.is_paused = False


class MCUStats:
    """The ``mcu`` object: the recorded MCU identity plus ``last_stats``, refreshed each second.

    Klipper's statistics timer rebuilds ``last_stats`` once a second from the MCU's
    load report, the serial queue counters and the clock sync (``freq``); the
    simulated MCU is an atmega2560 at 16 MHz whose load and traffic rise while
    the toolhead moves.
    """

    CLOCK = 16000000

    def __init__(self, printer) -> None:
        self.printer = printer
        self.static = printer.static_status("mcu")
        self.updated: float | None = None
        self.bytes_write = 0
        self.bytes_read = 0
        self.seq = 1
        self.print_time = printer.toolhead.print_time
        self.stats: dict = {}

    def _update(self, now: float) -> None:
        print_time = self.printer.toolhead.print_time
        queued = print_time - self.print_time  # simulated seconds of motion sent since the last report
        self.print_time = print_time
        moving = queued > 0
        tick = int(now)
        self.bytes_write += 34 + tick % 3 + int(queued * 2400)
        self.bytes_read += 95 + tick % 4 + int(queued * 900)
        self.seq += 2 + int(queued * 60)
        self.stats = {
            "mcu_awake": 0.024 if moving else 0.003,
            "mcu_task_avg": round(0.000014 + (0.000006 if moving else 0.0) + tick % 4 * 1e-6, 6),
            "mcu_task_stddev": round(0.000009 + tick % 3 * 1e-6, 6),
            "bytes_write": self.bytes_write,
            "bytes_read": self.bytes_read,
            "bytes_retransmit": 9,
            "bytes_invalid": 0,
            "send_seq": self.seq,
            "receive_seq": self.seq,
            "retransmit_seq": 2,
            "srtt": 0.001,
            "rttvar": 0.0,
            "rto": 0.025,
            "ready_bytes": 0,
            "upcoming_bytes": 0,
            "freq": self.CLOCK - 120 + tick % 9 * 11,
        }

    def get_status(self) -> dict:
        """``mcu_version``, ``mcu_build_versions``, ``mcu_constants`` and ``last_stats``."""
        now = self.printer.clock.eventtime()
        if self.updated is None or now - self.updated >= 1.0:
            self.updated = now
            self._update(now)
        return {**self.static, "last_stats": dict(self.stats)}


def system_stats() -> dict:
    """The ``system_stats`` object from this host."""
    memavail = 0
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    memavail = int(line.split()[1])
                    break
    except OSError:
        pass
    return {"sysload": round(os.getloadavg()[0], 2), "cputime": time.process_time(),
            "memavail": memavail}


class BedMesh:
    """bed_mesh with a flat simulated mesh and session profiles (BED_MESH_PROFILE)."""

    MIN, MAX, COUNT = (24.0, 6.0), (238.0, 210.0), 7

    def __init__(self, printer) -> None:
        self.printer = printer
        self.profile = ""
        self.matrix: list[list[float]] = [[]]
        self.profiles: dict[str, dict] = {}
        g = printer.gcode
        g.register("BED_MESH_CALIBRATE", self.cmd_calibrate)
        g.register("BED_MESH_CLEAR", self.cmd_clear)
        g.register("BED_MESH_OUTPUT", lambda cmd: self.output())
        g.register("BED_MESH_PROFILE", self.cmd_profile)

    def _params(self) -> dict:
        return {"min_x": self.MIN[0], "max_x": self.MAX[0], "min_y": self.MIN[1], "max_y": self.MAX[1],
                "x_count": self.COUNT, "y_count": self.COUNT, "mesh_x_pps": 2, "mesh_y_pps": 2,
                "algo": "bicubic", "tension": 0.2}

    async def cmd_calibrate(self, cmd: GCodeCommand) -> None:
        """Probe 7x7 points (takes simulated time), activate the mesh and keep it as ``default``."""
        self.printer.toolhead.dwell(49 * 0.6)
        await self.printer.toolhead.wait_moves()
        self.profile = "default"
        self.matrix = [[0.0] * self.COUNT for _ in range(self.COUNT)]
        self.profiles = {**self.profiles, "default": {"points": [list(r) for r in self.matrix],
                                                      "mesh_params": self._params()}}
        gcode = self.printer.gcode
        gcode.respond_info("Mesh Bed Leveling Complete")
        gcode.respond_info(
            "Bed Mesh state has been saved to profile [default]\nfor the current session.  "
            "The SAVE_CONFIG command will\nupdate the printer config file and restart the printer.")

    def cmd_profile(self, cmd: GCodeCommand) -> None:
        """BED_MESH_PROFILE LOAD=|SAVE=|REMOVE=<name> (kept for this session)."""
        gcode = self.printer.gcode
        for action in ("LOAD", "SAVE", "REMOVE"):
            name = cmd.get(action, None)
            if name is None:
                continue
            if action == "LOAD":
                if name not in self.profiles:
                    raise GCodeError(f"bed_mesh: Unknown profile [{name}]")
                self.profile = name
                self.matrix = [list(r) for r in self.profiles[name]["points"]]
            elif action == "SAVE":
                if not self.profile:
                    gcode.respond_info(f"Unable to save to profile [{name}], the bed has not been probed")
                    return
                self.profiles = {**self.profiles, name: {"points": [list(r) for r in self.matrix],
                                                         "mesh_params": self._params()}}
                self.profile = name
            else:
                if name not in self.profiles:
                    gcode.respond_info(f"No profile named [{name}] to remove")
                    return
                self.profiles = {k: v for k, v in self.profiles.items() if k != name}
            return
        gcode.respond_info(f"Invalid syntax '{cmd.line}'")

    def cmd_clear(self, cmd: GCodeCommand) -> None:
        """Deactivate the mesh."""
        self.profile = ""
        self.matrix = [[]]

    def output(self) -> None:
        """Report the mesh state."""
        if not self.profile:
            self.printer.gcode.respond_info("Bed has not been probed")
        else:
            self.printer.gcode.respond_info(f"Mesh profile: {self.profile} (flat)")

    def get_status(self) -> dict:
        """The ``bed_mesh`` object."""
        active = bool(self.profile)
        return {
            "profile_name": self.profile,
            "mesh_min": list(self.MIN) if active else [0.0, 0.0],
            "mesh_max": list(self.MAX) if active else [0.0, 0.0],
            "probed_matrix": [list(row) for row in self.matrix],
            "mesh_matrix": [list(row) for row in self.matrix],
            "profiles": {name: {"points": [list(r) for r in p["points"]], "mesh_params": dict(p["mesh_params"])}
                         for name, p in self.profiles.items()},
        }
