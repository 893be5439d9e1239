"""Toolhead and gcode_move: positions, homing, limits, move timing."""

from __future__ import annotations

import math

from .errors import GCodeError
from .gcode import GCodeCommand

LIMITS = ((0.0, 250.0), (-4.0, 210.0), (-2.0, 220.0))
AXIS_MINIMUM = [0.0, -4.0, -2.0, 0]
AXIS_MAXIMUM = [250.0, 210.0, 220.0, 0]
HOME_POSITION = (0.0, -4.0, 0.8)  # X/Y endstops, Z = probe z_offset
HOMING_SPEED = (50.0, 50.0, 13.333)
MAX_Z_VELOCITY = 15.0
MAX_EXTRUDE_ONLY_VELOCITY = 120.0
MAX_EXTRUDE_ONLY_DISTANCE = 500.0
BUFFER_TIME = 0.25  # simulated seconds queued ahead of "now" for a fresh move


def _fmt(pos: list[float]) -> str:
    return f"{pos[0]:.3f} {pos[1]:.3f} {pos[2]:.3f} [{pos[3]:.3f}]"


class Toolhead:
    """Commanded position and a simulated motion queue (print_time)."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.position = [0.0, 0.0, 0.0, 0.0]
        self.homed: set[int] = set()
        self.print_time = 0.25
        self.max_velocity = 300.0
        self.max_accel = 1500.0
        self.minimum_cruise_ratio = 0.5
        self.square_corner_velocity = 5.0
        self.steppers = {"stepper_x": False, "stepper_y": False, "stepper_z": False,
                         "extruder": False}
        self.velocity = 0.0

    def estimated_print_time(self) -> float:
        """Simulated seconds since this printer object started."""
        return self.printer.clock.sim() - self.printer.sim_start

    def lookahead(self) -> float:
        """Simulated seconds of motion still queued."""
        return self.print_time - self.estimated_print_time()

    def _queue(self, duration: float) -> None:
        self.print_time = max(self.print_time, self.estimated_print_time() + BUFFER_TIME)
        self.print_time += duration
        self.printer.note_activity()

    def sync_print_time(self) -> None:
        """A timed command (heater, fan, pin) asks for print time, as Klipper's lookahead callbacks do.

        After idling this restarts the motion clock, which is what switches
        ``idle_timeout`` to ``Printing``.
        """
        self._queue(0.0)

    def dwell(self, seconds: float) -> None:
        """Queue a pause in motion."""
        self._queue(max(0.0, seconds))

    def check_limits(self, new: list[float]) -> None:
        """Raise Klippy's homing/range errors for moved axes."""
        for i in range(3):
            if new[i] == self.position[i]:
                continue
            if i not in self.homed:
                raise GCodeError("Must home axis first: " + _fmt(new))
            lo, hi = LIMITS[i]
            if not lo <= new[i] <= hi:
                raise GCodeError("Move out of range: " + _fmt(new))

    def move(self, new: list[float], speed: float) -> None:
        """Validate and queue a move to ``new`` at ``speed`` mm/s."""
        delta = [n - o for n, o in zip(new, self.position)]
        dist = math.sqrt(delta[0] ** 2 + delta[1] ** 2 + delta[2] ** 2)
        if dist < 1e-9:
            dist = abs(delta[3])
            if dist > MAX_EXTRUDE_ONLY_DISTANCE:
                raise GCodeError(
                    f"Extrude only move too long ({dist:.3f}mm vs {MAX_EXTRUDE_ONLY_DISTANCE:.3f}mm)"
                    "\nSee the 'max_extrude_only_distance' config option for details")
            speed = min(speed, MAX_EXTRUDE_ONLY_VELOCITY)
        else:
            self.check_limits(new)
            if delta[2]:
                speed = min(speed, MAX_Z_VELOCITY * dist / abs(delta[2]))
            speed = min(speed, self.max_velocity)
        self.position = list(new)
        if delta[3]:
            self.steppers["extruder"] = True
            self.printer.note_extrude(delta[3])
        if dist < 1e-9:
            return
        # cruise at ``speed``; add the acceleration ramp only when starting from rest
        duration = dist / speed
        if self.lookahead() <= 0:
            duration += speed / self.max_accel
        self.velocity = speed
        self._queue(duration)

    def home(self, axes: list[int]) -> None:
        """Home the given axes (0-2): move to the endstop, mark homed."""
        duration = 0.0
        for i in axes:
            travel = abs(self.position[i] - HOME_POSITION[i]) + 5.0
            duration += travel / HOMING_SPEED[i]
            self.position[i] = HOME_POSITION[i]
            self.homed.add(i)
            self.steppers["stepper_" + "xyz"[i]] = True
        self._queue(duration)

    def set_position(self, pos: list[float], homed: list[int]) -> None:
        """Force the position and mark axes homed (SET_KINEMATIC_POSITION)."""
        self.position = list(pos)
        self.homed.update(homed)

    def motor_off(self) -> None:
        """Disable steppers; axes become unhomed."""
        self.homed.clear()
        for name in self.steppers:
            self.steppers[name] = False

    async def wait_moves(self) -> None:
        """Wait until the queued motion has (simulated) finished."""
        while self.printer.state == "ready":
            remaining = self.lookahead()
            if remaining <= 0:
                return
            await self.printer.clock.sleep_sim(remaining)

    def homed_axes(self) -> str:
        """``homed_axes`` string, e.g. ``"xyz"``."""
        return "".join("xyz"[i] for i in sorted(self.homed))

    def get_status(self) -> dict:
        """The ``toolhead`` object."""
        return {
            "homed_axes": self.homed_axes(),
            "axis_minimum": list(AXIS_MINIMUM),
            "axis_maximum": list(AXIS_MAXIMUM),
            "print_time": self.print_time,
            "stalls": 0,
            "estimated_print_time": max(0.0, self.estimated_print_time()),
            "extruder": "extruder",
            "position": list(self.position),
            "max_velocity": self.max_velocity,
            "max_accel": self.max_accel,
            "minimum_cruise_ratio": self.minimum_cruise_ratio,
            "square_corner_velocity": self.square_corner_velocity,
            "extra_axes": {"extruder": 3},
        }


