"""HTTP connections with bounded patience: a deadline for the request head, clear errors for oversized ones.

twisted.web's channel resets its idle timeout on every byte, so a client
sending its headers one byte a second (slowloris) was never closed; a request
line over 16 KiB was dropped without an answer.  Here a request head must be
complete within ``site.header_timeout`` seconds of its first byte (else 408),
a request line over ``MAX_LENGTH`` gets 414 and headers over
``totalHeadersSize`` (or more than ``maxHeaders`` of them) get 431.
The timer only starts when a head arrives in pieces, so a request that comes
in one read costs nothing extra.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import HTTPChannel

from moontwist import jsonutil

__all__ = ["APIChannel"]

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class APIChannel(HTTPChannel):
    """One HTTP/1.1 connection of the API site (``site.header_timeout`` bounds each request head)."""

    _head_timer: Any = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - twisted API
        super().dataReceived(data)
        if (
            self._head_timer is None
            and self.line_mode
            and not self._handlingRequest
            and (self._buffer or self._receivedHeaderSize)
            and self.transport is not None
        ):
            self._head_timer = self.callLater(self.site.header_timeout, self._head_timed_out)

    def allHeadersReceived(self) -> None:  # noqa: N802 - twisted API
        self._cancel_head_timer()
        super().allHeadersReceived()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - twisted API
        self._cancel_head_timer()
        super().connectionLost(reason)

    def _cancel_head_timer(self) -> None:
        timer = self._head_timer
        if timer is not None:
            self._head_timer = None
            if timer.active():
                timer.cancel()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None:
            return
        self._answer(408, "The request head was not received in time")
        self.timeoutConnection()  # closes, and aborts a client that doesn't read either

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 - twisted API
        if self._receivedHeaderSize == 0:
            self._answer(414, f"The request line is longer than {self.MAX_LENGTH} bytes")
        else:
            self._answer(431, f"A header line is longer than {self.MAX_LENGTH} bytes")
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 - twisted API
        if self._receivedHeaderSize > self.totalHeadersSize or self._receivedHeaderCount > self.maxHeaders:
            self._answer(431, f"Request headers exceed {self.totalHeadersSize} bytes or {self.maxHeaders} fields")
        else:
            self._answer(400, "Malformed HTTP request")
        self.loseConnection()

    def _answer(self, status: int, message: str) -> None:
        self._cancel_head_timer()
        body = jsonutil.dumpb({"error": {"code": status, "message": message}})
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: %d\r\n" % (
            status,
            _REASONS[status],
            len(body),
        )
        self.transport.write(head + b"connection: close\r\n\r\n" + body)
