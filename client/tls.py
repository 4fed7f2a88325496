"""HTTPS to rantai nodes: which servers the client trusts (a CA file, or pinned certificates) and its own certificate.

``context(...)`` builds the ``ssl.SSLContext`` that ``Client(verify=...)``, the CLIs and the bench
hand to httpx. Trust is either a CA file (the consortium's CA, or a node's self-signed certificate
used as its own CA), the system/certifi default, or pins alone (the node's certificate SHA-256,
rantai.client.format.pins), in which case the pin is the whole verification. A client
certificate is only needed where a node asks for one (its peer endpoints, for validators).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from .format.errors import ConfigError
from .format.pins import parse_pins, pin_problem

__all__ = ["context", "verify_option"]


def _check(obj: ssl.SSLObject | ssl.SSLSocket, pins: frozenset[str]) -> None:
    problem = pin_problem(obj.getpeercert(binary_form=True), pins)
    if problem is not None:
        raise ssl.SSLCertVerificationError(1, f"certificate pin: {problem}")


def _pin(ctx: ssl.SSLContext, pins: frozenset[str]) -> None:
    """Check the pins once a handshake completes: async httpx uses SSLObject (wrap_bio), sync httpx SSLSocket."""

    class PinnedObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            _check(self, pins)

    class PinnedSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            _check(self, pins)

    ctx.sslobject_class = PinnedObject
    ctx.sslsocket_class = PinnedSocket


def context(ca_file: str | os.PathLike[str] | None = None, cert: str | os.PathLike[str] | None = None,
            key: str | os.PathLike[str] | None = None, pins: Iterable[str] = ()) -> ssl.SSLContext:
    """A client ``SSLContext``: verify against ``ca_file`` (else the default CAs, or only ``pins`` when given
    alone), present ``cert``/``key`` when asked, and refuse a server whose certificate is not pinned."""
    pinned = parse_pins(pins)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if ca_file is not None:
            ctx.load_verify_locations(ca_file)
        elif pinned:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            import certifi

            ctx.load_verify_locations(certifi.where())
        if cert is not None:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(p) for p in (ca_file, cert, key) if p is not None)
        raise ConfigError(f"tls: cannot load {files}: {getattr(exc, 'strerror', None) or exc}") from exc
    if pinned:
        _pin(ctx, pinned)
    return ctx


def verify_option(verify: ssl.SSLContext | str | os.PathLike[str] | bool) -> ssl.SSLContext | bool:
    """What ``Client(verify=...)`` accepts, as httpx wants it: a path is a CA (or pinned certificate) file."""
    if isinstance(verify, (str, Path)) or hasattr(verify, "__fspath__"):
        return context(ca_file=verify)
    return verify
