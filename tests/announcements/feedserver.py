"""Helpers for announcement tests: Moonlight RSS documents, the feed server, a moontwist."""

from __future__ import annotations

import email.utils
import os
from dataclasses import dataclass

from mtclient import start_service

BUILTINS = {
    "server": "moontwist.plugins.server_info:ServerPlugin",
    # nothing answers without an authorization check (none configured: everyone is trusted)
    "database": "moontwist.plugins.database:DatabasePlugin",
    "authorization": "moontwist.plugins.authorization:AuthorizationPlugin",
    "announcements": "moontwist.plugins.announcements:AnnouncementsPlugin",
}


def rss(title: str, items: list[tuple[int, str, int]]) -> str:
    """A feed document; ``items`` are (number, priority, unix date) of GitHub-issue announcements."""
    body = "".join(
        f"<item><title>Announcement {n}</title><link>https://github.com/{title}/issues/{n}</link>"
        f"<description>Description {n}</description><pubDate>{email.utils.formatdate(date, usegmt=True)}</pubDate>"
        f"<category>{priority}</category><guid>{title}/issue/{n}</guid></item>"
        for n, priority, date in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<rss version="2.0" xmlns:moonlight="https://arksine.github.io/moonlight"><channel>'
        f"<title>{title}</title><link>https://github.com/{title}</link>"
        f"<description>RSS Announcements for Moonraker</description>{body}</channel></rss>"
    )


@dataclass
class FeedServer:
    folder: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/assets"

    def write(self, name: str, title: str, items: list[tuple[int, str, int]]) -> None:
        with open(os.path.join(self.folder, f"{name}.xml"), "w", encoding="utf-8") as f:
            f.write(rss(title, items))

    def config(self, extra: str = "") -> str:
        return f"[server]\nhost: 127.0.0.1\n[announcements]\nmoonlight_url: {self.url}\n{extra}"


def start(tmp_path, config: str):
    return start_service(str(tmp_path / "data"), config, builtins=BUILTINS)
