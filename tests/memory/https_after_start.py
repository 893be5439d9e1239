"""As the ``moontwist`` command starts without a certificate, then one HTTPS request through ``http_client``.

Usage: https_after_start.py URL CERT_PEM; prints the status and body, exits 1 on failure.
"""

import sys

from moontwist import tls

tls.defer_until_needed()

from twisted.internet import endpoints, task  # noqa: E402 - loaded while pyOpenSSL is hidden, as in the daemon
from twisted.internet.defer import ensureDeferred  # noqa: E402

import moontwist.tap  # noqa: E402,F401


async def fetch(reactor: object, url: str, pem_path: str) -> None:
    assert "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is None, "pyOpenSSL was loaded at start-up"
    assert endpoints.TLSMemoryBIOFactory is None
    treq = tls.http_client()
    from twisted.internet.ssl import Certificate, optionsForClientTLS
    from twisted.web.client import Agent
    from twisted.web.iweb import IPolicyForHTTPS
    from zope.interface import implementer

    with open(pem_path, "rb") as f:
        trust = Certificate.loadPEM(f.read())

    @implementer(IPolicyForHTTPS)
    class TrustOne:
        def creatorForNetloc(self, hostname: bytes, port: int) -> object:  # noqa: N802
            return optionsForClientTLS("localhost", trustRoot=trust)

    client = treq.client.HTTPClient(Agent(reactor, contextFactory=TrustOne()))
    resp = await client.get(url, timeout=10)
    print(resp.code, (await resp.content()).decode())


task.react(lambda reactor: ensureDeferred(fetch(reactor, sys.argv[1], sys.argv[2])))
