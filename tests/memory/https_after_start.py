"""As the ``moontwist`` command starts without a certificate, then TLS: requests out and a port in.

Usage: https_after_start.py MODE URL CERT_PEM KEY_PEM
MODE ``http_client``: treq from ``moontwist.tls.http_client()``; ``import``: a plain ``import treq``.
Prints ``<status of URL> <status of our own HTTPS port>``; exits 1 on failure.
"""

import sys

from moontwist import tls

tls.defer_until_needed()

from twisted.internet import endpoints, task  # noqa: E402 - loaded while pyOpenSSL is hidden, as in the daemon
from twisted.internet.defer import ensureDeferred  # noqa: E402

import moontwist.tap  # noqa: E402,F401


async def fetch(reactor: object, mode: str, url: str, cert_path: str, key_path: str) -> None:
    assert "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is None, "pyOpenSSL was loaded at start-up"
    assert endpoints.TLSMemoryBIOFactory is None
    if mode == "http_client":
        treq = tls.http_client()
    else:
        import treq
    from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
    from twisted.web.client import Agent
    from twisted.web.iweb import IPolicyForHTTPS
    from twisted.web.resource import Resource
    from twisted.web.server import Site
    from zope.interface import implementer

    with open(cert_path, "rb") as c, open(key_path, "rb") as k:
        cert, key = c.read(), k.read()
    trust = Certificate.loadPEM(cert)

    @implementer(IPolicyForHTTPS)
    class TrustOne:
        def creatorForNetloc(self, hostname: bytes, port: int) -> object:  # noqa: N802
            return optionsForClientTLS("localhost", trustRoot=trust)

    class Hello(Resource):
        isLeaf = True

        def render_GET(self, request: object) -> bytes:  # noqa: N802
            return b"served"

    client = treq.client.HTTPClient(Agent(reactor, contextFactory=TrustOne()))
    out = await client.get(url, timeout=10)
    port = reactor.listenSSL(0, Site(Hello()), PrivateCertificate.loadPEM(cert + b"\n" + key).options(), interface="127.0.0.1")
    own = await client.get(f"https://localhost:{port.getHost().port}/", timeout=10)
    print(out.code, own.code, (await own.content()).decode())
    await port.stopListening()


task.react(lambda reactor: ensureDeferred(fetch(reactor, *sys.argv[1:5])))
