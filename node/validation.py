"""Admission rules for records, and the checks a backup runs on a proposed block.

A record is admitted when, in this order: its size is within ``max_record_bytes``; it decodes as a
canonical signed record; it was not committed before and is not pending; it is signed for this
chain by a member holding the ``submitter`` role; the signature verifies; the event passes the EPCIS
rules. Decoding and signature checks run in a thread pool (libsodium releases the GIL, so every
core verifies) and work is handed over in chunks, one per worker, never one job per record; or,
with ``workers=0``, on the event loop in slices of ``INLINE_SLICE`` records. That is the better
choice when validators share a machine's cores (a devnet, the bench): there, a node's own threads
add no capacity, and each libsodium call's GIL hand-off cost about 85 µs per record (measured on
2 cores with 4 validators: 1,338 against 1,117 committed records/s).
Ids that verified are remembered (a bounded LRU), so a record admitted here is not verified again
when it comes back inside a proposal.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rantai.client.format.blocks import Block
from rantai.client.format.consortium import Consortium
from rantai.client.format.errors import DuplicateRecord, InvalidBlock, InvalidRecord, RantaiError, RecordTooLarge
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import Governance
from rantai.client.format.records import SignedRecord
from rantai.client.format.validity import ChainMemory, Parent, check_block, check_record, rule_of

from .epcis_index import HASHES, EventGuard, lookup_hash, record_digest
from .mempool import Mempool
from .storage import Storage

__all__ = ["RecordValidator", "error_body"]

INLINE_SLICE = 32
_GENESIS_ONLY: dict[bytes, Governance] = {}  # a validator used without a ledger (tests): the genesis in force  # records verified on the loop between yields when verify_workers = 0


def error_body(err: BaseException) -> dict[str, Any]:
    """The API's JSON error body for any rantai error (``{"error": RULE, "message": TEXT, ...}``)."""
    path = getattr(err, "path", None)
    reason = getattr(err, "reason", None)
    if path is not None and reason is not None:  # client.epcis.EventInvalid: the schema rule
        return {"error": "schema", "message": str(err), "path": path}
    if isinstance(err, RantaiError) and hasattr(err, "message"):
        return err.to_obj()
    return {"error": getattr(err, "rule", "error"), "message": str(err)}


def status_of(err: BaseException) -> int:
    return int(getattr(err, "status_hint", 400))


