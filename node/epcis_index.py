"""EPCIS indexes over the node's LevelDB, as written: event hash IDs, own eventIDs, the query postings,
and the no-event-twice guard. Queries read them in node/epcis_query.py.

Layout (docs/storage.md, "EPCIS indexes"); ``loc`` is ``u64 height ‖ u32 index`` (chain order)::

    b"e" + digest[32]                        -> record id[32] ‖ loc   event hash ID (first record wins)
    b"E" + sha256(eventID)[32] + loc         -> record id[32]         the event's own eventID (many allowed)
    b"q" + field[1] + vkey[16] + loc         -> b"" | u64 µs          query postings, one list per value

``vkey`` is the first 16 bytes of SHA-256 of the *normalised* value (identifiers in canonical GS1
Digital Link form, CBV terms as web URIs: the forms of the event hash), or for the time fields
``u8 level ‖ 7 zero bytes ‖ u64 bucket`` with the value's time in µs as the entry's value. Every
posting list is sorted by loc, so a query is a leapfrog join of seekable cursors (one per
constrained parameter; a parameter's values are a union), and each candidate is checked exactly
against its event before it is returned. No query reads more than the postings of its own values.

Times are bucketed at five aligned granularities (2^16 ... 2^32 seconds, 18 hours to 136 years): each event
time is written once per level, and a range is covered by at most ~30 buckets per level, the edge
buckets filtered by the stored time. recordTime is the block's timestamp, the same for every record
of a block, so it is posted once per block (field ``B``, ``loc`` = ``u64 height``) and its cursor
stands for every record of the blocks it names: 5 keys per block instead of 5 per record, which
LevelDB would otherwise rewrite at every compaction level.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from rantai.client.format.epcis.event_hash import (
    _Ctx,
    _value,
    correction_digest,
    event_hash_id,
    hash_id_of_digest,
    uniqueness_digest,
)
from rantai.client.format.epcis.event_hash import timestamp_us as parse_time_us
from rantai.client.format.errors import DuplicateEvent

__all__ = [
    "DuplicateEvent", "HASHES", "hash_id_of_digest", "index_entries", "lookup_hash", "lookup_event_id",
    "record_digest", "parse_hash_id",
]

HASH, EVENT_ID, POSTING = b"e", b"E", b"q"
_LOC = struct.Struct(">QI")
_U64 = struct.Struct(">Q")
LEVELS = (16, 20, 24, 28, 32)  # bucket widths, log2 seconds
_MAX_SECONDS = (1 << 34) - 1  # times are indexed up to the year 2514 (later ones in the last bucket)
_FINEST = LEVELS[0]

# posting fields
F_TYPE, F_ACTION, F_STEP, F_DISP, F_READPOINT, F_BIZLOC = b"t", b"a", b"s", b"d", b"r", b"l"
F_EPC, F_PARENT, F_INPUT, F_OUTPUT = b"e", b"p", b"i", b"o"
F_EPC_CLASS, F_PARENT_CLASS, F_INPUT_CLASS, F_OUTPUT_CLASS = b"E", b"P", b"I", b"O"
F_EVENT_TIME, F_RECORD_TIME = b"T", b"R"  # R: per record, written by format rantai-node/1 only
F_BLOCK_TIME = b"B"  # recordTime, once per block: loc = u64 height
INDEX_VERSION = b"2"  # b"m" b"epcis-index": 2 = recordTime per block (older stores are upgraded on open)
_CLASS_OF = {F_EPC: F_EPC_CLASS, F_PARENT: F_PARENT_CLASS, F_INPUT: F_INPUT_CLASS, F_OUTPUT: F_OUTPUT_CLASS}


# -- event hash IDs, once per record ---------------------------------------------------------------

class _DigestCache:
    """record id -> event hash digest (32 bytes), bounded; filled at validation, read at commit."""

    def __init__(self, size: int = 65_536) -> None:
        self.size = size
        self._d: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, rid: bytes) -> bytes | None:
        return self._d.get(rid)

    def put(self, rid: bytes, digest: bytes) -> None:
        with self._lock:
            self._d[rid] = digest
            if len(self._d) > self.size:
                self._d.popitem(last=False)


HASHES = _DigestCache()


def record_digest(record: Any) -> bytes:
    """A ``SignedRecord``'s key of the no-event-twice rule and of the ``e`` index, computed once per record
    id: the digest of its event hash ID, or a distinct one for an error declaration (``uniqueness_digest``;
    an index lookup by hash ID finds the original). What the API shows as a hash ID is ``event_hash_id``."""
    d = HASHES.get(record.id)
    if d is None:
        d = uniqueness_digest(record.event)
        HASHES.put(record.id, d)
    return d


def parse_hash_id(text: str) -> bytes | None:
    """The digest of a hash ID written ``ni:///sha-256;<hex>[?ver=CBV2.0]`` (or None)."""
    t = text.strip()
    if not t.lower().startswith("ni:///sha-256;"):
        return None
    hexpart = t[len("ni:///sha-256;"):].split("?", 1)[0]
    if len(hexpart) != 64:
        return None
    try:
        return bytes.fromhex(hexpart)
    except ValueError:
        return None


