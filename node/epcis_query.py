"""Answering EPCIS queries from the index node/epcis_index.py writes: parameters, plans and cursors.

A query (``EventQuery``, parsed from the EPCIS 2.0 REST binding's parameters) becomes one cursor per
condition over the index's sorted posting keys, intersected by leapfrog join (``run_query``), so a
page costs what it returns, not what the chain holds.
"""

from __future__ import annotations

import hashlib
import re
import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rantai.client.format.epcis.event_hash import event_hash_id, normalise_number
from rantai.client.format.epcis.event_hash import timestamp_us as parse_time_us

from .epcis_index import (
    EVENT_ID,
    F_ACTION,
    F_ATTR,
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
    SENSOR_EQ,
    SENSOR_NUMBERS,
    STANDARD_FIELDS,
    _CLASS_OF,
    _DEFAULT_CTX,
    _FINEST,
    _LOC,
    _MAX_SECONDS,
    _U64,
    _tkey,
    _vkey,
    attr,
    event_context,
    event_postings,
    extension_values,
    forms,
    identifier_postings,
    key_kind,
    norm_id,
    norm_reason,
    norm_term,
    parse_hash_id,
    scalar_text,
    sensor_value_text,
)
from .postings import unpack_indices

__all__ = ["DEFAULT_PER_PAGE", "EVENT_TYPES", "KNOWN_PARAMS", "MAX_ORDERED", "MAX_PER_PAGE", "EventQuery",
           "QueryParameterError", "QueryTooLarge", "count_matches", "plan", "query_time", "run_ordered", "run_query",
           "served_event_id", "time_buckets"]


_U32 = struct.Struct(">I")


class QueryParameterError(ValueError):
    """A query the EPCIS binding refuses (unknown parameter, bad value): 400 QueryParameterException."""


class QueryTooLarge(ValueError):
    """More matches than ``maxEventCount`` (or than an ordered query can sort): 413 QueryTooLargeException."""


# -- queries -------------------------------------------------------------------------------------------

LIST_PARAMS = {
    "eventType": F_TYPE, "EQ_action": F_ACTION, "EQ_bizStep": F_STEP, "EQ_disposition": F_DISP,
    "EQ_readPoint": F_READPOINT, "EQ_bizLocation": F_BIZLOC,
}
MATCH_PARAMS: dict[str, tuple[bytes, ...]] = {
    "MATCH_epc": (F_EPC,), "MATCH_parentID": (F_PARENT,), "MATCH_inputEPC": (F_INPUT,),
    "MATCH_outputEPC": (F_OUTPUT,), "MATCH_anyEPC": (F_EPC, F_PARENT, F_INPUT, F_OUTPUT),
}
#: MATCH_ parameters over quantity classes -> the F_ATTR names of the classes they look at
CLASS_PARAMS: dict[str, tuple[str, ...]] = {
    "MATCH_epcClass": ("epcClass",), "MATCH_inputEPCClass": ("inputEPCClass",),
    "MATCH_outputEPCClass": ("outputEPCClass",),
    "MATCH_anyEPCClass": ("epcClass", "inputEPCClass", "outputEPCClass"),
}
#: EQ_ parameters over F_ATTR postings: parameter -> (attribute name, vocabulary of bare terms)
ATTR_PARAMS: dict[str, tuple[str, str | None]] = {
    "EQ_transformationID": ("transformationID", None),
    "EQ_persistentDisposition_set": ("persistentDisposition_set", "set"),
    "EQ_persistentDisposition_unset": ("persistentDisposition_unset", "unset"),
    "EQ_errorReason": ("errorReason", "reason"),
    "EQ_correctiveEventID": ("correctiveEventID", "raw"),
    **{f"EQ_{n}": (f"sensor:{n}", "sensor") for n in SENSOR_EQ if n != "booleanValue"},
}
TIME_PARAMS = ("GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime")
#: times checked exactly on the events a presence mark selects
OTHER_TIMES = {"GE_errorDeclarationTime": "errorDeclaration", "LT_errorDeclarationTime": "errorDeclaration",
               "GE_startTime": "sensor:startTime", "LT_startTime": "sensor:startTime",
               "GE_endTime": "sensor:endTime", "LT_endTime": "sensor:endTime"}
PAGE_PARAMS = ("perPage", "nextPageToken")
ORDER_PARAMS = ("orderBy", "orderDirection", "eventCountLimit", "maxEventCount")
FLAG_PARAMS = ("EXISTS_errorDeclaration", "EQ_booleanValue")
KNOWN_PARAMS = (frozenset(LIST_PARAMS) | frozenset(MATCH_PARAMS) | frozenset(CLASS_PARAMS) | frozenset(ATTR_PARAMS)
                | frozenset(TIME_PARAMS) | frozenset(OTHER_TIMES) | frozenset(PAGE_PARAMS) | frozenset(ORDER_PARAMS)
                | frozenset(FLAG_PARAMS) | {"EQ_eventID"})