class _IdCache:
    """A bounded set of record ids with least-recently-added eviction."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, rid: bytes) -> bool:
        return rid in self._ids

    def add(self, rid: bytes) -> None:
        self._ids[rid] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)


class RecordValidator:
    def __init__(
        self,
        genesis: Genesis,
        storage: Storage,
        mempool: Mempool,
        governance: Callable[[], Governance] | None = None,
        *,
        workers: int = 2,
        cache_size: int = 65_536,
    ) -> None:
        self.genesis = genesis
        # The committed governance state (the ledger's); admission checks against what is in force next.
        self.governance = governance or (lambda: _GENESIS_ONLY.setdefault(genesis.hash, Governance(genesis)))
        self.storage = storage
        self.mempool = mempool
        self.workers = workers
        # Block parsing and catch-up use the pool even with workers=0 (one thread then).
        self.pool = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="rantai-verify")
        self.verified = _IdCache(cache_size)
        self.events = EventGuard(storage, mempool)  # no EPCIS event twice (node/epcis_index.py)

    @property
    def max_record_bytes(self) -> int:
        """The record size limit in force for the next block (governance may change it)."""
        gov = self.governance()
        return gov.at(gov.height + 1).params["max_record_bytes"]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- work done in the pool -------------------------------------------------------------
    def _parse_verify(self, raws: Sequence[bytes]) -> list[SignedRecord | BaseException]:
        gov = self.governance()
        consortium = gov.at(gov.height + 1)  # what a record admitted now is first checked against
        out: list[SignedRecord | BaseException] = []
        for raw in raws:
            try:
                record = SignedRecord.from_bytes(raw, max_size=self.max_record_bytes)
                loc = self.storage.locate(record.id)  # here, not on the loop: LevelDB reads drop the GIL
                if loc is not None:
                    out.append(DuplicateRecord("record: already committed", id=record.id.hex(), height=loc[0], index=loc[1]))
                    continue
                if record.id not in self.verified:
                    check_record(record, consortium)
                if record.is_change:
                    gov.check_entry(record, gov.height + 1)  # its governance rules, against the committed state
                elif (dup := self.events.committed(record)) is not None:  # its event hash ID is on the chain
                    out.append(dup)
                    continue
                out.append(record)
            except (RantaiError, ValueError) as exc:
                out.append(exc)
        return out

    def _verify(self, consortium: Consortium, records: Sequence[SignedRecord]) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for record in records:
            try:
                check_record(record, consortium)
                if not record.is_change:
                    self.events.digest(record)  # hashed here, in the pool, once per record
                out.append(None)
            except (RantaiError, ValueError) as exc:
                out.append(exc)
        return out

    async def _in_chunks(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        if self.workers == 0:
            # On the loop, a slice at a time, yielding in between so votes and HTTP keep flowing.
            out: list[Any] = []
            for i in range(0, len(items), INLINE_SLICE):
                out.extend(fn(items[i : i + INLINE_SLICE]))
                await asyncio.sleep(0)
            return out
        loop = asyncio.get_running_loop()
        n = min(self.workers, len(items))
        size = -(-len(items) // n)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        results = await asyncio.gather(*(loop.run_in_executor(self.pool, fn, c) for c in chunks))
        return [r for chunk in results for r in chunk]

    # -- admission -------------------------------------------------------------------------
    async def admit(self, raws: Sequence[bytes]) -> list[SignedRecord | BaseException]:
        """Check records for the mempool; each result is the record or the error that refused it.

        A record already committed or pending comes back as ``DuplicateRecord`` (with ``height``
        when committed). Nothing is added to the mempool here: the caller does that.
        """
        results: list[SignedRecord | BaseException | None] = [None] * len(raws)
        todo: list[int] = []
        for i, raw in enumerate(raws):
            if not isinstance(raw, bytes):
                results[i] = InvalidRecord("record: a byte string expected")
            elif len(raw) > self.max_record_bytes:
                results[i] = RecordTooLarge(
                    f"record: {len(raw)} bytes, the limit is {self.max_record_bytes}", limit=self.max_record_bytes
                )
            else:
                todo.append(i)
        events = self.events.batch()
        parsed = await self._in_chunks(self._parse_verify, [raws[i] for i in todo])
        seen: set[bytes] = set()
        for i, res in zip(todo, parsed):
            if isinstance(res, SignedRecord):
                dup = self.pending(res.id)
                if dup is None and res.id in seen:
                    dup = DuplicateRecord("record: appears twice in this request", id=res.id.hex(), pending=True)
                if dup is None:
                    dup = events.check(res)  # its event pending under another record, or twice here
                if dup is not None:
                    results[i] = dup
                    continue
                seen.add(res.id)
                self.verified.add(res.id)
            results[i] = res
        return results  # type: ignore[return-value]

    def pending(self, record_id: bytes) -> DuplicateRecord | None:
        if record_id in self.mempool:
            return DuplicateRecord("record: already pending", id=record_id.hex(), pending=True)
        return None

    # -- blocks ----------------------------------------------------------------------------
    def memory(self, ancestors: dict[bytes, int] | None = None) -> "ChainMemory":
        """What the chain below a block holds (``validity.ChainMemory``): this node's index, plus the
        uncommitted proposals the block extends (record id -> height)."""
        return _NodeMemory(self.storage, self.mempool, ancestors or {})

    def _parse_block(self, payload: bytes, height: int, digest: bytes | None) -> tuple[Block, list[bytes]]:
        limit = self.governance().at(height).params["max_block_bytes"]
        if len(payload) > limit:  # before parsing anything: the cheapest refusal first
            raise InvalidBlock(f"block {height}: {len(payload)} bytes, the limit is {limit}", rule="block too large",
                               height=height)
        block = Block.from_bytes(payload, self.mempool.get)
        if digest is not None and block.hash != digest:
            raise InvalidBlock(f"block {height}: hash does not match the proposal's digest", height=height)
        return block, [None if r.is_change else self.events.digest(r) for r in block.records]  # hashed here, in the pool

    async def check_block(self, payload: bytes, height: int, digest: bytes | None, parent: Parent, *,
                          ancestors: dict[bytes, int] | None = None, now_ms: int | None = None,
                          governance: Callable[[], Governance] | None = None) -> Block:
        """Every rule a block must meet as the child of ``parent`` (``validity``), records' signatures
        included; raises ``RantaiError`` naming the rule. ``now_ms`` for a proposal, None in catch-up.

        ``governance`` gives the governance state after ``parent`` (committed state plus the proposals
        in flight below this block); it is asked for only when the block holds change entries.
        """
        loop = asyncio.get_running_loop()
        consortium = self.governance().at(height)
        block, digests = await loop.run_in_executor(self.pool, self._parse_block, payload, height, digest)
        gov = governance() if governance is not None and any(r.is_change for r in block.records) else None
        check_block(block, consortium, parent, memory=self.memory(ancestors), digests=digests, now_ms=now_ms,
                    governance=gov)
        unverified = [(i, r) for i, r in enumerate(block.records) if r.id not in self.verified]
        errors = await self._in_chunks(functools.partial(self._verify, consortium), [r for _, r in unverified])
        for (i, r), err in zip(unverified, errors, strict=True):
            if err is not None:
                raise InvalidBlock(f"block {height}: record {i} ({r.id.hex()}): {err}",
                                   rule=rule_of(err, "record field"), height=height, index=i)
            self.verified.add(r.id)
        return block


class _NodeMemory:
    """``validity.ChainMemory`` from this node's LevelDB indexes and its uncommitted ancestors."""

    def __init__(self, storage: Storage, mempool: Mempool, ancestors: dict[bytes, int]) -> None:
        self.storage = storage
        self.ancestors = ancestors
        self._ancestor_events: dict[bytes, int] | None = None
        self._mempool = mempool

    def record_height(self, record_id: bytes) -> int | None:
        loc = self.storage.locate(record_id)
        return loc[0] if loc is not None else self.ancestors.get(record_id)

    def event_height(self, digest: bytes) -> int | None:
        hit = lookup_hash(self.storage.db, digest)
        if hit is not None:
            return hit[1]
        if self._ancestor_events is None:
            self._ancestor_events = {}
            for rid, height in self.ancestors.items():
                d = HASHES.get(rid)
                if d is None and (r := self._mempool.get(rid)) is not None:
                    d = record_digest(r)
                if d is not None:
                    self._ancestor_events[d] = height
        return self._ancestor_events.get(digest)
