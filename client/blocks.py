"""Blocks: a header that commits to its records by a Merkle root and to its parent by hash.

Header map (canonical msgpack, see docs/format.md)::

    {chain, height, prev_hash, proposer, record_count, records_root, timestamp, view}

Block hash = SHA-256(encode(header)); that hash is what validators sign in a commit certificate.
Block bytes = encode({"header": header, "records": [signed record bytes, ...]}): records travel
as their canonical bytes so that ids and proofs never depend on re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rantai.consensus.crypto import HASH_SIZE, sha256

from . import merkle
from .encoding import decode, encode
from .errors import InvalidBlock, InvalidEncoding, RantaiError
from .records import SignedRecord

__all__ = ["Block", "BlockHeader", "check_block", "decode_blocks"]

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
        if not isinstance(obj, dict) or set(obj) != set(_HEADER_FIELDS):
            raise InvalidBlock(f"header: fields must be exactly {list(_HEADER_FIELDS)}")
        for k in ("chain", "prev_hash", "records_root"):
            if not isinstance(obj[k], bytes) or len(obj[k]) != HASH_SIZE:
                raise InvalidBlock(f"header: {k} must be 32 bytes")
        for k in ("height", "record_count", "view", "timestamp"):
            if type(obj[k]) is not int or obj[k] < 0:
                raise InvalidBlock(f"header: {k} must be a non-negative integer")
        if not isinstance(obj["proposer"], str):
            raise InvalidBlock("header: proposer must be a validator id")
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
        """Parse a block. Structure only; ``check_block`` checks it against the chain.

        ``known(record_id)`` may return an already parsed record with that id (a node's mempool
        holds most records of a proposal before the proposal arrives), so it is not parsed twice.
        """
        obj = decode(raw)
        if not isinstance(obj, dict) or set(obj) != {"header", "records"} or not isinstance(obj["records"], list):
            raise InvalidBlock("block: a map of header and records expected")
        header = BlockHeader.from_obj(obj["header"])
        records = []
        for i, r in enumerate(obj["records"]):
            if not isinstance(r, bytes):
                raise InvalidBlock(f"block: record {i} is not a byte string")
            if known is not None:
                record = known(sha256(r))
                if record is not None and record.raw == r:
                    records.append(record)
                    continue
            try:
                records.append(SignedRecord.from_bytes(r))
            except RantaiError as exc:
                raise InvalidBlock(f"block {header.height}: record {i}: {exc}", height=header.height, index=i) from exc
        return cls(header, tuple(records), bytes(raw), header.hash)

    @property
    def height(self) -> int:
        return self.header.height

    def record_ids(self) -> list[bytes]:
        return [r.id for r in self.records]


def check_block(block: Block, *, chain: bytes, height: int, prev_hash: bytes) -> None:
    """The structural rules a block obeys on its chain (records' signatures are checked apart).

    Why apart: signature checks dominate the cost and are run in parallel by the auditor and
    by the node's thread pool, while these checks are cheap and must run in order.
    """
    h = block.header
    where = f"block {height}"
    if h.chain != chain:
        raise InvalidBlock(f"{where}: belongs to another chain", height=height)
    if h.height != height:
        raise InvalidBlock(f"{where}: header says height {h.height}", height=height)
    if h.prev_hash != prev_hash:
        raise InvalidBlock(f"{where}: prev_hash does not match the hash of block {height - 1}", height=height)
    if h.record_count != len(block.records):
        raise InvalidBlock(f"{where}: record_count {h.record_count} but {len(block.records)} records", height=height)
    ids = block.record_ids()
    if len(set(ids)) != len(ids):
        raise InvalidBlock(f"{where}: the same record appears twice", height=height)
    root = merkle.root(ids)
    if root != h.records_root:
        raise InvalidBlock(f"{where}: records_root does not match its records", height=height)


def decode_blocks(chunks: Iterable[bytes]) -> Iterable[Block]:
    for raw in chunks:
        try:
            yield Block.from_bytes(raw)
        except InvalidEncoding as exc:
            raise InvalidBlock(f"block: {exc}") from exc
