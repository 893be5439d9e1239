"""Run a host command through Twisted's process API, with a hard timeout."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.python.failure import Failure

from moontwist.api.errors import ServerError

DEFAULT_TIMEOUT = 10.0


class CommandError(ServerError):
    """A host command could not be run, or exited with a failure status."""

    def __init__(self, message: str, status: int = 500, result: CommandResult | None = None) -> None:
        super().__init__(message, status)
        self.result = result


class CommandTimeout(CommandError):
    """A host command did not finish within its time limit and was killed."""


@dataclass(frozen=True)
class CommandResult:
    """What a finished command produced."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


def find_executable(name: str, path_env: str | None = None) -> str | None:
    """Locate ``name`` on ``path_env`` (default: this process's PATH)."""
    return shutil.which(name, path=path_env if path_env is not None else os.environ.get("PATH"))


class _Collector(protocol.ProcessProtocol):
    """Gathers output and fires ``done`` with the exit code once the process has ended."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.done: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted naming)
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        if self.done.called:
            return
        code = getattr(reason.value, "exitCode", None)
        self.done.callback(code if code is not None else -1)


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ok_codes: Sequence[int] = (0,),
    path_env: str | None = None,
    env: Mapping[str, str] | None = None,
    reactor: Any = None,
) -> defer.Deferred[CommandResult]:
    """Spawn ``argv`` without a shell; fire with its result or fail with CommandError.

    The executable is looked up on ``path_env`` (also passed to the child as PATH).
    A command still running after ``timeout`` seconds is killed and fails with
    CommandTimeout; a command exiting with a code outside ``ok_codes`` fails with
    CommandError carrying the result.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    args = tuple(argv)
    exe = find_executable(args[0], path_env)
    if exe is None:
        return defer.fail(CommandError(f"Command '{args[0]}' not found", 503))
    child_env = dict(os.environ if env is None else env)
    if path_env is not None:
        child_env["PATH"] = path_env
    child_env.setdefault("LC_ALL", "C")
    proto = _Collector()
    result: defer.Deferred[CommandResult] = defer.Deferred()
    try:
        transport = reactor.spawnProcess(proto, exe, args, env=child_env)
    except OSError as exc:
        return defer.fail(CommandError(f"Unable to run '{args[0]}': {exc}"))

    def on_timeout() -> None:
        try:
            transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass
        transport.loseConnection()
        if not result.called:
            result.errback(
                CommandTimeout(f"Command '{' '.join(args)}' timed out after {timeout:g} s", 504)
            )

    timer = reactor.callLater(timeout, on_timeout)

    def on_ended(code: int) -> None:
        if timer.active():
            timer.cancel()
        if result.called:
            return
        res = CommandResult(
            args,
            code,
            b"".join(proto.out).decode(errors="replace"),
            b"".join(proto.err).decode(errors="replace"),
        )
        if code in ok_codes:
            result.callback(res)
            return
        detail = (res.stderr or res.stdout).strip().splitlines()
        why = f": {detail[-1]}" if detail else ""
        result.errback(
            CommandError(f"Command '{' '.join(args)}' failed with code {code}{why}", result=res)
        )

    proto.done.addCallback(on_ended)
    return result
