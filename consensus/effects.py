"""Effects: what a ``Replica`` asks its driver to do. Plain frozen data; the driver runs them in order.

Rule: a ``Persist`` must be durable (synced) before any effect after it in the same list runs.
That is how a replica keeps its promises (never two digests for one (view, height)) across crashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .certificate import CommitCertificate

__all__ = [
    "Broadcast",
    "Commit",
    "Effect",
    "FetchState",
    "Persist",
    "Proposal",
    "Send",
    "Slot",
    "Validate",
]


@dataclass(frozen=True, slots=True)
class Proposal:
    """A block as consensus sees it. ``digest`` is the block hash (what COMMIT signs), ``parent`` the
    digest of block ``height - 1`` (the chain's genesis hash for height 1), ``payload`` the encoded
    block, opaque to consensus (the node checks it in ``Validate``)."""

    height: int
    parent: bytes
    digest: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Slot:
    """What the primary may propose next: a block at ``height`` whose parent is ``parent``."""

    view: int
    height: int
    parent: bytes


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    message: Any


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    message: Any


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable key/value writes (``None`` deletes). Sync before running any later effect of the list;
    on restart hand every surviving entry back to ``Replica(persisted=...)``."""

    entries: tuple[tuple[bytes, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Commit:
    """Deliver ``proposal`` with its certificate: strictly in height order, each height once."""

    proposal: Proposal
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class Validate:
    """Check ``proposal.payload``; answer with ``Replica.validated(view, height, digest, ok, now_ms)``."""

    view: int
    height: int
    proposal: Proposal


@dataclass(frozen=True, slots=True)
class FetchState:
    """Fetch blocks ``from_height..to_height`` with their certificates from ``peers``, verify and store
    them, then call ``Replica.state_transferred(height, digest, now_ms)`` with the height reached."""

    from_height: int
    to_height: int
    peers: tuple[str, ...]


Effect = Send | Broadcast | Persist | Commit | Validate | FetchState
