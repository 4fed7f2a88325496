"""The commit certificate: 2f+1 validator signatures over one fixed statement.

The statement a validator signs when it commits a block is the same bytes whether it travels in
a COMMIT message between replicas or in a certificate handed to an auditor, so a certificate is
nothing but a set of COMMIT signatures, and anyone holding the genesis validator keys can check it.

Statement body (fixed layout, big-endian)::

    height (u64) ‖ view (u64) ‖ block_hash (32 bytes)

signed as ``signing_bytes("commit", chain, body)`` (see ``crypto``).

Every refusal is a ``CertificateError`` whose ``rule`` names the rule that failed (one of
``CERTIFICATE_RULES``), so the node, the client and the auditor report the same name for the same
fault.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .crypto import HASH_SIZE, SIGNATURE_SIZE, Verifier

__all__ = [
    "CERTIFICATE_RULES",
    "COMMIT_KIND",
    "CertificateError",
    "CommitCertificate",
    "commit_body",
    "max_faulty",
    "quorum_size",
    "verify_certificate",
]

COMMIT_KIND = "commit"
_U64 = struct.Struct(">QQ")
_U64_LIMIT = 2**64
_ID_SIZE = 16
_HEX = frozenset("0123456789abcdef")

RULE_MALFORMED = "certificate.malformed"
RULE_HEIGHT = "certificate.height"
RULE_BLOCK_HASH = "certificate.block hash"
RULE_VIEW = "certificate.view"
RULE_DUPLICATE = "certificate.duplicate signer"
RULE_UNSORTED = "certificate.unsorted"
RULE_UNKNOWN = "certificate.unknown validator"
RULE_QUORUM = "certificate.quorum"
RULE_SIGNATURE = "certificate.signature"
CERTIFICATE_RULES = (
    RULE_MALFORMED,
    RULE_HEIGHT,
    RULE_BLOCK_HASH,
    RULE_VIEW,
    RULE_DUPLICATE,
    RULE_UNSORTED,
    RULE_UNKNOWN,
    RULE_QUORUM,
    RULE_SIGNATURE,
)


class CertificateError(ValueError):
    """A commit certificate that does not prove what it claims. ``rule`` names the rule it breaks."""

    def __init__(self, message: str, rule: str = RULE_MALFORMED) -> None:
        super().__init__(message)
        self.rule = rule

    def __reduce__(self) -> tuple[type[CertificateError], tuple[str, str]]:
        return type(self), (str(self), self.rule)


def max_faulty(n: int) -> int:
    """f: the most faulty validators ``n`` validators tolerate (n = 3f+1; the same formula otherwise)."""
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """2f+1 for n = 3f+1 validators (and the same formula for n not of that form: n - f)."""
    return n - max_faulty(n)


def primary_index(view: int, n: int) -> int:
    """The position, in a validator set's order, of the validator that leads ``view``: plain rotation,
    so every replica, catch-up and the auditor derive the same primary from the view alone (the one
    definition; docs/consensus.md, docs/format.md §3)."""
    return view % n


def _is_u64(x: object) -> bool:
    return type(x) is int and 0 <= x < _U64_LIMIT


def commit_body(height: int, view: int, block_hash: bytes) -> bytes:
    if type(block_hash) is not bytes or len(block_hash) != HASH_SIZE:
        raise ValueError("block_hash must be 32 bytes")
    if not (_is_u64(height) and _is_u64(view)):
        raise ValueError("height and view are unsigned 64-bit integers")
    return _U64.pack(height, view) + block_hash


def _is_validator_id(x: object) -> bool:
    return type(x) is str and len(x) == _ID_SIZE and _HEX.issuperset(x)


def _shape_error(height: object, view: object, block_hash: object, votes: object) -> str | None:
    """What is wrong with the fields' types, ranges and sizes, or None (signatures are not checked here)."""
    if not _is_u64(height):
        return "height must be an unsigned 64-bit integer"
    if not _is_u64(view):
        return "view must be an unsigned 64-bit integer"
    if type(block_hash) is not bytes or len(block_hash) != HASH_SIZE:
        return f"block_hash must be {HASH_SIZE} bytes"
    if type(votes) is not tuple and type(votes) is not list:
        return "votes must be a list"
    for i, vote in enumerate(votes):
        if (type(vote) is not tuple and type(vote) is not list) or len(vote) != 2:
            return f"vote {i} must be a [validator id, signature] pair"
        vid, sig = vote
        if not _is_validator_id(vid):
            return f"vote {i}: validator id must be {_ID_SIZE} lowercase hex digits"
        if type(sig) is not bytes or len(sig) != SIGNATURE_SIZE:
            return f"vote {i}: signature must be {SIGNATURE_SIZE} bytes"
    return None


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """Proof that block ``block_hash`` was committed at ``height`` in ``view``.

    ``votes`` is sorted by validator id, one signature per validator.
    """

    height: int
    view: int
    block_hash: bytes
    votes: tuple[tuple[str, bytes], ...]

    def to_obj(self) -> dict[str, object]:
        return {  # keys in canonical (sorted) order
            "block_hash": self.block_hash,
            "height": self.height,
            "view": self.view,
            "votes": [[v, s] for v, s in self.votes],
        }

    @classmethod
    def from_obj(cls, obj: object) -> CommitCertificate:
        """Parse ``to_obj``'s shape exactly; raise ``CertificateError`` (rule ``certificate.malformed``) otherwise.

        Structure only: ``verify_certificate`` checks what the certificate proves.
        """
        if type(obj) is not dict or set(obj) != {"height", "view", "block_hash", "votes"}:
            raise CertificateError("certificate: a map of exactly block_hash, height, view and votes expected")
        height, view, block_hash, votes = obj["height"], obj["view"], obj["block_hash"], obj["votes"]
        problem = _shape_error(height, view, block_hash, votes)
        if problem is not None:
            raise CertificateError(f"certificate: malformed: {problem}")
        return cls(height, view, block_hash, tuple((vid, sig) for vid, sig in votes))