def lookup_hash_id(db: Any, digest: bytes) -> tuple[bytes, int, int] | None:
    """(record id, height, index) of the committed event whose hash ID has this digest: the event
    itself, or else its error declaration (indexed under the correction's key, ``uniqueness_digest``)."""
    return lookup_hash(db, digest) or lookup_hash(db, correction_digest(digest))


def lookup_hash(db: Any, digest: bytes) -> tuple[bytes, int, int] | None:
    """(record id, height, index) of the committed event with this hash digest."""
    raw = db.get(HASH + digest)
    if raw is None:
        return None
    h, i = _LOC.unpack(raw[32:])
    return raw[:32], h, i


def lookup_event_id(db: Any, event_id: str, limit: int = 100) -> list[tuple[bytes, int, int]]:
    """(record id, height, index) of committed events declaring this eventID, in chain order."""
    prefix = EVENT_ID + hashlib.sha256(event_id.encode("utf-8")).digest()
    out = []
    for k, v in db.iterator(prefix=prefix):
        h, i = _LOC.unpack(k[len(prefix):])
        out.append((v, h, i))
        if len(out) >= limit:
            break
    return out


# -- values as indexed -------------------------------------------------------------------------------

_DEFAULT_CTX = _Ctx([])


def norm_id(value: Any) -> str:
    """An identifier in the hash's canonical form (EPC URI and Digital Link agree)."""
    return _value(value, _DEFAULT_CTX) if isinstance(value, str) else ""


def norm_term(value: Any, vocab: str) -> str:
    """A CBV term (bare, URN or web URI) as its web URI."""
    return _value(value, _DEFAULT_CTX, vocab) if isinstance(value, str) else ""


def epc_class(normalised: str) -> str | None:
    """The class pattern an instance identifier belongs to (SGTIN -> its GTIN), for ``idpat`` matches."""
    if normalised.startswith("https://id.gs1.org/01/"):
        cut = normalised.find("/", len("https://id.gs1.org/01/"))
        if cut > 0:
            return normalised[:cut]
    return None


