"""A paho-mqtt client driven by the Twisted reactor.

paho keeps the MQTT state machine (packets, QoS flows, keepalive); the reactor
does all the waiting.  The connection is made here without blocking (address
lookup in the reactor's resolver thread pool, a non-blocking ``connect``, a
non-blocking TLS handshake) and handed to paho, whose socket is then watched by
the reactor: readable → ``loop_read``, writable while paho has output →
``loop_write``, and once a second ``loop_misc`` (keepalive pings).  No thread
of paho's own runs.

Lost connections are retried with a growing delay; every subscription is
renewed after each connect, and QoS 1/2 messages published while the broker
was away are delivered once it is back.
"""

from __future__ import annotations

import errno
import inspect
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from twisted.internet import defer
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from moontwist import jsonutil
from moontwist.api.errors import ServerError

__all__ = ["MQTTClient", "SubscriptionHandle", "PROTOCOLS", "encode_payload"]

PROTOCOLS = {
    "v3.1": MQTTProtocolVersion.MQTTv31,
    "v3.1.1": MQTTProtocolVersion.MQTTv311,
    "v5": MQTTProtocolVersion.MQTTv5,
}
CONNECT_TIMEOUT = 10.0  # TCP connect + TLS handshake + CONNACK
RETRY_FIRST = 0.5
RETRY_MAX = 30.0
MISC_INTERVAL = 1.0
READ_CHUNK = 256 * 1024
MAX_QUEUED = 1000  # QoS 1/2 messages waiting for the broker
DISCONNECT_WAIT = 2.0


@dataclass(eq=False)
class SubscriptionHandle:
    """One ``subscribe_topic`` registration; pass it to ``unsubscribe``."""

    topic: str
    callback: Callable[[bytes], Any]
    qos: int


def encode_payload(payload: Any) -> bytes:
    """What Moonraker sends: objects and arrays as JSON, booleans as true/false, None as nothing."""
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, bool):
        return b"true" if payload else b"false"
    if isinstance(payload, (int, float)):
        return str(payload).encode()
    try:
        return jsonutil.dumpb(payload)
    except (TypeError, ValueError):
        raise ServerError(f"MQTT payload of type {type(payload).__name__} is not JSON encodable", 400) from None


def _check_qos(qos: Any) -> int:
    if isinstance(qos, bool) or not isinstance(qos, int) or not 0 <= qos <= 2:
        raise ServerError(f"Invalid QoS {qos!r}: must be 0, 1 or 2", 400)
    return qos


def _check_topic(topic: Any, *, wildcards: bool) -> str:
    if not isinstance(topic, str) or not topic:
        raise ServerError(f"Invalid MQTT topic {topic!r}: expected a non-empty string", 400)
    if len(topic.encode()) > 65535 or "\0" in topic:
        raise ServerError("Invalid MQTT topic: longer than 65535 bytes or contains NUL", 400)
    if not wildcards and ("#" in topic or "+" in topic):
        raise ServerError(f"Invalid MQTT topic {topic!r}: wildcards (+, #) may not be used", 400)
    return topic


@implementer(IReadDescriptor, IWriteDescriptor)
class _Watcher:
    """A socket registered with the reactor; read and write events go to the given callables.

    An error or hang-up on the socket (which the reactor reports as a lost
    connection, not as an event) goes to ``on_read`` too: reading finds out what happened.
    """

    def __init__(self, sock: socket.socket, on_read: Callable[[], None], on_write: Callable[[], None]) -> None:
        self.sock = sock
        self._fd = sock.fileno()
        self.on_read = on_read
        self.on_write = on_write

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:  # noqa: N802 - Twisted interface
        self.on_read()

    def doWrite(self) -> None:  # noqa: N802
        self.on_write()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.on_read()

    def logPrefix(self) -> str:  # noqa: N802
        return "mqtt"


class _PahoClient(paho.Client):
    """paho with a socket connected by us and reads served from one buffered ``recv``.

    paho reads each packet with several tiny ``recv`` calls; one large read per
    readable event, parsed from memory, costs far fewer system calls.
    """

    prepared: Any = None
    rbuf: bytearray
    eof: bool = False

    def _create_socket(self) -> Any:
        sock, self.prepared = self.prepared, None
        if sock is None:
            raise ConnectionError("no connected socket prepared")
        self.rbuf = bytearray()
        self.eof = False
        return sock

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self.rbuf
        if not buf:
            if self.eof:
                return b""
            raise BlockingIOError()
        data = bytes(buf[:bufsize])
        del buf[:bufsize]
        return data


