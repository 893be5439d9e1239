"""Fake HTTP smart devices on loopback ports, written from each vendor's public API documentation.

Each fake records every request it is sent (method, path, query, headers,
body) so tests assert on what moontwist sent, and can be told to hang (never
answer) or to answer garbage.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class FakeHTTPDevice(Resource):
    """Base: subclasses implement ``answer(sent) -> (status, body)``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Sent] = []
        self.hang = False
        self.garbage = False
        self.port: Any = None
        self.hanging: list[Any] = []

    def render(self, request: Any) -> Any:
        raw_path, _, raw_query = request.uri.decode().partition("?")
        sent = Sent(
            request.method.decode(),
            unquote(raw_path),
            dict(parse_qsl(raw_query, keep_blank_values=True)),
            {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()},
            request.content.read(),
        )
        self.requests.append(sent)
        if self.hang:
            self.hanging.append(request)
            return NOT_DONE_YET
        if self.garbage:
            return b"<html>Not what you expected</html>"
        status, body = self.answer(sent)
        request.setResponseCode(status)
        if isinstance(body, (bytes, str)):
            return body.encode() if isinstance(body, str) else body
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()

    def answer(self, sent: Sent) -> tuple[int, Any]:
        raise NotImplementedError

    def start(self) -> int:
        self.port = reactor.listenTCP(0, Site(self), interface="127.0.0.1")
        return self.port.getHost().port

    def stop(self) -> Any:
        for request in self.hanging:
            if request.channel is not None:
                request.channel.transport.abortConnection()
        return self.port.stopListening()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port.getHost().port}"


class FakeTasmota(FakeHTTPDevice):
    """Tasmota's ``/cm?cmnd=...`` command API: Power<N>, Backlog, Status 8."""

    def __init__(self, relays: int = 1, user: str = "admin", password: str = "", energy: float = 1.0) -> None:
        super().__init__()
        self.relays = {i: False for i in range(1, relays + 1)}
        self.user, self.password = user, password
        self.energy = energy
        self.backlog: list[str] = []

    def _power(self, n: int) -> dict[str, str]:
        key = "POWER" if len(self.relays) == 1 else f"POWER{n}"  # SetOption26 off
        return {key: "ON" if self.relays[n] else "OFF"}

    def answer(self, sent: Sent) -> tuple[int, Any]:
        if sent.path != "/cm":
            return 404, "Not Found"
        if self.password and (sent.query.get("user"), sent.query.get("password")) != (self.user, self.password):
            return 401, {"WARNING": "Need user=<username>&password=<password>"}
        command = sent.query.get("cmnd", "")
        if command.startswith("Backlog "):
            self.backlog.append(command[8:])
            for part in command[8:].split(";"):
                words = part.split()
                if words and words[0].lower().startswith("power") and len(words) == 2:
                    self.relays[int(words[0][5:] or 1)] = words[1].lower() == "on"
            return 200, {"Delay": 0}
        if command == "Status 8":
            return 200, {"StatusSNS": {"Time": "2024-01-01T00:00:00", "ENERGY": {"Total": self.energy, "Power": 80}}}
        words = command.split()
        if not words or not words[0].lower().startswith("power"):
            return 200, {"Command": "Unknown"}
        n = int(words[0][5:] or 1)
        if n not in self.relays:
            return 200, {"Command": "Unknown"}
        if len(words) > 1:
            action = words[1].lower()
            self.relays[n] = (not self.relays[n]) if action == "toggle" else action in ("on", "1")
        return 200, self._power(n)


class FakeShellyGen1(FakeHTTPDevice):
    """Shelly Gen1: ``/shelly``, ``/relay/N?turn=``, ``/meter/N``; HTTP basic auth when set."""

    def __init__(self, auth: tuple[str, str] | None = None, watt_minutes: float = 60000.0) -> None:
        super().__init__()
        self.auth = auth
        self.on = False
        self.timer = 0
        self.watt_minutes = watt_minutes

    def answer(self, sent: Sent) -> tuple[int, Any]:
        if sent.path == "/shelly":
            return 200, {"type": "SHPLG-S", "mac": "AABBCCDDEEFF", "auth": self.auth is not None, "fw": "1.14.0"}
        if self.auth is not None and sent.basic_auth != self.auth:
            return 401, "401 Unauthorized"
        if sent.path == "/relay/0":
            turn = sent.query.get("turn")
            if turn:
                self.on = turn == "on"
                self.timer = int(sent.query.get("timer", 0))
            return 200, {
                "ison": self.on, "has_timer": bool(self.timer), "timer_started": 0,
                "timer_duration": self.timer, "timer_remaining": self.timer, "source": "http",
            }
        if sent.path == "/meter/0":
            return 200, {"power": 12.5, "is_valid": True, "total": self.watt_minutes}
        return 404, "Not Found"


