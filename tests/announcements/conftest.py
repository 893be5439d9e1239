"""A Moonlight-style RSS server on 127.0.0.1 for the announcement tests."""

from __future__ import annotations

import pytest_twisted
from announcements.feedserver import FeedServer
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File


@pytest_twisted.async_yield_fixture
async def feeds(tmp_path):
    """An RSS server serving ``tmp_path/assets/*.xml`` on a loopback port."""
    folder = tmp_path / "assets"
    folder.mkdir()
    root = Resource()
    root.putChild(b"assets", File(str(folder)))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    yield FeedServer(str(folder), port.getHost().port)
    await port.stopListening()
