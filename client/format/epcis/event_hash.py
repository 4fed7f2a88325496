"""The CBV 2.0 EPCIS event hash ID: ``ni:///sha-256;<hex>?ver=CBV2.0``.

The event is turned into a canonical *pre-hash string* (fixed property order,
no separators, ``key=value`` pairs, normalised values, sorted lists), whose
UTF-8 bytes are hashed with SHA-256 and written as an RFC 6920 ``ni`` URI.
``docs/epcis.md`` states the algorithm as implemented here, with worked
examples; the rules follow the EPCIS Event Hash ID algorithm of GS1 CBV 2.0
(the "EPCIS Event Hash Generator" algorithm).

Summary of the canonical forms:

* ``eventType=<type>`` first, then the event's fields in the canonical
  property order (:data:`PROPERTY_ORDER`); absent fields and empty lists are
  left out; ``eventID``, ``recordTime``, ``errorDeclaration``, ``@context``
  and comments (``rdfs:comment``) are not part of the hash.
* timestamps: UTC, ``Z``, exactly three fraction digits (the 4th digit rounds
  half up);
* numbers: no trailing zeros, no exponent (``200.0`` -> ``200``);
* CBV / GS1 vocabulary terms: bare terms, URN forms (``urn:epcglobal:cbv:...``)
  and compact IRIs (``cbv:``, ``gs1:``) become the full web URIs
  (``https://ref.gs1.org/cbv/BizStep-shipping``);
* GS1 identifiers: EPC URIs become canonical GS1 Digital Link URIs on
  ``https://id.gs1.org``; Digital Link URIs on other domains are moved to that
  domain, lose their query string and keep only the finest-grained key;
* lists: each element is rendered, then the elements are sorted (by code
  point); a list's name appears once;
* ``bizTransaction``/``source``/``destination``: ``type=<T>`` then the value;
* extensions (top level, in ILMD, readPoint, bizLocation, sensor elements):
  ``{namespace}local=value`` with the JSON-LD prefix expanded, nested objects
  rendered recursively, and sibling strings sorted.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote, unquote

from .validate import (
    BIZ_STEPS,
    BIZ_TRANSACTION_TYPES,
    COMPONENTS,
    DISPOSITIONS,
    MEASUREMENT_TYPES,
    SENSOR_ALERT_TYPES,
    SOURCE_DEST_TYPES,
)

__all__ = [
    "event_digest",
    "event_hash_id",
    "hash_id_of_digest",
    "uniqueness_digest",
    "correction_digest",
    "event_prehash",
    "epc_to_digital_link",
    "normalise_identifier",
    "normalise_timestamp",
    "timestamp_us",
    "PROPERTY_ORDER",
    "DEFAULT_PREFIXES",
]

HASH_VERSION = "CBV2.0"

#: JSON-LD prefixes the EPCIS 2.0 context defines (used when an event's own
#: ``@context`` does not say otherwise).
DEFAULT_PREFIXES: dict[str, str] = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": "https://ref.gs1.org/cbv/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
    "owl": "http://www.w3.org/2002/07/owl#",
}

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"

#: Fields that are not part of the hash.
EXCLUDED = frozenset({"type", "eventID", "recordTime", "errorDeclaration", "@context", "rdfs:comment", "comment"})

# ---------------------------------------------------------------- values

_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?\Z"
)


@lru_cache(maxsize=16_384)
def normalise_timestamp(value: str) -> str:
    """``2024-05-01T08:30:00.12345+07:00`` -> ``2024-05-01T01:30:00.123Z``.

    UTC with ``Z``, exactly three fraction digits, the 4th digit rounding half
    up (``.1415`` -> ``.142``; a carry can move the second).  A timestamp
    without an offset is taken as UTC.  Unparseable text is returned trimmed.
    """
    s = value.strip()
    m = _TIME.match(s)
    if m is None:
        return s
    y, mo, d, h, mi, sec, frac, z, sign, oh, om = m.groups()
    tz = timezone.utc
    if sign is not None:
        delta = timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-delta if sign == "-" else delta)
    try:
        t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec or 0), tzinfo=tz)
    except ValueError:
        return s
    digits = (frac or "") + "0000"
    ms = int(digits[:3]) + (1 if digits[3] >= "5" else 0)
    t = t.astimezone(timezone.utc) + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us_since_epoch(t: datetime) -> int:
    """An aware datetime as whole µs since the epoch (exact: no float on the way)."""
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def timestamp_us(value: Any) -> int | None:
    """An RFC 3339 timestamp -> µs since the epoch (UTC), or None."""
    if not isinstance(value, str):
        return None
    if _PLAIN_TIME.match(value) is not None:  # the common form: ``fromisoformat`` reads it as it is
        try:
            return _us_since_epoch(datetime.fromisoformat(value))
        except ValueError:
            return None
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac = ""
    if "." in s:  # Python < 3.11 parses at most 6 fraction digits: keep µs
        head, _, rest = s.partition(".")
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        frac = (digits + "000000")[:6]
        s = head + "." + frac + rest[len(digits):]
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return _us_since_epoch(t)


def normalise_number(value: Any) -> str:
    """``200.0`` -> ``200``; ``0.50`` -> ``0.5``; ``1e-7`` -> ``0.0000001``; booleans -> ``true``/``false``."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# ------------------------------------------------------- GS1 identifiers


