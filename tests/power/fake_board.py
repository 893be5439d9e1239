"""A fake USB relay board (LCUS/CH340 protocol) on the far side of a pseudo-terminal.

The board's "USB port" is a symlink, as ``/dev/serial/by-id/...`` is: unplugging
closes the pty; plugging in again makes a new pty and points the link at it.
The board records every byte it receives; ``A0 <ch> <state> <sum>`` switches
relay ``ch``, and ``FF`` asks for the states, answered as ``CH1:ON\\r\\n``...
"""

from __future__ import annotations

import errno
import os
import tty
from typing import Any

from twisted.internet import reactor


class FakeRelayBoard:
    def __init__(self, link: str, channels: int = 2, answers_queries: bool = False) -> None:
        self.link = link
        self.relays = [False] * channels
        self.answers_queries = answers_queries
        self.received = b""  # everything, in order
        self.buffer = b""
        self.frames: list[bytes] = []
        self.master: int | None = None
        self.slave: int | None = None

    # a reader for the reactor
    def fileno(self) -> int:
        return self.master if self.master is not None else -1

    def logPrefix(self) -> str:  # noqa: N802
        return "FakeRelayBoard"

    def doRead(self) -> None:  # noqa: N802
        try:
            data = os.read(self.master, 1024)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            raise
        self.received += data
        self.buffer += data
        self._parse()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        pass

    def _parse(self) -> None:
        while self.buffer:
            if self.buffer[0] == 0xFF:
                self.buffer = self.buffer[1:]
                if self.answers_queries:
                    text = "".join(f"CH{i + 1}:{'ON' if on else 'OFF'}\r\n" for i, on in enumerate(self.relays))
                    os.write(self.master, text.encode())
                continue
            if self.buffer[0] != 0xA0:
                self.buffer = self.buffer[1:]
                continue
            if len(self.buffer) < 4:
                return
            frame, self.buffer = self.buffer[:4], self.buffer[4:]
            self.frames.append(frame)
            _, channel, state, checksum = frame
            if checksum == (0xA0 + channel + state) & 0xFF and 1 <= channel <= len(self.relays):
                self.relays[channel - 1] = bool(state)

    def plug_in(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        if os.path.lexists(self.link):
            os.unlink(self.link)
        os.symlink(os.ttyname(self.slave), self.link)
        reactor.addReader(self)

    def unplug(self) -> None:
        if self.master is None:
            return
        reactor.removeReader(self)
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = None
        os.unlink(self.link)

    def start(self) -> None:
        self.plug_in()

    def stop(self) -> None:
        self.unplug()
