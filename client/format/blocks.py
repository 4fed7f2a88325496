"""Blocks: a header that commits to its records by a Merkle root and to its parent by hash.

Header map (canonical msgpack, see docs/format.md)::

    {chain, height, prev_hash, proposer, record_count, records_root, timestamp, view}

Block hash = SHA-256(encode(header)); that hash is what validators sign in a commit certificate.
Block bytes = encode({"header": header, "records": [signed record bytes, ...]}): records travel
as their canonical bytes so that ids and proofs never depend on re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rantai.consensus.crypto import HASH_SIZE, sha256

from . import merkle
from .encoding import decode, encode
from .errors import InvalidBlock, InvalidEncoding, RantaiError
from .records import SignedRecord

__all__ = ["Block", "BlockHeader"]

_HEX16 = frozenset("0123456789abcdef")
_HEADER_FIELDS = ("chain", "height", "prev_hash", "proposer", "record_count", "records_root", "timestamp", "view")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain: bytes
    height: int
    prev_hash: bytes
    records_root: bytes
    record_count: int
    view: int
    proposer: str
    timestamp: int  # milliseconds since the epoch, as the proposer saw it

    def to_obj(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _HEADER_FIELDS}

    @classmethod
    def from_obj(cls, obj: Any) -> "BlockHeader":
        """A header from its decoded map: exact fields, exact types (rule ``header field``)."""
        if type(obj) is not dict or set(obj) != set(_HEADER_FIELDS):
            raise InvalidBlock(f"header: fields must be exactly {list(_HEADER_FIELDS)}", rule="header field")
        for k in ("chain", "prev_hash", "records_root"):
            if type(obj[k]) is not bytes or len(obj[k]) != HASH_SIZE:
                raise InvalidBlock(f"header: {k} must be 32 bytes", rule="header field")
        for k in ("height", "record_count", "view", "timestamp"):
            if type(obj[k]) is not int or not 0 <= obj[k] < 2**64:
                raise InvalidBlock(f"header: {k} must be an unsigned 64-bit integer", rule="header field")
        proposer = obj["proposer"]
        if type(proposer) is not str or len(proposer) != 16 or not set(proposer) <= _HEX16:
            raise InvalidBlock("header: proposer must be a validator id (16 lower-case hex digits)",
                               rule="header field")
        return cls(**obj)

    def encode(self) -> bytes:
        return encode(self.to_obj())

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    records: tuple[SignedRecord, ...]
    raw: bytes
    hash: bytes

    @classmethod
    def build(
        cls,
        *,
        chain: bytes,
        height: int,
        prev_hash: bytes,
        view: int,
        proposer: str,
        timestamp: int,
        records: Sequence[SignedRecord],
    ) -> "Block":
        header = BlockHeader(
            chain=chain,
            height=height,
            prev_hash=prev_hash,
            records_root=merkle.root([r.id for r in records]),
            record_count=len(records),
            view=view,
            proposer=proposer,
            timestamp=timestamp,
        )
        raw = encode({"header": header.to_obj(), "records": [r.raw for r in records]})
        return cls(header, tuple(records), raw, header.hash)

    @classmethod
    def from_bytes(cls, raw: bytes, known: Callable[[bytes], SignedRecord | None] | None = None) -> "Block":
        """Parse a block. Structure only; ``validity.check_block`` checks it against the chain.

        ``known(record_id)`` may return an already parsed record with that id (a node's mempool
        holds most records of a proposal before the proposal arrives), so it is not parsed twice.
        """
        try:
            obj = decode(raw)
        except InvalidEncoding as exc:
            raise InvalidBlock(f"block: {exc}", rule="encoding") from exc
        if type(obj) is not dict or set(obj) != {"header", "records"} or type(obj["records"]) is not list:
            raise InvalidBlock("block: a map of header and records expected", rule="block shape")
        header = BlockHeader.from_obj(obj["header"])
        records = []
        for i, r in enumerate(obj["records"]):
            if type(r) is not bytes:
                raise InvalidBlock(f"block: record {i} is not a byte string", rule="block shape")
            rid = sha256(r)  # once: the id the mempool knows the record by is the parsed record's id
            if known is not None:
                record = known(rid)
                if record is not None and record.raw == r:
                    records.append(record)
                    continue
            try:
                records.append(SignedRecord.from_bytes(r, record_id=rid))
            except RantaiError as exc:
                raise InvalidBlock(f"block {header.height}: record {i}: {exc}", rule=exc.rule, height=header.height,
                                   index=i) from exc
        return cls(header, tuple(records), bytes(raw), header.hash)

    @property
    def height(self) -> int:
        return self.header.height

    def record_ids(self) -> list[bytes]:
        return [r.id for r in self.records]

    def change_entries(self) -> list[tuple[int, SignedRecord]]:
        """(index, entry) of the governance changes in this block, in block order (what ``Governance.apply`` takes)."""
        return [(i, r) for i, r in enumerate(self.records) if r.is_change]