@lru_cache(maxsize=65_536)
def _vkey(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def _tkey(level: int, bucket: int) -> bytes:
    return bytes([level]) + b"\x00" * 7 + _U64.pack(bucket)


_EPC_FIELDS: tuple[tuple[str, bytes], ...] = (
    ("epcList", F_EPC), ("childEPCs", F_EPC), ("inputEPCList", F_INPUT), ("outputEPCList", F_OUTPUT),
)


def event_postings(event: Mapping[str, Any]) -> list[tuple[bytes, str]]:
    """(field, normalised value) pairs of one event, without repeats."""
    out: dict[tuple[bytes, str], None] = {}

    def add(f: bytes, v: str) -> None:
        if v:
            out[(f, v)] = None

    add(F_TYPE, str(event.get("type", "")))
    add(F_ACTION, str(event.get("action", "")) if isinstance(event.get("action"), str) else "")
    add(F_STEP, norm_term(event.get("bizStep"), "bizStep"))
    add(F_DISP, norm_term(event.get("disposition"), "disposition"))
    for key, f in (("readPoint", F_READPOINT), ("bizLocation", F_BIZLOC)):
        loc = event.get(key)
        if isinstance(loc, dict):
            add(f, norm_id(loc.get("id")))
    ids: list[tuple[bytes, str]] = [(F_PARENT, norm_id(event.get("parentID")))]
    for key, f in _EPC_FIELDS:
        for v in event.get(key) or ():
            ids.append((f, norm_id(v)))
    for f, v in ids:
        add(f, v)
        c = epc_class(v) if v else None
        if c:
            add(_CLASS_OF[f], c)
    return list(out)


def _time_entries(field_tag: bytes, us: int, loc: bytes) -> list[tuple[bytes, bytes]]:
    sec = min(max(us, 0) // 1_000_000, _MAX_SECONDS)
    value = _U64.pack(max(us, 0))
    return [(_time_prefix(field_tag, level, sec >> level) + loc, value) for level in LEVELS]


@lru_cache(maxsize=16_384)
def _time_prefix(field_tag: bytes, level: int, bucket: int) -> bytes:
    return POSTING + field_tag + _tkey(level, bucket)


def index_entries(db: Any, height: int, timestamp_ms: int,
                  records: Sequence[Any]) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The EPCIS index entries of one block: (entries to put, [(digest, record id)] newly hashed).

    ``records`` are ``SignedRecord``s. A hash ID already on the chain (or earlier in this block) is
    not re-pointed: the first record keeps it (validation refuses such blocks; this only keeps the
    index deterministic if one is ever stored, e.g. by an older node's chain).
    """
    puts: list[tuple[bytes, bytes]] = []
    fresh: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for index, r in enumerate(records):
        if r.is_change:  # a governance entry: no EPCIS event to index
            continue
        event = r.event
        loc = _LOC.pack(height, index)
        digest = record_digest(r)
        if digest not in seen and db.get(HASH + digest) is None:
            puts.append((HASH + digest, r.id + loc))
            fresh.append((digest, r.id))
        seen.add(digest)
        own = event.get("eventID")
        if isinstance(own, str) and own:
            puts.append((EVENT_ID + hashlib.sha256(own.encode("utf-8")).digest() + loc, r.id))
        for f, v in event_postings(event):
            puts.append((POSTING + f + _vkey(v) + loc, b""))
        et = parse_time_us(event.get("eventTime"))
        if et is not None:
            puts.extend(_time_entries(F_EVENT_TIME, et, loc))
    if records:
        puts.extend(_time_entries(F_BLOCK_TIME, timestamp_ms * 1000, _U64.pack(height)))
    return puts, fresh


def upgrade(db: Any, headers: Iterable[tuple[int, int]]) -> bool:
    """Bring an older store's EPCIS index to ``INDEX_VERSION``; False when there was nothing to do.

    ``headers`` yields (height, timestamp ms) of every stored non-empty block. Version 1 posted
    recordTime per record (field ``R``): those postings are deleted and the per-block ones written,
    in one synced batch with the version, so a crash leaves the old index, upgraded again on open.
    """
    key = b"m" + b"epcis-index"
    if db.get(key) == INDEX_VERSION:
        return False
    with db.write_batch(sync=True, transaction=True) as wb:
        for k in db.iterator(prefix=POSTING + F_RECORD_TIME, include_value=False):
            wb.delete(k)
        for height, timestamp_ms in headers:
            for k, v in _time_entries(F_BLOCK_TIME, timestamp_ms * 1000, _U64.pack(height)):
                wb.put(k, v)
        wb.put(key, INDEX_VERSION)
    return True


# -- no event twice: admission and proposals (node/validation.py calls these) ---------------------------

class EventGuard:
    """Refuses a record whose event hash ID is committed, pending, or repeated, the same way everywhere.

    * pool threads: ``committed(record)`` (after the signature check) hashes the event once per record
      id and looks the digest up in the LevelDB hash index;
    * the loop: ``batch()`` before awaiting the pool, then ``check(record)`` per admitted record refuses
      an event pending in the mempool under another record id, or twice in one request;
    * proposals and catch-up: the ``duplicate event`` rule of ``validity.check_block``, with this
      node's index as its memory (``node/validation.py``) — a rule of the block and its parents only,
      so every honest validator decides alike;
    * after a block is stored, records of the mempool whose event just got committed under another
      record id are dropped, so a primary never proposes them.
    """

    def __init__(self, storage: Any, mempool: Any, pending_max: int = 65_536) -> None:
        self.storage = storage
        self.mempool = mempool
        self._pending: OrderedDict[bytes, bytes] = OrderedDict()  # digest -> record id (maybe stale)
        self._pending_max = pending_max
        try:
            import asyncio

            self._loop: Any = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        storage.on_commit.append(self._on_commit)

    # pool threads
    def digest(self, record: Any) -> bytes:
        return record_digest(record)

    def committed(self, record: Any) -> DuplicateEvent | None:
        if record.is_change:
            return None
        d = record_digest(record)
        hit = lookup_hash(self.storage.db, d)
        if hit is None:
            return None
        return _dup(record, hit[0], height=hit[1], index=hit[2])

    # the loop
    def batch(self) -> "_Batch":
        return _Batch(self, self.storage.height)

    def _on_commit(self, height: int, hashed: Any) -> None:
        if not hashed:
            return
        if self._loop is None:
            self._purge(hashed)
        else:
            self._loop.call_soon_threadsafe(self._purge, hashed)

    def _purge(self, hashed: Sequence[tuple[bytes, bytes]]) -> None:
        stale = []
        for d, rid in hashed:
            other = self._pending.pop(d, None)
            if other is not None and other != rid and other in self.mempool:
                stale.append(other)
        if stale:  # settle at height 0 touches no proposal: it only drops these records
            self.mempool.settle(0, stale)


class _Batch:
    def __init__(self, guard: EventGuard, height: int) -> None:
        self.guard = guard
        self.height = height
        self.seen: dict[bytes, bytes] = {}

    def check(self, record: Any) -> DuplicateEvent | None:
        if record.is_change:
            return None
        g = self.guard
        d = record_digest(record)
        if g.storage.height != self.height:  # a block landed while the pool verified
            hit = lookup_hash(g.storage.db, d)
            if hit is not None:
                return _dup(record, hit[0], height=hit[1], index=hit[2])
        other = self.seen.get(d)
        if other is not None and other != record.id:
            return _dup(record, other, pending=True, message="the same event appears twice in this request")
        other = g._pending.get(d)
        if other is not None and other != record.id and other in g.mempool:
            return _dup(record, other, pending=True)
        self.seen[d] = record.id
        g._pending[d] = record.id
        g._pending.move_to_end(d)
        if len(g._pending) > g._pending_max:
            g._pending.popitem(last=False)
        return None


def _dup(record: Any, existing: bytes, *, message: str | None = None, **details: Any) -> DuplicateEvent:
    hid = event_hash_id(record.event)  # the event's own hash ID (the index key differs for a correction)
    correction = "errorDeclaration" in record.event
    where = "pending" if details.get("pending") else "already on the ledger"
    if correction:
        where = f"already declared erroneous ({where})"
    return DuplicateEvent(f"event: {message or f'{hid} is {where}'} (record {existing.hex()})",
                          event_hash_id=hid, existing=existing.hex(), **details)
