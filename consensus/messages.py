"""Consensus messages and the exact bytes each one signs.

Every signature is ``Signer.sign(kind, chain, body)`` (``crypto.signing_bytes``: domain, kind, chain,
body). Bodies are fixed big-endian layouts, never msgpack, so they are stable across encoders:

=============  ==============  ==================================================================
message        kind            body
=============  ==============  ==================================================================
PrePrepare     ``preprepare``  view u64 ‖ height u64 ‖ digest[32] ‖ parent[32]
Prepare        ``prepare``     view u64 ‖ height u64 ‖ digest[32]
CommitVote     ``commit``      height u64 ‖ view u64 ‖ digest[32]   (= certificate statement)
Checkpoint     ``checkpoint``  height u64 ‖ digest[32]
ViewChange     ``viewchange``  view u64 ‖ stable_height u64 ‖ stable_digest[32] ‖ count u32 ‖
                               count × (height u64 ‖ view u64 ‖ digest[32] ‖ parent[32])
NewView        ``newview``     view u64 ‖ count u32 ‖ count × (sender id ascii[16] ‖ vc sig[64]) ‖
                               count2 u32 ‖ count2 × (height u64 ‖ digest[32])
=============  ==============  ==================================================================

Proofs inside VIEW-CHANGE (checkpoint and prepared certificates) are lists of signatures that verify
on their own, so the VIEW-CHANGE signature covers only the claims. ``ViewChange.payloads`` (the
blocks behind the prepared certificates, needed to re-propose them) is not signed: the node checks
every payload against its digest in ``Validate``.

The body functions refuse (``ValueError``) a field that does not fit its slot: an integer that is
not a plain ``int`` in the u64 range (``True`` packs as 1), a digest or signature of the wrong
length (a 33-byte digest followed by a 31-byte parent would sign the same bytes as a valid pair).
``wire.decode`` already guarantees all of this for received messages; the checks keep a message
built in-process from signing ambiguous bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .certificate import COMMIT_KIND, commit_body
from .crypto import HASH_SIZE, SIGNATURE_SIZE

__all__ = [
    "CHECKPOINT_KIND",
    "Checkpoint",
    "CheckpointCert",
    "CommitVote",
    "Message",
    "NEWVIEW_KIND",
    "NewView",
    "PREPARE_KIND",
    "PREPREPARE_KIND",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "VIEWCHANGE_KIND",
    "ViewChange",
]

PREPREPARE_KIND = "preprepare"
PREPARE_KIND = "prepare"
CHECKPOINT_KIND = "checkpoint"
VIEWCHANGE_KIND = "viewchange"
NEWVIEW_KIND = "newview"

_QQ = struct.Struct(">QQ")
_Q = struct.Struct(">Q")
_I = struct.Struct(">I")
_U64_LIMIT = 2**64
_ID_SIZE = 16


def _u64(*values: int) -> None:
    for x in values:
        if type(x) is not int or not 0 <= x < _U64_LIMIT:
            raise ValueError(f"expected an unsigned 64-bit integer, got {x!r}")


def _sized(x: bytes, size: int) -> bytes:
    if type(x) is not bytes or len(x) != size:
        raise ValueError(f"expected {size} bytes")
    return x


def vote_body(view: int, height: int, digest: bytes) -> bytes:
    _u64(view, height)
    return _QQ.pack(view, height) + _sized(digest, HASH_SIZE)


@dataclass(frozen=True, slots=True)
class PrePrepare:
    view: int
    height: int
    parent: bytes
    digest: bytes
    payload: bytes
    sender: str
    sig: bytes

    KIND = PREPREPARE_KIND

    def body(self) -> bytes:
        return preprepare_body(self.view, self.height, self.digest, self.parent)


def preprepare_body(view: int, height: int, digest: bytes, parent: bytes) -> bytes:
    _u64(view, height)
    return _QQ.pack(view, height) + _sized(digest, HASH_SIZE) + _sized(parent, HASH_SIZE)


@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    height: int
    digest: bytes
    sender: str
    sig: bytes

    KIND = PREPARE_KIND

    def body(self) -> bytes:
        return vote_body(self.view, self.height, self.digest)


@dataclass(frozen=True, slots=True)
class CommitVote:
    """COMMIT: its signature is exactly a commit-certificate signature."""

    view: int
    height: int
    digest: bytes
    sender: str
    sig: bytes

    KIND = COMMIT_KIND

    def body(self) -> bytes:
        return commit_body(self.height, self.view, self.digest)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    height: int
    digest: bytes
    sender: str
    sig: bytes

    KIND = CHECKPOINT_KIND

    def body(self) -> bytes:
        return checkpoint_body(self.height, self.digest)


def checkpoint_body(height: int, digest: bytes) -> bytes:
    _u64(height)
    return _Q.pack(height) + _sized(digest, HASH_SIZE)


@dataclass(frozen=True, slots=True)
class CheckpointCert:
    """2f+1 CHECKPOINT signatures over (height, digest); height 0 (genesis) needs none."""

    height: int
    digest: bytes
    votes: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class PreparedCert:
    """A PRE-PREPARE signature of primary(view) plus 2f PREPARE signatures of distinct backups."""

    view: int
    height: int
    digest: bytes
    parent: bytes
    pp_sig: bytes
    prepares: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class ViewChange:
    view: int  # the view being moved to
    stable: CheckpointCert
    prepared: tuple[PreparedCert, ...]  # ascending height, above stable.height
    sender: str
    sig: bytes
    payloads: tuple[bytes, ...] = ()  # unsigned; aligned with ``prepared`` or empty

    KIND = VIEWCHANGE_KIND

    def body(self) -> bytes:
        return viewchange_body(self.view, self.stable, self.prepared)

    def stripped(self) -> "ViewChange":
        return ViewChange(self.view, self.stable, self.prepared, self.sender, self.sig, ())


def viewchange_body(view: int, stable: CheckpointCert, prepared: tuple[PreparedCert, ...]) -> bytes:
    _u64(view, stable.height)
    parts = [_QQ.pack(view, stable.height), _sized(stable.digest, HASH_SIZE), _I.pack(len(prepared))]
    for p in prepared:
        _u64(p.height, p.view)
        parts.append(_QQ.pack(p.height, p.view) + _sized(p.digest, HASH_SIZE) + _sized(p.parent, HASH_SIZE))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class NewView:
    view: int
    view_changes: tuple[ViewChange, ...]  # 2f+1, payloads stripped, sorted by sender
    pre_prepares: tuple[PrePrepare, ...]  # the re-proposals, ascending height
    sender: str
    sig: bytes

    KIND = NEWVIEW_KIND

    def body(self) -> bytes:
        return newview_body(self.view, self.view_changes, self.pre_prepares)


def newview_body(view: int, vcs: tuple[ViewChange, ...], pps: tuple[PrePrepare, ...]) -> bytes:
    _u64(view)
    parts = [_Q.pack(view), _I.pack(len(vcs))]
    for vc in vcs:
        if type(vc.sender) is not str or len(vc.sender) != _ID_SIZE or not vc.sender.isascii():
            raise ValueError("expected a validator id of 16 ascii characters")
        parts.append(vc.sender.encode("ascii") + _sized(vc.sig, SIGNATURE_SIZE))
    parts.append(_I.pack(len(pps)))
    for pp in pps:
        _u64(pp.height)
        parts.append(_Q.pack(pp.height) + _sized(pp.digest, HASH_SIZE))
    return b"".join(parts)


Message = PrePrepare | Prepare | CommitVote | Checkpoint | ViewChange | NewView
