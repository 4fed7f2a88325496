"""EPCIS indexes over the node's LevelDB, as written: event hash IDs, own eventIDs, the query postings,
and the no-event-twice guard. Queries read them in node/epcis_query.py.

Layout (docs/storage.md, "EPCIS indexes"); ``loc`` is ``u64 height ‖ u32 index`` (chain order)::

    b"e" + digest[32]                        -> record id[32] ‖ loc   event hash ID (first record wins)
    b"E" + sha256(eventID)[32] + loc         -> record id[32]         the event's own eventID (many allowed)
    b"q" + field[1] + vkey[16] + u64 height  -> indices [‖ times]    query postings of one value in one block
    b"V" + field[1] + value (UTF-8)          -> b""                   each bizStep, disposition, readPoint,
                                                                      bizLocation once (GET /epcis/bizSteps ...)

``vkey`` is the first 16 bytes of SHA-256 of the *normalised* value (identifiers in canonical GS1
Digital Link form, CBV terms as web URIs: the forms of the event hash), or for the time fields
``u8 level ‖ 7 zero bytes ‖ u64 bucket``. A posting key holds every record of its block that has the
value (node/postings.py: the record indices, and for time fields each record's time in µs). A value's keys
therefore grow with the height: LevelDB appends them instead of rewriting a random key per (value,
record) at every compaction level, and a block writes one key per distinct value. Every
posting list is sorted by loc, so a query is a leapfrog join of seekable cursors (one per constrained
parameter; a parameter's values are a union), and each candidate is checked exactly against its event
before it is returned. No query reads more than the postings of its own values.

Times are bucketed at five aligned granularities (2^16 ... 2^32 seconds, 18 hours to 136 years): each event
time is posted once per level, and a range is covered by at most ~30 buckets per level, the edge
buckets filtered by the stored time. recordTime is the block's timestamp, the same for every record
of a block, so it is posted once per block (field ``B``, key ``... ‖ u64 height``, value the time in µs) and
its cursor stands for every record of the blocks it names.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from rantai.client.format.epcis.event_hash import (
    CBV,
    _KNOWN,
    _Ctx,
    _value,
    correction_digest,
    event_hash_id,
    hash_id_of_digest,
    normalise_number,
    uniqueness_digest,
)
from rantai.client.format.epcis.event_hash import timestamp_us as parse_time_us
from rantai.client.format.errors import DuplicateEvent

from .postings import pack_indices

__all__ = [
    "DuplicateEvent", "HASHES", "hash_id_of_digest", "index_entries", "lookup_hash", "lookup_event_id",
    "record_digest", "parse_hash_id",
]

HASH, EVENT_ID, POSTING, VALUES = b"e", b"E", b"q", b"V"
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
F_ATTR = b"g"  # every other parameter: vkey of attr(name, value) (eventID, classes, bizTransactions, ...)
# b"m" b"epcis-index": 2 = recordTime per block; 3 = F_ATTR postings and values read with the event's own
# @context; 4 = one posting key per (value, block) (older stores are re-indexed on open)
INDEX_VERSION = b"4"
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


def event_context(event: Mapping[str, Any]) -> _Ctx:
    """The prefixes an event's values are read with: the EPCIS defaults and the event's own ``@context``
    (the hash ID's reading, so a custom CURIE is indexed under the full IRI it stands for)."""
    own = event.get("@context")
    return _DEFAULT_CTX if own is None else _Ctx([own])


def norm_id(value: Any, ctx: _Ctx = _DEFAULT_CTX) -> str:
    """An identifier in the hash's canonical form (EPC URI and Digital Link agree)."""
    return _value(value, ctx) if isinstance(value, str) else ""


def norm_term(value: Any, vocab: str | None, ctx: _Ctx = _DEFAULT_CTX) -> str:
    """A CBV term (bare, URN or web URI) as its web URI."""
    return _value(value, ctx, vocab) if isinstance(value, str) else ""


def norm_reason(value: Any, ctx: _Ctx = _DEFAULT_CTX) -> str:
    """An error reason: CBV 2.0 names them ``https://ref.gs1.org/cbv/ER-<term>`` (bare: ``incorrect_data``)."""
    if not isinstance(value, str):
        return ""
    v = value.strip()
    return CBV + "ER-" + v if v and ":" not in v else norm_id(v, ctx)


def forms(value: Any, ctx: _Ctx, vocab: str | None = None) -> list[str]:
    """The forms a value is found by: its reading with the event's prefixes, and also as written with the
    EPCIS defaults when the event defines a prefix of its own (a query has no ``@context`` to expand a CURIE)."""
    a = norm_term(value, vocab, ctx)
    if ctx is _DEFAULT_CTX:
        return [a] if a else []
    b = norm_term(value, vocab, _DEFAULT_CTX)
    return [x for x in dict.fromkeys((a, b)) if x]


def epc_class(normalised: str) -> str | None:
    """The class pattern an instance identifier belongs to (SGTIN -> its GTIN), for ``idpat`` matches."""
    if normalised.startswith("https://id.gs1.org/01/"):
        cut = normalised.find("/", len("https://id.gs1.org/01/"))
        if cut > 0:
            return normalised[:cut]
    return None


def key_kind(normalised: str) -> str:
    """The kind of a normalised identifier that ``urn:epc:idpat:`` patterns select on: a Digital Link's
    primary key AI (``01``, ``00``, ``414`` ...), an EPC URI's scheme (``gid``), else ``""``."""
    if normalised.startswith(_DL_ROOT):
        return normalised[len(_DL_ROOT):].split("/", 1)[0]
    if normalised.startswith("urn:epc:id:"):
        return normalised[len("urn:epc:id:"):].split(":", 1)[0]
    return ""


_DL_ROOT = "https://id.gs1.org/"


@lru_cache(maxsize=65_536)
def _vkey(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def _tkey(level: int, bucket: int) -> bytes:
    return bytes([level]) + b"\x00" * 7 + _U64.pack(bucket)


def attr(name: str, value: str = "") -> str:
    """The text an ``F_ATTR`` posting is keyed by: a name (``transformationID``, ``bizTransaction:<type>``,
    ``has`` for presence marks ...) and a normalised value."""
    return name + "\x00" + value


_EPC_FIELDS: tuple[tuple[str, bytes], ...] = (
    ("epcList", F_EPC), ("childEPCs", F_EPC), ("inputEPCList", F_INPUT), ("outputEPCList", F_OUTPUT),
)
#: quantity list -> the attribute name of its classes (MATCH_epcClass / _inputEPCClass / _outputEPCClass)
QUANTITY_FIELDS: tuple[tuple[str, str], ...] = (
    ("quantityList", "epcClass"), ("childQuantityList", "epcClass"),
    ("inputQuantityList", "inputEPCClass"), ("outputQuantityList", "outputEPCClass"),
)
#: sensor attributes compared by equality (EQ_<name>), and which vocabulary their bare terms belong to
SENSOR_EQ: dict[str, str | None] = {
    "type": "measurementType", "deviceID": None, "dataProcessingMethod": None, "microorganism": None,
    "chemicalSubstance": None, "bizRules": None, "stringValue": None, "hexBinaryValue": None, "uriValue": None,
    "booleanValue": None,
}
#: sensor report attributes compared as numbers (EQ_/GT_/GE_/LT_/LE_<name>[_<uom>])
SENSOR_NUMBERS = ("value", "minValue", "maxValue", "meanValue", "sDev", "percValue", "percRank")
SENSOR_TIMES = ("startTime", "endTime")
#: top-level fields of the standard (anything else at event level is an extension field)
STANDARD_FIELDS = _KNOWN


def scalar_text(v: Any, ctx: _Ctx = _DEFAULT_CTX) -> str | None:
    """The canonical text of a scalar field value (EQ_ on extension fields), None for objects and lists."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return normalise_number(v)
    if isinstance(v, str):
        return _value(v, ctx)
    return None


def sensor_value_text(name: str, v: Any, ctx: _Ctx) -> str | None:
    if name == "hexBinaryValue":
        return v.strip().upper() if isinstance(v, str) else None
    if name in ("stringValue",):
        return v if isinstance(v, str) else None
    if name == "booleanValue":
        return ("true" if v else "false") if isinstance(v, bool) else None
    return norm_term(v, SENSOR_EQ[name], ctx) or None


def extension_values(obj: Mapping[str, Any], ctx: _Ctx, skip: frozenset[str] = frozenset()
                     ) -> Iterator[tuple[str, bool, Any]]:
    """(field ``{namespace}local``, nested, value) for every extension element of ``obj``: its own
    keys (nested False) and, inside their object values at any depth, theirs (nested True). A list value
    gives one item per element."""

    def walk(o: Mapping[str, Any], nested: bool) -> Iterator[tuple[str, bool, Any]]:
        for k, v in o.items():
            if k in skip and not nested or not is_extension_key(k):
                continue
            name = ctx.key(k)
            for item in v if isinstance(v, list) else [v]:
                yield name, nested, item
                if isinstance(item, dict):
                    yield from walk(item, True)

    yield from walk(obj, False)


_NOT_EXT = frozenset({"rdfs:comment", "comment", "#text"})


def is_extension_key(k: Any) -> bool:
    """Whether a key of an event (or of an object inside one) names an extension element: a string, not a
    JSON-LD ``@`` keyword, not a comment. The index (``_postings``) and the query's exact check
    (``extension_values``) both read extensions by this one rule, so they cannot disagree."""
    return type(k) is str and k[:1] != "@" and k not in _NOT_EXT
_PARTY_FIELDS = (("bizTransactionList", "bizTransaction", "bizTransactionType"),
                 ("sourceList", "source", "sourceDestType"), ("destinationList", "destination", "sourceDestType"))


def event_postings(event: Mapping[str, Any]) -> list[tuple[bytes, str]]:
    """(field, normalised value) pairs of one event, without repeats: everything an exact query parameter
    can select on. Range parameters select on a ``has`` presence mark and check the value exactly."""
    return list(_postings(event))


def _postings(event: Mapping[str, Any]) -> dict[tuple[bytes, str], None]:
    """``event_postings`` as a dict (its keys): one pass over the event's own fields, each dispatched on
    its name, instead of a look-up per field an event might have (the index's cost per record, issue 16)."""
    out: dict[tuple[bytes, str], None] = {}
    ctx = event_context(event)
    for key, v in event.items():
        code = _FIELD_CODE.get(key)
        if code is None:  # an extension field (STANDARD_FIELDS and _FIELD_CODE share no key but these)
            if key not in STANDARD_FIELDS and is_extension_key(key):
                _ext_into(out, "ext:", "ext:inner:", key, v, ctx)
        elif code == _C_TYPE:
            t = str(v)
            if t:
                out[(F_TYPE, t)] = None
        elif code == _C_ACTION:
            if isinstance(v, str) and v:
                out[(F_ACTION, v)] = None
        elif code == _C_TERM:
            f, vocab = _TERM_FIELDS[key]
            for x in forms(v, ctx, vocab):
                out[(f, x)] = None
        elif code == _C_LOCATION:
            if isinstance(v, dict):
                f = F_READPOINT if key == "readPoint" else F_BIZLOC
                for x in forms(v.get("id"), ctx):
                    out[(f, x)] = None
        elif code == _C_EPCS:
            _epcs_into(out, key, v, ctx)
        elif code == _C_QUANTITIES:
            _quantities_into(out, key, v, ctx)
            if any(isinstance(q, dict) and isinstance(q.get("quantity"), (int, float)) for q in _list(v)):
                out[(F_ATTR, _HAS_QUANTITY)] = None
        elif code == _C_TRANSFORMATION:
            for x in forms(v, ctx):
                out[(F_ATTR, attr("transformationID", x))] = None
        elif code == _C_PARTIES:
            item_key, vocab = _PARTY_OF[key]
            for item in _list(v):
                if isinstance(item, dict):
                    for t in forms(item.get("type"), ctx, vocab):
                        name = f"{item_key}:{t}"
                        for x in forms(item.get(item_key), ctx):
                            out[(F_ATTR, attr(name, x))] = None
        elif code == _C_PERSISTENT:
            if isinstance(v, dict):
                for k in ("set", "unset"):
                    for item in _list(v.get(k)):
                        for x in forms(item, ctx, k):
                            out[(F_ATTR, attr("persistentDisposition_" + k, x))] = None
        elif code == _C_ERROR:
            if isinstance(v, dict):
                _error_into(out, v, ctx)
        elif code == _C_SENSORS:
            _sensors_into(out, v, ctx)
        elif code == _C_ILMD:
            if isinstance(v, dict):
                for k, item in v.items():
                    if is_extension_key(k):
                        _ext_into(out, "ilmd:", "ilmd:inner:", k, item, ctx)
    return out


def _ext_into(out: dict[tuple[bytes, str], None], family: str, inner: str, key: str, v: Any, ctx: _Ctx) -> None:
    """The postings of one extension element ``key: v`` (``extension_values``' reading): a presence mark and
    the scalar's text under ``family`` + its name, and those of the elements inside its objects under ``inner``."""
    name = family + ctx.key(key)
    for item in v if isinstance(v, list) else (v,):
        out[(F_ATTR, "has\x00" + name)] = None
        text = scalar_text(item, ctx)
        if text is not None:
            out[(F_ATTR, name + "\x00" + text)] = None
        if isinstance(item, dict):
            for k, x in item.items():
                if is_extension_key(k):
                    _ext_into(out, inner, inner, k, x, ctx)


def _epcs_into(out: dict[tuple[bytes, str], None], key: str, v: Any, ctx: _Ctx) -> None:
    f = _EPC_FIELD[key]
    cf = _CLASS_OF[f]
    for item in (v,) if key == "parentID" else _list(v):
        for x in forms(item, ctx):
            out[(f, x)] = None
            c = epc_class(x)
            if c:
                out[(cf, c)] = None


def _quantities_into(out: dict[tuple[bytes, str], None], key: str, v: Any, ctx: _Ctx) -> None:
    name = _QUANTITY_NAME[key]
    for q in _list(v):
        if isinstance(q, dict):
            for x in forms(q.get("epcClass"), ctx):
                out[(F_ATTR, attr(name, x))] = None
                c = epc_class(x)
                if c:
                    out[(F_ATTR, attr(name + "~", c))] = None


def _error_into(out: dict[tuple[bytes, str], None], err: Mapping[str, Any], ctx: _Ctx) -> None:
    out[(F_ATTR, attr("has", "errorDeclaration"))] = None
    for x in dict.fromkeys((norm_reason(err.get("reason"), ctx), norm_reason(err.get("reason")))):
        if x:
            out[(F_ATTR, attr("errorReason", x))] = None
    for v in _list(err.get("correctiveEventIDs")):
        if isinstance(v, str) and v.strip():
            out[(F_ATTR, attr("correctiveEventID", v.strip()))] = None


def _sensors_into(out: dict[tuple[bytes, str], None], elements: Any, ctx: _Ctx) -> None:
    for el in _list(elements):
        if not isinstance(el, dict):
            continue
        md = el.get("sensorMetadata")
        parts = [md] if isinstance(md, dict) else []
        parts += [r for r in _list(el.get("sensorReport")) if isinstance(r, dict)]
        for part in parts:
            for name in SENSOR_EQ:
                if name in part:
                    text = sensor_value_text(name, part[name], ctx)
                    if text:
                        out[(F_ATTR, attr("sensor:" + name, text))] = None
            for name in SENSOR_NUMBERS:
                if isinstance(part.get(name), (int, float)) and not isinstance(part.get(name), bool):
                    out[(F_ATTR, attr("has", f"sensor:{name}:"))] = None
                    if isinstance(part.get("uom"), str):
                        out[(F_ATTR, attr("has", f"sensor:{name}:{part['uom']}"))] = None
            for name in SENSOR_TIMES:
                if isinstance(part.get(name), str):
                    out[(F_ATTR, attr("has", "sensor:" + name))] = None


def identifier_postings(event: Mapping[str, Any], ctx: _Ctx | None = None) -> list[tuple[bytes, str]]:
    """The EPC and quantity-class postings of an event (what MATCH_ parameters select on), alone: the
    exact check of a MATCH_ query needs only these (the same code as ``event_postings``' for them)."""
    ctx = event_context(event) if ctx is None else ctx
    out: dict[tuple[bytes, str], None] = {}
    for key in _EPC_KEYS:
        if key in event:
            _epcs_into(out, key, event[key], ctx)
    for key in _QUANTITY_KEYS:
        if key in event:
            _quantities_into(out, key, event[key], ctx)
    return list(out)


# what ``_postings`` does with each standard field it indexes
(_C_TYPE, _C_ACTION, _C_TERM, _C_LOCATION, _C_EPCS, _C_QUANTITIES, _C_TRANSFORMATION, _C_PARTIES, _C_PERSISTENT,
 _C_ERROR, _C_SENSORS, _C_ILMD) = range(12)
_EPC_FIELD = {"parentID": F_PARENT, **{k: f for k, f in _EPC_FIELDS}}
_EPC_KEYS = tuple(_EPC_FIELD)
_QUANTITY_NAME = dict(QUANTITY_FIELDS)
_QUANTITY_KEYS = tuple(_QUANTITY_NAME)
_TERM_FIELDS = {"bizStep": (F_STEP, "bizStep"), "disposition": (F_DISP, "disposition")}
_PARTY_OF = {key: (item_key, vocab) for key, item_key, vocab in _PARTY_FIELDS}
_HAS_QUANTITY = attr("has", "quantity")
_FIELD_CODE: dict[str, int] = {
    "type": _C_TYPE, "action": _C_ACTION, "bizStep": _C_TERM, "disposition": _C_TERM,
    "readPoint": _C_LOCATION, "bizLocation": _C_LOCATION, **dict.fromkeys(_EPC_KEYS, _C_EPCS),
    **dict.fromkeys(_QUANTITY_KEYS, _C_QUANTITIES), "transformationID": _C_TRANSFORMATION,
    **dict.fromkeys(_PARTY_OF, _C_PARTIES), "persistentDisposition": _C_PERSISTENT, "errorDeclaration": _C_ERROR,
    "sensorElementList": _C_SENSORS, "ilmd": _C_ILMD,
}
assert set(_FIELD_CODE) <= STANDARD_FIELDS  # noqa: S101 - a standard field is never also read as an extension

def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [] if v is None else [v]


def _time_entries(field_tag: bytes, us: int, suffix: bytes) -> list[tuple[bytes, bytes]]:
    """The keys of one time posted alone (recordTime, once per block: ``suffix`` is the u64 height)."""
    sec = min(max(us, 0) // 1_000_000, _MAX_SECONDS)
    value = _U64.pack(max(us, 0))
    return [(_time_prefix(field_tag, level, sec >> level) + suffix, value) for level in LEVELS]


@lru_cache(maxsize=16_384)
def _time_prefix(field_tag: bytes, level: int, bucket: int) -> bytes:
    return POSTING + field_tag + _tkey(level, bucket)


# -- postings per block: one key per (value, block) -------------------------------------------------------

class BlockPostings:
    """The query postings of one block, gathered record by record (records come in index order, so
    every list is ascending), then written as one key per distinct value: a value's key is derived
    once per block, not once per record."""

    __slots__ = ("lists", "times")

    def __init__(self) -> None:
        self.lists: defaultdict[tuple[bytes, str], list[int]] = defaultdict(list)
        self.times: list[tuple[int, int]] = []  # (index, eventTime µs)

    def add(self, index: int, event: Mapping[str, Any]) -> None:
        lists = self.lists
        for p in _postings(event):
            lists[p].append(index)
        et = parse_time_us(event.get("eventTime"))
        if et is not None:
            self.times.append((index, max(et, 0)))

    def entries(self, height: int) -> list[tuple[bytes, bytes]]:
        h = _U64.pack(height)
        out = [(POSTING + f + _vkey(v) + h, pack_indices(ix)) for (f, v), ix in self.lists.items()]
        if self.times:
            secs = [(i, us, min(us // 1_000_000, _MAX_SECONDS)) for i, us in self.times]
            for level in LEVELS:
                buckets: dict[int, tuple[list[int], list[int]]] = {}
                for i, us, sec in secs:
                    got = buckets.get(sec >> level)
                    if got is None:
                        buckets[sec >> level] = ([i], [us])
                    else:
                        got[0].append(i)
                        got[1].append(us)
                out.extend((_time_prefix(F_EVENT_TIME, level, b) + h, pack_indices(ix, ts))
                           for b, (ix, ts) in buckets.items())
        return out

    def value_keys(self) -> set[bytes]:
        """The ``V`` keys of the block's listed values (GET /epcis/bizSteps ...)."""
        return {VALUES + f + v.encode("utf-8") for f, v in self.lists if f in _VALUE_TAGS}


def index_entries(db: Any, height: int, timestamp_ms: int, records: Sequence[Any],
                  digests: Sequence[bytes | None] | None = None
                  ) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The EPCIS index entries of one block: (entries to put, [(digest, record id)] newly hashed).

    ``records`` are ``SignedRecord``s; ``digests`` (optional, one per record) their ``uniqueness_digest``
    when the caller has it already. ``db`` is asked only which ``V`` values are listed already.

    A hash ID repeated in this block keeps its first record. One already on the chain is not looked up
    (a LevelDB read per record, ~3 µs, issue 16): a block is stored only once it has met the chain's
    ``duplicate event`` rule (``validity.check_block``: a backup's check of the proposal, catch-up's of
    each block; a certificate is 2f+1 validators' word that they checked it), so none of its hash IDs
    is indexed yet. Catch-up's worker processes, which have no database, always indexed blocks this way.
    """
    puts: list[tuple[bytes, bytes]] = []
    fresh: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    block = BlockPostings()
    for index, r in enumerate(records):
        if r.is_change:  # a governance entry: no EPCIS event to index
            continue
        event = r.event
        digest = (digests[index] if digests is not None else None) or record_digest(r)
        if digest not in seen:
            puts.append((HASH + digest, r.id + _LOC.pack(height, index)))
            fresh.append((digest, r.id))
        seen.add(digest)
        own = event.get("eventID")
        if isinstance(own, str) and own:
            puts.append((EVENT_ID + hashlib.sha256(own.encode("utf-8")).digest() + _LOC.pack(height, index), r.id))
        block.add(index, event)
    puts.extend(block.entries(height))
    puts.extend((k, b"") for k in sorted(block.value_keys()) if db.get(k) is None)
    if records:
        puts.extend(_time_entries(F_BLOCK_TIME, timestamp_ms * 1000, _U64.pack(height)))
    return puts, fresh


def upgrade(db: Any, headers: Iterable[tuple[int, int]],
            blocks: Callable[[], Iterable[tuple[int, bytes, bytes]]] | None = None) -> bool:
    """Bring an older store's EPCIS index to ``INDEX_VERSION``; False when there was nothing to do.

    ``headers`` yields (height, timestamp ms) of every stored non-empty block, ``blocks()`` (height, block
    bytes, certificate) of every stored block. Version 1 posted recordTime per record (field ``R``); version
    2 had no ``F_ATTR`` postings and read values without the event's ``@context``; version 3 wrote one
    query posting and one item history key (``i``, node/storage.py) per (value, record): every query
    posting and item key is deleted and written again from the blocks, in one synced batch with the
    version, so a crash leaves the old index, upgraded again on open.
    """
    from rantai.client.format.blocks import Block
    from rantai.client.format.epcis.items import event_identifiers

    from .storage import ITEM, item_entries

    key = b"m" + b"epcis-index"
    if db.get(key) == INDEX_VERSION:
        return False
    with db.write_batch(sync=True, transaction=True) as wb:
        for prefix in (POSTING, VALUES, ITEM):
            for k in db.iterator(prefix=prefix, include_value=False):
                wb.delete(k)
        values: set[bytes] = set()
        for height, timestamp_ms in headers:
            for k, v in _time_entries(F_BLOCK_TIME, timestamp_ms * 1000, _U64.pack(height)):
                wb.put(k, v)
        for height, raw, _ in (blocks() if blocks is not None else ()):
            block = BlockPostings()
            items: list[tuple[str, int]] = []
            for index, r in enumerate(Block.from_bytes(raw).records):
                if not r.is_change:
                    block.add(index, r.event)
                    items.extend((item, index) for item in event_identifiers(r.event))
            for k, v in block.entries(height) + item_entries(height, items):
                wb.put(k, v)
            values |= block.value_keys()
        for k in values:
            wb.put(k, b"")
        wb.put(key, INDEX_VERSION)
    return True


#: the fields whose values GET /epcis/bizSteps, /dispositions, /readPoints, /bizLocations list
VALUE_FIELDS = {"bizSteps": F_STEP, "dispositions": F_DISP, "readPoints": F_READPOINT, "bizLocations": F_BIZLOC}


_VALUE_TAGS = frozenset(VALUE_FIELDS.values())


def list_values(db: Any, f: bytes, after: str | None, limit: int) -> tuple[list[str], bool]:
    """Up to ``limit`` distinct values of field ``f`` after ``after`` (sorted by UTF-8), and whether more exist."""
    prefix = VALUES + f
    it = db.iterator(prefix=prefix, include_value=False)
    if after is not None:
        it.seek(prefix + after.encode("utf-8") + b"\x00")
    out: list[str] = []
    try:
        for k in it:
            if len(out) >= limit:
                return out, True
            out.append(k[len(prefix):].decode("utf-8"))
    finally:
        it.close()
    return out, False


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
