"""An HTTP receiver on 127.0.0.1 for apprise's json:// and form:// notifications; it records what arrived."""

from __future__ import annotations

import io
import json
from typing import Any

import multipart
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


class Receiver(Resource):
    """Records every request; ``/hang`` never answers, ``/fail`` answers 500, ``/snapshot.jpg`` is a webcam.

    ``/stream`` is an MJPEG-like stream that never ends (``/stream?slow=1`` drips a
    byte now and then); ``streamed`` records each stream's bytes sent and whether
    the client hung up.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.waiters: list[tuple[int, Deferred]] = []
        self.hanging: list[Any] = []
        self.snapshot = b"\xff\xd8\xff\xe0 fake jpeg \xff\xd9"
        self.streamed: list[dict[str, Any]] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted API
        if request.path == b"/snapshot.jpg":
            request.setHeader(b"content-type", b"image/jpeg")
            return self.snapshot
        if request.path == b"/stream":
            return self._stream(request, slow=b"slow" in request.args)
        request.setResponseCode(404)
        return b"not found"

    def _stream(self, request: Any, slow: bool) -> Any:
        request.setHeader(b"content-type", b"multipart/x-mixed-replace; boundary=frame")
        state = {"sent": 0, "closed": False}
        self.streamed.append(state)
        chunk = b"x" if slow else b"\xff" * 65536

        def send() -> None:
            if state["closed"]:
                return
            request.write(chunk)
            state["sent"] += len(chunk)
            reactor.callLater(0.2 if slow else 0.001, send)

        def closed(_: Any) -> None:
            state["closed"] = True

        request.notifyFinish().addBoth(closed)
        send()
        return NOT_DONE_YET

    def render_POST(self, request: Any) -> Any:  # noqa: N802 - twisted API
        if request.path == b"/hang":
            self.hanging.append(request)
            return NOT_DONE_YET
        request.content.seek(0)
        body = request.content.read()
        ctype = (request.getHeader(b"content-type") or b"").decode()
        entry: dict[str, Any] = {"path": request.path.decode(), "content_type": ctype}
        if ctype.startswith("application/json"):
            entry["json"] = json.loads(body)
        elif ctype.startswith("multipart/form-data"):
            boundary = multipart.parse_options_header(ctype)[1]["boundary"]
            fields: dict[str, str] = {}
            files: dict[str, tuple[str, bytes]] = {}
            for part in multipart.MultipartParser(io.BytesIO(body), boundary):
                if part.filename:
                    files[part.name] = (part.filename, part.raw)
                else:
                    fields[part.name] = part.value
            entry["form"], entry["files"] = fields, files
        else:
            entry["form"] = {k.decode(): v[0].decode() for k, v in (request.args or {}).items()}
        self.received.append(entry)
        for count, d in list(self.waiters):
            if len(self.received) >= count:
                self.waiters.remove((count, d))
                d.callback(None)
        if request.path == b"/fail":
            request.setResponseCode(500)
        return b"{}"

    def wait(self, count: int) -> Deferred:
        """Fires once ``count`` notifications have arrived."""
        d: Deferred = Deferred()
        if len(self.received) >= count:
            d.callback(None)
        else:
            self.waiters.append((count, d))
        return d

    def close_hanging(self) -> None:
        for request in self.hanging:
            if not request.finished and not request._disconnected:
                request.finish()
        self.hanging.clear()


def listen(receiver: Receiver) -> Any:
    return reactor.listenTCP(0, Site(receiver), interface="127.0.0.1")