class MQTTClient:
    """The MQTT service other plugins use (``server.lookup("mqtt")``): Moonraker's method names."""

    def __init__(
        self,
        reactor: Any,
        address: str,
        port: int = 1883,
        *,
        client_id: str = "",
        protocol: str = "v3.1.1",
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        keepalive: int = 60,
        default_qos: int = 0,
        instance_name: str = "",
        will: tuple[str, bytes, int, bool] | None = None,
        log: Logger,
    ) -> None:
        self.reactor = reactor
        self.log = log
        self.address = address
        self.port = port
        self.tls = tls
        self.ca_file = ca_file
        self.keepalive = keepalive
        self.default_qos = default_qos
        self.instance_name = instance_name
        self.paho = _PahoClient(
            CallbackAPIVersion.VERSION2, client_id, protocol=PROTOCOLS[protocol], reconnect_on_failure=False
        )
        paho_client = self.paho
        paho_client.max_queued_messages_set(MAX_QUEUED)
        if username is not None:
            paho_client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            paho_client.will_set(topic, payload, qos, retain)
        # connect_async only records host, port and keepalive for reconnect(); it opens nothing
        paho_client.connect_async(address, port, keepalive)
        # paho calls these holding a lock that reconnecting or closing takes again:
        # they are queued and run once paho has returned (see _run_events)
        self._events: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        paho_client.on_connect = self._queued(self._on_connect)
        paho_client.on_disconnect = self._queued(self._on_disconnect)
        paho_client.on_message = self._queued(self._on_message)
        paho_client.on_publish = self._queued(self._on_publish)
        paho_client.on_subscribe = self._queued(self._on_ack)
        paho_client.on_unsubscribe = self._queued(self._on_ack)
        paho_client.on_socket_open = self._on_socket_open
        paho_client.on_socket_close = self._on_socket_close
        paho_client.on_socket_register_write = self._on_register_write
        paho_client.on_socket_unregister_write = self._on_unregister_write
        self.connected = False
        self.last_error: str | None = None
        self._running = False
        self._retry_delay = RETRY_FIRST
        self._retry_call: Any = None
        self._attempt: Deferred | None = None
        self._connack_timer: Any = None
        self._watcher: _Watcher | None = None
        self._writing = False
        self._misc = LoopingCall(self._loop_misc)
        self._misc.clock = reactor
        self._subs: dict[str, list[SubscriptionHandle]] = {}
        self._filters: dict[str, tuple[int, Callable[[paho.MQTTMessage], Any]]] = {}
        self._acks: dict[int, Deferred] = {}
        self._waiters: list[Deferred] = []
        self._stopped: Deferred | None = None
        self._listeners: list[Callable[[bool], Any]] = []
        # called with a message when the broker refuses the connection (credentials...)
        self.on_refused: Callable[[str], Any] | None = None

    def _queued(self, handler: Callable[..., None]) -> Callable[..., None]:
        events = self._events

        def queue(*args: Any) -> None:
            events.append((handler, args))

        return queue

    def _run_events(self) -> None:
        events = self._events
        while events:
            handler, args = events.popleft()
            try:
                handler(*args)
            except Exception:
                self.log.failure("MQTT event handler {handler} failed", handler=handler)

    # the service interface ----------------------------------------------------------------

    def is_connected(self) -> bool:
        return self.connected

    def get_instance_name(self) -> str:
        return self.instance_name

    def publish_topic(self, topic: str, payload: Any = None, qos: int | None = None, retain: bool = False) -> Deferred:
        """Publish; fires when sent (QoS 0) or acknowledged by the broker (QoS 1 and 2).

        QoS 1/2 messages published while disconnected are sent after the next
        connect; a QoS 0 message fails at once with 503 then.
        """
        if not self._running:
            return fail(ServerError("MQTT client is not running", 503))
        try:
            qos = _check_qos(self.default_qos if qos is None else qos)
            _check_topic(topic, wildcards=False)
            data = encode_payload(payload)
            info = self.paho.publish(topic, data, qos, bool(retain))
        except ServerError as exc:
            return fail(exc)
        except ValueError as exc:
            return fail(ServerError(f"MQTT publish to {topic!r} refused: {exc}", 400))
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return fail(ServerError("MQTT message queue full", 529))
        if qos == 0:
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return fail(ServerError(f"MQTT publish failed: {paho.error_string(rc)}", 503))
            return succeed(None)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and info.is_published():
            return succeed(None)
        d = Deferred(lambda _: self._acks.pop(info.mid, None))
        self._acks[info.mid] = d
        return d

    def subscribe_topic(self, topic: str, callback: Callable[[bytes], Any], qos: int | None = None) -> SubscriptionHandle:
        """Call ``callback(payload)`` for every message on ``topic`` (no wildcards); renewed after reconnects."""
        _check_topic(topic, wildcards=False)
        qos = _check_qos(self.default_qos if qos is None else qos)
        handle = SubscriptionHandle(topic, callback, qos)
        handles = self._subs.setdefault(topic, [])
        before = max((h.qos for h in handles), default=-1)
        handles.append(handle)
        if self.connected and qos > before:
            self.paho.subscribe(topic, qos)
        return handle

    def unsubscribe(self, handle: SubscriptionHandle) -> None:
        handles = self._subs.get(handle.topic)
        if not handles or handle not in handles:
            return
        handles.remove(handle)
        if not handles:
            del self._subs[handle.topic]
            if self.connected:
                self.paho.unsubscribe(handle.topic)

    def wait_connected(self, timeout: float | None = None) -> Deferred:
        """Fires True once connected, or False after ``timeout`` seconds."""
        if self.connected:
            return succeed(True)
        d: Deferred = Deferred()
        self._waiters.append(d)
        if timeout is not None:
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda *_: False)
        return d

    def add_connection_listener(self, callback: Callable[[bool], Any]) -> None:
        """``callback(True)`` after each connect, ``callback(False)`` after each loss."""
        self._listeners.append(callback)

    def remove_connection_listener(self, callback: Callable[[bool], Any]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def subscribe_filter(self, topic_filter: str, callback: Callable[[paho.MQTTMessage], Any], qos: int = 0) -> None:
        """Internal: a wildcard subscription whose callback gets the whole message (topic, retain)."""
        _check_topic(topic_filter, wildcards=True)
        self._filters[topic_filter] = (_check_qos(qos), callback)
        if self.connected:
            self.paho.subscribe(topic_filter, qos)

    def unsubscribe_filter(self, topic_filter: str) -> None:
        if self._filters.pop(topic_filter, None) is not None and self.connected:
            self.paho.unsubscribe(topic_filter)

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self, last_words: tuple[str, bytes, int, bool] | None = None) -> Deferred:
        """Publish ``last_words`` (topic, payload, qos, retain) if connected, disconnect, fail what waits."""
        self._running = False
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        d: Deferred
        if self.connected:
            if last_words is not None:
                topic, payload, qos, retain = last_words
                self.paho.publish(topic, payload, qos, retain)
            self._stopped = Deferred()
            self._stopped.addTimeout(DISCONNECT_WAIT, self.reactor, onTimeoutCancel=lambda *_: None)
            self.paho.disconnect()
            self._run_events()
            d = self._stopped
        else:
            d = succeed(None)
        return d.addBoth(self._closed)

    def _closed(self, _: Any) -> None:
        self._stopped = None
        self.paho._sock_close()
        self.connected = False
        acks, self._acks = self._acks, {}
        for d in acks.values():
            if not d.called:
                d.errback(ServerError("MQTT client shut down", 503))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(False)

    # connecting --------------------------------------------------------------------------------

    def _connect(self) -> None:
        self._retry_call = None
        if not self._running:
            return
        self._attempt = Deferred.fromCoroutine(self._open_socket())
        self._attempt.addTimeout(CONNECT_TIMEOUT, self.reactor)
        self._attempt.addCallbacks(self._socket_ready, self._connect_failed)

    async def _open_socket(self) -> Any:
        infos = await deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), socket.getaddrinfo, self.address, self.port, 0, socket.SOCK_STREAM
        )
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect to {self.address}:{self.port} failed: {errno.errorcode.get(err, err)}")
            await self._wait(sock, write=True)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"connect to {self.address}:{self.port} failed: {errno.errorcode.get(err, err)}")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                sock = await self._tls_handshake(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    async def _tls_handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        tls_sock = self._tls_context().wrap_socket(sock, server_hostname=self.address, do_handshake_on_connect=False)
        while True:
            try:
                tls_sock.do_handshake()
                return tls_sock
            except ssl.SSLWantReadError:
                await self._wait(tls_sock, write=False)
            except ssl.SSLWantWriteError:
                await self._wait(tls_sock, write=True)

    def _wait(self, sock: socket.socket, write: bool) -> Deferred:
        """Fires once ``sock`` is readable (or writable); cancelling stops watching."""
        reactor = self.reactor

        def done() -> None:
            stop()
            if not d.called:
                d.callback(None)

        def stop() -> None:
            (reactor.removeWriter if write else reactor.removeReader)(watcher)

        d: Deferred = Deferred(lambda _: stop())
        watcher = _Watcher(sock, done, done)
        (reactor.addWriter if write else reactor.addReader)(watcher)
        return d

    def _connect_failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self._running:
            return
        if failure.check(defer.TimeoutError):
            message = f"timed out after {CONNECT_TIMEOUT:g} s"
        elif failure.check(ssl.SSLError, ssl.CertificateError):
            message = f"TLS handshake failed: {failure.getErrorMessage()}"
        else:
            message = failure.getErrorMessage()
        self._note_error(f"Connecting to MQTT broker {self.address}:{self.port} failed: {message}")
        self._schedule_retry()

    def _socket_ready(self, sock: socket.socket) -> None:
        self._attempt = None
        if not self._running:
            sock.close()
            return
        self.paho.prepared = sock
        try:
            self.paho.reconnect()
        except Exception as exc:
            self.paho._sock_close()
            self._note_error(f"MQTT connect failed: {exc}")
            self._schedule_retry()
            return
        finally:
            self._run_events()
        self._connack_timer = self.reactor.callLater(CONNECT_TIMEOUT, self._connack_timed_out)

    def _connack_timed_out(self) -> None:
        self._connack_timer = None
        self._note_error(f"MQTT broker {self.address}:{self.port} did not answer CONNECT within {CONNECT_TIMEOUT:g} s")
        self.paho._sock_close()
        self._run_events()
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if not self._running or self._retry_call is not None:
            return
        self._retry_call = self.reactor.callLater(self._retry_delay, self._connect)
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            self.log.warn("{message}", message=message)
        self.last_error = message

    # paho callbacks -----------------------------------------------------------------------------

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._watcher = _Watcher(sock, self._do_read, self._do_write)
        self._writing = False
        self.reactor.addReader(self._watcher)
        self._misc.start(MISC_INTERVAL, now=False)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            self.reactor.removeReader(watcher)
            self.reactor.removeWriter(watcher)
        self._writing = False
        if self._misc.running:
            self._misc.stop()
        if self._connack_timer is not None and self._connack_timer.active():
            self._connack_timer.cancel()
        self._connack_timer = None

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._watcher is not None and not self._writing:
            self._writing = True
            self.reactor.addWriter(self._watcher)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._watcher is not None and self._writing:
            self._writing = False
            self.reactor.removeWriter(self._watcher)

    def _do_read(self) -> None:
        client = self.paho
        sock = client._sock
        if sock is None:
            return
        buf = client.rbuf
        try:
            while len(buf) < READ_CHUNK:
                data = sock.recv(READ_CHUNK)
                if not data:
                    client.eof = True
                    break
                buf += data
                if not isinstance(sock, ssl.SSLSocket):
                    break
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            client.eof = True
        while client._sock is not None and (buf or client.eof):
            before = len(buf)
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or len(buf) == before:
                break
        self._run_events()
        if client._sock is sock and isinstance(sock, ssl.SSLSocket) and sock.pending():
            # decrypted bytes the kernel no longer reports as readable
            self.reactor.callLater(0, self._do_read)

    def _do_write(self) -> None:
        self.paho.loop_write()
        self._run_events()

    def _loop_misc(self) -> None:
        self.paho.loop_misc()
        self._run_events()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connack_timer is not None and self._connack_timer.active():
            self._connack_timer.cancel()
        self._connack_timer = None
        if reason.is_failure:
            message = f"MQTT broker {self.address}:{self.port} refused the connection: {reason.getName()}"
            if message != self.last_error and self.on_refused is not None:
                self.on_refused(message)
            self._note_error(message)
            return  # paho closes the socket; _on_disconnect retries
        self.connected = True
        self.last_error = None
        self._retry_delay = RETRY_FIRST
        self.log.info("Connected to MQTT broker {address}:{port}", address=self.address, port=self.port)
        topics = [(topic, max(h.qos for h in handles)) for topic, handles in self._subs.items()]
        topics += [(topic, qos) for topic, (qos, _) in self._filters.items()]
        if topics:
            client.subscribe(topics)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(True)
        self._tell_listeners(True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected, self.connected = self.connected, False
        if self._stopped is not None:
            self._stopped.callback(None)
            return
        if was_connected:
            self.log.warn(
                "Lost the MQTT broker {address}:{port}: {reason}", address=self.address, port=self.port,
                reason=reason.getName() if hasattr(reason, "getName") else reason,
            )
            self._tell_listeners(False)
        self._schedule_retry()

    def _tell_listeners(self, connected: bool) -> None:
        for callback in list(self._listeners):
            self._call(callback, connected)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        topic = message.topic
        handles = self._subs.get(topic)
        if handles:
            payload = message.payload
            for handle in list(handles):
                self._call(handle.callback, payload)
        for topic_filter, (_, callback) in list(self._filters.items()):
            if paho.topic_matches_sub(topic_filter, topic):
                self._call(callback, message)

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            result = callback(*args)
        except Exception:
            self.log.failure("MQTT callback {callback} failed", callback=callback)
            return
        if inspect.iscoroutine(result):
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            result.addErrback(lambda f: self.log.failure("MQTT callback {callback} failed", f, callback=callback))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        d = self._acks.pop(mid, None)
        if d is None:
            return
        if reason.is_failure:
            d.errback(ServerError(f"MQTT broker refused the message: {reason.getName()}", 503))
        else:
            d.callback(None)

    def _on_ack(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        for reason in reasons:
            if reason.is_failure:
                self.log.warn("MQTT broker refused a (un)subscription: {reason}", reason=reason.getName())