#: parameter families with a name inside: EQ_bizTransaction_<type>, EQ_source_<type>, EQ_destination_<type>;
#: <OP>_quantity, <OP>_<sensor number>[_<uom>]; <OP>_[INNER_][ILMD_]<field IRI>, EXISTS_[INNER_][ILMD_]<field IRI>
FAMILY_PREFIXES = ("EQ_bizTransaction_", "EQ_source_", "EQ_destination_")
COMPARISONS = ("EQ", "GT", "GE", "LT", "LE")
EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")
_VOCAB = {"EQ_bizStep": "bizStep", "EQ_disposition": "disposition"}
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 30
MAX_ORDERED = 10_000  # orderBy sorts every match at the page's height: at most this many
_ZONED = re.compile(r".*T.*(?:[Zz]|[+-]\d\d:\d\d)\Z")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")


def query_time(name: str, value: str) -> int:
    """A query timestamp in µs: RFC 3339 with a time zone (``Z`` or ``±hh:mm``); without one it is refused,
    not guessed (the repository cannot know which zone the caller meant)."""
    us = parse_time_us(value)
    if us is None:
        raise QueryParameterError(f"{name}: {value!r} is not an RFC 3339 timestamp")
    if not _ZONED.match(value):
        raise QueryParameterError(f"{name}: {value!r} has no time zone; write it with Z or ±hh:mm "
                                  "(e.g. 2024-05-01T08:30:00+07:00)")
    return us


def _number(name: str, value: str) -> float:
    if not _NUMBER.match(value):
        raise QueryParameterError(f"{name}: a number expected, not {value!r}")
    return float(value)


