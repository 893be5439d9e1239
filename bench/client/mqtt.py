"""A minimal MQTT 3.1.1 client on a raw asyncio protocol, for load: QoS 0 publish and subscribe.

CONNECT/CONNACK, SUBSCRIBE/SUBACK and QoS 0 PUBLISH in both directions — enough to drive
JSON-RPC over MQTT and to time status publications, at a fraction of a general client's cost.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.measure import LoadResult, Window
from bench.server import ProcStats

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    _loads = json.loads

__all__ = ["MqttClient", "mqtt_connect", "mqtt_rpc_load"]

_perf = time.perf_counter


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    data = s.encode()
    return len(data).to_bytes(2, "big") + data


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH (``topic`` already length-prefixed)."""
    return b"\x30" + _varint(len(topic) + len(payload)) + topic + payload


class MqttClient(asyncio.Protocol):
    """Calls ``on_message(topic, payload)`` for each PUBLISH and ``on_batch_done()`` after each read."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future | None = None
        self.suback: asyncio.Future | None = None
        self.closed: asyncio.Future | None = None
        self.on_message = lambda topic, payload: None
        self.on_batch_done = lambda: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self.transport = transport  # type: ignore[assignment]
        self.connack = loop.create_future()
        self.suback = loop.create_future()
        self.closed = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback, self.closed):
            if fut is not None and not fut.done():
                fut.set_result(exc)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            header = buf[pos]
            length = shift = 0
            i = pos + 1
            complete = False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or end - i < length:
                break
            body = bytes(buf[i : i + length])
            pos = i + length
            kind = header >> 4
            if kind == 3:
                tlen = int.from_bytes(body[:2], "big")
                start = 2 + tlen + (2 if (header >> 1) & 3 else 0)
                self.on_message(body[2 : 2 + tlen], body[start:])
            elif kind == 2 and self.connack is not None and not self.connack.done():
                self.connack.set_result(body[1])
            elif kind == 9 and self.suback is not None and not self.suback.done():
                self.suback.set_result(body[2:])
        del buf[:pos]
        self.on_batch_done()

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def subscribe(self, *topics: str) -> None:
        loop = asyncio.get_running_loop()
        self.suback = loop.create_future()
        body = b"\x00\x01" + b"".join(_string(t) + b"\x00" for t in topics)
        self.send_raw(b"\x82" + _varint(len(body)) + body)
        await asyncio.wait_for(self.suback, 5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.send_raw(publish_packet(_string(topic), payload))

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\xe0\x00")
            self.transport.close()


async def mqtt_connect(host: str, port: int) -> MqttClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(MqttClient, host, port)
    client_id = f"bench-{os.getpid()}-{id(client):x}"
    body = _string("MQTT") + b"\x04\x02\x00\x3c" + _string(client_id)
    client.send_raw(b"\x10" + _varint(len(body)) + body)
    rc = await asyncio.wait_for(client.connack, 5)
    if rc != 0:
        raise ConnectionError(f"broker refused the bench client: CONNACK {rc}")
    return client


async def mqtt_rpc_load(
    host: str,
    port: int,
    instance: str,
    method: str,
    inflight: int,
    warmup: float,
    duration: float,
    server: ProcStats | None = None,
) -> LoadResult:
    """Keep ``inflight`` JSON-RPC calls outstanding over MQTT; replies matched by ``id``."""
    window = Window(warmup, duration, server)
    client = await mqtt_connect(host, port)
    response = f"{instance}/moonraker/api/response"
    await client.subscribe(response)
    request_topic = _string(f"{instance}/moonraker/api/request")
    prefix = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","id":'
    pending: dict[int, float] = {}
    next_id = 1
    to_send = 0

    def make(count: int) -> bytes:
        nonlocal next_id
        packets = []
        now = _perf()
        for _ in range(count):
            rid = next_id
            next_id += 1
            pending[rid] = now
            packets.append(publish_packet(request_topic, prefix + str(rid).encode() + b"}"))
        return b"".join(packets)

    def on_message(topic: bytes, payload: bytes) -> None:
        nonlocal to_send
        msg = _loads(payload)
        rid = msg.get("id") if isinstance(msg, dict) else None
        if rid is None:
            return  # a notification
        sent = pending.pop(rid, None)
        if sent is None:
            window.abort(f"reply with unknown id {rid!r}")
            return
        if "result" in msg:
            window.record(_perf() - sent)
        else:
            window.error()
        if window.sending:
            to_send += 1

    def on_batch_done() -> None:
        nonlocal to_send
        if to_send:
            client.send_raw(make(to_send))
            to_send = 0

    client.on_message = on_message
    client.on_batch_done = on_batch_done
    window.start()
    client.send_raw(make(inflight))
    done = asyncio.ensure_future(window.finished)
    await asyncio.wait([done, client.closed], return_when=asyncio.FIRST_COMPLETED)
    if not done.done():
        window.abort("the broker closed the connection")
    deadline = _perf() + 2.0
    while pending and _perf() < deadline and not client.closed.done():
        await asyncio.sleep(0.01)
    await client.close()
    return window.result()
