"""Test clients that talk to a running moontwist over real sockets."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from moontwist.server import Server, ServerOptions
from moontwist.tap import MoontwistService

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Set (to 1): every service a test starts runs as one instance of a farm in this process (tests/farm_mode.py).
FARM_ENV = "MOONTWIST_TEST_FARM"


@dataclass
class Running:
    """A moontwist service started in this process on an ephemeral loopback port."""

    service: MoontwistService
    server: Server
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"

    @inlineCallbacks
    def get(self, path: str, **kwargs: Any) -> Any:
        resp = yield treq.get(self.base + path, **kwargs)
        body = yield resp.content()
        return resp.code, json.loads(body) if body else None

    @inlineCallbacks
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = yield treq.request(method, self.base + path, **kwargs)
        body = yield resp.content()
        return resp.code, json.loads(body) if body else None, resp.headers

    @inlineCallbacks
    def post(self, path: str, **kwargs: Any) -> Any:
        resp = yield treq.post(self.base + path, **kwargs)
        body = yield resp.content()
        return resp.code, json.loads(body) if body else None

    def ws(self, **kwargs: Any) -> Deferred:
        return connect_ws(self.ws_url, **kwargs)


@inlineCallbacks
def start_service(datapath: str, config_text: str | None = None, **options: Any) -> Any:
    """Start a service on 127.0.0.1:0 with ``config_text`` as its config file.

    With ``MOONTWIST_TEST_FARM=1`` it is one instance of a farm, next to a busy neighbour.
    """
    config_file = None
    if config_text is not None:
        config_file = os.path.join(datapath, "config", "moontwist.conf")
        os.makedirs(os.path.dirname(config_file), exist_ok=True)
        with open(config_file, "w") as f:
            f.write(config_text)
    options.setdefault("use_entry_points", False)
    options.setdefault("simulate", False)
    if os.environ.get(FARM_ENV, "") not in ("", "0"):
        from farm_mode import start_instance  # one instance of a farm, next to a busy neighbour

        running = yield Deferred.fromCoroutine(start_instance(datapath, config_file, options))
        return running
    server = Server(ServerOptions(datapath=datapath, config_file=config_file, host="127.0.0.1", port=0, **options))
    service = MoontwistService(server)
    service.startService()
    yield service._started
    return Running(service, server, service.listening_port.getHost().port)


class WSClient(WebSocketClientProtocol):
    """JSON-RPC over a websocket: ``call`` returns the reply; notifications are queued."""

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)
        self.pending: dict[Any, Deferred] = {}
        self.notifications: DeferredQueue = DeferredQueue()
        self.raw: DeferredQueue = DeferredQueue()
        self.opened: Deferred = Deferred()
        self.closed: Deferred = Deferred()

    def onOpen(self) -> None:  # noqa: N802
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        msg = json.loads(payload)
        if isinstance(msg, dict) and "id" in msg and msg["id"] in self.pending:
            self.pending.pop(msg["id"]).callback(msg)
        elif isinstance(msg, dict) and "method" in msg and "id" not in msg:
            self.notifications.put(msg)
        else:
            self.raw.put(msg)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"websocket refused: {code} {reason}"))
        for d in self.pending.values():
            d.errback(ConnectionError(f"closed {code}"))
        self.pending.clear()
        if not self.closed.called:
            self.closed.callback((code, reason))

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Deferred:
        """The whole reply message (result or error)."""
        req_id = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params is not None:
            msg["params"] = params
        d: Deferred = Deferred()
        self.pending[req_id] = d
        self.sendMessage(json.dumps(msg).encode())
        return d

    @inlineCallbacks
    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The result; raises ``RPCError`` on an error reply."""
        reply = yield self.rpc(method, params)
        if "error" in reply:
            raise RPCError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    @inlineCallbacks
    def next_notification(self, method: str, timeout: float = 5.0) -> Any:
        """Wait for the next notification named ``method``, skipping others."""
        deadline = reactor.seconds() + timeout
        while True:
            remaining = deadline - reactor.seconds()
            if remaining <= 0:
                raise TimeoutError(f"no {method} notification within {timeout}s")
            d = self.notifications.get()
            timer = reactor.callLater(remaining, d.cancel)
            try:
                msg = yield d
            except Exception:
                raise TimeoutError(f"no {method} notification within {timeout}s") from None
            finally:
                if timer.active():
                    timer.cancel()
            if msg["method"] == method:
                return msg


class RPCError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@inlineCallbacks
def connect_ws(
    url: str, headers: dict[str, str] | None = None, origin: str | None = None, protocol: type[WSClient] | None = None
) -> Any:
    factory = WebSocketClientFactory(url, headers=headers or {}, origin=origin)
    factory.protocol = protocol or WSClient
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    host, port = url.split("//")[1].split("/")[0].split(":")
    proto = factory.buildProtocol(None)
    yield connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), proto)
    yield proto.opened
    return proto


class ETXClient(Protocol):
    """JSON-RPC over a 0x03-framed unix socket."""

    def __init__(self) -> None:
        self.buffer = b""
        self.messages: DeferredQueue = DeferredQueue()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.buffer += data
        *msgs, self.buffer = self.buffer.split(b"\x03")
        for m in msgs:
            self.messages.put(json.loads(m))

    def send(self, obj: Any) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\x03")


def connect_unix(path: str) -> Deferred:
    return connectProtocol(UNIXClientEndpoint(reactor, path), ETXClient())


def sleep(seconds: float) -> Deferred:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


def daemon_env(**extra: str) -> dict[str, str]:
    """Environment for a moontwist subprocess that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """``twistd -n moontwist`` as a real child process."""

    def __init__(
        self, datapath: str, *args: str, env: dict[str, str] | None = None, port: int | None = None, cwd: str | None = None
    ) -> None:
        self.datapath = datapath
        self.port = port or free_port()
        self.argv = [PYTHON, "-m", "moontwist.cli", "--datapath", datapath, "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = env or daemon_env()
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 20.0) -> Daemon:
        # A file, not a pipe: a pipe nobody drains fills up and blocks the daemon's logging.
        self._out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=self._out, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.base + "/server/info", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"daemon did not answer within {timeout}s")

    def output(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            return ""
        self._out.seek(0)
        return self._out.read().decode(errors="replace")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def get_json(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


async def wait_for(predicate: Any, timeout: float = 5.0, step: float = 0.02) -> None:
    """Poll ``predicate`` on the reactor until it is true."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise TimeoutError("condition not met")
        await sleep(step)
        waited += step


def wait_for_json(daemon: Daemon, path: str, predicate: Any, timeout: float = 20.0) -> Any:
    """Poll a daemon's ``path`` (blocking) until ``predicate(body)`` holds."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        code, body = daemon.get_json(path)
        if code == 200 and predicate(body):
            return body
        time.sleep(0.1)
    raise TimeoutError(f"{path} never satisfied the condition: {body}")