class FakeShellyGen2(FakeHTTPDevice):
    """Shelly Gen2+ RPC over HTTP GET: ``/shelly``, ``/rpc/Switch.Set``, ``/rpc/Switch.GetStatus``."""

    def __init__(self, watt_hours: float = 1500.0) -> None:
        super().__init__()
        self.on = False
        self.watt_hours = watt_hours

    def answer(self, sent: Sent) -> tuple[int, Any]:
        if sent.path == "/shelly":
            return 200, {"name": None, "id": "shellyplusplugs-aabbcc", "gen": 2, "app": "PlusPlugS"}
        if sent.query.get("id") != "0":
            return 500, {"code": -105, "message": "Argument 'id', value 1 not found!"}
        if sent.path == "/rpc/Switch.Set":
            was_on, self.on = self.on, sent.query.get("on") == "true"
            return 200, {"was_on": was_on}
        if sent.path == "/rpc/Switch.GetStatus":
            return 200, {
                "id": 0, "source": "HTTP_in", "output": self.on, "apower": 8.9, "voltage": 230.1,
                "aenergy": {"total": self.watt_hours, "by_minute": [0, 0, 0], "minute_ts": 1700000000},
            }
        return 404, {"code": 404, "message": "No handler for " + sent.path}


class FakeHomeAssistant(FakeHTTPDevice):
    """Home Assistant's REST API: ``/api/states/<entity>``, ``/api/services/<domain>/turn_on|off``."""

    def __init__(self, token: str, report_changes: bool = True) -> None:
        super().__init__()
        self.token = token
        self.report_changes = report_changes
        self.entities: dict[str, dict[str, Any]] = {}

    def add(self, entity: str, state: str, **attributes: Any) -> None:
        self.entities[entity] = {"entity_id": entity, "state": state, "attributes": attributes}

    def answer(self, sent: Sent) -> tuple[int, Any]:
        if sent.headers.get("authorization") != f"Bearer {self.token}":
            return 401, "401: Unauthorized"
        parts = sent.path.strip("/").split("/")
        if sent.method == "GET" and parts[:2] == ["api", "states"] and len(parts) == 3:
            entity = self.entities.get(parts[2])
            return (200, entity) if entity else (404, {"message": "Entity not found."})
        if sent.method == "POST" and parts[:2] == ["api", "services"] and len(parts) == 4:
            domain, service = parts[2], parts[3]
            entity_id = sent.json().get("entity_id")
            entity = self.entities.get(entity_id)
            if entity is None or not entity_id.startswith(domain + ".") or service not in ("turn_on", "turn_off"):
                return 400, {"message": "Invalid service call"}
            new = "on" if service == "turn_on" else "off"
            changed = entity["state"] != new
            entity["state"] = new
            return 200, [entity] if changed and self.report_changes else []
        return 404, {"message": "Not found"}