class GCodeMove:
    """G-code coordinate state (offsets, factors, modes) on top of the toolhead."""

    def __init__(self, printer, toolhead: Toolhead) -> None:
        self.printer = printer
        self.toolhead = toolhead
        self.absolute_coordinates = True
        self.absolute_extrude = True
        self.base = [0.0, 0.0, 0.0, 0.0]
        self.homing_origin = [0.0, 0.0, 0.0, 0.0]
        self.feed = 1500.0  # mm/min, as reported in ``speed``
        self.speed_factor = 1.0
        self.extrude_factor = 1.0
        self.saved: dict[str, dict] = {}
        g = printer.gcode
        for name in ("G0", "G1"):
            g.register(name, self.cmd_g1)
        for name, handler in (
                ("G28", self.cmd_g28), ("G90", self.cmd_g90), ("G91", self.cmd_g91),
                ("M82", self.cmd_m82), ("M83", self.cmd_m83), ("G92", self.cmd_g92),
                ("M114", self.cmd_m114), ("M220", self.cmd_m220), ("M221", self.cmd_m221),
                ("G4", self.cmd_g4), ("M400", self.cmd_m400), ("M84", self.cmd_m84),
                ("M18", self.cmd_m84), ("M204", self.cmd_m204),
                ("SET_GCODE_OFFSET", self.cmd_set_gcode_offset),
                ("SAVE_GCODE_STATE", self.cmd_save_gcode_state),
                ("RESTORE_GCODE_STATE", self.cmd_restore_gcode_state),
                ("SET_VELOCITY_LIMIT", self.cmd_set_velocity_limit),
                ("SET_KINEMATIC_POSITION", self.cmd_set_kinematic_position)):
            g.register(name, handler)

    def gcode_position(self) -> list[float]:
        """Position in G-code coordinates (minus offsets)."""
        return [p - b for p, b in zip(self.toolhead.position, self.base)]

    def move_to(self, new: list[float], feed: float | None = None) -> None:
        """Queue a move in toolhead coordinates at ``feed`` mm/min (default current)."""
        feed = self.feed if feed is None else feed
        self.toolhead.move(new, feed / 60.0 * self.speed_factor)

    def cmd_g1(self, cmd: GCodeCommand) -> None:
        """Linear move (G0/G1)."""
        new = list(self.toolhead.position)
        try:
            for i, axis in enumerate("XYZ"):
                if axis in cmd.params:
                    value = float(cmd.params[axis])
                    new[i] = value + self.base[i] if self.absolute_coordinates else new[i] + value
            if "E" in cmd.params:
                value = float(cmd.params["E"]) * self.extrude_factor
                if self.absolute_coordinates and self.absolute_extrude:
                    new[3] = value + self.base[3]
                else:
                    new[3] += value
            if "F" in cmd.params:
                feed = float(cmd.params["F"])
                if feed <= 0.0:
                    raise GCodeError(f"Invalid speed in '{cmd.line}'")
                self.feed = feed
        except ValueError:
            raise GCodeError(f"Unable to parse move '{cmd.line}'") from None
        self.move_to(new)

    async def cmd_g28(self, cmd: GCodeCommand) -> None:
        """Home; Z homing runs the config's homing_override sequence."""
        axes = [i for i, a in enumerate("XYZ") if a in cmd.params] or [0, 1, 2]
        th = self.toolhead
        if 2 in axes:
            for i in range(3):
                if i not in th.homed:
                    th.position[i] = 0.0
            th.set_position(th.position, [0, 1, 2])
            self.move_to([th.position[0], th.position[1], 3.0 + self.base[2], th.position[3]], 600.0)
            th.home([0, 1])
            self.feed = 5000.0
            self.move_to([131.0, 108.0, th.position[2], th.position[3]])
            th.home([2])
        else:
            th.home(axes)
        await th.wait_moves()

    def cmd_g90(self, cmd: GCodeCommand) -> None:
        """Absolute coordinates."""
        self.absolute_coordinates = True

    def cmd_g91(self, cmd: GCodeCommand) -> None:
        """Relative coordinates."""
        self.absolute_coordinates = False

    def cmd_m82(self, cmd: GCodeCommand) -> None:
        """Absolute extrusion."""
        self.absolute_extrude = True

    def cmd_m83(self, cmd: GCodeCommand) -> None:
        """Relative extrusion."""
        self.absolute_extrude = False

    def cmd_g92(self, cmd: GCodeCommand) -> None:
        """Set the G-code position."""
        given = False
        for i, axis in enumerate("XYZE"):
            if axis in cmd.params:
                value = cmd.get_float(axis)
                if i == 3:
                    value *= self.extrude_factor
                self.base[i] = self.toolhead.position[i] - value
                given = True
        if not given:
            self.base = list(self.toolhead.position)

    def cmd_m114(self, cmd: GCodeCommand) -> None:
        """Report the G-code position."""
        p = self.gcode_position()
        self.printer.gcode.respond_raw(f"X:{p[0]:.3f} Y:{p[1]:.3f} Z:{p[2]:.3f} E:{p[3]:.3f}")

    def cmd_m220(self, cmd: GCodeCommand) -> None:
        """Speed factor override (percent)."""
        self.speed_factor = cmd.get_float("S", 100.0, above=0.0) / 100.0

    def cmd_m221(self, cmd: GCodeCommand) -> None:
        """Extrude factor override (percent)."""
        new = cmd.get_float("S", 100.0, above=0.0) / 100.0
        last_e = self.toolhead.position[3]
        e_value = (last_e - self.base[3]) / self.extrude_factor
        self.base[3] = last_e - e_value * new
        self.extrude_factor = new

    def cmd_g4(self, cmd: GCodeCommand) -> None:
        """Dwell for P milliseconds (queued, returns at once)."""
        if "S" in cmd.params:
            seconds = cmd.get_float("S", 0.0, minval=0.0)
        else:
            seconds = cmd.get_float("P", 0.0, minval=0.0) / 1000.0
        self.toolhead.dwell(seconds)

    async def cmd_m400(self, cmd: GCodeCommand) -> None:
        """Wait for queued moves to finish."""
        await self.toolhead.wait_moves()

    def cmd_m84(self, cmd: GCodeCommand) -> None:
        """Disable steppers (axes become unhomed)."""
        self.toolhead.motor_off()

    def cmd_m204(self, cmd: GCodeCommand) -> None:
        """Set acceleration."""
        accel = cmd.get_float("S", None, above=0.0)
        if accel is None:
            p = cmd.get_float("P", None, above=0.0)
            t = cmd.get_float("T", None, above=0.0)
            if p is None or t is None:
                self.printer.gcode.respond_info(f"Invalid M204 command \"{cmd.line}\"")
                return
            accel = min(p, t)
        self.toolhead.max_accel = accel

    def cmd_set_velocity_limit(self, cmd: GCodeCommand) -> None:
        """Change velocity/acceleration limits."""
        th = self.toolhead
        th.max_velocity = cmd.get_float("VELOCITY", th.max_velocity, above=0.0)
        th.max_accel = cmd.get_float("ACCEL", th.max_accel, above=0.0)
        th.square_corner_velocity = cmd.get_float(
            "SQUARE_CORNER_VELOCITY", th.square_corner_velocity, minval=0.0)
        th.minimum_cruise_ratio = cmd.get_float(
            "MINIMUM_CRUISE_RATIO", th.minimum_cruise_ratio, minval=0.0, maxval=1.0)
        if not cmd.params:
            self.printer.gcode.respond_info(
                f"max_velocity: {th.max_velocity:.6f}\nmax_accel: {th.max_accel:.6f}\n"
                f"minimum_cruise_ratio: {th.minimum_cruise_ratio:.6f}\n"
                f"square_corner_velocity: {th.square_corner_velocity:.6f}")

    def cmd_set_gcode_offset(self, cmd: GCodeCommand) -> None:
        """Change the homing origin (X/Y/Z/E and *_ADJUST), optionally moving."""
        deltas = [0.0, 0.0, 0.0, 0.0]
        for i, axis in enumerate("XYZE"):
            if axis in cmd.params:
                deltas[i] = cmd.get_float(axis) - self.homing_origin[i]
            elif axis + "_ADJUST" in cmd.params:
                deltas[i] = cmd.get_float(axis + "_ADJUST")
            self.homing_origin[i] += deltas[i]
            self.base[i] += deltas[i]
        if cmd.get_int("MOVE", 0):
            feed = cmd.get_float("MOVE_SPEED", self.feed / 60.0, above=0.0) * 60.0
            new = [p + d for p, d in zip(self.toolhead.position, deltas)]
            self.move_to(new[:3] + [self.toolhead.position[3]], feed)

    def cmd_save_gcode_state(self, cmd: GCodeCommand) -> None:
        """Save the coordinate state under NAME."""
        self.saved[cmd.get("NAME", "default")] = {
            "absolute_coordinates": self.absolute_coordinates,
            "absolute_extrude": self.absolute_extrude,
            "base": list(self.base), "homing_origin": list(self.homing_origin),
            "feed": self.feed, "speed_factor": self.speed_factor,
            "extrude_factor": self.extrude_factor, "position": list(self.toolhead.position),
        }

    def cmd_restore_gcode_state(self, cmd: GCodeCommand) -> None:
        """Restore a saved state; MOVE=1 returns to the saved position."""
        name = cmd.get("NAME", "default")
        state = self.saved.get(name)
        if state is None:
            raise GCodeError(f"Unknown g-code state: {name}")
        self.absolute_coordinates = state["absolute_coordinates"]
        self.absolute_extrude = state["absolute_extrude"]
        self.base = list(state["base"])
        self.homing_origin = list(state["homing_origin"])
        self.speed_factor = state["speed_factor"]
        self.extrude_factor = state["extrude_factor"]
        self.base[3] += self.toolhead.position[3] - state["position"][3]
        if cmd.get_int("MOVE", 0):
            feed = cmd.get_float("MOVE_SPEED", state["feed"] / 60.0, above=0.0) * 60.0
            self.move_to(state["position"][:3] + [self.toolhead.position[3]], feed)
        self.feed = state["feed"]

    def cmd_set_kinematic_position(self, cmd: GCodeCommand) -> None:
        """Force the toolhead position; marks all axes homed."""
        pos = list(self.toolhead.position)
        for i, axis in enumerate("XYZ"):
            pos[i] = cmd.get_float(axis, pos[i])
        self.toolhead.set_position(pos, [0, 1, 2])

    def get_status(self) -> dict:
        """The ``gcode_move`` object."""
        return {
            "speed_factor": self.speed_factor,
            "speed": self.feed,
            "extrude_factor": self.extrude_factor,
            "absolute_coordinates": self.absolute_coordinates,
            "absolute_extrude": self.absolute_extrude,
            "homing_origin": list(self.homing_origin),
            "position": list(self.toolhead.position),
            "gcode_position": self.gcode_position(),
            "axis_map": {"X": 0, "Y": 1, "Z": 2, "E": 3},
        }