def _bool(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise QueryParameterError(f"{name}: true or false expected")
    return value == "true"


def _field_iri(name: str, text: str) -> list[str]:
    """The ``{namespace}local`` forms an extension field name in a parameter may stand for: a full IRI
    (``https://ns.example.com/epcis/grade``, split after its last ``/`` or ``#`` as the hash does), the
    standard's ``namespace#local`` (``https://ns.example.com/epcis/#grade``), or a CURIE with an EPCIS
    context prefix (``cbvmda:lotNumber``)."""
    if not text:
        raise QueryParameterError(f"{name}: no field name")
    out = [_DEFAULT_CTX.key(text)]
    cut = text.rfind("#")
    if cut > 0:
        out.append("{" + text[:cut] + "}" + text[cut + 1:])
    if not any(o.startswith("{") for o in out):
        raise QueryParameterError(f"{name}: {text!r} is not a field IRI (namespace#name or a full IRI)")
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Pattern:
    """A ``urn:epc:idpat:`` pattern as a test on normalised identifiers (GS1 Digital Link or EPC URI)."""

    kind: str  # key_kind of the identifiers it can match (AI or URN scheme)
    exact: str | None = None  # the one identifier it names (no '*')
    key_prefix: str | None = None  # Digital Link: the primary key value starts with this
    cp: str | None = None  # Digital Link: the company prefix at cp_offset
    cp_offset: int = 0
    qualifier: str | None = None  # instances: the key qualifier an instance of the scheme carries
    urn_head: tuple[str, ...] = ()  # EPC URI schemes: the leading components

    def matches(self, v: str, instance: bool) -> bool:
        if self.exact is not None:
            return v == self.exact
        if key_kind(v) != self.kind:
            return False
        if v.startswith("urn:epc:id:"):
            parts = v.split(":", 4)[-1].split(".")
            return tuple(parts[:len(self.urn_head)]) == self.urn_head
        rest = v[len("https://id.gs1.org/") + len(self.kind) + 1:].split("/")
        if instance and self.qualifier and (len(rest) < 3 or rest[1] != self.qualifier):
            return False
        key = rest[0]
        if self.key_prefix is not None and not key.startswith(self.key_prefix):
            return False
        return self.cp is None or key[self.cp_offset:self.cp_offset + len(self.cp)] == self.cp


# scheme -> (components, Digital Link AI, company prefix offset in the key, serial inside the key, qualifier)
_SCHEMES: dict[str, tuple[int, str | None, int, bool, str | None]] = {
    "sgtin": (3, "01", 1, False, "21"), "sscc": (2, "00", 1, False, None), "sgln": (3, "414", 0, False, None),
    "grai": (3, "8003", 1, True, None), "giai": (2, "8004", 0, False, None), "gsrn": (2, "8018", 0, False, None),
    "gsrnp": (2, "8017", 0, False, None), "gdti": (3, "253", 0, True, None), "sgcn": (3, "255", 0, True, None),
    "cpi": (3, "8010", 0, False, "8011"), "ginc": (2, "401", 0, False, None), "gsin": (2, "402", 0, False, None),
    "pgln": (2, "417", 0, False, None), "upui": (3, "01", 1, False, "235"),
    "gid": (3, None, 0, False, None), "usdod": (2, None, 0, False, None), "bic": (1, None, 0, False, None),
    "imovn": (1, None, 0, False, None),
}


def parse_pattern(name: str, v: str) -> Pattern:
    body = v[len("urn:epc:idpat:"):]
    scheme, sep, comps_text = body.partition(":")
    if not sep or scheme not in _SCHEMES:
        raise QueryParameterError(f"{name}: {v!r}: an EPC pattern of a known scheme expected "
                                  f"({', '.join(sorted(_SCHEMES))})")
    n, ai, cp_offset, serial_in_key, qualifier = _SCHEMES[scheme]
    comps = comps_text.split(".")
    stars = [c == "*" for c in comps]
    k = stars.index(True) if True in stars else len(comps)
    if len(comps) != n or any(not s for s in stars[k:]) or any(not c or "*" in c for c in comps[:k]):
        raise QueryParameterError(f"{name}: {v!r}: a pattern of {n} components, '*' only at the end, expected")
    if k == n:  # no wildcard: the identifier itself
        return Pattern(kind="", exact=norm_id(f"urn:epc:id:{scheme}:{comps_text}"))
    if ai is None:
        return Pattern(kind=scheme, urn_head=tuple(comps[:k]))
    if k == 0:
        return Pattern(kind=ai, qualifier=qualifier)
    if not comps[0].isdigit():
        raise QueryParameterError(f"{name}: {v!r}: the company prefix is digits")
    if k == 1:
        return Pattern(kind=ai, cp=comps[0], cp_offset=cp_offset, qualifier=qualifier)
    if k != n - 1:
        raise QueryParameterError(f"{name}: {v!r}: only company-prefix or last-component wildcards are supported")
    sample = norm_id(f"urn:epc:id:{scheme}:{'.'.join(comps[:k])}.0")
    if not sample.startswith(f"https://id.gs1.org/{ai}/"):
        raise QueryParameterError(f"{name}: {v!r}: not a valid {scheme} pattern")
    key = sample[len(f"https://id.gs1.org/{ai}/"):].split("/")[0]
    return Pattern(kind=ai, key_prefix=key[:-1] if serial_in_key else key, qualifier=qualifier)


@dataclass(frozen=True)
class Match:
    """One value of a MATCH_ parameter: an identifier (``pattern`` None), or a pattern."""

    value: str
    pattern: Pattern | None = None
    gtin_class: bool = False  # urn:epc:idpat:sgtin:CP.IR.* (indexed as class postings)


@dataclass
class EventQuery:
    """A parsed SimpleEventQuery: every constraint ANDed, the values of one parameter ORed."""

    lists: dict[str, list[str]] = field(default_factory=dict)  # param -> normalised values
    matches: dict[str, list[Match]] = field(default_factory=dict)  # MATCH_ (EPCs and classes)
    attrs: dict[str, list[str]] = field(default_factory=dict)  # F_ATTR param key -> attr() texts, ORed
    times: dict[str, int] = field(default_factory=dict)  # param -> µs
    event_ids: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)  # EXISTS_errorDeclaration
    exists: list[tuple[str, list[str]]] = field(default_factory=list)  # (param, has-marks ORed)
    compares: list[tuple[str, str, list[str], Any]] = field(default_factory=list)  # (param, op, targets, operand)
    order_by: str | None = None  # eventTime, recordTime or an extension field {ns}local
    order_desc: bool = True
    event_count_limit: int | None = None
    max_event_count: int | None = None
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]]) -> "EventQuery":
        q = cls()
        seen: dict[str, list[str]] = {}
        for name, value in params:
            seen.setdefault(name, []).extend(v for v in value.split("|"))
        for name, values in seen.items():
            values = [v.strip() for v in values]
            if name in PAGE_PARAMS or name in ORDER_PARAMS or name in FLAG_PARAMS or name in TIME_PARAMS \
                    or name in OTHER_TIMES:
                if len(values) != 1:
                    raise QueryParameterError(f"{name}: one value expected")
            if name == "nextPageToken":
                continue
            if name.startswith("EXISTS_") and values == [""]:
                values = ["true"]  # EXISTS_ parameters are void: present means true
            if any(not v for v in values):
                raise QueryParameterError(f"{name}: empty value")
            q._parse_one(name, values)
        if q.event_count_limit is not None and q.max_event_count is not None:
            raise QueryParameterError("eventCountLimit and maxEventCount: at most one of them")
        if q.event_count_limit is not None and q.order_by is None:
            raise QueryParameterError("eventCountLimit: only with orderBy")
        return q

    def _parse_one(self, name: str, values: list[str]) -> None:
        v0 = values[0]
        if name == "perPage":
            try:
                self.per_page = int(v0)
            except ValueError:
                raise QueryParameterError("perPage: an integer expected") from None
            if not 1 <= self.per_page <= MAX_PER_PAGE:
                raise QueryParameterError(f"perPage: 1..{MAX_PER_PAGE} expected")
        elif name in ("eventCountLimit", "maxEventCount"):
            if not v0.isdigit() or int(v0) < 1:
                raise QueryParameterError(f"{name}: a positive integer expected")
            setattr(self, "event_count_limit" if name == "eventCountLimit" else "max_event_count", int(v0))
        elif name == "orderBy":
            if v0 in ("eventTime", "recordTime"):
                self.order_by = v0
            else:
                self.order_by = _field_iri(name, v0)[-1]
        elif name == "orderDirection":
            if v0 not in ("ASC", "DESC"):
                raise QueryParameterError("orderDirection: ASC or DESC expected")
            self.order_desc = v0 == "DESC"
        elif name in TIME_PARAMS or name in OTHER_TIMES:
            self.times[name] = query_time(name, v0)
        elif name == "EXISTS_errorDeclaration":
            if _bool(name, v0):
                self.flags[name] = True
        elif name == "EQ_booleanValue":
            self.attrs[name] = [attr("sensor:booleanValue", "true" if _bool(name, v0) else "false")]
        elif name == "eventType":
            bad = [v for v in values if v not in EVENT_TYPES]
            if bad:
                raise QueryParameterError(f"eventType: unknown event type {bad[0]!r}")
            self.lists[name] = values
        elif name == "EQ_action":
            bad = [v for v in values if v not in ("ADD", "OBSERVE", "DELETE")]
            if bad:
                raise QueryParameterError(f"EQ_action: {bad[0]!r} is not ADD, OBSERVE or DELETE")
            self.lists[name] = values
        elif name in _VOCAB:
            self.lists[name] = [norm_term(v, _VOCAB[name]) for v in values]
        elif name in LIST_PARAMS:
            self.lists[name] = [norm_id(v) for v in values]
        elif name in MATCH_PARAMS or name in CLASS_PARAMS:
            self.matches[name] = [_match_value(name, v) for v in values]
        elif name == "EQ_eventID":
            self.event_ids = values
        elif name in ATTR_PARAMS:
            a, how = ATTR_PARAMS[name]
            self.attrs[name] = [attr(a, _attr_value(how, a, v)) for v in values]
        elif name.startswith(FAMILY_PREFIXES):
            kind, _, typ = name[3:].partition("_")
            if not typ:
                raise QueryParameterError(f"{name}: a type after {kind}_ expected")
            vocab = "bizTransactionType" if kind == "bizTransaction" else "sourceDestType"
            self.attrs[name] = [attr(f"{kind}:{norm_term(typ, vocab)}", norm_id(v)) for v in values]
        else:
            self._parse_family(name, values)

    def _parse_family(self, name: str, values: list[str]) -> None:
        op, _, rest = name.partition("_")
        if op not in COMPARISONS and op != "EXISTS" or not rest:
            raise QueryParameterError(f"unknown query parameter {name!r}")
        if op == "EXISTS":
            marks = [attr("has", m) for m in self._fields_of(name, rest)]
            if values != ["true"]:
                if values == ["false"]:
                    return
                raise QueryParameterError(f"{name}: true expected (or no value)")
            self.exists.append((name, marks))
            return
        if len(values) != 1 and op != "EQ":
            raise QueryParameterError(f"{name}: one value expected")
        if rest == "quantity":
            self.compares.append((name, op, ["quantity"], _number(name, values[0])))
            return
        head, _, uom = rest.partition("_")
        if head in SENSOR_NUMBERS and not rest.startswith(("http", "urn")):
            if len(values) != 1:
                raise QueryParameterError(f"{name}: one value expected")
            self.compares.append((name, op, [f"sensor:{head}:{uom}"], _number(name, values[0])))
            return
        targets = self._fields_of(name, rest)
        if op == "EQ":
            self.attrs[name] = [attr(t, x) for t in targets for v in values for x in _eq_forms(v)]
            return
        v = values[0]
        if _NUMBER.match(v):
            operand: Any = float(v)
        elif parse_time_us(v) is not None:
            operand = ("time", query_time(name, v))
        else:
            raise QueryParameterError(f"{name}: a number or a timestamp expected, not {v!r}")
        self.compares.append((name, op, targets, operand))

    @staticmethod
    def _fields_of(name: str, rest: str) -> list[str]:
        """``[INNER_][ILMD_]<field>`` -> the has/attr names (``ext:{ns}x``, ``ilmd:inner:{ns}x`` ...)."""
        inner = rest.startswith("INNER_")
        if inner:
            rest = rest[len("INNER_"):]
        where = "ext"
        if rest.startswith("ILMD_"):
            where, rest = "ilmd", rest[len("ILMD_"):]
        family = f"{where}:inner:" if inner else f"{where}:"
        return [family + f for f in _field_iri(name, rest)]

    def fingerprint(self) -> bytes:
        """Binds a page token to its query (a token is refused with other parameters)."""
        text = repr((sorted(self.lists.items()), sorted(self.matches.items()), sorted(self.attrs.items()),
                     sorted(self.times.items()), self.event_ids, sorted(self.flags.items()), self.exists,
                     self.compares, self.order_by, self.order_desc, self.event_count_limit, self.max_event_count,
                     self.per_page))
        return hashlib.sha256(text.encode()).digest()[:8]

    # -- exact check of one event ----------------------------------------------------------------
    def accepts(self, event: Mapping[str, Any], record_time_us: int) -> bool:
        for name, values in self.lists.items():
            if not set(_event_list_values(event, name)) & set(values):
                return False
        postings: set[tuple[bytes, str]] | None = None
        if self.attrs or self.exists:
            postings = set(event_postings(event))
        elif self.matches:
            postings = set(identifier_postings(event))
        for name, matches in self.matches.items():
            if not any(_matched(name, m, postings) for m in matches):  # type: ignore[arg-type]
                return False
        for texts in self.attrs.values():
            if not any((F_ATTR, t) in postings for t in texts):  # type: ignore[operator]
                return False
        if self.flags.get("EXISTS_errorDeclaration") and not isinstance(event.get("errorDeclaration"), dict):
            return False
        for _, marks in self.exists:
            if not any((F_ATTR, m) in postings for m in marks):  # type: ignore[operator]
                return False
        if self.event_ids and served_event_id(event) not in self.event_ids \
                and not _same_hash_id(served_event_id(event), self.event_ids):
            return False
        for name, us in self.times.items():
            for t in _event_times(event, name, record_time_us):
                if not (name.startswith("GE_") and t < us or name.startswith("LT_") and t >= us):
                    break
            else:
                return False
        for _, op, targets, operand in self.compares:
            if not any(_compare(op, x, operand) for x in _operands(event, targets, operand)):
                return False
        return True


