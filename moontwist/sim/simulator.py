"""KlippySimulator: the listening socket, printer lifecycle, restarts and fault injection."""

from __future__ import annotations

import contextlib
import os
import socket
import time

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import UNIXServerEndpoint

from ..jsonutil import dumpb
from .clock import SimClock
from .files import write_printer_cfg
from .printer import Printer
from .protocol import KlippyConnection, KlippyFactory
from .status import StatusHub
from .webhooks import Webhooks

STATES = ("startup", "ready", "shutdown", "error")


class KlippySimulator:
    """A simulated Klippy host listening on ``socket_path``.

    ``speed`` scales simulated time (motion, heating, print durations); protocol
    timing (the 250 ms tick) stays real.  ``startup_delay`` is how long the printer
    stays in ``startup`` after start/restart; ``restart_delay`` how long the socket
    refuses connections during a restart (default ``1.0 / speed``, clamped to
    0.05 - 1.0 s).  ``start_state`` other than ``ready`` keeps the printer in that
    state (with ``start_message``) until :meth:`set_state` changes it.
    """

    def __init__(self, socket_path: str, gcodes_path: str, *, speed: float = 1.0,
                 reactor=None, startup_delay: float = 0.3,
                 restart_delay: float | None = None, start_state: str = "ready",
                 start_message: str | None = None, log_path: str | None = None,
                 config_dir: str | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        if start_state not in STATES:
            raise ValueError(f"start_state must be one of {STATES}")
        self.socket_path = socket_path
        self.gcodes_path = gcodes_path
        self.reactor = reactor
        self.clock = SimClock(reactor, speed)
        self.startup_delay = startup_delay
        self.restart_delay = (min(1.0, max(0.05, 1.0 / speed))
                              if restart_delay is None else restart_delay)
        self.start_state = start_state
        self.start_message = start_message
        self.log_path = log_path
        self.config_dir = config_dir
        self.config_file: str | None = None  # printer.cfg in config_dir, once started
        self.connections: list[KlippyConnection] = []
        self.silenced_methods: set[str] = set()
        self.restart_count = 0
        self.hub = StatusHub(reactor, self.clock, lambda: self.printer)
        self.webhooks = Webhooks(self)
        self.printer = self._new_printer()
        self._port = None
        self._refuser: socket.socket | None = None
        self._ready_call = None
        self._restart_call = None
        self._restarting: Deferred | None = None
        self._stopped = False

    # ---- lifecycle
    @property
    def state(self) -> str:
        """The printer state: startup, ready, shutdown or error."""
        return self.printer.state

    def start(self) -> Deferred:
        """Bind the socket; fires once listening (the printer then boots).

        With a ``config_dir``, the configuration the printer reports is written
        there as printer.cfg first, unless that file exists.
        """
        self._stopped = False
        if self.config_dir is not None and self.config_file is None:
            self.config_file = write_printer_cfg(self.config_dir, self.printer.static_status("configfile")["config"])
        d = self._listen()
        d.addCallback(lambda _: self._boot())
        return d

    def stop(self) -> Deferred:
        """Close every connection and the socket, remove the socket file."""
        self._stopped = True
        for call in (self._ready_call, self._restart_call):
            if call is not None and call.active():
                call.cancel()
        self.printer.close()
        self.hub.clear()
        waits = [self._lose_all()]
        waits.append(self._unlisten())
        self._close_refuser()

        def cleanup(_):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        return DeferredList(waits).addCallback(cleanup)

    def _new_printer(self) -> Printer:
        printer = Printer(self.clock, self.gcodes_path, self)
        printer.gcode.outputs.append(self._broadcast_output)
        self._log(f"Start printer at {time.asctime()} (simulated by moontwist, gcodes in {self.gcodes_path})")
        printer.gcode.outputs.append(self._log)
        return printer

    def _log(self, text: str) -> None:
        """Append to the simulated klippy.log (what a client downloads as klippy.log)."""
        if self.log_path is None:
            return
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(text.rstrip("\n") + "\n")
        except OSError:
            self.log_path = None

    def _listen(self) -> Deferred:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        endpoint = UNIXServerEndpoint(self.reactor, self.socket_path)
        d = endpoint.listen(KlippyFactory(self))

        def listening(port):
            self._port = port
        return d.addCallback(listening)

    def _unlisten(self) -> Deferred:
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return port.stopListening() or succeed(None)

    def _boot(self) -> None:
        if self.start_state != "ready":
            self.printer.set_state(self.start_state, self.start_message)
            return
        self._ready_call = self.reactor.callLater(self.startup_delay, self.printer.set_ready)

    # ---- connections
    def connection_made(self, conn: KlippyConnection) -> None:
        """A client connected."""
        self.connections.append(conn)

    def connection_lost(self, conn: KlippyConnection) -> None:
        """A client went away: forget its subscriptions and remote methods."""
        if conn in self.connections:
            self.connections.remove(conn)
        self.hub.remove(conn)
        self.webhooks.connection_lost(conn)

    def handle_request(self, conn: KlippyConnection, msg: object) -> None:
        """A decoded message arrived."""
        self.webhooks.handle(conn, msg)

    def _broadcast_output(self, text: str) -> None:
        for conn in list(self.connections):
            if conn.output_template is not None:
                conn.send({**conn.output_template, "params": {"response": text}})

    def _lose_all(self) -> Deferred:
        waits = []
        for conn in list(self.connections):
            if conn.transport is not None:
                waits.append(conn.lost)
                conn.transport.loseConnection()
        return DeferredList(waits)

    # ---- printer hooks
    def call_remote_method(self, method: str, params: dict) -> None:
        """Forward ``action_call_remote_method`` to registered connections."""
        self.webhooks.call_remote_method(method, params)

    def request_restart(self) -> None:
        """RESTART/FIRMWARE_RESTART: restart right after the current request's reply."""
        if self._restart_call is None or not self._restart_call.active():
            self._restart_call = self.reactor.callLater(0.01, self.restart)

    # ---- restart
    def restart(self) -> Deferred:
        """Disconnect everybody, refuse connections briefly, then boot a fresh printer.

        Fires once the socket accepts connections again (printer in ``startup``).
        """
        if self._restarting is not None:
            d = Deferred()
            self._restarting.addBoth(lambda r: (d.callback(None), r)[1])
            return d
        self._restarting = done = Deferred()
        self.restart_count += 1
        if self._ready_call is not None and self._ready_call.active():
            self._ready_call.cancel()
        self.printer.gcode.respond_info("Klipper state: Disconnect")
        self.printer.close()
        self.hub.clear()
        self.webhooks.remote_methods.clear()
        lost = self._lose_all()
        unlisten = self._unlisten()

        def refuse(_):
            if self._stopped:
                return None
            self._open_refuser()
            return self.clock.sleep(self.restart_delay)

        def relisten(_):
            self._close_refuser()
            if self._stopped:
                return None
            self.printer = self._new_printer()
            return self._listen().addCallback(lambda _: self._boot())

        def finished(result):
            self._restarting = None
            done.callback(None)
            return result

        d = DeferredList([lost, unlisten]).addCallback(refuse).addCallback(relisten)
        d.addBoth(finished)
        return done

    def _open_refuser(self) -> None:
        """Keep the socket file bound but not listening: connects get ECONNREFUSED."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.socket_path)
        except OSError:
            sock.close()
            return
        self._refuser = sock

    def _close_refuser(self) -> None:
        if self._refuser is not None:
            self._refuser.close()
            self._refuser = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    # ---- fault injection
    def never_answer(self, *methods: str) -> None:
        """Requests for these methods are swallowed without a reply."""
        self.silenced_methods.update(methods)

    def answer_again(self, *methods: str) -> None:
        """Undo :meth:`never_answer` for ``methods`` (all when none given)."""
        if methods:
            self.silenced_methods.difference_update(methods)
        else:
            self.silenced_methods.clear()

    def drop_connections(self) -> Deferred:
        """Close every client connection now (the socket keeps listening)."""
        return self._lose_all()

    def send_malformed(self, payload: bytes = b"{this is not json") -> None:
        """Send a non-JSON message (terminated by 0x03) to every client."""
        for conn in list(self.connections):
            conn.send_raw(payload)

    def send_oversized(self, size: int = 16 * 1024 * 1024) -> None:
        """Send one valid JSON message of about ``size`` bytes to every client."""
        payload = dumpb({"method": "oversized", "params": {"pad": "x" * size}})
        for conn in list(self.connections):
            conn.send_raw(payload)

    def set_state(self, state: str, message: str | None = None) -> None:
        """Switch the printer to startup, ready, shutdown or error (with ``message``)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        if self._ready_call is not None and self._ready_call.active():
            self._ready_call.cancel()
        if state == "ready" and self.printer.state == "startup" and message is None:
            self.printer.set_ready()
        else:
            self.printer.set_state(state, message)

    def restart_repeatedly(self, times: int, interval: float = 0.0) -> Deferred:
        """Restart ``times`` times, waiting ``interval`` seconds after each comeback."""
        async def loop() -> None:
            for _ in range(times):
                await self.restart()
                if interval:
                    await self.clock.sleep(interval)
        return Deferred.fromCoroutine(loop())


class SimulatorService(Service):
    """Runs a :class:`KlippySimulator` inside a Twisted application.

    ``listening`` is the Deferred of the last start (MultiService ignores the
    return value of ``startService``).
    """

    def __init__(self, simulator: KlippySimulator) -> None:
        self.simulator = simulator
        self.listening: Deferred | None = None

    def startService(self) -> Deferred:
        super().startService()
        self.listening = self.simulator.start()
        return self.listening

    def stopService(self) -> Deferred:
        super().stopService()
        return self.simulator.stop()
