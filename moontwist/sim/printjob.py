"""print_stats and virtual_sdcard: SD printing paced by simulated motion time."""

from __future__ import annotations

import os

from .errors import GCodeError
from .gcode import GCodeCommand

CHUNK = 8192
LINES_PER_BATCH = 200
AHEAD_LIMIT = 2.0  # simulated seconds of motion the print loop keeps queued


class PrintStats:
    """Job state, durations (simulated seconds) and filament use."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.reset()
        printer.gcode.register("SET_PRINT_STATS_INFO", self.cmd_set_print_stats_info)

    def reset(self) -> None:
        """Back to ``standby`` with nothing loaded."""
        self.filename = ""
        self.state = "standby"
        self.message = ""
        self.total_layer: int | None = None
        self.current_layer: int | None = None
        self.filament_used = 0.0
        self.start: float | None = None
        self.end: float | None = None
        self.pause_start: float | None = None
        self.paused_total = 0.0
        self.init_duration = 0.0

    def _now(self) -> float:
        return self.printer.clock.sim()

    def set_file(self, filename: str) -> None:
        """A new file was selected."""
        self.reset()
        self.filename = filename

    def note_start(self) -> None:
        """Printing started or resumed."""
        now = self._now()
        if self.start is None:
            self.start = now
        elif self.pause_start is not None:
            self.paused_total += now - self.pause_start
        self.pause_start = None
        self.state = "printing"
        self.message = ""

    def note_pause(self) -> None:
        """Printing paused."""
        if self.pause_start is None:
            self.pause_start = self._now()
        self.state = "paused"

    def _finish(self, state: str, message: str = "") -> None:
        now = self._now()
        if self.pause_start is not None:
            self.paused_total += now - self.pause_start
            self.pause_start = None
        self.end = now
        self.state = state
        self.message = message

    def note_complete(self) -> None:
        """The file ran to its end."""
        self._finish("complete")

    def note_cancel(self) -> None:
        """The print was cancelled (BASE_CANCEL_PRINT)."""
        self._finish("cancelled")

    def note_error(self, message: str) -> None:
        """The print stopped with an error."""
        self._finish("error", message)

    def note_extrude(self, delta: float, extrude_factor: float) -> None:
        """Count extrusion while printing (not while paused)."""
        if self.state == "printing":
            if self.filament_used < 1e-7 and self.start is not None:
                self.init_duration = self._now() - self.start - self.paused_total
            self.filament_used += delta / extrude_factor

    def cmd_set_print_stats_info(self, cmd: GCodeCommand) -> None:
        """SET_PRINT_STATS_INFO TOTAL_LAYER= CURRENT_LAYER=."""
        total = cmd.get_int("TOTAL_LAYER", None, minval=0)
        current = cmd.get_int("CURRENT_LAYER", None, minval=0)
        if total == 0:
            self.total_layer = self.current_layer = None
        elif total is not None and total != self.total_layer:
            self.total_layer = total
            self.current_layer = 0
        if self.total_layer is not None and current is not None:
            self.current_layer = min(current, self.total_layer)

    def get_status(self) -> dict:
        """The ``print_stats`` object."""
        total = print_duration = 0.0
        if self.start is not None:
            now = self.end if self.end is not None else self._now()
            paused = self.paused_total
            if self.pause_start is not None:
                paused += now - self.pause_start
            total = now - self.start
            if self.filament_used >= 1e-7:
                print_duration = max(0.0, total - paused - self.init_duration)
        return {
            "filename": self.filename,
            "total_duration": total,
            "print_duration": print_duration,
            "filament_used": self.filament_used,
            "state": self.state,
            "message": self.message,
            "info": {"total_layer": self.total_layer, "current_layer": self.current_layer},
        }


class VirtualSDCard:
    """Reads a file from the gcodes folder in chunks and feeds it to G-code."""

    def __init__(self, printer, gcodes_path: str) -> None:
        self.printer = printer
        self.root = gcodes_path
        self.file = None
        self.file_path: str | None = None
        self.file_size = 0
        self.file_position = 0
        self.active = False
        self._generation = 0
        self._buffer = b""
        self._in_line = False
        g = printer.gcode
        g.register("SDCARD_PRINT_FILE", self.cmd_sdcard_print_file)
        g.register("SDCARD_RESET_FILE", self.cmd_sdcard_reset_file)
        g.register("M23", self.cmd_m23)
        g.register("M24", self.cmd_m24)
        g.register("M25", self.cmd_m25)
        g.register("M27", self.cmd_m27)

    def progress(self) -> float:
        """Fraction of the file consumed."""
        return self.file_position / self.file_size if self.file_size else 0.0

    def _resolve(self, name: str) -> str:
        """The file's path relative to the gcodes folder (case-insensitive fallback)."""
        root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(root, name.lstrip("/")))
        if os.path.commonpath([root, real]) != root:
            raise GCodeError("Unable to open file")
        if not os.path.isfile(real):
            folder, base = os.path.split(real)
            try:
                matches = [e for e in os.listdir(folder) if e.lower() == base.lower()]
            except OSError:
                matches = []
            if not matches:
                raise GCodeError("Unable to open file")
            real = os.path.join(folder, matches[0])
        return os.path.relpath(real, root)

    def load(self, name: str) -> None:
        """Open ``name`` (relative to the gcodes folder) and select it."""
        if self.active:
            raise GCodeError("SD busy")
        self.reset_file()
        shown = self._resolve(name)
        path = os.path.join(self.root, shown)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open while printing
        except OSError:
            raise GCodeError("Unable to open file") from None
        self.file = handle
        self.file_path = path
        self.file_size = os.fstat(handle.fileno()).st_size
        self.file_position = 0
        self._buffer = b""
        gcode = self.printer.gcode
        gcode.respond_raw(f"File opened:{shown} Size:{self.file_size}")
        gcode.respond_raw("File selected")
        self.printer.print_stats.set_file(shown)

    def reset_file(self) -> None:
        """Close the file and clear the SD state and print_stats."""
        self._close()
        self.file_path = None
        self.file_size = 0
        self.file_position = 0
        self.printer.print_stats.reset()

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self._buffer = b""

    def resume(self) -> None:
        """Start (or continue) feeding the file to G-code."""
        if self.active or self.file is None:
            return
        self.active = True
        self._generation += 1
        self.printer.spawn(self._work(self._generation))

    def pause(self) -> None:
        """Stop feeding lines; the loop exits before its next line."""
        if self.active:
            self.active = False
            self._generation += 1
            self.printer.print_stats.note_pause()

    def cancel(self) -> None:
        """Stop the print and mark it cancelled (BASE_CANCEL_PRINT)."""
        stats = self.printer.print_stats
        was_running = self.active or stats.state in ("printing", "paused")
        self.active = False
        self._generation += 1
        self._close()
        self.file_path = None
        self.file_size = 0
        self.file_position = 0
        if was_running:
            stats.note_cancel()

    def stop_on_shutdown(self, reason: str) -> None:
        """The printer shut down while printing."""
        if self.active:
            self.active = False
            self._generation += 1
            self.printer.print_stats.note_error(reason)

    def _next_line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            chunk = self.file.read(CHUNK)
            if not chunk:
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    return line
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line + b"\n"

    async def _work(self, generation: int) -> None:
        printer = self.printer
        clock = printer.clock
        toolhead = printer.toolhead
        # Like Klipper's work handler: the state is "printing" before the loop waits for anything.
        if printer.print_stats.state != "printing":
            printer.print_stats.note_start()
        while generation == self._generation:
            ahead = toolhead.lookahead()
            if ahead > AHEAD_LIMIT:
                await clock.sleep(min(0.25, (ahead - AHEAD_LIMIT / 2) / clock.speed))
                continue
            await printer.gcode.lock.acquire()
            try:
                done = await self._run_batch(generation)
            finally:
                printer.gcode.lock.release()
            if done:
                return
            await clock.sleep(0)

    async def _run_batch(self, generation: int) -> bool:
        """Run lines until the queue is full; True when the print loop must end."""
        toolhead = self.printer.toolhead
        stats = self.printer.print_stats
        if generation == self._generation and stats.state != "printing":
            stats.note_start()
        for _ in range(LINES_PER_BATCH):
            if generation != self._generation:
                return True
            if toolhead.lookahead() > AHEAD_LIMIT:
                return False
            raw = self._next_line()
            if raw is None:
                self.active = False
                self._generation += 1
                self.printer.gcode.respond_raw("Done printing file")
                self._close()
                self.printer.print_stats.note_complete()
                return True
            self.file_position += len(raw)
            self._in_line = True
            try:
                await self.printer.gcode.run_line(raw.decode("utf-8", "replace"))
            except GCodeError as exc:
                if generation == self._generation:
                    self.active = False
                    self._generation += 1
                    self.printer.print_stats.note_error(str(exc))
                return True
            finally:
                self._in_line = False
        return False

    def cmd_sdcard_print_file(self, cmd: GCodeCommand) -> None:
        """SDCARD_PRINT_FILE FILENAME=<file>: load and start printing."""
        self.load(cmd.get("FILENAME"))
        self.resume()

    def cmd_sdcard_reset_file(self, cmd: GCodeCommand) -> None:
        """Unload the file and reset print_stats."""
        if self._in_line:
            raise GCodeError("SDCARD_RESET_FILE cannot be run from the sdcard")
        self.pause()
        self.reset_file()

    def cmd_m23(self, cmd: GCodeCommand) -> None:
        """Select a file."""
        self.load(cmd.raw_params().strip())

    def cmd_m24(self, cmd: GCodeCommand) -> None:
        """Start or resume the selected file."""
        self.resume()

    def cmd_m25(self, cmd: GCodeCommand) -> None:
        """Pause the SD print."""
        self.pause()

    def cmd_m27(self, cmd: GCodeCommand) -> None:
        """Report SD progress."""
        if self.file is None:
            self.printer.gcode.respond_raw("Not SD printing.")
        else:
            self.printer.gcode.respond_raw(
                f"SD printing byte {self.file_position}/{self.file_size}")

    def get_status(self) -> dict:
        """The ``virtual_sdcard`` object."""
        return {
            "file_path": self.file_path,
            "progress": self.progress(),
            "is_active": self.active,
            "file_position": self.file_position,
            "file_size": self.file_size,
        }
