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


def verify_certificate(cert: CommitCertificate, genesis: Genesis, *, height: int, block_hash: bytes) -> None:
    try:
        _verify(cert, genesis.hash, genesis.validator_verifiers, height=height, block_hash=block_hash)
    except CertificateError as exc:
        raise InvalidCertificate(f"block {height}: {exc}", height=height) from exc


def certificate_from_obj(obj: object) -> CommitCertificate:
    try:
        return CommitCertificate.from_obj(obj)
    except CertificateError as exc:
        raise InvalidCertificate(str(exc)) from exc
