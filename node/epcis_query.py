"""Answering EPCIS queries from the index node/epcis_index.py writes: parameters, plans and cursors.

A query (``EventQuery``, parsed from the EPCIS 2.0 REST binding's parameters) becomes one cursor per
condition over the index's sorted posting keys, intersected by leapfrog join (``run_query``), so a
page costs what it returns, not what the chain holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rantai.client.format.epcis.event_hash import normalise_identifier
from rantai.client.format.epcis.event_hash import timestamp_us as parse_time_us

from .epcis_index import (
    F_ACTION,
    F_BIZLOC,
    F_BLOCK_TIME,
    F_DISP,
    F_EPC,
    F_EVENT_TIME,
    F_INPUT,
    F_OUTPUT,
    F_PARENT,
    F_READPOINT,
    F_STEP,
    F_TYPE,
    LEVELS,
    POSTING,
    _CLASS_OF,
    _FINEST,
    _LOC,
    _MAX_SECONDS,
    _U64,
    _tkey,
    _vkey,
    epc_class,
    event_postings,
    norm_id,
    norm_term,
)

__all__ = ["DEFAULT_PER_PAGE", "EVENT_TYPES", "KNOWN_PARAMS", "MAX_PER_PAGE", "EventQuery", "QueryParameterError",
           "plan", "run_query", "time_buckets"]


class QueryParameterError(ValueError):
    """A query the EPCIS binding refuses (unknown parameter, bad value): 400 QueryParameterException."""


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


