"""``moontwist-sim``: run the Klippy simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the simulator and run the reactor."""
    parser = argparse.ArgumentParser(
        prog="moontwist-sim", description="Run the Klippy simulator until SIGINT/SIGTERM.")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--gcodes", required=True, help="folder SDCARD_PRINT_FILE reads from")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated-time factor (motion, heating, print duration)")
    parser.add_argument("--startup-delay", type=float, default=0.3,
                        help="seconds spent in 'startup' after (re)start")
    parser.add_argument("--config-dir", help="folder to write printer.cfg into (once; never overwritten)")
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from twisted.internet import reactor

    from .simulator import KlippySimulator

    sim = KlippySimulator(args.socket, args.gcodes, speed=args.speed, reactor=reactor,
                          startup_delay=args.startup_delay, config_dir=args.config_dir)
    failed = []

    def start_failed(failure):
        failed.append(failure)
        logging.error("cannot listen on %s: %s", args.socket, failure.getErrorMessage())
        reactor.stop()

    reactor.callWhenRunning(lambda: sim.start().addErrback(start_failed))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: None if failed else sim.stop())
    reactor.run()
    return 1 if failed else 0