def _cd(digits: str) -> str:
    """The GS1 check digit: weights 3, 1, 3, ... from the right (``int`` of each digit, so a
    non-digit raises ValueError, as the callers expect)."""
    if digits.isascii() and digits.isdigit():  # the usual case: the digits' byte values, summed in C
        b = digits.encode("ascii")
        odd, even = b[-1::-2], b[-2::-2]
        total = 3 * (sum(odd) - 48 * len(odd)) + sum(even) - 48 * len(even)
    else:  # other scripts' digits count as int() reads them; anything else raises ValueError
        total = 3 * sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2]))
    return str((10 - total % 10) % 10)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~'-]*").fullmatch  # what ``quote(..., safe="'")`` leaves alone


def _seg(text: str) -> str:
    """A Digital Link path segment: the value with EPC-URI escapes undone, then
    every character outside RFC 3986 'unreserved' and the apostrophe
    percent-encoded (as the CBV 2.0 reference implementation does)."""
    if _UNRESERVED(text) is not None:  # no escape to undo, nothing to encode (most serials): itself
        return text
    return quote(unquote(text), safe="'")


def _indicator_first(cp: str, ref: str) -> str:
    """CompanyPrefix.ItemRef (indicator/extension digit first in ItemRef) -> 13 digits."""
    return ref[:1] + cp + ref[1:]


def epc_to_digital_link(uri: str) -> str | None:
    """The canonical GS1 Digital Link URI (``https://id.gs1.org/...``) of an EPC
    URI, EPC class URI or (sgtin) EPC pattern URI; None if it has none."""
    if not uri.startswith("urn:epc:"):
        return None
    kind, _, rest = uri[8:].partition(":")
    scheme, _, body = rest.partition(":")
    parts = body.split(".")
    base = "https://id.gs1.org/"
    try:
        if kind == "id":
            if scheme == "sgtin" and len(parts) == 3:
                g = _indicator_first(parts[0], parts[1])
                return f"{base}01/{g}{_cd(g)}/21/{_seg(parts[2])}"
            if scheme == "sscc" and len(parts) == 2:
                s = _indicator_first(parts[0], parts[1])
                return f"{base}00/{s}{_cd(s)}"
            if scheme == "sgln" and len(parts) == 3:
                g = parts[0] + parts[1]
                ext = "" if parts[2] == "0" else f"/254/{_seg(parts[2])}"
                return f"{base}414/{g}{_cd(g)}{ext}"
            if scheme == "pgln" and len(parts) == 2:
                g = parts[0] + parts[1]
                return f"{base}417/{g}{_cd(g)}"
            if scheme == "grai" and len(parts) == 3:
                g = "0" + parts[0] + parts[1]
                return f"{base}8003/{g}{_cd(g)}{_seg(parts[2])}"
            if scheme == "giai" and len(parts) >= 2:
                return f"{base}8004/{parts[0]}{_seg('.'.join(parts[1:]))}"
            if scheme in ("gsrn", "gsrnp") and len(parts) == 2:
                g = parts[0] + parts[1]
                return f"{base}{'8018' if scheme == 'gsrn' else '8017'}/{g}{_cd(g)}"
            if scheme == "gdti" and len(parts) == 3:
                g = parts[0] + parts[1]
                return f"{base}253/{g}{_cd(g)}{_seg(parts[2])}"
            if scheme == "sgcn" and len(parts) == 3:
                g = parts[0] + parts[1]
                return f"{base}255/{g}{_cd(g)}{parts[2]}"
            if scheme == "ginc" and len(parts) >= 2:
                return f"{base}401/{parts[0]}{_seg('.'.join(parts[1:]))}"
            if scheme == "gsin" and len(parts) == 2:
                g = parts[0] + parts[1]
                return f"{base}402/{g}{_cd(g)}"
            if scheme == "cpi" and len(parts) == 3:
                return f"{base}8010/{parts[0]}{_seg(parts[1])}/8011/{parts[2]}"
            if scheme == "itip" and len(parts) == 5:
                g = _indicator_first(parts[0], parts[1])
                return f"{base}8006/{g}{_cd(g)}{parts[2]}{parts[3]}/21/{_seg(parts[4])}"
            if scheme == "upui" and len(parts) == 3:
                g = _indicator_first(parts[0], parts[1])
                return f"{base}01/{g}{_cd(g)}/235/{_seg(parts[2])}"
        elif kind == "class" and scheme == "lgtin" and len(parts) == 3:
            g = _indicator_first(parts[0], parts[1])
            return f"{base}01/{g}{_cd(g)}/10/{_seg(parts[2])}"
        elif kind == "idpat" and scheme == "sgtin" and len(parts) == 3 and parts[1] != "*":
            g = _indicator_first(parts[0], parts[1])
            return f"{base}01/{g}{_cd(g)}"
    except ValueError:  # non-digits where digits belong
        return None
    return None


