"""A real Mosquitto broker on a free loopback port, and an independent MQTT peer for the tests.

The broker is the Debian package ``mosquitto`` (``tests/peers.sh``, run by tox, installs it); a
missing broker fails the test with that message instead of skipping it.
The peer is paho-mqtt with its own network thread, so what it sees does not
depend on moontwist's reactor-driven client.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any

import paho.mqtt.client as paho
import pytest
import pytest_twisted
from paho.mqtt.enums import CallbackAPIVersion
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue

from mtclient import sleep

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
MISSING = "mosquitto is not installed: apt-get install -y mosquitto (tests/peers.sh, run by tox, installs it)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """One broker process; ``restart`` keeps its port."""

    def __init__(self, folder: str, users: dict[str, str] | None = None, tls: tuple[str, str] | None = None) -> None:
        if MOSQUITTO is None:
            pytest.fail(MISSING)
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(folder, "mosquitto.log")
        lines = [
            "user root",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            f"listener {self.port} 127.0.0.1",
        ]
        if users:
            passwd = os.path.join(folder, "passwd")
            for i, (user, password) in enumerate(users.items()):
                args = [MOSQUITTO_PASSWD, "-b"] + (["-c"] if i == 0 else []) + [passwd, user, password]
                subprocess.run(args, check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            cert, key = tls
            lines += [f"certfile {cert}", f"keyfile {key}"]
        self.config = os.path.join(folder, "mosquitto.conf")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err} {self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()}")
            await sleep(0.02)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
            await sleep(0.02)
        if proc.stderr:
            proc.stderr.close()

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        if down_for:
            await sleep(down_for)
        await self.start()

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()[-3000:]
        except OSError:
            return ""


class Peer:
    """An MQTT client with paho's own thread: records every message, publishes, calls the API."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None, tls_ca: str | None = None) -> None:
        self.port = port
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=tls_ca)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._queues: dict[str, DeferredQueue] = {}
        self._connected: Deferred = Deferred()
        self._acks: dict[int, Deferred] = {}
        self._ids = itertools.count(1)
        self.client.on_connect = lambda c, u, f, rc, p: reactor.callFromThread(self._on_connect, rc)
        self.client.on_message = lambda c, u, m: reactor.callFromThread(self._on_message, m.topic, m.payload, bool(m.retain))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: reactor.callFromThread(self._ack, mid)
        self.client.on_publish = lambda c, u, mid, rc, p: reactor.callFromThread(self._ack, mid)

    def _on_connect(self, rc: Any) -> None:
        if not self._connected.called:
            self._connected.callback(rc)

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        self.messages.append((topic, payload, retain))
        self._queue(topic).put((payload, retain))

    def _ack(self, mid: int) -> None:
        d = self._acks.pop(mid, None)
        if d is not None:
            d.callback(None)

    def _queue(self, topic: str) -> DeferredQueue:
        return self._queues.setdefault(topic, DeferredQueue())

    async def connect(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        rc = await _timeout(self._connected, 5, "peer connect")
        assert not rc.is_failure, rc

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def subscribe(self, topic: str, qos: int = 0) -> None:
        d: Deferred = Deferred()
        _, mid = self.client.subscribe(topic, qos)
        self._acks[mid] = d
        await _timeout(d, 5, f"SUBACK for {topic}")

    async def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos, retain)
        if qos:
            d: Deferred = Deferred()
            self._acks[info.mid] = d
            if info.is_published():
                self._acks.pop(info.mid, None)
                return
            await _timeout(d, 5, f"ack of {topic}")

    async def next(self, topic: str, timeout: float = 5.0) -> tuple[bytes, bool]:
        """The next message on ``topic`` (payload, retain)."""
        return await _timeout(self._queue(topic).get(), timeout, f"a message on {topic}")

    async def next_json(self, topic: str, timeout: float = 5.0, skip: Any = None) -> Any:
        """The next JSON message on ``topic`` (within ``timeout``) for which ``skip`` (if given) is false."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no wanted message on {topic} within {timeout} s; skipped {seen[-3:]}")
            payload, _ = await self.next(topic, left)
            value = json.loads(payload)
            if skip is None or not skip(value):
                return value
            seen.append(value)

    async def rpc(self, instance: str, method: str, params: Any = None, timeout: float = 5.0, raw: bytes | None = None) -> Any:
        """A JSON-RPC call over MQTT: the whole reply (result or error)."""
        topic = f"{instance}/moonraker/api/response"
        req_id = next(self._ids)
        if raw is None:
            msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
            if params is not None:
                msg["params"] = params
            raw = json.dumps(msg).encode()
        else:
            req_id = None
        await self.publish(f"{instance}/moonraker/api/request", raw)
        while True:
            reply = await self.next_json(topic, timeout)
            if "method" in reply:
                continue  # a notification
            if req_id is None or (isinstance(reply, dict) and reply.get("id") == req_id):
                return reply


async def _timeout(d: Deferred, seconds: float, what: str) -> Any:
    timer = reactor.callLater(seconds, d.cancel)
    try:
        return await d
    except Exception as exc:
        if not timer.active():
            raise TimeoutError(f"no {what} within {seconds} s") from exc
        raise
    finally:
        if timer.active():
            timer.cancel()


async def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        await sleep(0.02)


@pytest_twisted.async_yield_fixture
async def broker(tmp_path):
    """A Mosquitto of its own for one test (a fixture: conftests import it)."""
    mosquitto = Mosquitto(str(tmp_path / "broker"))
    await mosquitto.start()
    yield mosquitto
    await mosquitto.stop()


@pytest_twisted.async_yield_fixture
async def peer(broker):
    """An MQTT client connected to ``broker``."""
    client = Peer(broker.port)
    await client.connect()
    yield client
    client.close()