def _attr_value(how: str | None, name: str, v: str) -> str:
    if how == "raw":
        return v
    if how == "reason":
        return norm_reason(v)
    if how == "sensor":
        n = name.split(":", 1)[1]
        return sensor_value_text(n, v, _DEFAULT_CTX) or v
    return norm_term(v, how)


def _eq_forms(v: str) -> list[str]:
    """What an EQ_ value on an extension field is compared as: its text, and its number when it is one."""
    out = [scalar_text(v) or v]
    if _NUMBER.match(v):
        out.append(normalise_number(float(v)))
    return list(dict.fromkeys(out))


def served_event_id(event: Mapping[str, Any]) -> str:
    """The eventID the repository serves: the event's own, else its hash ID (see present_event)."""
    own = event.get("eventID")
    return own if isinstance(own, str) and own else event_hash_id(event)


def _same_hash_id(served: str, wanted: list[str]) -> bool:
    d = parse_hash_id(served)
    return d is not None and any(parse_hash_id(w) == d for w in wanted)


def _matched(name: str, m: Match, postings: set[tuple[bytes, str]]) -> bool:
    if name in CLASS_PARAMS:
        have = [t[len(a) + 1:] for f, t in postings if f == F_ATTR for a in CLASS_PARAMS[name]
                if t.startswith(a + "\x00")]
        instance = False
    else:
        have = [v for f, v in postings if f in MATCH_PARAMS[name]]
        instance = True
    if m.pattern is None:
        return m.value in have
    return any(m.pattern.matches(v, instance) for v in have)