# Digital Link primary keys -> the key qualifiers the hash keeps, finest first
_DL_KEEP: dict[str, tuple[str, ...]] = {
    "00": (), "01": ("21", "235", "10"), "253": (), "255": (), "401": (), "402": (), "414": ("254",),
    "417": (), "8003": (), "8004": (), "8006": ("21", "10"), "8010": ("8011",), "8017": (), "8018": (),
}
# older Digital Link syntax used short names for some keys and qualifiers
_DL_ALPHA = {"sscc": "00", "gtin": "01", "gdti": "253", "gcn": "255", "ginc": "401", "gsin": "402", "gln": "414",
             "party": "417", "grai": "8003", "giai": "8004", "itip": "8006", "cpid": "8010", "gsrnp": "8017",
             "gsrn": "8018", "ser": "21", "lot": "10", "glnx": "254", "cpsn": "8011"}
_DL = re.compile(r"https?://[^/?#]+((?:/[^/?#]*)*)(?:\?[^#]*)?(?:#.*)?\Z")
_DL_NUMERIC_LEN = {"00": 18, "01": 14, "402": 17, "414": 13, "417": 13, "8017": 18, "8018": 18}


def _digital_link(uri: str) -> str | None:
    """A Digital Link URI in the hash's constrained canonical form, or None if
    ``uri`` is not a GS1 Digital Link URI."""
    m = _DL.match(uri)
    if m is None:
        return None
    segs = [_DL_ALPHA.get(x, x) for x in m.group(1).split("/")[1:]]
    for i in range(len(segs) - 1):
        ai = segs[i]
        keep = _DL_KEEP.get(ai)
        if keep is None:
            continue
        value = unquote(segs[i + 1])
        n = _DL_NUMERIC_LEN.get(ai)
        if n is not None:
            if not value.isdigit() or len(value) > n:
                return None
            value = value.zfill(n)  # GTIN-8/12/13 -> GTIN-14 etc.
        elif ai in ("253", "255", "8003", "8006") and not value[:13].isdigit():
            return None
        quals = {segs[j]: unquote(segs[j + 1]) for j in range(i + 2, len(segs) - 1, 2)}
        out = f"https://id.gs1.org/{ai}/{_seg(value)}"
        for q in keep:
            if q in quals:
                out += f"/{q}/{_seg(quals[q])}"
                break
        return out
    return None


