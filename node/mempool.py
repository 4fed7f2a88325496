"""The mempool: a bounded, de-duplicated FIFO of admitted records, from which the primary cuts blocks.

A record is *ready* while it is in the pool and in no proposal still in flight (proposed or
validated, not yet committed). Tracking in-flight proposals by digest keeps a record out of two
blocks: the primary never cuts it twice, and a proposal that repeats a record of one of its own
uncommitted ancestors is refused (``ancestor_ids``). When height h commits, every proposal at
heights <= h is settled: committed records leave the pool, the others become ready again, at the
queue in admission order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rantai.client.format.errors import DuplicateRecord, Overloaded
from rantai.client.format.records import SignedRecord

__all__ = ["Flight", "Mempool"]


@dataclass(frozen=True, slots=True)
class Flight:
    height: int
    parent: bytes
    ids: tuple[bytes, ...]


class Mempool:
    def __init__(self, max_records: int = 50_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._records: dict[bytes, tuple[SignedRecord, int, int]] = {}  # id -> (record, admitted_ms, seq)
        self._seq = 0
        self._ready: OrderedDict[bytes, None] = OrderedDict()  # ids not in flight, FIFO
        self._flight_refs: dict[bytes, int] = {}  # id -> number of in-flight proposals holding it
        self._flights: dict[bytes, Flight] = {}  # digest -> flight
        self.bytes = 0

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, record_id: bytes) -> bool:
        return record_id in self._records

    def is_ready(self, record_id: bytes) -> bool:
        """Pending and in no proposal this node has seen: the primary has not picked it up yet."""
        return record_id in self._ready

    def get(self, record_id: bytes) -> SignedRecord | None:
        entry = self._records.get(record_id)
        return entry[0] if entry else None

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def oldest_ready_ms(self) -> int | None:
        for rid in self._ready:
            return self._records[rid][1]
        return None

    def should_propose(self, now_ms: int, max_records: int, batch_timeout_ms: int) -> bool:
        """Propose when a full block is ready, or the oldest ready record waited ``batch_timeout_ms``."""
        if len(self._ready) >= max_records:
            return True
        oldest = self.oldest_ready_ms()
        return oldest is not None and now_ms - oldest >= batch_timeout_ms

    # -- admission -------------------------------------------------------------------------
    def add(self, record: SignedRecord, now_ms: int) -> None:
        """Admit an already-validated record. Raises ``DuplicateRecord`` (pending) or ``Overloaded``."""
        if record.id in self._records:
            raise DuplicateRecord("record: already pending", id=record.id.hex(), pending=True)
        if len(self._records) >= self.max_records or self.bytes + len(record.raw) > self.max_bytes:
            raise Overloaded(f"mempool: full ({len(self._records)} records); retry later", retry_after_ms=500)
        self._seq += 1
        self._records[record.id] = (record, now_ms, self._seq)
        self.bytes += len(record.raw)
        if record.id not in self._flight_refs:
            self._ready[record.id] = None

    # -- proposals -------------------------------------------------------------------------
    def cut(self, max_records: int, max_bytes: int) -> list[SignedRecord]:
        """The oldest ready records that fit one block (FIFO). They stay ready until ``track``."""
        out: list[SignedRecord] = []
        size = 0
        for rid in self._ready:
            record = self._records[rid][0]
            if len(out) >= max_records or size + len(record.raw) > max_bytes:
                break
            out.append(record)
            size += len(record.raw)
        return out

    def track(self, digest: bytes, height: int, parent: bytes, ids: tuple[bytes, ...]) -> None:
        """A proposal is in flight (we proposed it, or validated it): its records are not ready."""
        if digest in self._flights:
            return
        self._flights[digest] = Flight(height, parent, ids)
        for rid in ids:
            self._flight_refs[rid] = self._flight_refs.get(rid, 0) + 1
            self._ready.pop(rid, None)

    def ancestor_ids(self, parent: bytes) -> dict[bytes, int]:
        """Record id -> height, for the uncommitted proposals this block would extend (following parents)."""
        out: dict[bytes, int] = {}
        seen = 0
        while (flight := self._flights.get(parent)) is not None and seen < len(self._flights):
            out.update(dict.fromkeys(flight.ids, flight.height))
            parent = flight.parent
            seen += 1
        return out

    def settle(self, height: int, committed_ids: tuple[bytes, ...] | list[bytes]) -> None:
        """Block ``height`` committed: drop its records and settle every proposal at heights <= height."""
        for rid in committed_ids:
            entry = self._records.pop(rid, None)
            if entry is not None:
                self.bytes -= len(entry[0].raw)
            self._ready.pop(rid, None)
        self._drop_flights([d for d, f in self._flights.items() if f.height <= height])

    def _drop_flights(self, digests: list[bytes]) -> None:
        """Forget these proposals; records no other proposal holds are ready again, in admission order."""
        released: list[bytes] = []
        for digest in digests:
            for rid in self._flights.pop(digest).ids:
                n = self._flight_refs.get(rid, 0) - 1
                if n > 0:
                    self._flight_refs[rid] = n
                else:
                    self._flight_refs.pop(rid, None)
                    if rid in self._records:
                        released.append(rid)
        if released:  # back into the queue in admission order (rare: only after a lost proposal)
            ids = set(self._ready) | set(released)
            self._ready = OrderedDict((rid, None) for rid in sorted(ids, key=lambda r: self._records[r][2]))

    def release_off_chain(self, tip: bytes) -> int:
        """Forget in-flight proposals that ``tip`` does not extend; returns how many.

        A proposal abandoned by a view change (never committed, not re-proposed) would otherwise
        hold its records out of every later block until its height commits, which it may never
        do if those very records are what the next block needs. The primary calls this before
        cutting a block on ``tip``: what the chain to ``tip`` holds stays in flight, the rest is
        ready again, in admission order.
        """
        keep: set[bytes] = set()
        digest = tip
        while (flight := self._flights.get(digest)) is not None and digest not in keep:
            keep.add(digest)
            digest = flight.parent
        stale = [d for d in self._flights if d not in keep]
        if stale:
            self._drop_flights(stale)
        return len(stale)

    @property
    def in_flight(self) -> int:
        return len(self._flight_refs)
