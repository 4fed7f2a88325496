"""Pinned TLS certificates: a certificate named by the SHA-256 of its DER bytes.

The one rule the node's peer links and the client library share for pinning: an operator copies
the fingerprint ``openssl x509 -noout -fingerprint -sha256 -in peer.crt`` prints (colons and case
do not matter; a ``sha256:`` prefix is allowed), and a connection whose peer certificate is not one
of the pinned ones is refused even when a CA vouches for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .errors import ConfigError

__all__ = ["fingerprint", "parse_pins", "pin_problem"]

_HEX = set("0123456789abcdef")


def fingerprint(der: bytes) -> str:
    """The pin of a certificate: SHA-256 of its DER encoding, 64 lowercase hex digits."""
    return hashlib.sha256(der).hexdigest()


def parse_pins(items: Iterable[str]) -> frozenset[str]:
    """Normalise fingerprints as openssl prints them (``AB:CD:...``) to the pin form; ``ConfigError`` if one is not."""
    out = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"tls pin {item!r}: a SHA-256 fingerprint (64 hex digits) expected")
        text = item.strip().lower()
        text = text.removeprefix("sha256:").removeprefix("sha256 fingerprint=").replace(":", "")
        if len(text) != 64 or not set(text) <= _HEX:
            raise ConfigError(f"tls pin {item!r}: a SHA-256 fingerprint (64 hex digits) expected")
        out.add(text)
    return frozenset(out)


def pin_problem(der: bytes | None, pins: frozenset[str]) -> str | None:
    """Why a peer's certificate fails the pins (``None``: it passes, or nothing is pinned)."""
    if not pins:
        return None
    if der is None:
        return "the peer presented no certificate, and certificates are pinned"
    fp = fingerprint(der)
    if fp not in pins:
        return f"the peer's certificate (sha256 {fp}) is not one of the {len(pins)} pinned"
    return None