def normalise_identifier(value: str) -> str:
    """EPC URI -> canonical Digital Link; Digital Link -> constrained canonical
    Digital Link (``https://id.gs1.org``, no query, finest key only); else unchanged."""
    if value.startswith("urn:epc:"):
        return epc_to_digital_link(value) or value
    if value.startswith("http"):
        return _digital_link(value) or value
    return value


# ----------------------------------------------------------- vocabularies

_URN_CBV = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
    ("http://ns.gs1.org/cbv/", CBV),
    ("https://ns.gs1.org/cbv/", CBV),
)
_URN_CBV_PREFIXES = tuple(old for old, _ in _URN_CBV)
# field -> what a bare term expands to
_BARE = {
    "bizStep": CBV + "BizStep-",
    "disposition": CBV + "Disp-",
    "set": CBV + "Disp-",
    "unset": CBV + "Disp-",
    "bizTransactionType": CBV + "BTT-",
    "sourceDestType": CBV + "SDT-",
    "component": CBV + "Comp-",
    "measurementType": GS1_VOC,
    "exception": GS1_VOC,
}


_TERMS = {
    "bizStep": BIZ_STEPS,
    "disposition": DISPOSITIONS,
    "set": DISPOSITIONS,
    "unset": DISPOSITIONS,
    "bizTransactionType": BIZ_TRANSACTION_TYPES,
    "sourceDestType": SOURCE_DEST_TYPES,
    "component": COMPONENTS,
    "measurementType": MEASUREMENT_TYPES,
    "exception": SENSOR_ALERT_TYPES,
}


# Rendered string values and extension names, per prefix map: identifiers, locations, vocabulary
# terms and extension keys repeat from event to event, so normalising each once makes the hash
# several times cheaper (bounded, thread-safe enough: a lost insert only costs a recomputation).
_Caches = tuple[dict[tuple[str, str | None], str], dict[str, str]]
_VALUE_CACHES: dict[tuple[tuple[str, str], ...], _Caches] = {}
_VALUE_CACHE_MAX = 65_536


class _Ctx:
    """Prefix map of the event (its ``@context`` over the EPCIS defaults)."""

    __slots__ = ("prefixes", "cache", "names")

    def __init__(self, contexts: Iterable[Any]) -> None:
        self.prefixes = dict(DEFAULT_PREFIXES)
        for c in contexts:
            if c is not None:
                self._add(c)
        key = () if self.prefixes == DEFAULT_PREFIXES else tuple(sorted(self.prefixes.items()))
        caches = _VALUE_CACHES.get(key)
        if caches is None:
            if len(_VALUE_CACHES) > 256:
                _VALUE_CACHES.clear()
            caches = _VALUE_CACHES[key] = ({}, {})
        self.cache, self.names = caches

    def _add(self, c: Any) -> None:
        if isinstance(c, list):
            for x in c:
                self._add(x)
        elif isinstance(c, dict):
            for k, v in c.items():
                if isinstance(v, dict):
                    v = v.get("@id")
                if isinstance(k, str) and isinstance(v, str) and not k.startswith("@"):
                    self.prefixes[k] = v

    def expand(self, term: str) -> str:
        """A compact IRI ``prefix:rest`` with a known prefix -> full IRI; else unchanged."""
        prefix, sep, rest = term.partition(":")
        if sep and not rest.startswith("//"):
            ns = self.prefixes.get(prefix)
            if ns is not None:
                return ns + rest
        return term

    def key(self, key: str) -> str:
        """An extension key -> ``{namespace}local`` (cached per prefix map)."""
        name = self.names.get(key)
        if name is None:
            if len(self.names) > _VALUE_CACHE_MAX:
                self.names.clear()
            name = self.names[key] = self._key(key)
        return name

    def _key(self, key: str) -> str:
        prefix, sep, rest = key.partition(":")
        if sep and not rest.startswith("//"):
            ns = self.prefixes.get(prefix)
            if ns is not None:
                return "{" + ns + "}" + rest
            return "{" + prefix + ":}" + rest
        # a full IRI: split after its last '/' or '#'
        cut = max(key.rfind("/"), key.rfind("#"))
        if sep and cut > 0:
            return "{" + key[: cut + 1] + "}" + key[cut + 1 :]
        return key


