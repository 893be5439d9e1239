"""A fake Spoolman on 127.0.0.1 speaking its REST API (``/api/v1``) and spool websocket; it records requests.

Shapes follow Spoolman's OpenAPI (v0.2x): spools embed their filament (and
vendor), fields that are None are left out (``response_model_exclude_none``),
errors are ``{"message": ...}`` (404, 400) or FastAPI's ``{"detail": [...]}``
(422), and ``PUT /spool/{id}/use`` turns a length into weight with the
filament's density and diameter.  Every change is pushed on the websocket at
``/api/v1/spool`` as ``{"type", "resource": "spool", "date", "payload"}``.

``mode`` makes it misbehave: ``"hang"`` never answers REST calls, ``"garbage"``
answers 200 with a body that isn't JSON, ``"fail_use"`` answers 500 to usage reports,
``"flood"`` sends an answer that never ends (``floods`` records each one's bytes and hang-up).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from moontwist import jsonutil


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if v is not None}
    return obj


class _Socket(WebSocketServerProtocol):
    fake: FakeSpoolman

    def onOpen(self) -> None:  # noqa: N802
        self.fake.sockets.append(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        if payload:  # as Spoolman: any text is answered with a health status
            self.sendMessage(b'{"status": "healthy"}')

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if self in self.fake.sockets:
            self.fake.sockets.remove(self)


class FakeSpoolman(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, Any]] = []
        self.applied: list[tuple[int, float]] = []
        self.mode: str | None = None
        self.sockets: list[_Socket] = []
        self.hanging: list[Any] = []
        self.floods: list[dict[str, Any]] = []  # "flood" mode's answers: bytes sent, hung up on
        self.currency = "EUR"
        self.vendor = {"id": 1, "registered": _now(), "name": "Fusion", "extra": {}}
        self.filaments: dict[int, dict[str, Any]] = {
            1: {"id": 1, "registered": _now(), "name": "Reactor Red", "vendor": self.vendor, "material": "PLA",
                "price": 25.0, "density": 1.24, "diameter": 1.75, "weight": 1000.0, "extra": {}},
        }
        self.spools: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        factory = WebSocketServerFactory()
        factory.protocol = type("FakeSocket", (_Socket,), {"fake": self})
        self.websocket = WebSocketResource(factory)
        self.port: Any = None

    # state ---------------------------------------------------------------------------

    def add_spool(self, filament_id: int = 1, price: float | None = None, initial_weight: float | None = None) -> int:
        spool_id = self.next_id
        self.next_id += 1
        self.spools[spool_id] = {"id": spool_id, "registered": _now(), "filament_id": filament_id, "price": price,
                                 "initial_weight": initial_weight, "used_weight": 0.0, "archived": False,
                                 "first_used": None, "last_used": None}
        self._push("added", spool_id)
        return spool_id

    def spool(self, spool_id: int) -> dict[str, Any]:
        raw = self.spools[spool_id]
        filament = self.filaments[raw["filament_id"]]
        full = raw["initial_weight"] or filament.get("weight")
        area = math.pi * (filament["diameter"] / 2) ** 2
        length_of = lambda grams: grams / filament["density"] * 1000 / area  # noqa: E731
        out = {k: v for k, v in raw.items() if k != "filament_id"}
        out["filament"] = filament
        out["used_length"] = length_of(raw["used_weight"])
        if full is not None:
            out["remaining_weight"] = max(full - raw["used_weight"], 0.0)
            out["remaining_length"] = length_of(out["remaining_weight"])
        out["extra"] = {}
        return _clean(out)

    def uses(self) -> list[tuple[int, float]]:
        """Every usage report applied (answered 200): (spool id, use_length)."""
        return list(self.applied)

    def delete_spool(self, spool_id: int) -> None:
        payload = self.spool(spool_id)
        del self.spools[spool_id]
        self._event("deleted", payload)

    def _push(self, kind: str, spool_id: int) -> None:
        self._event(kind, self.spool(spool_id))

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        message = jsonutil.dumpb({"type": kind, "resource": "spool", "date": _now(), "payload": payload})
        for socket in list(self.sockets):
            socket.sendMessage(message)

    # HTTP ---------------------------------------------------------------------------

    def render(self, request: Any) -> Any:
        path = request.path.decode()
        if path == "/api/v1/spool" and request.getHeader(b"upgrade"):
            return self.websocket.render(request)
        request.content.seek(0)
        raw = request.content.read()
        try:
            body = jsonutil.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.requests.append((request.method.decode(), path, body))
        if self.mode == "hang":
            self.hanging.append(request)
            return NOT_DONE_YET
        if self.mode == "flood":  # an answer that never ends
            return self._flood(request)
        if self.mode == "garbage":
            request.setHeader(b"content-type", b"text/html")
            return b"<html>502 Bad Gateway</html>"
        status, result = self._route(request.method.decode(), path, body, request.args)
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-total-count", str(len(self.spools)).encode())
        return jsonutil.dumpb(result)

    def _flood(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"application/json")
        state = {"sent": 0, "closed": False}
        self.floods.append(state)

        def send() -> None:
            if not state["closed"]:
                request.write(b" " * 65536)
                state["sent"] += 65536
                reactor.callLater(0.001, send)

        request.notifyFinish().addBoth(lambda _: state.update(closed=True))
        send()
        return NOT_DONE_YET

    def _route(self, method: str, path: str, body: Any, query: dict) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] != ["api", "v1"]:
            return 404, {"detail": "Not Found"}
        parts = parts[2:]
        if parts == ["info"]:
            return 200, {"version": "0.26.1", "debug_mode": False, "automatic_backups": True, "db_type": "sqlite"}
        if parts == ["health"]:
            return 200, {"status": "healthy"}
        if parts == ["setting", "currency"]:
            return 200, {"value": jsonutil.dumps(self.currency), "is_set": True, "type": "string"}
        if parts == ["vendor"]:
            return 200, [self.vendor]
        if parts == ["filament"] and method == "GET":
            return 200, list(self.filaments.values())
        if parts == ["spool"]:
            if method == "GET":
                return 200, [self.spool(i) for i in sorted(self.spools)]
            if method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("filament_id"), int):
                    return 422, {"detail": [{"type": "missing", "loc": ["body", "filament_id"], "msg": "Field required"}]}
                if body["filament_id"] not in self.filaments:
                    return 404, {"message": f"No filament with ID {body['filament_id']} found."}
                return 200, self.spool(self.add_spool(body["filament_id"], body.get("price"),
                                                      body.get("initial_weight")))
        if len(parts) >= 2 and parts[0] == "spool":
            try:
                spool_id = int(parts[1])
            except ValueError:
                return 422, {"detail": [{"type": "int_parsing", "loc": ["path", "spool_id"], "msg": "not an int"}]}
            if spool_id not in self.spools:
                return 404, {"message": f"No spool with ID {spool_id} found."}
            if len(parts) == 2 and method == "GET":
                return 200, self.spool(spool_id)
            if len(parts) == 2 and method == "DELETE":
                self.delete_spool(spool_id)
                return 200, {"message": "Success!"}
            if len(parts) == 2 and method == "PATCH" and isinstance(body, dict):
                self.spools[spool_id].update({k: v for k, v in body.items() if k in self.spools[spool_id]})
                self._push("updated", spool_id)
                return 200, self.spool(spool_id)
            if parts[2:] == ["use"] and method == "PUT":
                return self._use(spool_id, body)
        return 405, {"detail": "Method Not Allowed"}

    def _use(self, spool_id: int, body: Any) -> tuple[int, Any]:
        if self.mode == "fail_use":
            return 500, {"message": "Internal Server Error"}
        body = body if isinstance(body, dict) else {}
        length, weight = body.get("use_length"), body.get("use_weight")
        if length is not None and weight is not None:
            return 400, {"message": "Only specify either use_weight or use_length."}
        if length is None and weight is None:
            return 400, {"message": "Either use_weight or use_length must be specified."}
        raw = self.spools[spool_id]
        filament = self.filaments[raw["filament_id"]]
        if length is not None:
            self.applied.append((spool_id, length))
            weight = filament["density"] * length * math.pi * (filament["diameter"] / 2) ** 2 / 1000
        raw["used_weight"] = max(raw["used_weight"] + weight, 0.0)
        raw["first_used"] = raw["first_used"] or _now()
        raw["last_used"] = _now()
        self._push("updated", spool_id)
        return 200, self.spool(spool_id)

    # running ------------------------------------------------------------------------------

    def listen(self, port: int = 0) -> int:
        self.port = reactor.listenTCP(port, Site(self), interface="127.0.0.1")
        return self.port.getHost().port

    async def stop(self) -> None:
        """Go away: the port closes and every websocket drops."""
        for request in self.hanging:
            if not request.finished and not request._disconnected:
                request.loseConnection()
        self.hanging.clear()
        for socket in list(self.sockets):
            socket.dropConnection(abort=True)
        if self.port is not None:
            await self.port.stopListening()
            self.port = None
