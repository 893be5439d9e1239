"""A local stand-in for the GitHub REST API (releases) and its asset downloads.

Speaks what the update manager uses: ``/repos/O/R/releases/latest``,
``/repos/O/R/releases?per_page=N``, ``/repos/O/R/releases/tags/T`` (JSON, ETags, 304s,
X-RateLimit-* headers) and ``/download/O/R/T/NAME`` for asset bytes.  Records every request.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


@dataclass
class Release:
    tag: str
    assets: dict[str, bytes]
    prerelease: bool = False
    created: float = field(default_factory=time.time)


def web_zip(version: str, project: str = "mainsail", owner: str = "mainsail-crew", files: dict[str, str] | None = None) -> bytes:
    """A web client release zip with its release_info.json."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("release_info.json", json.dumps({"project_name": project, "project_owner": owner, "version": version}))
        zf.writestr("index.html", f"<html>{project} {version}</html>")
        for name, text in (files or {}).items():
            zf.writestr(name, text)
    return out.getvalue()


class GitHubAPI(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.releases: dict[str, list[Release]] = {}
        self.requests: list[str] = []
        self.limit = 60
        self.remaining = 60
        self.reset = int(time.time()) + 3600
        # asset names whose download sends half its bytes and then nothing, never finishing
        self.stalling: set[str] = set()
        self.stalled: list[Any] = []  # those requests, still open

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, repo: str, release: Release) -> None:
        self.releases.setdefault(repo, []).insert(0, release)

    def _release_json(self, repo: str, release: Release) -> dict[str, Any]:
        return {
            "tag_name": release.tag,
            "name": release.tag,
            "prerelease": release.prerelease,
            "assets": [
                {
                    "name": name,
                    "browser_download_url": f"{self.url}/download/{repo}/{release.tag}/{name}",
                    "content_type": "application/zip",
                    "size": len(data),
                }
                for name, data in release.assets.items()
            ],
        }

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        path = request.path.decode()
        self.requests.append(request.uri.decode())
        parts = path.strip("/").split("/")
        if parts[0] == "download" and len(parts) == 5:
            repo, tag, name = f"{parts[1]}/{parts[2]}", parts[3], parts[4]
            for release in self.releases.get(repo, []):
                if release.tag == tag and name in release.assets:
                    request.setHeader(b"Content-Type", b"application/octet-stream")
                    data = release.assets[name]
                    if name in self.stalling:
                        request.setHeader(b"Content-Length", str(len(data)).encode())
                        request.write(data[: len(data) // 2])
                        self.stalled.append(request)
                        return NOT_DONE_YET
                    return data
            request.setResponseCode(404)
            return b"Not Found"
        request.setHeader(b"X-RateLimit-Limit", str(self.limit).encode())
        request.setHeader(b"X-RateLimit-Reset", str(self.reset).encode())
        if self.remaining <= 0:
            request.setHeader(b"X-RateLimit-Remaining", b"0")
            request.setResponseCode(403)
            return b'{"message": "API rate limit exceeded"}'
        if len(parts) < 4 or parts[0] != "repos" or parts[3] != "releases":
            request.setResponseCode(404)
            return b'{"message": "Not Found"}'
        repo = f"{parts[1]}/{parts[2]}"
        releases = self.releases.get(repo, [])
        if parts[4:] == ["latest"]:
            final = [r for r in releases if not r.prerelease]
            body: Any = self._release_json(repo, final[0]) if final else None
        elif len(parts) == 6 and parts[4] == "tags":
            found = [r for r in releases if r.tag == parts[5]]
            body = self._release_json(repo, found[0]) if found else None
        else:
            per_page = int(request.args.get(b"per_page", [b"30"])[0])
            body = [self._release_json(repo, r) for r in releases[:per_page]]
        if body is None:
            request.setResponseCode(404)
            return b'{"message": "Not Found"}'
        data = json.dumps(body).encode()
        etag = f'"{hash(data) & 0xFFFFFFFF:x}"'
        request.setHeader(b"ETag", etag.encode())
        if request.getHeader(b"If-None-Match") == etag:
            request.setResponseCode(304)  # conditional requests that match cost no rate limit
            request.setHeader(b"X-RateLimit-Remaining", str(self.remaining).encode())
            return b""
        self.remaining -= 1
        request.setHeader(b"X-RateLimit-Remaining", str(self.remaining).encode())
        request.setHeader(b"Content-Type", b"application/json")
        return data


def serve() -> tuple[GitHubAPI, Any]:
    api = GitHubAPI()
    port = reactor.listenTCP(0, Site(api), interface="127.0.0.1")
    api.port = port.getHost().port
    return api, port