class FakeHue(FakeHTTPDevice):
    """A Hue bridge (API v1): lights and groups below ``/api/<username>/``."""

    def __init__(self, username: str) -> None:
        super().__init__()
        self.username = username
        self.lights = {"1": False, "2": False}
        self.groups = {"1": ["1", "2"]}

    def answer(self, sent: Sent) -> tuple[int, Any]:
        parts = sent.path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "api":
            return 404, "Not Found"
        if parts[1] != self.username:
            return 200, [{"error": {"type": 1, "address": "/" + "/".join(parts[2:]), "description": "unauthorized user"}}]
        kind, ident = parts[2], parts[3]
        if kind == "lights" and ident in self.lights:
            if sent.method == "PUT" and parts[4:] == ["state"]:
                self.lights[ident] = bool(sent.json()["on"])
                return 200, [{"success": {f"/lights/{ident}/state/on": self.lights[ident]}}]
            return 200, {"state": {"on": self.lights[ident], "bri": 254, "reachable": True}, "name": f"Lamp {ident}"}
        if kind == "groups" and ident in self.groups:
            members = self.groups[ident]
            if sent.method == "PUT" and parts[4:] == ["action"]:
                for light in members:
                    self.lights[light] = bool(sent.json()["on"])
                return 200, [{"success": {f"/groups/{ident}/action/on": bool(sent.json()["on"])}}]
            states = [self.lights[light] for light in members]
            return 200, {"name": "Living", "lights": members, "state": {"all_on": all(states), "any_on": any(states)},
                         "action": {"on": states[0]}}
        return 200, [{"error": {"type": 3, "address": sent.path, "description": "resource not available"}}]


class FakeHomeSeer(FakeHTTPDevice):
    """HomeSeer's JSON API: ``/JSON?request=getstatus|controldevicebylabel&ref=&user=&pass=``."""

    def __init__(self, user: str = "admin", password: str = "pw", ref: int = 42) -> None:
        super().__init__()
        self.user, self.password, self.ref = user, password, ref
        self.status = "Off"

    def answer(self, sent: Sent) -> tuple[int, Any]:
        q = sent.query
        if sent.path != "/JSON":
            return 404, "Not Found"
        if (q.get("user"), q.get("pass")) != (self.user, self.password):
            return 401, "Unauthorized"
        if q.get("ref") != str(self.ref):
            return 200, {"Response": "Error, device not found"}
        if q.get("request") == "controldevicebylabel":
            self.status = q["label"]
        elif q.get("request") != "getstatus":
            return 200, {"Response": "Error, unknown request"}
        return 200, {"Name": "HomeSeer Devices", "Version": "1.0",
                     "Devices": [{"ref": self.ref, "name": "Printer", "status": self.status,
                                  "value": 100 if self.status == "On" else 0}]}


class FakeLoxone(FakeHTTPDevice):
    """A Loxone Miniserver's ``/jdev/sps/io/<name>[/on|/off]`` with HTTP basic auth."""

    def __init__(self, output: str, auth: tuple[str, str] = ("admin", "admin")) -> None:
        super().__init__()
        self.output, self.auth, self.value = output, auth, 0

    def answer(self, sent: Sent) -> tuple[int, Any]:
        if sent.basic_auth != self.auth:
            return 401, "Unauthorized"
        parts = sent.path.strip("/").split("/")
        if parts[:3] != ["jdev", "sps", "io"] or len(parts) < 4 or parts[3] != self.output:
            return 200, {"LL": {"control": sent.path, "value": "", "Code": "404"}}
        if len(parts) == 5:
            self.value = 1 if parts[4] == "on" else 0
        return 200, {"LL": {"control": sent.path.lstrip("/"), "value": str(self.value), "Code": "200"}}


class FakeSmartThings(FakeHTTPDevice):
    """SmartThings API v1: switch status and ``POST /v1/devices/<id>/commands`` with ``{"commands": [...]}``."""

    def __init__(self, token: str, device_id: str) -> None:
        super().__init__()
        self.token, self.device_id, self.on = token, device_id, False

    def answer(self, sent: Sent) -> tuple[int, Any]:
        if sent.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"requestId": str(uuid.uuid4()), "error": {"code": "UnauthorizedError"}}
        base = f"/v1/devices/{self.device_id}"
        if sent.method == "GET" and sent.path == f"{base}/components/main/capabilities/switch/status":
            return 200, {"switch": {"value": "on" if self.on else "off", "timestamp": "2024-01-01T00:00:00Z"}}
        if sent.method == "POST" and sent.path == f"{base}/commands":
            body = sent.json()
            commands = body.get("commands") if isinstance(body, dict) else None
            if not commands or commands[0].get("capability") != "switch":
                return 422, {"error": {"code": "ConstraintViolationError", "message": "commands required"}}
            self.on = commands[0]["command"] == "on"
            return 200, {"results": [{"id": str(uuid.uuid4()), "status": "ACCEPTED"}]}
        return 404, {"error": {"code": "NotFoundError"}}
