"""Run a child process through Twisted's process API, line by line, with time limits.

Every command the update manager runs (git, pip, apt-get) goes through :func:`run`:
output is handed to a callback line by line as it arrives (so it can be streamed into
``notify_update_response``), a process that prints nothing for ``inactivity`` seconds
or runs longer than ``timeout`` seconds is killed, and a failed attempt may be retried.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from moontwist.api.errors import ServerError

__all__ = ["ProcessError", "ProcessResult", "run"]

LineCallback = Callable[[str], None]


@dataclass(frozen=True)
class ProcessResult:
    """What a finished process printed and how it ended."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together (stderr last)."""
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)


class ProcessError(ServerError):
    """A process could not be started, failed, or was killed for running too long."""

    def __init__(self, message: str, result: ProcessResult | None = None, timed_out: bool = False) -> None:
        super().__init__(message, 500)
        self.result = result
        self.timed_out = timed_out

    @property
    def exit_code(self) -> int | None:
        return None if self.result is None else self.result.exit_code


class _LineProtocol(protocol.ProcessProtocol):
    def __init__(self, on_line: LineCallback | None, touch: Callable[[], None]) -> None:
        self.on_line = on_line
        self.touch = touch
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.partial = {1: b"", 2: b""}
        self.ended: defer.Deferred[int] = defer.Deferred()

    def _received(self, fd: int, data: bytes) -> None:
        (self.out if fd == 1 else self.err).append(data)
        self.touch()
        if self.on_line is None:
            return
        # git prints progress with carriage returns: each update counts as a line
        chunk = (self.partial[fd] + data).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self.partial[fd] = chunk.split(b"\n")
        for line in lines:
            self._emit(line)

    def _emit(self, line: bytes) -> None:
        text = line.decode(errors="replace").strip()
        if text and self.on_line is not None:
            self.on_line(text)

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted naming)
        self._received(1, data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self._received(2, data)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        for fd in (1, 2):
            if self.partial[fd]:
                self._emit(self.partial[fd])
                self.partial[fd] = b""
        code = getattr(reason.value, "exitCode", None)
        if not self.ended.called:
            self.ended.callback(code if code is not None else -1)


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    child = dict(os.environ)
    child.update(env or {})
    child.setdefault("LC_ALL", "C")
    child["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody will type
    return child


async def _run_once(
    argv: tuple[str, ...],
    reactor: Any,
    cwd: str | None,
    env: dict[str, str],
    timeout: float,
    inactivity: float | None,
    on_line: LineCallback | None,
) -> ProcessResult:
    exe = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env.get("PATH"))
    if exe is None:
        raise ProcessError(f"Command '{argv[0]}' not found")
    spawn_argv = argv
    # A command that may stall (fetch, pip) runs in its own session so that killing it
    # also kills the helpers it started (git-remote-http keeps the output pipes open).
    setsid = shutil.which("setsid") if inactivity is not None else None
    if setsid is not None:
        exe, spawn_argv = setsid, ("setsid", exe, *argv[1:])
    last_output = [reactor.seconds()]
    proto = _LineProtocol(on_line, lambda: last_output.__setitem__(0, reactor.seconds()))
    try:
        transport = reactor.spawnProcess(proto, exe, spawn_argv, env=env, path=cwd)
    except OSError as exc:
        raise ProcessError(f"Unable to run '{argv[0]}': {exc}") from None
    started = reactor.seconds()
    why: list[str] = []

    def kill(reason: str) -> None:
        why.append(reason)
        try:
            if setsid is not None and transport.pid:
                os.killpg(transport.pid, signal.SIGKILL)
            else:
                transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, ProcessLookupError, PermissionError):
            pass
        transport.loseConnection()

    def watchdog() -> None:
        now = reactor.seconds()
        if now - started >= timeout:
            kill(f"timed out after {timeout:g} s")
        elif inactivity is not None and now - last_output[0] >= inactivity:
            kill(f"printed nothing for {inactivity:g} s")
        else:
            timer[0] = reactor.callLater(0.25 if inactivity is None else min(0.25, inactivity / 4), watchdog)

    timer = [reactor.callLater(0.05, watchdog)]
    try:
        code = await proto.ended
    finally:
        if timer[0].active():
            timer[0].cancel()
    result = ProcessResult(argv, code, b"".join(proto.out).decode(errors="replace"), b"".join(proto.err).decode(errors="replace"))
    command = " ".join(argv)
    if why:
        raise ProcessError(f"Command '{command}' {why[0]}", result, timed_out=True)
    if code != 0:
        detail = result.output.splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise ProcessError(f"Command '{command}' failed with code {code}{tail}", result)
    return result


async def run(
    argv: Sequence[str],
    *,
    reactor: Any,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    inactivity: float | None = None,
    on_line: LineCallback | None = None,
    attempts: int = 1,
    retry_delay: float = 0.5,
    on_retry: Callable[[ProcessError], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` (no shell) and return its result, or raise :class:`ProcessError`.

    ``on_line`` receives each non-empty output line (stdout and stderr) as it
    arrives.  A failed or killed attempt is retried up to ``attempts`` times in all,
    ``retry_delay`` seconds apart; ``on_retry`` hears about each failure retried.
    """
    args = tuple(argv)
    child_env = _child_env(env)
    # Never the server's own working directory: a Python started there would import from it
    # (``python -m pip`` in a source checkout sees that checkout's package metadata).
    cwd = cwd or "/"
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return await _run_once(args, reactor, cwd, child_env, timeout, inactivity, on_line)
        except ProcessError as exc:
            if attempt >= attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            await deferLater(reactor, retry_delay, lambda: None)
    raise AssertionError("unreachable")
