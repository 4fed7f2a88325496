"""Checking commit certificates against a genesis file, with the consensus layer's own verifier.

One definition: the node's catch-up, the client and the auditor all call this, and it calls
``rantai.consensus.certificate.verify_certificate``, the same code replicas use.
"""

from __future__ import annotations

from rantai.consensus.certificate import CertificateError, CommitCertificate
from rantai.consensus.certificate import verify_certificate as _verify

from .errors import InvalidCertificate
from .genesis import Genesis

__all__ = ["CommitCertificate", "certificate_from_obj", "verify_certificate"]


def verify_certificate(
    cert: CommitCertificate, genesis: Genesis, *, height: int, block_hash: bytes, min_view: int | None = None
) -> None:
    """``min_view``: the block header's view (a block is committed in its header's view or a later one).

    The consensus layer's ``CertificateError.rule`` (e.g. ``certificate.quorum``) is kept as the
    ``InvalidCertificate``'s ``__cause__``.
    """
    try:
        _verify(cert, genesis.hash, genesis.validator_verifiers, height=height, block_hash=block_hash,
                min_view=min_view)
    except CertificateError as exc:
        raise InvalidCertificate(f"block {height}: {exc}", height=height) from exc


def certificate_from_obj(obj: object) -> CommitCertificate:
    try:
        return CommitCertificate.from_obj(obj)
    except CertificateError as exc:
        raise InvalidCertificate(str(exc)) from exc
