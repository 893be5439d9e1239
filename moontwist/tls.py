"""pyOpenSSL only once TLS is used: serving HTTPS, or the first HTTP request a plugin makes.

Twisted imports pyOpenSSL, and with it ``cryptography``, whenever it can
(``twisted.internet.endpoints``, ``twisted.web.client``): about 6 MB resident.
``defer_until_needed`` hides it before Twisted loads (the ``moontwist`` command
does this when no certificate is configured); ``http_client`` brings it back,
completes what ``twisted.internet.endpoints`` set up without it, and only then
imports treq, so HTTPS requests work. Plugins get treq from ``http_client``
instead of importing it at module level.
"""

from __future__ import annotations

import sys
import types

__all__ = ["defer_until_needed", "http_client"]


def defer_until_needed() -> None:
    """Keep pyOpenSSL out of this process until ``http_client`` is first called."""
    sys.modules.setdefault("OpenSSL", None)  # type: ignore[arg-type]


def _enable() -> None:
    if "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is None:
        del sys.modules["OpenSSL"]
    try:
        from twisted.protocols.tls import TLSMemoryBIOFactory
    except ImportError:  # pyOpenSSL not installed: HTTPS requests fail with Twisted's own error
        return
    from twisted.internet import endpoints

    if endpoints.TLSMemoryBIOFactory is None:  # imported while pyOpenSSL was hidden
        endpoints.TLSMemoryBIOFactory = TLSMemoryBIOFactory


def http_client() -> types.ModuleType:
    """The ``treq`` module, with TLS available for HTTPS URLs."""
    _enable()
    import treq

    return treq