def _value(v: Any, ctx: _Ctx, vocab: str | None = None) -> str:
    """The canonical text of a value."""
    if not isinstance(v, str):
        if v is None:
            return ""
        if isinstance(v, (int, float)):
            return normalise_number(v)
        return str(v)
    cache = ctx.cache
    out = cache.get((v, vocab))
    if out is None:
        if len(cache) > _VALUE_CACHE_MAX:
            cache.clear()
        out = cache[(v, vocab)] = _value_text(v, ctx, vocab)
    return out


def _value_text(v: str, ctx: _Ctx, vocab: str | None) -> str:
    s = v.strip()
    if not s:
        return s
    if vocab is not None and ":" not in s:
        return _BARE[vocab] + s if s in _TERMS[vocab] else s
    if s.startswith(_URN_CBV_PREFIXES):
        for old, new in _URN_CBV:
            if s.startswith(old):
                return new + s[len(old):]
    s = ctx.expand(s)
    return normalise_identifier(s)


def _pair(key: str, v: Any, ctx: _Ctx, vocab: str | None = None) -> str:
    text = ctx.cache.get((v, vocab)) if type(v) is str else None  # _value's cache, one call fewer
    if text is None:
        text = _value(v, ctx, vocab)
    return f"{key}={text}" if text else ""


# --------------------------------------------------------------- structure

_QTY = ("epcClass", "quantity", "uom")
_SENSOR_METADATA = ("time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
                    "dataProcessingMethod", "bizRules")
_SENSOR_REPORT = ("type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod", "time",
                  "microorganism", "chemicalSubstance", "value", "component", "stringValue", "booleanValue",
                  "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue", "sDev", "percRank",
                  "percValue", "uom", "coordinateReferenceSystem", "bizRules")
_TIME_FIELDS = frozenset({"time", "startTime", "endTime"})
_ID = ("id",)
_SKIPS: dict[tuple[str, ...], frozenset[str]] = {
    order: frozenset(order) for order in (_QTY, _SENSOR_METADATA, _SENSOR_REPORT, _ID)
}
_SENSOR_ELEMENT = frozenset({"sensorMetadata", "sensorReport"})
_SENSOR_VOCAB = {"type": "measurementType", "exception": "exception", "component": "component"}

#: The canonical property order after ``eventType``.
PROPERTY_ORDER: tuple[str, ...] = (
    "eventTime", "eventTimeZoneOffset", "certificationInfo",
    "epcList", "parentID", "inputEPCList", "childEPCs",
    "quantityList", "childQuantityList", "inputQuantityList",
    "outputEPCList", "outputQuantityList",
    "action", "transformationID", "bizStep", "disposition", "persistentDisposition",
    "readPoint", "bizLocation", "bizTransactionList", "sourceList", "destinationList",
    "sensorElementList", "ilmd",
)
_KNOWN = frozenset(PROPERTY_ORDER) | EXCLUDED


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _ext(key: str, v: Any, ctx: _Ctx) -> list[str]:
    """Pre-hash substrings of one extension element (a list value gives one per item)."""
    name = ctx.key(key)
    out = []
    for item in _as_list(v):
        if isinstance(item, dict):
            out.append(name + _exts(item, ctx))
        else:
            text = _value(item, ctx)
            out.append(f"{name}={text}" if text else name)
    return out


_NOT_EXTENSIONS = frozenset({"@context", "rdfs:comment", "comment"})
_NO_SKIP: frozenset[str] = frozenset()


def _exts(obj: Mapping[str, Any], ctx: _Ctx, skip: frozenset[str] = _NO_SKIP) -> str:
    """All extension elements of ``obj`` (keys not in ``skip``), sorted."""
    keys = obj.keys() - skip  # in C; the order does not matter: the parts are sorted
    return _ext_parts(obj, keys, ctx) if keys else ""


def _ext_parts(obj: Mapping[str, Any], keys: Iterable[str], ctx: _Ctx) -> str:
    """``_exts`` of ``obj``'s ``keys`` (the extension keys and those it leaves out itself)."""
    parts: list[str] = []
    for k in keys:
        if k in _NOT_EXTENSIONS or k.startswith("@xmlns"):
            continue
        v = obj[k]
        if k == "#text":
            text = _value(v, ctx)
            if text:
                parts.append("=" + text)  # XML-style text content
            continue
        parts.extend(_ext(k, v, ctx))
    parts.sort()
    return "".join(parts)


