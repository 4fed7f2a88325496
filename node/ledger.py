"""The ledger: stores committed blocks with their indexes, and serves blocks and receipts (history: node/history.py).

``apply`` turns a block and its commit certificate into one synced storage batch (block,
certificate, record index, item index, head); ``apply_run`` does the same for a run of blocks.
Receipts are built on demand from the stored block:
the inclusion path comes from the Merkle tree over the block's record ids (``client.merkle``), so
a receipt needs nothing but the block and its certificate. Recently used trees are cached: ``CACHE_BLOCKS``
blocks (the consensus window is 8 heights; a cached block of 570 records holds ~0.38 MB, so 64 of them
were ~24 MB of a validator's RSS, docs/performance.md).
"""

from __future__ import annotations

import itertools
import logging
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from rantai.client.format import merkle
from rantai.client.format.blocks import Block, BlockHeader
from rantai.client.format.encoding import decode, encode
from rantai.client.format.epcis.items import event_identifiers
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import Governance
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import SignedRecord
from rantai.client.format.validity import Parent, certificate_of
from rantai.consensus.certificate import CommitCertificate
from rantai.consensus.crypto import sha256

from .epcis_index import index_entries, upgrade
from .storage import BlockWrite, Storage, StorageError

__all__ = ["GOV", "NO_INDEX", "BlockEntries", "Ledger", "block_entries"]

log = logging.getLogger("rantai.node")

GOV = b"g"  # u64 height || u32 index -> a governance change entry's bytes (replayed at start-up)
_LOC = struct.Struct(">QI")
CACHE_BLOCKS = 16

# A block's index entries: (item history entries, EPCIS index entries, newly hashed events).
BlockEntries = tuple[list[tuple[str, int]], list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]


def block_entries(db: Any, height: int, timestamp_ms: int, records: Sequence[SignedRecord]) -> BlockEntries:
    """The index entries of block ``height``: item history (item id, record index), the EPCIS
    indexes (``epcis_index.index_entries``) and the (event digest, record id) pairs newly hashed.

    ``db`` is asked which listed values are stored already (never whether an event hash ID is: every
    stored block met the chain's ``duplicate event`` rule, ``index_entries``); catch-up's worker
    processes have no database and pass ``NO_INDEX`` (a listed value is then written again, unchanged).
    """
    items = [(item, i) for i, r in enumerate(records) if not r.is_change for item in event_identifiers(r.event)]
    epcis, hashed = index_entries(db, height, timestamp_ms, records)
    return items, epcis, hashed


class _NoIndex:
    """An empty index, for ``block_entries`` where there is no database (see there)."""

    @staticmethod
    def get(key: bytes) -> None:
        return None


NO_INDEX = _NoIndex()


def replay_governance(storage: Storage, genesis: Genesis, to: int) -> Governance:
    """The governance state after block ``to``, replayed from the change entries stored apart (``g``
    keys): start-up reads only those, not the whole chain."""
    gov = Governance(genesis)
    by_height: dict[int, list[tuple[int, SignedRecord]]] = {}
    for key, raw in storage.db.iterator(prefix=GOV):
        height, index = _LOC.unpack(key[len(GOV):])
        by_height.setdefault(height, []).append((index, SignedRecord.from_bytes(raw)))
    for height in sorted(by_height):
        if height > to:
            break
        gov.apply(height, by_height[height])
    gov.height = to
    return gov


class _StoredBlock:
    """A stored block split for serving receipts: header, record bytes and the Merkle tree's levels."""

    __slots__ = ("header", "raws", "levels", "certificate", "header_obj", "certificate_obj")

    def __init__(self, raw: bytes, cert: bytes) -> None:
        obj = decode(raw)
        self.header = BlockHeader.from_obj(obj["header"])
        self.raws: list[bytes] = obj["records"]
        ids = [sha256(r) for r in self.raws]
        self.levels = merkle.tree_levels(ids) if ids else []
        self.certificate_obj = decode(cert)
        self.certificate = certificate_of(self.certificate_obj, self.header.height)
        self.header_obj = obj["header"]

    def path(self, index: int) -> list[bytes]:
        return [self.levels[level][i] for level, i in merkle.inclusion_nodes(index, len(self.raws))]


