"""The GitHub REST API (releases, commits) and release downloads, through treq.

The base URL is configurable (``github_api_url``) so tests and mirrors can stand in
for api.github.com.  Rate-limit headers are kept for ``machine.update.status``; when
the limit is exhausted no request is sent until it resets.  Responses are cached by
URL with their ETag, so an unchanged release costs a 304 and no rate limit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import treq
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.web.client import HTTPConnectionPool

from moontwist import jsonutil
from moontwist.api.errors import ServerError
from moontwist.http_fetch import BodyTooLarge, fetch, read_body, stream_body

__all__ = ["GitHubClient", "GitHubError", "DEFAULT_API_URL"]

DEFAULT_API_URL = "https://api.github.com"
OFFLINE_ENV = "MOONTWIST_OFFLINE"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_DOWNLOAD = 512 * 1024 * 1024
MAX_API_ANSWER = 8 * 1024 * 1024


class GitHubError(ServerError):
    """A GitHub request failed (network, HTTP status, rate limit)."""


class GitHubClient:
    """One HTTP connection pool per server; every request has a timeout."""

    def __init__(self, reactor: Any, base_url: str = DEFAULT_API_URL, timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 2
        self.pool.cachedConnectionTimeout = 30
        self.rate_limit: int | None = None
        self.remaining: int | None = None
        self.reset_time: float | None = None
        self.cache: dict[str, tuple[str, Any]] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "github_rate_limit": self.rate_limit,
            "github_requests_remaining": self.remaining,
            "github_limit_reset_time": self.reset_time,
        }

    def _check_url(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https"):
            raise GitHubError(f"Unsupported URL {url!r}: only http(s)")
        if os.environ.get(OFFLINE_ENV) and parsed.hostname not in LOOPBACK_HOSTS:
            raise GitHubError(f"Offline mode ({OFFLINE_ENV}): not fetching {url}", 503)

    def _note_limits(self, headers: Any) -> None:
        def header(name: str) -> str | None:
            values = headers.getRawHeaders(name)
            return values[0] if values else None

        limit, remaining, reset = header("X-RateLimit-Limit"), header("X-RateLimit-Remaining"), header("X-RateLimit-Reset")
        try:
            if limit is not None:
                self.rate_limit = int(limit)
            if remaining is not None:
                self.remaining = int(remaining)
            if reset is not None:
                self.reset_time = float(reset)
        except ValueError:
            pass

    async def api(self, resource: str, attempts: int = 3, retry_delay: float = 0.5) -> Any:
        """GET ``{base}/{resource}`` as JSON (from the cache on a 304)."""
        url = f"{self.base_url}/{resource.lstrip('/')}"
        self._check_url(url)
        if self.remaining == 0 and self.reset_time is not None and time.time() < self.reset_time:
            raise GitHubError(f"GitHub Rate Limit Reached, resets at {time.ctime(self.reset_time)}", 503)
        headers = {"Accept": "application/vnd.github+json", "User-Agent": "moontwist"}
        cached = self.cache.get(url)
        if cached is not None:
            headers["If-None-Match"] = cached[0]
        error: GitHubError | None = None
        for attempt in range(attempts):
            if attempt:
                await deferLater(self.reactor, retry_delay, lambda: None)
            try:
                resp, body = await fetch("GET", url, headers=headers, pool=self.pool, timeout=self.timeout,
                                         reactor=self.reactor, limit=MAX_API_ANSWER)
            except (defer.CancelledError, OSError, Exception) as exc:  # connection refused, timeout
                error = GitHubError(f"GitHub request {url} failed: {exc.__class__.__name__}: {exc}", 503)
                continue
            self._note_limits(resp.headers)
            if resp.code == 304 and cached is not None:
                return cached[1]
            if resp.code != 200:
                error = GitHubError(f"GitHub request {url} answered HTTP {resp.code}", 503 if resp.code >= 500 else 400)
                if resp.code < 500 and resp.code != 429:
                    break
                continue
            try:
                data = jsonutil.loads(body)
            except ValueError:
                error = GitHubError(f"GitHub request {url} answered invalid JSON")
                break
            etag = resp.headers.getRawHeaders("ETag")
            if etag:
                self.cache[url] = (etag[0], data)
            return data
        assert error is not None
        raise error

    async def download(
        self, url: str, dest: str, size_hint: int = 0, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Stream ``url`` into the file ``dest``; returns the byte count."""
        self._check_url(url)
        try:
            resp = await treq.get(url, pool=self.pool, timeout=self.timeout, reactor=self.reactor, unbuffered=True,
                                  headers={"User-Agent": "moontwist", "Accept": "application/octet-stream"})
        except Exception as exc:
            raise GitHubError(f"Download of {url} failed: {exc.__class__.__name__}: {exc}", 503) from None
        if resp.code != 200:
            try:  # the error page, bounded in size and time
                await read_body(resp, 65536).addTimeout(self.timeout, self.reactor)
            except Exception:
                pass
            raise GitHubError(f"Download of {url} answered HTTP {resp.code}", 503)
        total = int((resp.headers.getRawHeaders("Content-Length") or [size_hint or 0])[0] or 0)
        received = [0]
        last = [-1]
        f = open(dest, "wb")  # noqa: SIM115 (closed in finally, written from collect callbacks)

        def chunk(data: bytes) -> None:
            received[0] += len(data)
            f.write(data)
            if progress is not None and total:
                percent = received[0] * 100 // total
                if percent // 10 != last[0]:
                    last[0] = percent // 10
                    progress(received[0], total)

        try:
            await stream_body(resp, chunk, limit=MAX_DOWNLOAD, idle_timeout=self.timeout, reactor=self.reactor)
        except BodyTooLarge:
            raise GitHubError(f"Download of {url} is larger than {MAX_DOWNLOAD} bytes") from None
        except Exception as exc:
            raise GitHubError(f"Download of {url} failed: {exc.__class__.__name__}: {exc}", 503) from None
        finally:
            f.close()
        return received[0]

    def close(self) -> defer.Deferred:
        return self.pool.closeCachedConnections()
