"""Simulated printers for ``--simulate-farm``: one process each, forked from one launcher.

The launcher imports the simulator once and forks a child per printer, so fifty
simulators start in well under a second and none of them runs inside the
server process (whose memory is what the farm is measured by).  Each child
installs its own reactor after the fork.

Run as ``python -m moontwist.farm.simulators --speed S DATAPATH ...``: each
printer listens on ``DATAPATH/comms/klippy.sock``, prints from
``DATAPATH/gcodes`` and writes its ``printer.cfg`` into ``DATAPATH/config``
(once), as ``moontwist --simulate`` does. SIGTERM to the launcher stops every
child.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

__all__ = ["main"]


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent process dies (no simulator outlives its farm)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_one(datapath: str, speed: float) -> None:
    from twisted.internet import reactor

    from moontwist.sim.simulator import KlippySimulator

    socket_path = os.path.join(datapath, "comms", "klippy.sock")
    sim = KlippySimulator(socket_path, os.path.join(datapath, "gcodes"), speed=speed, reactor=reactor,
                          config_dir=os.path.join(datapath, "config"))

    def failed(failure: object) -> None:
        print(f"simulator {socket_path}: {failure}", file=sys.stderr)
        stop_once()

    stopping = False

    def stop_once() -> None:
        # SIGTERM can come twice: forwarded by the launcher and sent to the whole
        # process group (timeout(1), systemd's control-group kill).
        nonlocal stopping
        if not stopping:
            stopping = True
            reactor.stop()

    def on_signal(signum: int, frame: object) -> None:
        reactor.callFromThread(stop_once)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.callWhenRunning(lambda: sim.start().addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", sim.stop)
    reactor.run(installSignalHandlers=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moontwist.farm.simulators", description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("printers", nargs="+", metavar="DATAPATH")
    args = parser.parse_args(argv)
    _die_with_parent()
    import moontwist.sim.simulator  # noqa: F401 - imported once, before forking

    children: list[int] = []
    for datapath in args.printers:
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            try:
                _run_one(datapath, args.speed)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    for pid in children:
        while True:
            try:
                _, code = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        status = status or (1 if code else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