def verify_certificate(
    cert: CommitCertificate,
    chain: bytes,
    validators: Mapping[str, Verifier],
    *,
    height: int | None = None,
    block_hash: bytes | None = None,
    min_view: int | None = None,
) -> None:
    """Raise ``CertificateError`` unless ``cert`` carries ≥ 2f+1 valid signatures from distinct validators.

    The one definition of a valid certificate: well-formed fields (u64 height and view, a 32-byte
    hash, ``[id, 64-byte signature]`` votes), votes sorted strictly by validator id (so no signer
    twice), every signer a validator, at least ``quorum_size(len(validators))`` of them, and every
    signature valid over the commit statement.

    ``height``/``block_hash``, when given, must match what the certificate is about: a valid
    certificate for another block proves nothing about this one. ``min_view``, when given (the
    block header's view), bounds the certificate's view from below: a block is proposed in its
    header's view and can only be committed in that view or a later one.
    """
    problem = _shape_error(cert.height, cert.view, cert.block_hash, cert.votes)
    if problem is not None:
        raise CertificateError(f"certificate: malformed: {problem}", RULE_MALFORMED)
    if height is not None and cert.height != height:
        raise CertificateError(f"certificate: for height {cert.height}, not {height}", RULE_HEIGHT)
    if block_hash is not None and cert.block_hash != block_hash:
        raise CertificateError("certificate: for another block hash", RULE_BLOCK_HASH)
    if min_view is not None and cert.view < min_view:
        raise CertificateError(f"certificate: committed in view {cert.view}, before the block's view {min_view}",
                               RULE_VIEW)
    # Structure first, signatures last: a malformed vote list costs no signature check.
    prev: str | None = None
    seen: set[str] = set()
    for vid, _sig in cert.votes:
        if vid in seen:
            raise CertificateError(f"certificate: validator {vid} signed twice", RULE_DUPLICATE)
        if prev is not None and vid < prev:
            raise CertificateError(f"certificate: votes not sorted by validator id ({vid} after {prev})",
                                   RULE_UNSORTED)
        if vid not in validators:
            raise CertificateError(f"certificate: {vid} is not a validator of this chain", RULE_UNKNOWN)
        seen.add(vid)
        prev = vid
    need = quorum_size(len(validators))
    if len(seen) < need:
        raise CertificateError(f"certificate: {len(seen)} signatures, {need} needed (2f+1 of {len(validators)})",
                               RULE_QUORUM)
    body = commit_body(cert.height, cert.view, cert.block_hash)
    for vid, sig in cert.votes:
        if not validators[vid].verify(sig, COMMIT_KIND, chain, body):
            raise CertificateError(f"certificate: signature of validator {vid} does not verify", RULE_SIGNATURE)