def _match_value(name: str, v: str) -> Match:
    """A MATCH_ value: an identifier, or a pattern (``urn:epc:idpat:sgtin:CP.IR.*``, ``...:sscc:CP.*`` ...)."""
    if v.startswith("urn:epc:idpat:"):
        p = parse_pattern(name, v)
        if p.exact is not None:
            return Match(p.exact)
        if p.kind == "01" and p.key_prefix is not None and p.qualifier == "21":
            return Match(f"https://id.gs1.org/01/{p.key_prefix}", pattern=p, gtin_class=True)
        return Match(v, pattern=p)
    if "*" in v:
        raise QueryParameterError(f"{name}: {v!r}: wildcards only in urn:epc:idpat: patterns")
    return Match(norm_id(v))


def _event_list_values(event: Mapping[str, Any], name: str) -> list[str]:
    if name == "eventType":
        return [str(event.get("type", ""))]
    if name == "EQ_action":
        return [str(event.get("action", ""))]
    ctx = event_context(event)
    if name in _VOCAB:
        return forms(event.get(_VOCAB[name]), ctx, _VOCAB[name])
    loc = event.get("readPoint" if name == "EQ_readPoint" else "bizLocation")
    return forms(loc.get("id"), ctx) if isinstance(loc, dict) else []


