"""The recorded printer.cfg's gcode_macro sections, re-expressed in Python."""

from __future__ import annotations

import ast

from .errors import GCodeError
from .gcode import GCodeCommand

MACROS = ("PAUSE", "M600", "RESUME", "LOAD_FILAMENT", "UNLOAD_FILAMENT", "G80", "G81",
          "M300", "PRINT_START", "PRINT_END", "CANCEL_PRINT", "TEST_REMOTE_METHOD", "SET_PSU")


class Macros:
    """Macro commands and their ``gcode_macro <NAME>`` variables."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.variables: dict[str, dict] = {name: {} for name in MACROS}
        self.variables["M600"]["extr_temp"] = 0
        self.variables["SET_PSU"]["value"] = 1
        g = printer.gcode
        for name in MACROS:
            g.register(name, getattr(self, "cmd_" + name.lower()))
        g.register("SET_GCODE_VARIABLE", self.cmd_set_gcode_variable)

    async def _run(self, script: str) -> None:
        await self.printer.gcode.run_from_command(script)

    def cmd_set_gcode_variable(self, cmd: GCodeCommand) -> None:
        """SET_GCODE_VARIABLE MACRO= VARIABLE= VALUE=<python literal>."""
        macro = cmd.get("MACRO")
        variable = cmd.get("VARIABLE")
        if macro not in self.variables:
            raise GCodeError(f"The value '{macro}' is not valid for MACRO")
        if variable not in self.variables[macro]:
            raise GCodeError(f"Unknown gcode_macro variable '{variable}'")
        raw = cmd.get("VALUE")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise GCodeError(f"Unable to parse '{raw}' as a literal") from None
        self.variables[macro][variable] = value

    async def cmd_pause(self, cmd: GCodeCommand) -> None:
        """PAUSE -> M600 unless already paused."""
        if not self.printer.pause_resume.is_paused:
            await self._run("M600")

    async def cmd_m600(self, cmd: GCodeCommand) -> None:
        """BASE_PAUSE, remember the extruder target, lift and park."""
        x = cmd.get("X", "100")
        y = cmd.get("Y", "100")
        z = cmd.get("Z", "100")
        heaters = self.printer.heaters
        await self._run("BASE_PAUSE")
        self.variables["M600"]["extr_temp"] = heaters.extruder.target
        await self._run("G91")
        heaters.update()
        if heaters.extruder.temperature > 180:
            await self._run("G1 E-.8 F2700")
        await self._run(f"G1 Z{z}\nG90\nG1 X{x} Y{y} F3000")

    async def cmd_resume(self, cmd: GCodeCommand) -> None:
        """Reheat to the saved temperature, then BASE_RESUME."""
        if self.printer.pause_resume.is_paused:
            temp = self.variables["M600"]["extr_temp"]
            if temp:
                await self._run(f"M109 S{temp}")
            await self._run("BASE_RESUME")

    async def cmd_cancel_print(self, cmd: GCodeCommand) -> None:
        """The config's cancel: leaves print_stats in ``standby``."""
        await self._run("PAUSE\nSDCARD_RESET_FILE\nPRINT_END\nCLEAR_PAUSE")

    async def cmd_print_start(self, cmd: GCodeCommand) -> None:
        """Heat, home, mesh and draw an intro line."""
        bed = cmd.get("BTMP", "0")
        extruder = cmd.get("ETMP", "0")
        await self._run(
            "M83\nCLEAR_PAUSE\nSET_IDLE_TIMEOUT TIMEOUT=600\nSET_GCODE_OFFSET Z=0\nG90\n"
            f"M104 S170\nM190 S{bed}\nM109 S170\nG80\nM104 S{extruder}\n"
            f"G1 X1 Y-3.0 Z20 F1000.0\nM109 S{extruder}\nG1 Z.4\nG92 E0.0\nG91\n"
            "G1 X60.0 E9.0 F1000.0\nG1 X40.0 E12.5 F1000.0\nG90\nG92 E0.0")
        if cmd.get("MATERIAL", "Unknown") != "PLA":
            await self._run("SET_VELOCITY_LIMIT SQUARE_CORNER_VELOCITY=1")
        height = cmd.get_float("LAYER_HEIGHT", 0.0)
        await self._run("M221 S100" if height < 0.051 else "M221 S95")

    async def cmd_print_end(self, cmd: GCodeCommand) -> None:
        """Retract, lift, park, heaters and motors off."""
        gmove = self.printer.gcode_move
        await self._run("CLEAR_PAUSE\nM400\nBED_MESH_CLEAR\nG92 E0.0\nG91")
        x, y, _, _ = gmove.gcode_position()
        if x > 20 and y > 20:
            await self._run("G1 Z+1.00 X-20.0 Y-20.0 F20000")
        elif x > 20:
            await self._run("G1 Z+1.00 X-20.0 F20000")
        elif y > 20:
            await self._run("G1 Z+1.00 Y-20.0 F20000")
        await self._run("G1 E-8.00 F500\nG90")
        z = gmove.gcode_position()[2]
        if z < 100:
            await self._run("G0 Z100 F1500")
        elif z < 190:
            await self._run("G91\nG0 Z10 F1500\nG90")
        await self._run(
            "G0 X10 Y200 F6000\nSET_GCODE_OFFSET Z=0 MOVE=1\nTURN_OFF_HEATERS\n"
            "SET_VELOCITY_LIMIT VELOCITY=300 SQUARE_CORNER_VELOCITY=5\nM84\nM107\n"
            "M204 S3000\nM221 S100")

    async def cmd_load_filament(self, cmd: GCodeCommand) -> None:
        """Feed 75 mm of filament."""
        await self._run("M117 Loading Filament...\nG92 E0.0\nG91\nG1 E50 F400\nG1 E25 F100\n"
                        "G90\nG92 E0.0\nM400\nM117 Load Complete")

    async def cmd_unload_filament(self, cmd: GCodeCommand) -> None:
        """Retract 80 mm of filament."""
        await self._run("M117 Unloading Filament...\nG92 E0.0\nG91\nG1 E-32 F5200\n"
                        "G1 E-10 F100\nG1 E-38 F1000\nG90\nG92 E0.0\nM400\nM300 S300 P1000\n"
                        "M117 Remove Filament Now!")

    async def cmd_g80(self, cmd: GCodeCommand) -> None:
        """Home, calibrate the mesh, go to the origin."""
        await self._run("G28\nBED_MESH_CALIBRATE\nG1 X0 Y0 F4000")

    def cmd_g81(self, cmd: GCodeCommand) -> None:
        """Mesh output (reports the mesh state)."""
        self.printer.bed_mesh.output()

    async def cmd_m300(self, cmd: GCodeCommand) -> None:
        """Beep."""
        s = cmd.get("S", "1000")
        p = cmd.get("P", "100")
        await self._run(f"SET_PIN PIN=BEEPER_pin VALUE={s}\nG4 P{p}\nSET_PIN PIN=BEEPER_pin VALUE=0")

    def cmd_test_remote_method(self, cmd: GCodeCommand) -> None:
        """Call the remote method ``moonraker_test`` with ``result="test"``."""
        self.printer.call_remote_method("moonraker_test", {"result": "test"})

    async def cmd_set_psu(self, cmd: GCodeCommand) -> None:
        """Store the PSU value."""
        value = cmd.get_int("VALUE", 1)
        await self._run(f"SET_GCODE_VARIABLE MACRO=SET_PSU VARIABLE=value VALUE={value}")

    def get_status(self, name: str) -> dict:
        """A ``gcode_macro <NAME>`` object (its variables)."""
        return dict(self.variables[name])
