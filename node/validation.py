"""Admission rules for records, and the checks a backup runs on a proposed block.

A record is admitted when, in this order: its size is within ``max_record_bytes``; it decodes as a
canonical signed record; it was not committed before and is not pending; it is signed for this
chain by a member holding the ``submitter`` role; the signature verifies; the event passes the EPCIS
rules. Decoding and signature checks run in a thread pool (libsodium releases the GIL, so every
core verifies) and work is handed over in chunks, one per worker, never one job per record; or,
with ``workers=0``, on the event loop in slices of ``INLINE_SLICE`` records. A request of at most
``INLINE_MAX`` records, and a proposal of at most ``INLINE_BLOCK_BYTES``, are checked on the loop
whatever ``workers`` says: the hand-off to a thread costs more than checking them. That is the better
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
from rantai.client.format.errors import (
    DuplicateEvent,
    DuplicateRecord,
    InvalidBlock,
    InvalidRecord,
    Overloaded,
    RantaiError,
    RecordTooLarge,
)
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import Governance
from rantai.client.format.records import SignedRecord
from rantai.client.format.validity import ChainMemory, Parent, check_block, check_record, rule_of

from .admission import CURRENT_TICKET, Ticket
from .epcis_index import HASHES, EventGuard, lookup_hash, record_digest
from .mempool import Mempool
from .storage import Storage

__all__ = ["RecordValidator", "error_body", "peek_submitter"]

INLINE_SLICE = 32  # records verified on the loop between yields when verify_workers = 0
INLINE_MAX = 4  # at most this many records are verified on the loop with verify_workers > 0 too
INLINE_BLOCK_BYTES = 64 * 1024  # a proposal at most this big is parsed on the loop (not in the pool)
_UNSEEN = object()
# A canonical signed record's last bytes: its map's last two entries, in key order (docs/format.md §4).
_SUBMITTER_KEY = b"\xa9submitter\xb0"  # the key, then a 16-character string's header
_VERSION_TAIL = b"\xa7version\x01"


def peek_submitter(raw: bytes) -> str | None:
    """The submitter a canonical record claims, read from its tail without decoding it; None if the
    tail is not the canonical one. A hint for cheap admission control, never a verdict: the record's
    rules are still checked in full (``validity.check_record``) before it is admitted."""
    if len(raw) < 40 or not raw.endswith(_VERSION_TAIL) or raw[-36:-25] != _SUBMITTER_KEY:
        return None
    try:
        return raw[-25:-9].decode("ascii")
    except UnicodeDecodeError:
        return None


def _is_refusal(res: Any) -> bool:
    """A record refused by a rule (what the refusal budget counts); duplicates are a client's retries."""
    return isinstance(res, BaseException) and not isinstance(res, (DuplicateRecord, DuplicateEvent, Overloaded))


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
        governance: Callable[[], Governance],
        *,
        workers: int = 2,
        cache_size: int = 65_536,
    ) -> None:
        self.genesis = genesis
        # The committed governance state (the ledger's); admission checks against what is in force next.
        self.governance = governance
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
        limit = consortium.params["max_record_bytes"]  # = self.max_record_bytes, looked up once per chunk
        out: list[SignedRecord | BaseException] = []
        for raw in raws:
            try:
                record = SignedRecord.from_bytes(raw, max_size=limit)
                loc = self.storage.locate(record.id)  # here, not on the loop: LevelDB reads drop the GIL
                if loc is not None:
                    out.append(DuplicateRecord("record: already committed", id=record.id.hex(),
                                               height=loc[0], index=loc[1]))
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
        if self.workers == 0 or len(items) <= INLINE_MAX:
            # On the loop, a slice at a time, yielding in between (not after the last) so votes and
            # HTTP keep flowing. A few records are checked here with workers too: handing them to a
            # thread and back costs more than checking them (~60 µs a record).
            out: list[Any] = fn(items[:INLINE_SLICE])
            for i in range(INLINE_SLICE, len(items), INLINE_SLICE):
                await asyncio.sleep(0)
                out.extend(fn(items[i : i + INLINE_SLICE]))
            return out
        loop = asyncio.get_running_loop()
        n = min(self.workers, len(items))
        size = -(-len(items) // n)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        results = await asyncio.gather(*(loop.run_in_executor(self.pool, fn, c) for c in chunks))
        return [r for chunk in results for r in chunk]

    # -- admission -------------------------------------------------------------------------
    def _parse_cheap(self, raws: Sequence[bytes]) -> list[SignedRecord | BaseException]:
        """Records whose claimed submitter may not submit: ``check_record`` refuses them on its
        membership or role rule, which it checks before the signature, so none is verified."""
        gov = self.governance()
        consortium = gov.at(gov.height + 1)
        limit = consortium.params["max_record_bytes"]
        out: list[SignedRecord | BaseException] = []
        for raw in raws:
            try:
                record = SignedRecord.from_bytes(raw, max_size=limit)
                check_record(record, consortium)
                out.append(record)  # pragma: no cover - the peeked submitter was wrong: never for canonical bytes
            except (RantaiError, ValueError) as exc:
                out.append(exc)
        return out

    def _may_submit(self, submitter: str) -> bool:
        """Routing only: a record this says no to still gets its verdict from ``check_record``.

        The consortium in force next decides; an admin may sign changes without the submitter role."""
        gov = self.governance()
        member = gov.at(gov.height + 1).members.get(submitter)
        return member is not None and member.active and bool({"submitter", "admin"} & member.roles)

    async def admit(self, raws: Sequence[bytes], ticket: Ticket | None = None) -> list[SignedRecord | BaseException]:
        """Check records for the mempool; each result is the record or the error that refused it.

        A record already committed or pending comes back as ``DuplicateRecord`` (with ``height``
        when committed). Nothing is added to the mempool here: the caller does that.

        With a ``ticket`` (node/admission.py; by default the one the API set for this request) the
        cheap refusals come first, for the whole request, before any signature is checked: size,
        then the submitter each record claims (peeked from its last bytes, no decoding) — not a
        member, or out of its member budget. The rest is verified in rounds, and once the source
        has spent its budget of refused records the records not yet verified are answered
        ``Overloaded`` (429) unchecked.
        """
        if ticket is None:
            ticket = CURRENT_TICKET.get()
        results: list[SignedRecord | BaseException | None] = [None] * len(raws)
        todo: list[int] = []
        limit = self.max_record_bytes
        for i, raw in enumerate(raws):
            if not isinstance(raw, bytes):
                results[i] = InvalidRecord("record: a byte string expected")
            elif len(raw) > limit:
                results[i] = RecordTooLarge(f"record: {len(raw)} bytes, the limit is {limit}", limit=limit)
            else:
                todo.append(i)
        rounds = [todo]
        if ticket is not None:
            ticket.failed(len(raws) - len(todo))
            todo, cheap = self._screen(raws, todo, results, ticket)
            for i, res in zip(cheap, self._parse_cheap([raws[i] for i in cheap]), strict=True):
                results[i] = res
            ticket.failed(sum(1 for i in cheap if _is_refusal(results[i])))
            size = ticket.admission.config.verify_round * max(self.workers, 1)
            rounds = [todo[k:k + size] for k in range(0, len(todo), size)]
        events = self.events.batch()
        seen: set[bytes] = set()
        for n, batch in enumerate(rounds):
            if ticket is not None and (stop := ticket.may_continue()) is not None:
                for later in rounds[n:]:
                    for i in later:
                        results[i] = stop
                break
            parsed = await self._in_chunks(self._parse_verify, [raws[i] for i in batch])
            if ticket is not None:
                ticket.failed(sum(1 for res in parsed if _is_refusal(res)))
            for i, res in zip(batch, parsed, strict=True):
                if isinstance(res, SignedRecord):
                    dup: DuplicateRecord | DuplicateEvent | None = self.pending(res.id)
                    if dup is None and res.id in seen:
                        dup = DuplicateRecord("record: appears twice in this request", id=res.id.hex(), pending=True)
                    if dup is None:
                        dup = events.check(res)  # its event pending under another record, or twice here
                    if dup is not None:
                        results[i] = dup
                        continue
                    seen.add(res.id)
                    self.verified.add(res.id)
                    if ticket is not None:
                        ticket.admitted(res.submitter)
                results[i] = res
        return results  # type: ignore[return-value]

    def _screen(self, raws: Sequence[bytes], todo: list[int], results: list[Any],
                ticket: Ticket) -> tuple[list[int], list[int]]:
        """Split ``todo`` by the submitter each record claims: (to verify, refused by membership).

        A member out of budget has its records answered here (429), unverified. A record whose
        tail is not the canonical one is left to the full parse, which names its rule.
        """
        keep: list[int] = []
        cheap: list[int] = []
        verdicts: dict[str, Any] = {}
        for i in todo:
            submitter = peek_submitter(raws[i])
            if submitter is None:
                keep.append(i)
                continue
            verdict = verdicts.get(submitter, _UNSEEN)
            if verdict is _UNSEEN:
                verdict = "cheap" if not self._may_submit(submitter) else ticket.member_refusal(submitter)
                verdicts[submitter] = verdict
            if verdict is None:
                keep.append(i)
            elif verdict == "cheap":
                cheap.append(i)
            else:
                results[i] = verdict
        return keep, cheap

    def pending(self, record_id: bytes) -> DuplicateRecord | None:
        if record_id in self.mempool:
            return DuplicateRecord("record: already pending", id=record_id.hex(), pending=True)
        return None

    # -- blocks ----------------------------------------------------------------------------
    def memory(self, ancestors: dict[bytes, int] | None = None) -> "ChainMemory":
        """What the chain below a block holds (``validity.ChainMemory``): this node's index, plus the
        uncommitted proposals the block extends (record id -> height)."""
        return _NodeMemory(self.storage, self.mempool, ancestors or {})

    def _parse_block(self, payload: bytes, height: int, digest: bytes | None) -> tuple[Block, list[bytes | None]]:
        limit = self.governance().at(height).params["max_block_bytes"]
        if len(payload) > limit:  # before parsing anything: the cheapest refusal first
            raise InvalidBlock(f"block {height}: {len(payload)} bytes, the limit is {limit}", rule="block too large",
                               height=height)
        block = Block.from_bytes(payload, self.mempool.get)
        if digest is not None and block.hash != digest:
            raise InvalidBlock(f"block {height}: hash does not match the proposal's digest", height=height)
        # hashed here, in the pool; a governance change has no event
        return block, [None if r.is_change else self.events.digest(r) for r in block.records]

    async def check_block(self, payload: bytes, height: int, digest: bytes | None, parent: Parent, *,
                          ancestors: dict[bytes, int] | None = None, now_ms: int | None = None,
                          governance: Callable[[], Governance] | None = None) -> Block:
        """Every rule a block must meet as the child of ``parent`` (``validity``), records' signatures
        included; raises ``RantaiError`` naming the rule. ``now_ms`` for a proposal, None in catch-up.

        ``governance`` gives the governance state after ``parent`` (committed state plus the proposals
        in flight below this block); it is asked for only when the block holds change entries.
        """
        consortium = self.governance().at(height)
        if len(payload) <= INLINE_BLOCK_BYTES:  # a small block (~100 records): the hand-off costs more
            block, digests = self._parse_block(payload, height, digest)
        else:
            block, digests = await asyncio.get_running_loop().run_in_executor(
                self.pool, self._parse_block, payload, height, digest)
        gov = governance() if governance is not None and any(r.is_change for r in block.records) else None
        check_block(block, consortium, parent, memory=self.memory(ancestors), digests=digests, now_ms=now_ms,
                    governance=gov)
        for i, r in enumerate(block.records):
            if r.id in self.verified:  # verified at admission, perhaps under another consortium
                try:
                    check_record(r, consortium, schema=False, signature=False)
                except RantaiError as exc:
                    raise InvalidBlock(f"block {height}: record {i} ({r.id.hex()}): {exc}",
                                       rule=rule_of(exc, "record field"), height=height, index=i) from exc
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