def _event_times(event: Mapping[str, Any], name: str, record_time_us: int) -> list[int]:
    """The times a time parameter looks at (any one in range is enough), µs."""
    if name.endswith("recordTime"):
        return [record_time_us]
    if name.endswith("eventTime"):
        t = parse_time_us(event.get("eventTime"))
        return [] if t is None else [t]
    if name.endswith("errorDeclarationTime"):
        err = event.get("errorDeclaration")
        t = parse_time_us(err.get("declarationTime")) if isinstance(err, dict) else None
        return [] if t is None else [t]
    key = "startTime" if name.endswith("startTime") else "endTime"
    out = []
    for el in event.get("sensorElementList") or ():
        if isinstance(el, dict):
            for part in [el.get("sensorMetadata"), *(el.get("sensorReport") or ())]:
                if isinstance(part, dict):
                    t = parse_time_us(part.get(key))
                    if t is not None:
                        out.append(t)
    return out


def _operands(event: Mapping[str, Any], targets: list[str], operand: Any) -> Iterator[Any]:
    """The event's values a comparison looks at: quantities, sensor numbers, extension field values."""
    for target in targets:
        if target == "quantity":
            for key in ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"):
                for qe in event.get(key) or ():
                    if isinstance(qe, dict):
                        yield qe.get("quantity")
        elif target.startswith("sensor:"):
            _, attr_name, uom = target.split(":", 2)
            for el in event.get("sensorElementList") or ():
                if not isinstance(el, dict):
                    continue
                for part in [el.get("sensorMetadata"), *(el.get("sensorReport") or ())]:
                    if isinstance(part, dict) and (not uom or part.get("uom") == uom):
                        yield part.get(attr_name)
        else:
            where, _, rest = target.partition(":")
            nested = rest.startswith("inner:")
            wanted = rest[len("inner:"):] if nested else rest
            obj = event if where == "ext" else event.get("ilmd")
            if isinstance(obj, dict):
                skip = STANDARD_FIELDS if where == "ext" else frozenset()
                for name, is_nested, v in extension_values(obj, event_context(event), skip):
                    if name == wanted and is_nested == nested:
                        yield v


def _compare(op: str, x: Any, operand: Any) -> bool:
    if isinstance(operand, tuple):  # a time
        if not isinstance(x, str):
            return False
        t = parse_time_us(x)
        if t is None:
            return False
        a: float = t
        b: float = operand[1]
    else:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        a, b = float(x), operand
    return {"EQ": a == b, "GT": a > b, "GE": a >= b, "LT": a < b, "LE": a <= b}[op]


# -- cursors: sorted locs, seekable ---------------------------------------------------------------------

class _Postings:
    """The locs of one posting list: its keys ``prefix`` + u64 height, one per block, each listing the
    block's record indices (node/epcis_index.py); time postings (``timed``) optionally filtered by the
    stored time. Seeking inside the block at hand costs no read."""

    def __init__(self, db: Any, prefix: bytes, lo: int | None = None, hi: int | None = None,
                 timed: bool = False) -> None:
        self.prefix = prefix
        self.timed = timed
        self.filtered = lo is not None or hi is not None
        self.lo, self.hi = lo, hi
        self.it = db.iterator(prefix=prefix)
        self.height: bytes | None = None  # u64 height of the block at hand
        self.indices: Sequence[int] = ()
        self.current: bytes | None = None
        self.done = False
        self.reads = 0

    def _load(self, key: bytes, value: bytes) -> None:
        self.reads += 1
        self.height = key[len(self.prefix):]
        ix, ts = unpack_indices(value, self.timed)
        if self.filtered:
            lo, hi = self.lo, self.hi
            ix = [i for i, t in zip(ix, ts, strict=True) if (lo is None or t >= lo) and (hi is None or t < hi)]
        self.indices = ix

    def seek(self, target: bytes) -> bytes | None:
        if self.done:
            return None
        if self.current is not None and self.current >= target:
            return self.current
        th = target[:8]
        if self.height != th:  # the block at hand lies below the target's: skip to the target's block
            self.it.seek(self.prefix + th)
            if not self._next():
                return None
        while True:
            assert self.height is not None
            k = bisect_left(self.indices, _U32.unpack_from(target, 8)[0]) if self.height == th else 0
            if k < len(self.indices):
                self.current = self.height + _U32.pack(self.indices[k])
                return self.current
            if not self._next():
                return None

    def _next(self) -> bool:
        try:
            key, value = next(self.it)
        except StopIteration:
            self.done, self.current = True, None
            return False
        self._load(key, value)
        return True

    def close(self) -> None:
        self.it.close()


class _KeyCursor:
    """Seeks forward through the keys under ``prefix`` to the first at or after a target loc; subclasses
    say which entries count (``_loc_of``). ``reads`` counts the entries read (a query's read budget)."""

    def __init__(self, db: Any, prefix: bytes, **iterator: Any) -> None:
        self.prefix = prefix
        self.it = db.iterator(prefix=prefix, **iterator)
        self.current: bytes | None = None
        self.done = False
        self.reads = 0

    def _loc_of(self, entry: Any) -> bytes | None:
        raise NotImplementedError

    def seek(self, target: bytes) -> bytes | None:
        if self.done:
            return None
        if self.current is not None and self.current >= target:
            return self.current
        self.it.seek(self.prefix + target)
        for entry in self.it:
            self.reads += 1
            loc = self._loc_of(entry)
            if loc is None:
                continue
            self.current = loc
            return loc
        self.done, self.current = True, None
        return None

    def close(self) -> None:
        self.it.close()


