"""pyOpenSSL only once TLS is used: serving HTTPS, or the first TLS connection a plugin makes.

Twisted imports pyOpenSSL, and with it ``cryptography``, whenever it can
(``twisted.internet.endpoints``, ``posixbase``, ``twisted.web.client``): about
6 MB resident. ``defer_until_needed`` hides it before Twisted loads (the
``moontwist`` command does this when no certificate is configured). It comes
back as soon as anything imports a module that makes TLS connections (treq,
``twisted.web.client``, ``twisted.internet.ssl``): the import first completes
what Twisted set up without pyOpenSSL (TLS in endpoints and in the reactor's
``listenSSL``), so HTTPS requests, ``wss://`` and a certificate configured by a
later restart all work. ``http_client`` returns treq the same way; plugins call
it when they need it instead of importing treq at module level, so that an
unused feature loads none of it.
"""

from __future__ import annotations

import importlib.abc
import sys
import types
from typing import Any

__all__ = ["defer_until_needed", "http_client"]

# Importing one of these means TLS connections are about to be made.
_TRIGGERS = frozenset({"treq", "twisted.web.client", "twisted.internet.ssl"})


class _EnableOnImport(importlib.abc.MetaPathFinder):
    """Brings pyOpenSSL back before the first module that needs it loads (then steps aside)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname in _TRIGGERS:
            _enable()
        return None  # the ordinary finders load the module


def defer_until_needed() -> None:
    """Keep pyOpenSSL out of this process until a module that makes TLS connections is imported."""
    if "OpenSSL" in sys.modules:
        return  # already loaded (or already hidden)
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]
    # The reactor's base imports twisted.internet.ssl for listenSSL: let it find TLS missing
    # before imports start to count as a need for TLS.
    import twisted.internet.posixbase  # noqa: F401

    sys.meta_path.insert(0, _EnableOnImport())


def _enable() -> None:
    for finder in [f for f in sys.meta_path if isinstance(f, _EnableOnImport)]:
        sys.meta_path.remove(finder)
    if "OpenSSL" not in sys.modules or sys.modules["OpenSSL"] is not None:
        return
    del sys.modules["OpenSSL"]
    try:
        from twisted.protocols import tls
    except ImportError:  # pyOpenSSL not installed: TLS fails with Twisted's own error
        return
    from twisted.internet import endpoints, posixbase

    # Both were imported while pyOpenSSL was hidden and recorded that TLS is missing.
    if endpoints.TLSMemoryBIOFactory is None:
        endpoints.TLSMemoryBIOFactory = tls.TLSMemoryBIOFactory
    if posixbase.tls is None:
        posixbase.tls = tls


def http_client() -> types.ModuleType:
    """The ``treq`` module, with TLS available for HTTPS URLs."""
    _enable()
    import treq

    return treq