def _fields(obj: Mapping[str, Any], order: tuple[str, ...], ctx: _Ctx,
            vocab: Mapping[str, str] | None = None) -> str:
    """``order``'s fields of ``obj`` as pairs, then its other keys as extensions."""
    out = []
    for f in order:
        if f in obj:
            v = obj[f]
            if f in _TIME_FIELDS and isinstance(v, str):
                out.append(f"{f}={normalise_timestamp(v)}")
            elif f == "hexBinaryValue" and isinstance(v, str):
                out.append(f"{f}={v.strip().upper()}")
            else:
                out.append(_pair(f, v, ctx, vocab.get(f) if vocab else None))
    return "".join(out) + _exts(obj, ctx, _SKIPS[order])


def _sorted_join(items: Iterable[str]) -> str:
    return "".join(sorted(i for i in items if i))


def _r_time(field: str, v: Any, ctx: _Ctx) -> str:
    return f"{field}={normalise_timestamp(v)}" if isinstance(v, str) else _pair(field, v, ctx)


def _r_epcs(field: str, v: Any, ctx: _Ctx) -> str:
    cache = ctx.cache
    parts = []
    for x in v if isinstance(v, list) else (v,):
        text = cache.get((x, None)) if type(x) is str else None
        if text is None:
            text = _value(x, ctx)
        if text:
            parts.append("epc=" + text)
    parts.sort()
    return field + "".join(parts) if parts else ""


def _r_certification(field: str, v: Any, ctx: _Ctx) -> str:
    return _sorted_join(_pair(field, x, ctx) for x in _as_list(v))


def _r_quantities(field: str, v: Any, ctx: _Ctx) -> str:
    body = _sorted_join("quantityElement" + _fields(q, _QTY, ctx) for q in _as_list(v) if isinstance(q, dict))
    return field + body if body else ""


def _r_term(field: str, v: Any, ctx: _Ctx) -> str:
    return _pair(field, v, ctx, field)


def _r_persistent(field: str, v: Any, ctx: _Ctx) -> str:
    if not isinstance(v, dict):
        return ""
    body = "".join(_sorted_join(_pair(k, x, ctx, k) for x in _as_list(v[k])) for k in ("set", "unset") if k in v)
    return field + body if body else ""


def _r_location(field: str, v: Any, ctx: _Ctx) -> str:
    if isinstance(v, dict):
        body = _fields(v, _ID, ctx)
    else:
        body = _pair("id", v, ctx)
    return field + body if body else ""


_PARTY_KEYS = {"bizTransactionList": ("bizTransaction", "bizTransactionType"),
               "sourceList": ("source", "sourceDestType"), "destinationList": ("destination", "sourceDestType")}


def _r_parties(field: str, v: Any, ctx: _Ctx) -> str:
    value_key, vocab = _PARTY_KEYS[field]
    items = []
    for x in _as_list(v):
        if isinstance(x, dict):
            items.append(_pair("type", x.get("type"), ctx, vocab) + _pair(value_key, x.get(value_key), ctx))
    body = _sorted_join(items)
    return field + body if body else ""


def _r_sensors(field: str, v: Any, ctx: _Ctx) -> str:
    elements = []
    for el in _as_list(v):
        if not isinstance(el, dict):
            continue
        s = "sensorElement"
        md = el.get("sensorMetadata")
        if isinstance(md, dict):
            body = _fields(md, _SENSOR_METADATA, ctx)
            s += "sensorMetadata" + body if body else ""
        reports = []
        for r in _as_list(el.get("sensorReport", [])):
            if isinstance(r, dict):
                reports.append("sensorReport" + _fields(r, _SENSOR_REPORT, ctx, _SENSOR_VOCAB))
        s += _sorted_join(reports)
        s += _exts(el, ctx, _SENSOR_ELEMENT)
        elements.append(s)
    body = _sorted_join(elements)
    return field + body if body else ""


def _r_ilmd(field: str, v: Any, ctx: _Ctx) -> str:
    body = _exts(v, ctx) if isinstance(v, dict) else ""
    return field + body if body else ""


