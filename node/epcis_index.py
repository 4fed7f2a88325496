"""EPCIS indexes over the node's LevelDB: event hash IDs, own eventIDs, and the query postings.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rantai.client.format.epcis.event_hash import _Ctx, _value, event_digest, hash_id_of_digest, normalise_identifier
from rantai.client.format.epcis.event_hash import timestamp_us as parse_time_us
from rantai.client.format.errors import DuplicateEvent

__all__ = [
    "DuplicateEvent", "EventQuery", "QueryParameterError", "HASHES", "hash_id_of_digest",
    "index_entries", "lookup_hash", "lookup_event_id", "run_query", "record_digest", "parse_hash_id",
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


class QueryParameterError(ValueError):
    """A query the EPCIS binding refuses (unknown parameter, bad value): 400 QueryParameterException."""


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
    """The event hash digest of a ``SignedRecord``, computed once per record id."""
    d = HASHES.get(record.id)
    if d is None:
        d = event_digest(record.event)
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


# -- queries -------------------------------------------------------------------------------------------

LIST_PARAMS = {
    "eventType": F_TYPE, "EQ_action": F_ACTION, "EQ_bizStep": F_STEP, "EQ_disposition": F_DISP,
    "EQ_readPoint": F_READPOINT, "EQ_bizLocation": F_BIZLOC,
}
MATCH_PARAMS: dict[str, tuple[bytes, ...]] = {
    "MATCH_epc": (F_EPC,), "MATCH_parentID": (F_PARENT,), "MATCH_inputEPC": (F_INPUT,),
    "MATCH_outputEPC": (F_OUTPUT,), "MATCH_anyEPC": (F_EPC, F_PARENT, F_INPUT, F_OUTPUT),
}
TIME_PARAMS = ("GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime")
PAGE_PARAMS = ("perPage", "nextPageToken")
KNOWN_PARAMS = frozenset(LIST_PARAMS) | frozenset(MATCH_PARAMS) | frozenset(TIME_PARAMS) | frozenset(PAGE_PARAMS)
EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")
_VOCAB = {"EQ_bizStep": "bizStep", "EQ_disposition": "disposition"}
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 30


@dataclass
class EventQuery:
    """A parsed SimpleEventQuery: every constraint ANDed, the values of one parameter ORed."""

    lists: dict[str, list[str]] = field(default_factory=dict)  # param -> normalised values
    matches: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # param -> (value, is class pattern)
    times: dict[str, int] = field(default_factory=dict)  # param -> µs
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]]) -> "EventQuery":
        q = cls()
        seen: dict[str, list[str]] = {}
        for name, value in params:
            if name not in KNOWN_PARAMS:
                raise QueryParameterError(f"unknown query parameter {name!r}")
            seen.setdefault(name, []).extend(v for v in value.split("|"))
        for name, values in seen.items():
            values = [v.strip() for v in values]
            if name in PAGE_PARAMS:
                if len(values) != 1:
                    raise QueryParameterError(f"{name}: one value expected")
                if name == "perPage":
                    try:
                        q.per_page = int(values[0])
                    except ValueError:
                        raise QueryParameterError("perPage: an integer expected") from None
                    if not 1 <= q.per_page <= MAX_PER_PAGE:
                        raise QueryParameterError(f"perPage: 1..{MAX_PER_PAGE} expected")
                continue
            if any(not v for v in values):
                raise QueryParameterError(f"{name}: empty value")
            if name in TIME_PARAMS:
                if len(values) != 1:
                    raise QueryParameterError(f"{name}: one timestamp expected")
                us = parse_time_us(values[0])
                if us is None:
                    raise QueryParameterError(f"{name}: {values[0]!r} is not an RFC 3339 timestamp with time zone")
                q.times[name] = us
            elif name == "eventType":
                bad = [v for v in values if v not in EVENT_TYPES]
                if bad:
                    raise QueryParameterError(f"eventType: unknown event type {bad[0]!r}")
                q.lists[name] = values
            elif name == "EQ_action":
                bad = [v for v in values if v not in ("ADD", "OBSERVE", "DELETE")]
                if bad:
                    raise QueryParameterError(f"EQ_action: {bad[0]!r} is not ADD, OBSERVE or DELETE")
                q.lists[name] = values
            elif name in _VOCAB:
                q.lists[name] = [norm_term(v, _VOCAB[name]) for v in values]
            elif name in LIST_PARAMS:
                q.lists[name] = [norm_id(v) for v in values]
            else:
                q.matches[name] = [_match_value(v) for v in values]
        return q

    def fingerprint(self) -> bytes:
        """Binds a page token to its query (a token is refused with other parameters)."""
        text = repr((sorted(self.lists.items()), sorted(self.matches.items()), sorted(self.times.items()),
                     self.per_page))
        return hashlib.sha256(text.encode()).digest()[:8]

    # -- exact check of one event ----------------------------------------------------------------
    def accepts(self, event: Mapping[str, Any], record_time_us: int) -> bool:
        for name, values in self.lists.items():
            if _event_list_value(event, name) not in values:
                return False
        for name, patterns in self.matches.items():
            fields = MATCH_PARAMS[name]
            have = [v for f, v in event_postings(event) if f in fields]
            classes = {epc_class(v) for v in have}
            if not any((v in classes) if is_class else (v in have) for v, is_class in patterns):
                return False
        for name, us in self.times.items():
            t = record_time_us if name.endswith("recordTime") else parse_time_us(event.get("eventTime"))
            if t is None:
                return False
            if name.startswith("GE_") and t < us or name.startswith("LT_") and t >= us:
                return False
        return True


def _match_value(v: str) -> tuple[str, bool]:
    """A MATCH_ value: an identifier, or a class pattern (``urn:epc:idpat:sgtin:CP.IR.*``)."""
    if v.startswith("urn:epc:idpat:"):
        if not v.endswith(".*") or v.count("*") != 1:
            raise QueryParameterError(f"{v!r}: only class patterns ending in '.*' are supported")
        n = normalise_identifier(v[:-2] + ".*")
        if n == v or not n.startswith("https://id.gs1.org/01/"):
            raise QueryParameterError(f"{v!r}: an SGTIN class pattern (urn:epc:idpat:sgtin:CP.IR.*) expected")
        return n, True
    if "*" in v:
        raise QueryParameterError(f"{v!r}: wildcards only in urn:epc:idpat: patterns")
    return norm_id(v), False


def _event_list_value(event: Mapping[str, Any], name: str) -> str:
    if name == "eventType":
        return str(event.get("type", ""))
    if name == "EQ_action":
        return str(event.get("action", ""))
    if name in _VOCAB:
        return norm_term(event.get(_VOCAB[name]), _VOCAB[name])
    loc = event.get("readPoint" if name == "EQ_readPoint" else "bizLocation")
    return norm_id(loc.get("id")) if isinstance(loc, dict) else ""


# -- cursors: sorted locs, seekable ---------------------------------------------------------------------

class _Postings:
    """The locs of one posting list (``prefix`` + loc), optionally filtered by the stored time."""

    def __init__(self, db: Any, prefix: bytes, lo: int | None = None, hi: int | None = None) -> None:
        self.prefix = prefix
        self.filtered = lo is not None or hi is not None
        self.lo, self.hi = lo, hi
        self.it = db.iterator(prefix=prefix, include_value=self.filtered)
        self.current: bytes | None = None
        self.done = False
        self.reads = 0

    def seek(self, target: bytes) -> bytes | None:
        if self.done:
            return None
        if self.current is not None and self.current >= target:
            return self.current
        self.it.seek(self.prefix + target)
        while True:
            try:
                item = next(self.it)
            except StopIteration:
                self.done, self.current = True, None
                return None
            self.reads += 1
            if self.filtered:
                key, value = item
                t = _U64.unpack(value)[0]
                if (self.lo is not None and t < self.lo) or (self.hi is not None and t >= self.hi):
                    continue
            else:
                key = item
            self.current = key[len(self.prefix):]
            return self.current

    def close(self) -> None:
        self.it.close()


class _Union:
    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def seek(self, target: bytes) -> bytes | None:
        best = None
        for p in self.parts:
            x = p.seek(target)
            if x is not None and (best is None or x < best):
                best = x
        return best

    def close(self) -> None:
        for p in self.parts:
            p.close()

    @property
    def reads(self) -> int:
        return sum(p.reads for p in self.parts)


def time_buckets(lo_us: int | None, hi_us: int | None) -> list[tuple[int, int, bool]]:
    """Aligned buckets (level, bucket, exact) covering [lo, hi) µs; ``exact`` False = filter by time."""
    lo_s = 0 if lo_us is None else max(lo_us, 0) // 1_000_000
    hi_s = _MAX_SECONDS + 1 if hi_us is None else min(max(hi_us, 0) // 1_000_000 + 1, _MAX_SECONDS + 1)
    step = 1 << _FINEST
    start, stop = (lo_s >> _FINEST) << _FINEST, -(-hi_s // step) * step
    out = []
    p = start
    while p < stop:
        level = _FINEST
        for lv in reversed(LEVELS):
            if p % (1 << lv) == 0 and p + (1 << lv) <= stop:
                level = lv
                break
        size = 1 << level
        inside = (lo_us is None or p * 1_000_000 >= lo_us) and (hi_us is None or (p + size) * 1_000_000 <= hi_us)
        out.append((level, p >> level, inside))
        p += size
    return out


def _time_cursor(db: Any, tag: bytes, lo: int | None, hi: int | None) -> _Union:
    parts = []
    for level, bucket, inside in time_buckets(lo, hi):
        prefix = POSTING + tag + _tkey(level, bucket)
        parts.append(_Postings(db, prefix) if inside else _Postings(db, prefix, lo, hi))
    return _Union(parts)


class _WholeBlocks:
    """A cursor over block heights that stands for every loc in those blocks.

    It knows heights, not how many records a block holds, so it answers ``target`` itself when
    the target's block is one of its own; ``plan`` always joins it with a cursor of real locs.
    """

    def __init__(self, heights: _Union) -> None:
        self.heights = heights

    def seek(self, target: bytes) -> bytes | None:
        h = self.heights.seek(target[:8])
        if h is None:
            return None
        return target if h == target[:8] else h + b"\0\0\0\0"

    def close(self) -> None:
        self.heights.close()

    @property
    def reads(self) -> int:
        return self.heights.reads


def plan(db: Any, q: EventQuery) -> list[Any]:
    """One cursor per constraint (the most selective first is not needed: leapfrog skips)."""
    cursors: list[Any] = []
    for name, values in q.lists.items():
        tag = LIST_PARAMS[name]
        cursors.append(_Union([_Postings(db, POSTING + tag + _vkey(v)) for v in dict.fromkeys(values)]))
    for name, patterns in q.matches.items():
        parts = []
        for v, is_class in dict.fromkeys(patterns):
            for f in MATCH_PARAMS[name]:
                tag = _CLASS_OF[f] if is_class else f
                parts.append(_Postings(db, POSTING + tag + _vkey(v)))
        cursors.append(_Union(parts))
    lo, hi = q.times.get("GE_eventTime"), q.times.get("LT_eventTime")
    if lo is not None or hi is not None:
        cursors.append(_time_cursor(db, F_EVENT_TIME, lo, hi))
    if not cursors:  # no constraint on the events themselves: every event, through the eventType lists
        cursors.append(_Union([_Postings(db, POSTING + F_TYPE + _vkey(t)) for t in EVENT_TYPES]))
    lo, hi = q.times.get("GE_recordTime"), q.times.get("LT_recordTime")
    if lo is not None or hi is not None:
        cursors.append(_WholeBlocks(_time_cursor(db, F_BLOCK_TIME, lo, hi)))
    return cursors


def leapfrog(cursors: list[Any], start: bytes) -> Iterator[bytes]:
    """Locs present in every cursor, ascending, from ``start``."""
    target = start
    while True:
        x = cursors[0].seek(target)
        if x is None:
            return
        agreed = True
        for c in cursors[1:]:
            y = c.seek(x)
            if y is None:
                return
            if y != x:
                target, agreed = y, False
                break
        if agreed:
            yield x
            target = _next_loc(x)


def _next_loc(loc: bytes) -> bytes:
    h, i = _LOC.unpack(loc)
    return _LOC.pack(h, i + 1)


def run_query(db: Any, q: EventQuery, *, start: tuple[int, int], max_height: int,
              load: Any) -> tuple[list[tuple[int, int, Any]], tuple[int, int] | None, int]:
    """Up to ``q.per_page`` matches at or after ``start`` and at heights <= ``max_height``.

    ``load(height, index)`` returns (event, record_time_us, payload) for a committed loc. Returns
    (matches [(height, index, payload)], the loc to continue from or None, postings read).
    """
    cursors = plan(db, q)
    out: list[tuple[int, int, Any]] = []
    resume: tuple[int, int] | None = None
    try:
        for loc in leapfrog(cursors, _LOC.pack(*start)):
            h, i = _LOC.unpack(loc)
            if h > max_height:
                break
            got = load(h, i)
            if got is None:
                continue
            event, record_time_us, payload = got
            if q.accepts(event, record_time_us):
                if len(out) >= q.per_page:  # one more match exists: the next page starts there
                    resume = (h, i)
                    break
                out.append((h, i, payload))
        reads = sum(c.reads for c in cursors)
    finally:
        for c in cursors:
            c.close()
    return out, resume, reads


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
        return _dup(d, hit[0], height=hit[1], index=hit[2])

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
                return _dup(d, hit[0], height=hit[1], index=hit[2])
        other = self.seen.get(d)
        if other is not None and other != record.id:
            return _dup(d, other, pending=True, message="the same event appears twice in this request")
        other = g._pending.get(d)
        if other is not None and other != record.id and other in g.mempool:
            return _dup(d, other, pending=True)
        self.seen[d] = record.id
        g._pending[d] = record.id
        g._pending.move_to_end(d)
        if len(g._pending) > g._pending_max:
            g._pending.popitem(last=False)
        return None


def _dup(digest: bytes, existing: bytes, *, message: str | None = None, **details: Any) -> DuplicateEvent:
    hid = hash_id_of_digest(digest)
    where = "pending" if details.get("pending") else "already on the ledger"
    return DuplicateEvent(f"event: {message or f'{hid} is {where}'} (record {existing.hex()})",
                          event_hash_id=hid, existing=existing.hex(), **details)