class Ledger:
    def __init__(self, genesis: Genesis, storage: Storage, cache_blocks: int = CACHE_BLOCKS) -> None:
        self.genesis = genesis
        self.storage = storage
        self._cache: OrderedDict[int, _StoredBlock] = OrderedDict()
        self._cache_blocks = cache_blocks
        # an older store's EPCIS index (node/epcis_index.py)
        upgrade(storage.db, self._headers(), lambda: storage.blocks(1, storage.height))
        self.governance = replay_governance(storage, genesis, storage.height)

    def _headers(self) -> Iterator[tuple[int, int]]:
        for height, raw, _ in self.storage.blocks(1, self.storage.height):
            header = decode(raw)["header"]
            if header["record_count"]:
                yield height, header["timestamp"]

    @property
    def height(self) -> int:
        return self.storage.height

    def parent_at(self, height: int) -> Parent | None:
        """Stored block ``height`` as the parent of the next (height 0: the genesis), or None."""
        if height == 0:
            return Parent.genesis(self.genesis)
        sb = self._stored(height)
        return None if sb is None else Parent.of(sb.header)

    def head_parent(self) -> Parent:
        """The stored head as the parent of the next block."""
        height = self.storage.height
        parent = self.parent_at(height)
        if parent is None:
            raise _missing(height, self.storage)
        return parent

    # -- writing ---------------------------------------------------------------------------
    def apply(self, block: Block, certificate: CommitCertificate, entries: BlockEntries | None = None) -> None:
        """Store ``block`` (height = head + 1) with its certificate and indexes, in one synced batch."""
        self.apply_run([(block, certificate, entries)])

    def apply_run(self, run: Sequence[tuple[Block, CommitCertificate, BlockEntries | None]],
                  state: Sequence[tuple[bytes, bytes | None]] | None = None) -> None:
        """Store consecutive blocks (the first at head + 1) with their certificates and indexes: two
        synced batches for the whole run (``Storage.commit_blocks``).

        ``entries`` are the block's index entries when the caller computed them already (catch-up's
        worker processes, ``block_entries``); None: computed here. Governance changes (checked when
        the blocks were validated) are applied to the committed state only once the run is stored,
        on a fork swapped in after the write. ``state``: consensus ``Persist`` entries written in the
        index batch, one fsync for the round (``Storage.commit_blocks``).
        """
        writes = []
        gov = None
        for block, certificate, entries in run:
            items, epcis, hashed = entries if entries is not None else block_entries(
                self.storage.db, block.height, block.header.timestamp, block.records)
            changes = block.change_entries()
            if changes:  # a fork only then: copying the proposals for every block would grow with governance
                gov = gov or self.governance.fork()
                gov.apply(block.height, changes)
                epcis = epcis + [(GOV + _LOC.pack(block.height, i), r.raw) for i, r in changes]
            writes.append(BlockWrite(block.height, block.hash, block.raw, encode(certificate.to_obj()),
                                     block.record_ids(), items, epcis, hashed))
        self.storage.commit_blocks(writes, state)
        if gov is not None:
            self.governance = gov
        if run:
            self.governance.height = run[-1][0].height

    # -- reading ---------------------------------------------------------------------------
    def _stored(self, height: int) -> _StoredBlock | None:
        sb = self._cache.get(height)
        if sb is not None:
            self._cache.move_to_end(height)
            return sb
        raw, cert = self.storage.block(height), self.storage.certificate(height)
        if raw is None or cert is None:
            if 1 <= height <= self.storage.height:
                raise _missing(height, self.storage)
            return None
        sb = _StoredBlock(raw, cert)
        self._cache[height] = sb
        if len(self._cache) > self._cache_blocks:
            self._cache.popitem(last=False)
        return sb

    def receipt_at(self, height: int, index: int) -> Receipt | None:
        sb = self._stored(height)
        if sb is None or not 0 <= index < len(sb.raws):
            return None
        return Receipt(
            record=SignedRecord.from_bytes(sb.raws[index]),
            index=index,
            path=tuple(sb.path(index)),
            header=sb.header,
            certificate=sb.certificate,
        )

    def receipt_obj_at(self, height: int, index: int) -> dict[str, Any] | None:
        """``receipt_at(...).to_obj()`` without parsing the record: the hot path of ``?wait=commit``.

        Built from the cached block's decoded header and certificate, whose maps are already in
        canonical order, so encoding the answer needs no re-sorting.
        """
        sb = self._stored(height)
        if sb is None or not 0 <= index < len(sb.raws):
            return None
        return {"certificate": sb.certificate_obj, "header": sb.header_obj, "index": index,
                "path": sb.path(index), "record": sb.raws[index]}

    def change_receipts(self, to: int) -> list[Receipt]:
        """Receipts of the change entries a verifier replays to know the consortium up to height ``to``."""
        out = []
        for height, index in self.governance.change_entries(to):
            r = self.receipt_at(height, index)
            if r is None:  # pragma: no cover - the entries were read from stored blocks
                raise StorageError(f"change entry {height}/{index} is not stored")
            out.append(r)
        return out

    def receipt(self, record_id: bytes) -> Receipt | None:
        loc = self.storage.locate(record_id)
        return None if loc is None else self.receipt_at(*loc)

    def block_obj(self, height: int) -> dict[str, Any] | None:
        raw, cert = self.storage.block(height), self.storage.certificate(height)
        if raw is None or cert is None:
            if 1 <= height <= self.storage.height:
                raise _missing(height, self.storage)
            return None
        return {"block": raw, "certificate": decode(cert)}

    def block_json(self, height: int) -> dict[str, Any] | None:
        sb = self._stored(height)
        if sb is None:
            return None
        return {
            "header": sb.header.to_obj(),
            "hash": sb.header.hash,
            "record_ids": [sha256(r) for r in sb.raws],
            "certificate": sb.certificate.to_obj(),
        }

    def stream(self, start: int, stop: int) -> Iterator[bytes]:
        """Canonical ``{"block", "certificate"}`` objects for heights start..stop, one per item.

        The first item is read now, so a block missing at ``start`` is a ``StorageError`` (503)
        before any byte is sent. A block missing further on raises in the middle of the stream:
        the server then aborts the response, so the reader sees a broken transfer, never a
        shorter chain that looks complete, and the log names the missing height.
        """
        items = self._stream(start, min(stop, self.storage.height))
        first = next(items, None)
        if first is None:
            return iter(())
        return itertools.chain((first,), items)

    def _stream(self, start: int, stop: int) -> Iterator[bytes]:
        expect = start
        for height, raw, cert in self.storage.blocks(start, stop):
            if height != expect:
                break
            yield encode({"block": raw, "certificate": decode(cert)})
            expect += 1
        if expect <= stop:
            exc = _missing(expect, self.storage)
            log.error("GET /v1/blocks: %s; the stream ends here", exc)
            raise exc

    def head_obj(self) -> dict[str, Any]:
        height, block_hash = self.storage.head()
        if height == 0:
            return {"height": 0, "block_hash": block_hash, "header": None, "certificate": None}
        sb = self._stored(height)
        if sb is None:
            raise _missing(height, self.storage)
        return {"height": height, "block_hash": block_hash, "header": sb.header.to_obj(),
                "certificate": sb.certificate.to_obj()}


def _missing(height: int, storage: Storage) -> StorageError:
    """A block at or below the head that the store cannot read: damage found while serving."""
    return StorageError(f"storage: block {height} is missing under head {storage.height} (data_dir {storage.path}); "
                        "the node's start-up check repairs this: restart it")
