"""Runs the ``moontwist`` command; on SIGUSR1 writes the names of the loaded modules to $MODULES_OUT."""

import json
import os
import signal
import sys


def _dump(signum: int, frame: object) -> None:
    names = sorted(name for name, module in sys.modules.items() if module is not None)
    tmp = os.environ["MODULES_OUT"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(names, f)
    os.replace(tmp, os.environ["MODULES_OUT"])


signal.signal(signal.SIGUSR1, _dump)

from moontwist.cli import main  # noqa: E402 - the handler is in place before anything loads

main()