class _Heights(_KeyCursor):
    """The heights of one per-block time posting list (recordTime: ``prefix`` + u64 height -> µs),
    optionally filtered by the stored time; ``_WholeBlocks`` turns them into locs."""

    def __init__(self, db: Any, prefix: bytes, lo: int | None = None, hi: int | None = None) -> None:
        super().__init__(db, prefix)
        self.lo, self.hi = lo, hi

    def _loc_of(self, entry: tuple[bytes, bytes]) -> bytes | None:
        key, value = entry
        t = _U64.unpack(value)[0]
        if (self.lo is not None and t < self.lo) or (self.hi is not None and t >= self.hi):
            return None
        return key[len(self.prefix):]


class _EventIds(_KeyCursor):
    """The locs of one own-eventID list (``E`` keys: ``prefix`` + loc, one per record)."""

    def __init__(self, db: Any, prefix: bytes) -> None:
        super().__init__(db, prefix, include_value=False)

    def _loc_of(self, entry: bytes) -> bytes | None:
        return entry[len(self.prefix):]


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


def _time_cursor(db: Any, lo: int | None, hi: int | None) -> _Union:
    """eventTime in [lo, hi): the buckets that cover it, the edge ones filtered by the stored times."""
    parts: list[Any] = []
    for level, bucket, inside in time_buckets(lo, hi):
        prefix = POSTING + F_EVENT_TIME + _tkey(level, bucket)
        parts.append(_Postings(db, prefix, timed=True) if inside else _Postings(db, prefix, lo, hi, timed=True))
    return _Union(parts)


def _block_time_cursor(db: Any, lo: int | None, hi: int | None) -> _Union:
    """The heights of the blocks whose timestamp (every record's recordTime) lies in [lo, hi)."""
    parts: list[Any] = []
    for level, bucket, inside in time_buckets(lo, hi):
        prefix = POSTING + F_BLOCK_TIME + _tkey(level, bucket)
        parts.append(_Heights(db, prefix) if inside else _Heights(db, prefix, lo, hi))
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


class _Static:
    """A cursor over a few locs known in advance (an eventID that is a hash ID: the hash index's hits)."""

    def __init__(self, locs: Iterable[bytes]) -> None:
        self.locs = sorted(set(locs))
        self.reads = 0

    def seek(self, target: bytes) -> bytes | None:
        self.reads += 1
        return next((x for x in self.locs if x >= target), None)

    def close(self) -> None:
        pass


def _attr_cursor(db: Any, texts: Iterable[str]) -> _Union:
    return _Union([_Postings(db, POSTING + F_ATTR + _vkey(t)) for t in dict.fromkeys(texts)])


def _match_cursor(db: Any, name: str, matches: list[Match]) -> _Union | None:
    """The locs a MATCH_ parameter can accept; None when one of its values is a pattern other than an
    SGTIN class (``CP.IR.*``): those are checked on every candidate the other cursors give."""
    parts: list[Any] = []
    for m in dict.fromkeys(matches):
        if m.pattern is not None and not m.gtin_class:
            return None
        if name in CLASS_PARAMS:
            for a in CLASS_PARAMS[name]:
                texts = [attr(a, m.value), attr(a + "~", m.value)] if m.gtin_class else [attr(a, m.value)]
                parts.append(_attr_cursor(db, texts))
            continue
        for f in MATCH_PARAMS[name]:
            tag = _CLASS_OF[f] if m.gtin_class else f
            parts.append(_Postings(db, POSTING + tag + _vkey(m.value)))
    return _Union(parts)


def _event_id_cursor(db: Any, values: list[str]) -> _Union:
    parts: list[Any] = []
    hits = []
    for v in dict.fromkeys(values):
        parts.append(_EventIds(db, EVENT_ID + hashlib.sha256(v.encode("utf-8")).digest()))
        digest = parse_hash_id(v)
        if digest is not None:  # the hash ID is the served eventID of an event that declares none
            from .epcis_index import correction_digest, lookup_hash

            for d in (digest, correction_digest(digest)):
                hit = lookup_hash(db, d)
                if hit is not None:
                    hits.append(_LOC.pack(hit[1], hit[2]))
    parts.append(_Static(hits))
    return _Union(parts)


