"""rantai.consensus: a sans-I/O PBFT replica (Castro & Liskov) for a hash-chained ledger.

No networking, clock, randomness or disk here: ``Replica.handle(message, now_ms)`` and
``Replica.tick(now_ms, pending)`` return ``Effect`` lists that the node's driver executes in order.
"""

from . import wire
from .certificate import CertificateError, CommitCertificate, max_faulty, quorum_size, verify_certificate
from .config import ReplicaConfig
from .crypto import Signer, Verifier
from .effects import (
    Broadcast,
    Commit,
    Effect,
    FetchState,
    Persist,
    Proposal,
    Send,
    Slot,
    Validate,
)
from .epochs import Consensus
from .errors import ConsensusError, InvariantBroken, ProtocolViolation
from .messages import (
    Checkpoint,
    CheckpointCert,
    CommitVote,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    ViewChange,
)
from .replica import Replica, compute_reproposals

__all__ = [
    "Broadcast",
    "CertificateError",
    "Checkpoint",
    "CheckpointCert",
    "Commit",
    "CommitCertificate",
    "CommitVote",
    "Consensus",
    "ConsensusError",
    "Effect",
    "FetchState",
    "InvariantBroken",
    "Message",
    "NewView",
    "Persist",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "Proposal",
    "ProtocolViolation",
    "Replica",
    "ReplicaConfig",
    "Send",
    "Signer",
    "Slot",
    "Validate",
    "Verifier",
    "ViewChange",
    "compute_reproposals",
    "max_faulty",
    "quorum_size",
    "verify_certificate",
    "wire",
]
