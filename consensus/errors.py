"""The two ways consensus can fail, kept apart as h11 keeps Local/RemoteProtocolError apart.

    ConsensusError
    ├── ProtocolViolation   a peer sent bytes or a message that breaks the rules (their fault: drop, count)
    └── InvariantBroken     the replica reached a state the protocol forbids (our bug: crash loudly)
"""

from __future__ import annotations

__all__ = ["ConsensusError", "InvariantBroken", "ProtocolViolation"]


class ConsensusError(Exception):
    """Base class of every error raised by ``rantai.consensus``."""


class ProtocolViolation(ConsensusError):
    """A malformed or oversized message from a peer (raised by ``wire.decode``)."""


class InvariantBroken(ConsensusError):
    """An internal invariant does not hold: a bug in this replica, never a peer's doing."""
