"""G-code parsing, command registry, script execution and output fan-out."""

from __future__ import annotations

import inspect
import re
import shlex
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from .errors import GCodeError

_WORDS = re.compile(r"([A-Z_]+)([^A-Z_]*)")
_TRADITIONAL = re.compile(r"^[A-Z]\d")
_MISSING = object()

# Commands Klippy accepts while not ready (registered "when_not_ready").
BASE_COMMANDS = ("M110", "M112", "M115", "RESTART", "FIRMWARE_RESTART", "ECHO", "STATUS", "HELP")


class GCodeCommand:
    """One parsed G-code line."""

    def __init__(self, command: str, line: str, params: dict[str, str]) -> None:
        self.command = command
        self.line = line
        self.params = params

    def raw_params(self) -> str:
        """Text after the command word (used by M117, M118, ECHO ...)."""
        upper = self.line.upper()
        start = upper.find(self.command)
        start = 0 if start < 0 else start + len(self.command)
        rest = self.line[start:]
        return rest[1:] if rest[:1].isspace() else rest

    def get(self, name: str, default: Any = _MISSING, parser: Callable = str,
            minval: float | None = None, maxval: float | None = None,
            above: float | None = None) -> Any:
        """A parameter parsed with ``parser``; errors worded like Klippy's."""
        value = self.params.get(name)
        if value is None:
            if default is _MISSING:
                raise GCodeError(f"Error on '{self.line}': missing {name}")
            return default
        try:
            value = parser(value)
        except (ValueError, TypeError):
            raise GCodeError(f"Error on '{self.line}': unable to parse {value}") from None
        if minval is not None and value < minval:
            raise GCodeError(f"Error on '{self.line}': {name} must have minimum of {minval}")
        if maxval is not None and value > maxval:
            raise GCodeError(f"Error on '{self.line}': {name} must have maximum of {maxval}")
        if above is not None and value <= above:
            raise GCodeError(f"Error on '{self.line}': {name} must be above {above}")
        return value

    def get_float(self, name: str, default: Any = _MISSING, **limits: float) -> Any:
        """A float parameter."""
        return self.get(name, default, float, **limits)

    def get_int(self, name: str, default: Any = _MISSING, **limits: float) -> Any:
        """An integer parameter."""
        return self.get(name, default, int, **limits)


def parse_line(raw: str) -> GCodeCommand:
    """Split one line into command word and parameters (comments removed)."""
    line = raw.strip()
    code = line.split(";", 1)[0]
    words = _WORDS.findall(code.upper())
    if len(words) > 1 and words[0][0] == "N" and words[0][1].strip().isdigit():
        words = words[1:]
    if not words:
        return GCodeCommand("", line, {})
    first, value = words[0]
    command = (first + value).split()[0] if (first + value).strip() else ""
    params = {w: v.strip() for w, v in words[1:]}
    return GCodeCommand(command, line, params)


def _extended_params(cmd: GCodeCommand) -> None:
    lexer = shlex.shlex(cmd.raw_params().split(";", 1)[0], posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#;"
    try:
        pairs = [arg.split("=", 1) for arg in lexer]
        cmd.params = {k.upper(): v for k, v in pairs}
    except ValueError:
        raise GCodeError(f"Malformed command '{cmd.line}'") from None


Handler = Callable[[GCodeCommand], Any]


class Mutex:
    """FIFO lock; a release wakes the next waiter from the reactor loop.

    Waking later (not inside ``release``) lets the releasing request send its reply
    before the next command runs, so replies keep the order of the requests.
    """

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.locked = False
        self._waiters: deque[Deferred] = deque()

    def acquire(self) -> Deferred:
        """Fires once the lock is held."""
        d = Deferred()
        if self.locked:
            self._waiters.append(d)
        else:
            self.locked = True
            d.callback(None)
        return d

    def release(self) -> None:
        """Hand the lock to the next waiter (or free it)."""
        if self._waiters:
            self.reactor.callLater(0, self._waiters.popleft().callback, None)
        else:
            self.locked = False


class GCodeDispatch:
    """Command table plus the G-code mutex, like Klippy's ``gcode`` object."""

    def __init__(self, printer) -> None:
        self.printer = printer
        self.lock = Mutex(printer.clock.reactor)
        self.handlers: dict[str, Handler] = {}
        self.base: set[str] = set()
        self.outputs: list[Callable[[str], None]] = []

    def register(self, command: str, handler: Handler, when_not_ready: bool = False) -> None:
        """Add a command handler (may return a Deferred or coroutine)."""
        self.handlers[command] = handler
        if when_not_ready:
            self.base.add(command)

    # output
    def respond_raw(self, msg: str) -> None:
        """Send one output line to every output subscriber."""
        for cb in list(self.outputs):
            cb(msg)

    def respond_info(self, msg: str) -> None:
        """Send ``// ``-prefixed informational output."""
        lines = [part.strip() for part in msg.strip().split("\n")]
        self.respond_raw("// " + "\n// ".join(lines))

    def respond_error(self, msg: str) -> None:
        """Send error output: the full text as info if multi-line, then ``!! first line``."""
        lines = msg.strip().split("\n")
        if len(lines) > 1:
            self.respond_info("\n".join(lines))
        self.respond_raw("!! " + lines[0].strip())

    # execution
    def run_script(self, script: str) -> Deferred:
        """Run a script holding the G-code mutex (API ``gcode/script``)."""
        async def locked():
            await self.lock.acquire()
            try:
                await self.run_from_command(script)
            finally:
                self.lock.release()
        return Deferred.fromCoroutine(locked())

    async def run_from_command(self, script: str) -> None:
        """Run a script from inside a running command (mutex already held)."""
        for raw in script.split("\n"):
            await self.run_line(raw)

    async def run_line(self, raw: str) -> None:
        """Run one line; a failing command reports its error and raises."""
        cmd = parse_line(raw)
        try:
            await self._dispatch(cmd)
        except GCodeError as exc:
            self.respond_error(str(exc))
            raise

    async def _dispatch(self, cmd: GCodeCommand) -> None:
        ready = self.printer.state == "ready"
        handler = self.handlers.get(cmd.command)
        if handler is not None and (ready or cmd.command in self.base):
            if not _TRADITIONAL.match(cmd.command):
                _extended_params(cmd)
            result = handler(cmd)
            if inspect.isawaitable(result):
                await result
            return
        if not cmd.command:
            return
        if cmd.command in ("M105", "M21"):
            return
        if not ready:
            raise GCodeError(self.printer.state_message)
        self.respond_info(f'Unknown command:"{cmd.command}"')

    def status_commands(self) -> dict[str, dict[str, str]]:
        """The ``gcode`` object's ``commands`` field for the current state."""
        table = self.printer.static_status("gcode")["commands"]
        if self.printer.state == "ready":
            return table
        return {k: v for k, v in table.items() if k in self.base}
