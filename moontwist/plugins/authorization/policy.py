"""Who is trusted without credentials (``trusted_clients``) and which origins CORS allows."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["TrustedClients", "CorsPolicy", "parse_ip", "is_local_name"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_HOSTNAME_RE = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z][a-z0-9-]{0,61}[a-z0-9]\.?")


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer string (IPv4-mapped IPv6 and zone ids are normalised)."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedClients:
    """Addresses, networks and host names from ``trusted_clients``.

    Host names are resolved to addresses off the reactor (``resolve``, called at
    start-up and periodically), so checking a request never blocks.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.addresses: set[IPAddress] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hostnames: list[str] = []
        self.invalid: list[str] = []
        self._resolved: set[IPAddress] = set()
        self._verdicts: dict[str | None, bool] = {}  # per client address; cleared on re-resolve
        self.generation = 0  # counts look-ups, so others' cached verdicts can tell they are stale
        for entry in entries:
            self._add(entry.strip())

    def _add(self, entry: str) -> None:
        addr = parse_ip(entry)
        if addr is not None:
            self.addresses.add(addr)
            return
        if "/" in entry:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=True))
            except ValueError:
                self.invalid.append(entry)
            return
        if _HOSTNAME_RE.fullmatch(entry.lower()):
            self.hostnames.append(entry.lower().rstrip("."))
        else:
            self.invalid.append(entry)

    def resolve(self) -> set[IPAddress]:
        """Look the host names up (blocking); returns and keeps their addresses."""
        found: set[IPAddress] = set()
        for name in self.hostnames:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except OSError:
                continue
            for info in infos:
                addr = parse_ip(str(info[4][0]))
                if addr is not None:
                    found.add(addr)
        self._resolved = found
        self._verdicts = {}
        self.generation += 1
        return found

    def is_trusted(self, ip: str | None) -> bool:
        verdict = self._verdicts.get(ip)
        if verdict is None:
            if len(self._verdicts) > 4096:  # bounded: addresses of past clients
                self._verdicts.clear()
            verdict = self._verdicts[ip] = self._check(ip)
        return verdict

    def _check(self, ip: str | None) -> bool:
        addr = parse_ip(ip)
        if addr is None:
            return False
        if addr in self.addresses or addr in self._resolved:
            return True
        return any(addr.version == net.version and addr in net for net in self.networks)


# Names no public DNS answers for: a page on another site can't rebind one of them to this machine.
_LOCAL_SUFFIXES = (".localhost", ".local", ".lan", ".home.arpa", ".internal", ".localdomain")


def is_local_name(hostname: str, own_names: Iterable[str] = ()) -> bool:
    """Whether ``hostname`` (lower case) can only name this machine or the local network.

    IP literals, ``localhost``, single-label names, names under a suffix no public DNS
    serves, and this machine's own names qualify; any other name could be a
    rebinding attacker's (``evil.example`` pointed at the printer's address).
    """
    hostname = hostname.rstrip(".")
    if parse_ip(hostname) is not None or hostname == "localhost" or "." not in hostname:
        return True
    return hostname.endswith(_LOCAL_SUFFIXES) or hostname in own_names


def _origin_pattern(domain: str) -> re.Pattern[str]:
    """A regex for one ``cors_domains`` entry.

    ``*`` alone allows every origin; otherwise ``*`` matches within one URL part, and an
    entry without a scheme (``*.local``, ``printer.lan:*``) matches any scheme.
    """
    if domain == "*":
        return re.compile(r".*")
    regex = re.escape(domain).replace(r"\*", r"[^/?#@\s]*")
    if "://" not in domain:
        regex = r"(?:[a-z][a-z0-9+.-]*://)?" + regex
    return re.compile(regex)


class CorsPolicy:
    """Origins allowed by ``cors_domains`` (``*`` matches within one URL part), and same-origin pages.

    A page is same-origin when its ``Origin`` names the ``Host`` the request was
    sent to *and* that host is a local name (``is_local_name``: an IP literal,
    ``localhost``, a single label, ``.local``/``.lan``/... or this machine's host
    name). Any other name must be listed in ``cors_domains``: the Host header
    alone proves nothing, since a rebinding attacker's page sends its own name
    in both headers.
    """

    def __init__(self, domains: Iterable[str], trusted: TrustedClients, own_names: Iterable[str] = ()) -> None:
        self.trusted = trusted
        self.own_names = frozenset(name.lower().rstrip(".") for name in own_names if name)
        self.patterns: list[re.Pattern[str]] = []
        self.invalid: list[str] = []
        self._verdicts: dict[tuple[str, str | None], bool] = {}  # bounded: origins of past clients
        self._generation = trusted.generation
        self._hosts: dict[str, bool] = {}  # bounded: Host headers of past requests
        for domain in domains:
            domain = domain.strip()
            # A wildcard in the top-level domain would match any site.
            if domain.endswith("/") or re.search(r"^.+\.[^:]*\*", domain):
                self.invalid.append(domain)
                continue
            self.patterns.append(_origin_pattern(domain.lower()))

    def allowed(self, origin: str | None, host: str | None = None) -> bool:
        """Whether a browser page at ``origin`` may call us (sent to ``host``).

        Without ``cors_domains`` only same-origin pages may, trusted or not (as Moonraker).
        """
        if not origin:
            return True
        key = (origin, host)
        verdict = self._verdicts.get(key)
        if verdict is None or self._generation != self.trusted.generation:
            if len(self._verdicts) > 4096 or self._generation != self.trusted.generation:
                self._generation = self.trusted.generation
                self._verdicts.clear()
            verdict = self._verdicts[key] = self._check(origin, host)
        return verdict

    def local_host(self, host: str) -> bool:
        """Whether a ``Host`` header names this machine: a local name, or one ``cors_domains`` allows."""
        verdict = self._hosts.get(host)
        if verdict is None:
            if len(self._hosts) > 4096:
                self._hosts.clear()
            verdict = self._hosts[host] = self._check_host(host.strip().lower())
        return verdict

    def _check_host(self, host: str) -> bool:
        try:
            hostname = urlsplit("//" + host).hostname
        except ValueError:
            return False
        if not hostname:
            return False
        if is_local_name(hostname, self.own_names):
            return True
        candidates = [f"{scheme}://{name}" for scheme in ("http", "https") for name in (host, hostname)]
        return any(p.fullmatch(c) for p in self.patterns for c in candidates)

    def _check(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().lower()
        try:
            parts = urlsplit(origin)
            hostname = parts.hostname
        except ValueError:
            return False
        if host and hostname and parts.netloc == host.strip().lower() and is_local_name(hostname, self.own_names):
            return True
        if not self.patterns:
            return False
        if any(p.fullmatch(origin) for p in self.patterns):
            return True
        return hostname is not None and self.trusted.is_trusted(hostname)