def plan(db: Any, q: EventQuery) -> list[Any]:
    """One cursor per constraint (the most selective first is not needed: leapfrog skips). Each cursor
    yields every loc its constraint can accept (a superset for ranges and patterns, which select on a
    presence mark); ``EventQuery.accepts`` decides each candidate exactly."""
    cursors: list[Any] = []
    for name, values in q.lists.items():
        tag = LIST_PARAMS[name]
        cursors.append(_Union([_Postings(db, POSTING + tag + _vkey(v)) for v in dict.fromkeys(values)]))
    for name, matches in q.matches.items():
        cursor = _match_cursor(db, name, matches)
        if cursor is not None:
            cursors.append(cursor)
    for texts in q.attrs.values():
        cursors.append(_attr_cursor(db, texts))
    if q.event_ids:
        cursors.append(_event_id_cursor(db, q.event_ids))
    if q.flags.get("EXISTS_errorDeclaration"):
        cursors.append(_attr_cursor(db, [attr("has", "errorDeclaration")]))
    for _, marks in q.exists:
        cursors.append(_attr_cursor(db, marks))
    for _, _, targets, _ in q.compares:
        cursors.append(_attr_cursor(db, [attr("has", t) for t in targets]))
    for name, mark in OTHER_TIMES.items():
        if name in q.times:
            cursors.append(_attr_cursor(db, [attr("has", mark)]))
    lo, hi = q.times.get("GE_eventTime"), q.times.get("LT_eventTime")
    if lo is not None or hi is not None:
        cursors.append(_time_cursor(db, lo, hi))
    if not cursors:  # no constraint on the events themselves: every event, through the eventType lists
        cursors.append(_Union([_Postings(db, POSTING + F_TYPE + _vkey(t)) for t in EVENT_TYPES]))
    lo, hi = q.times.get("GE_recordTime"), q.times.get("LT_recordTime")
    if lo is not None or hi is not None:
        cursors.append(_WholeBlocks(_block_time_cursor(db, lo, hi)))
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


def _matches(db: Any, q: EventQuery, start: tuple[int, int], max_height: int, load: Any) -> Iterator[Any]:
    """(height, index, event, record_time_us, payload) of every match from ``start``, in chain order."""
    cursors = plan(db, q)
    try:
        for loc in leapfrog(cursors, _LOC.pack(*start)):
            h, i = _LOC.unpack(loc)
            if h > max_height:
                return
            got = load(h, i)
            if got is None:
                continue
            event, record_time_us, payload = got
            if q.accepts(event, record_time_us):
                yield h, i, event, record_time_us, payload
    finally:
        for c in cursors:
            c.close()


def count_matches(db: Any, q: EventQuery, *, max_height: int, load: Any, limit: int) -> int:
    """How many events match, counting no further than ``limit`` (maxEventCount's check)."""
    n = 0
    for _ in _matches(db, q, (0, 0), max_height, load):
        n += 1
        if n >= limit:
            break
    return n


def _order_key(q: EventQuery, event: Mapping[str, Any], record_time_us: int) -> tuple[int, Any] | None:
    """The value an event is ordered by (numbers, then times, then strings), None when it has none."""
    if q.order_by == "eventTime":
        t = parse_time_us(event.get("eventTime"))
        return None if t is None else (1, t)
    if q.order_by == "recordTime":
        return (1, record_time_us)
    for name, nested, v in extension_values(event, event_context(event), STANDARD_FIELDS):
        if name == q.order_by and not nested:
            if isinstance(v, bool):
                continue
            if isinstance(v, (int, float)):
                return (0, float(v))
            if isinstance(v, str):
                t = parse_time_us(v) if _ZONED.match(v) else None
                return (1, t) if t is not None else (2, v)
    return None


def run_ordered(db: Any, q: EventQuery, *, offset: int, max_height: int,
                load: Any) -> tuple[list[tuple[int, int, Any]], int | None]:
    """A page of an ``orderBy`` query: every match at heights <= ``max_height`` sorted (ties and events
    lacking the field in chain order, the latter last), cut at ``eventCountLimit``, from ``offset``.
    Returns (matches, the offset of the next page or None); ``QueryTooLarge`` past ``MAX_ORDERED``."""
    present: list[tuple[Any, int, int, Any]] = []
    missing: list[tuple[int, int, Any]] = []
    for n, (h, i, event, rt, payload) in enumerate(_matches(db, q, (0, 0), max_height, load)):
        if n >= MAX_ORDERED:
            raise QueryTooLarge(f"orderBy: more than {MAX_ORDERED} events match; narrow the query")
        k = _order_key(q, event, rt)
        if k is None:
            missing.append((h, i, payload))
        else:
            present.append((k, h, i, payload))
    present.sort(key=lambda x: x[0], reverse=q.order_desc)  # stable: ties stay in chain order
    ordered = [(h, i, p) for _, h, i, p in present] + missing
    if q.event_count_limit is not None:
        ordered = ordered[:q.event_count_limit]
    page = ordered[offset:offset + q.per_page]
    nxt = offset + q.per_page
    return page, (nxt if nxt < len(ordered) else None)