#: How each field of ``PROPERTY_ORDER`` is rendered (one lookup instead of a chain of tests);
#: the fields not named here are plain ``field=value`` pairs.
_RENDER = {
    "eventTime": _r_time,
    **dict.fromkeys(("epcList", "inputEPCList", "childEPCs", "outputEPCList"), _r_epcs),
    "certificationInfo": _r_certification,
    **dict.fromkeys(("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"),
                    _r_quantities),
    "bizStep": _r_term,
    "disposition": _r_term,
    "persistentDisposition": _r_persistent,
    "readPoint": _r_location,
    "bizLocation": _r_location,
    **dict.fromkeys(_PARTY_KEYS, _r_parties),
    "sensorElementList": _r_sensors,
    "ilmd": _r_ilmd,
}
_ORDER = tuple((f, _RENDER.get(f, _pair)) for f in PROPERTY_ORDER)


def _render(field: str, v: Any, ctx: _Ctx) -> str:
    """The pre-hash substring of the event's ``field`` (one of ``PROPERTY_ORDER``)."""
    return _RENDER.get(field, _pair)(field, v, ctx)


_DEFAULT_CTX = _Ctx(())  # an event with no @context of its own, in no document: most of them


def event_prehash(event: Mapping[str, Any], context: Any = None) -> str:
    """The canonical pre-hash string of an EPCIS event.

    ``context`` is the JSON-LD ``@context`` in force around the event (e.g. the
    enclosing document's); the event's own ``@context`` is applied on top.
    """
    own = event.get("@context")
    ctx = _DEFAULT_CTX if context is None and own is None else _Ctx([context, own])
    shape = tuple(event)
    plan = _PLANS.get(shape)
    if plan is None:
        plan = _plan(shape)
    fields, extensions = plan
    out = ["eventType=" + str(event.get("type", "")).strip()]
    for field, render in fields:
        out.append(render(field, event[field], ctx))
    if extensions:
        out.append(_ext_parts(event, extensions, ctx))
    return "".join(out)


_Plan = tuple[tuple[tuple[str, Callable[[str, Any, _Ctx], str]], ...], tuple[str, ...]]
_PLANS: dict[tuple[str, ...], _Plan] = {}
_PLANS_MAX = 4096


def _plan(shape: tuple[str, ...]) -> _Plan:
    """What ``event_prehash`` renders of an event with these keys: its ``PROPERTY_ORDER`` fields in that
    order, and its extension keys (``_exts(event, ctx, _KNOWN)``'s). Events share a few shapes, so the
    plan is kept per shape and an event's 24 standard fields are not each looked up (issue 16)."""
    present = set(shape)
    plan = (tuple(x for x in _ORDER if x[0] in present), tuple(k for k in shape if k not in _KNOWN))
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[shape] = plan
    return plan


def event_digest(event: Mapping[str, Any], context: Any = None) -> bytes:
    """The 32-byte SHA-256 inside the event's hash ID: the key of the ledger's ``duplicate event`` rule."""
    return hashlib.sha256(event_prehash(event, context).encode("utf-8")).digest()


_CORRECTION = b"errorDeclaration\x00"


def uniqueness_digest(event: Mapping[str, Any]) -> bytes:
    """The key of the ledger's ``duplicate event`` rule: the event hash digest; for an error
    declaration, SHA-256(``errorDeclaration`` ‖ 0x00 ‖ digest).

    The hash ID leaves ``errorDeclaration`` out (CBV 2.0), so a correction has its original's hash ID;
    on a ledger with no rollback, the error declaration is the standard way to correct a record, so
    each event may be recorded once and declared erroneous once (docs/format.md §10, docs/epcis.md).
    """
    digest = event_digest(event)
    return correction_digest(digest) if "errorDeclaration" in event else digest


def correction_digest(digest: bytes) -> bytes:
    """The ``duplicate event`` key of an error declaration of the event whose hash digest is ``digest``."""
    return hashlib.sha256(_CORRECTION + digest).digest()


def event_hash_id(event: Mapping[str, Any], context: Any = None) -> str:
    """The CBV 2.0 event hash ID ``ni:///sha-256;<hex>?ver=CBV2.0`` of an EPCIS event."""
    return hash_id_of_digest(event_digest(event, context))


def hash_id_of_digest(digest: bytes) -> str:
    return f"ni:///sha-256;{digest.hex()}?ver={HASH_VERSION}"
