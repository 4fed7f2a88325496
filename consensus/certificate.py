"""The commit certificate: 2f+1 validator signatures over one fixed statement.

The statement a validator signs when it commits a block is the same bytes whether it travels in
a COMMIT message between replicas or in a certificate handed to an auditor, so a certificate is
nothing but a set of COMMIT signatures, and anyone holding the genesis validator keys can check it.

Statement body (fixed layout, big-endian)::

    height (u64) ‖ view (u64) ‖ block_hash (32 bytes)

signed as ``signing_bytes("commit", chain, body)`` (see ``crypto``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .crypto import HASH_SIZE, Verifier

__all__ = ["COMMIT_KIND", "CommitCertificate", "CertificateError", "commit_body", "quorum_size", "verify_certificate"]

COMMIT_KIND = "commit"
_U64 = struct.Struct(">QQ")


class CertificateError(ValueError):
    """A commit certificate that does not prove what it claims."""


def quorum_size(n: int) -> int:
    """2f+1 for n = 3f+1 validators (and the same formula for n not of that form: n - f)."""
    f = (n - 1) // 3
    return n - f


def commit_body(height: int, view: int, block_hash: bytes) -> bytes:
    if len(block_hash) != HASH_SIZE:
        raise ValueError("block_hash must be 32 bytes")
    if not (0 <= height < 2**64 and 0 <= view < 2**64):
        raise ValueError("height and view are unsigned 64-bit integers")
    return _U64.pack(height, view) + block_hash


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """Proof that block ``block_hash`` was committed at ``height`` in ``view``.

    ``votes`` is sorted by validator id, one signature per validator.
    """

    height: int
    view: int
    block_hash: bytes
    votes: tuple[tuple[str, bytes], ...]

    def to_obj(self) -> dict:
        return {  # keys in canonical (sorted) order
            "block_hash": self.block_hash,
            "height": self.height,
            "view": self.view,
            "votes": [[v, s] for v, s in self.votes],
        }

    @classmethod
    def from_obj(cls, obj: object) -> "CommitCertificate":
        try:
            assert isinstance(obj, dict) and set(obj) == {"height", "view", "block_hash", "votes"}
            height, view, block_hash = obj["height"], obj["view"], obj["block_hash"]
            assert type(height) is int and type(view) is int and isinstance(block_hash, bytes)
            votes = []
            for item in obj["votes"]:
                vid, sig = item
                assert isinstance(vid, str) and isinstance(sig, bytes)
                votes.append((vid, sig))
        except (AssertionError, TypeError, ValueError, KeyError) as exc:
            raise CertificateError("certificate: malformed") from exc
        return cls(height, view, block_hash, tuple(votes))


def verify_certificate(
    cert: CommitCertificate,
    chain: bytes,
    validators: Mapping[str, Verifier],
    *,
    height: int | None = None,
    block_hash: bytes | None = None,
) -> None:
    """Raise ``CertificateError`` unless ``cert`` carries ≥ 2f+1 valid signatures from distinct validators.

    ``height``/``block_hash``, when given, must match what the certificate is about: a valid
    certificate for another block proves nothing about this one.
    """
    if height is not None and cert.height != height:
        raise CertificateError(f"certificate: for height {cert.height}, not {height}")
    if block_hash is not None and cert.block_hash != block_hash:
        raise CertificateError("certificate: for another block hash")
    try:
        body = commit_body(cert.height, cert.view, cert.block_hash)
    except ValueError as exc:
        raise CertificateError(f"certificate: {exc}") from exc
    need = quorum_size(len(validators))
    seen: set[str] = set()
    for vid, sig in cert.votes:
        if vid in seen:
            raise CertificateError(f"certificate: validator {vid} signed twice")
        seen.add(vid)
        verifier = validators.get(vid)
        if verifier is None:
            raise CertificateError(f"certificate: {vid} is not a validator of this chain")
        if not verifier.verify(sig, COMMIT_KIND, chain, body):
            raise CertificateError(f"certificate: signature of validator {vid} does not verify")
    if len(seen) < need:
        raise CertificateError(f"certificate: {len(seen)} signatures, {need} needed (2f+1 of {len(validators)})")
