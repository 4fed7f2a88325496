"""Validation of GS1 EPCIS 2.0 events (JSON / JSON-LD binding) by rantai's own rules.

The rules are hand-written typed checks (no schema engine at run time): each
known field has a small checker, unknown fields are allowed only when they are
namespaced extensions (``prefix:name`` or a full URI), and every list and
string is bounded.  The checks follow the EPCIS 2.0 standard and the CBV 2.0
vocabulary; they are at least as strict as GS1's official JSON schema (the
differential test in ``tests/epcis/test_differential.py`` checks that against
the official schema and examples) and stricter in a few places:

* only the five standard event types are accepted (no extended event types);
* GS1 identifiers are checked for their structure: EPC URIs
  (``urn:epc:id:sgtin:...``, ``urn:epc:class:lgtin:...``, ``urn:epc:idpat:...``)
  by scheme, GS1 Digital Link URIs by primary key (digit counts, check digit);
* every list of EPCs must hold each EPC once;
* an AggregationEvent with action ADD or DELETE needs a ``parentID`` (as the
  EPCIS 2.0 standard requires);
* sizes are bounded (``MAX_LIST_ITEMS``, ``MAX_URI_LENGTH``,
  ``MAX_TEXT_LENGTH``, ``MAX_DEPTH``).

Errors raise :class:`EventInvalid` naming the failing path, e.g.
``schema: event.eventTime: required``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Callable, NoReturn

from ..errors import InvalidRecord

__all__ = [
    "EventInvalid",
    "validate_event",
    "validate_document",
    "document_events",
    "gs1_check_digit",
    "is_gs1_identifier",
    "EVENT_TYPES",
    "BIZ_STEPS",
    "DISPOSITIONS",
    "BIZ_TRANSACTION_TYPES",
    "SOURCE_DEST_TYPES",
    "ERROR_REASONS",
    "MAX_LIST_ITEMS",
    "MAX_URI_LENGTH",
    "MAX_TEXT_LENGTH",
    "MAX_DEPTH",
]

MAX_LIST_ITEMS = 10_000
MAX_URI_LENGTH = 2_048
MAX_TEXT_LENGTH = 8_192
MAX_DEPTH = 16  # nesting depth of extension / ILMD values
MAX_KEYS = 1_000  # keys in one extension object


class EventInvalid(InvalidRecord, ValueError):
    """An EPCIS event or document broke a validation rule.

    ``path`` names the failing element (``event.eventTime``,
    ``epcisBody.eventList[3].epcList[0]``); ``reason`` says what is wrong.
    ``str(err)`` is ``"schema: <path>: <reason>"``.  An :class:`InvalidRecord`
    (HTTP 400) of rantai's error hierarchy, and a ``ValueError``.
    """

    status_hint = 400
    rule = "schema"

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"schema: {path}: {message}", path=path, reason=message)

    def __str__(self) -> str:
        return f"schema: {self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type[EventInvalid], tuple[str, str]]:  # picklable (process pools)
        return (type(self), (self.path, self.reason))


class _Err(Exception):
    """Internal: a rule broke.  The path is assembled while the error unwinds
    (each container appends its key), so the success path builds no strings."""

    __slots__ = ("msg", "parts")

    def __init__(self, msg: str, *parts: str) -> None:
        self.msg = msg
        self.parts = list(parts)


def _bad(msg: str, *parts: str) -> NoReturn:
    raise _Err(msg, *parts)


# --------------------------------------------------------------------------
# vocabularies (CBV 2.0 bare terms, as the JSON/JSON-LD binding writes them)

EVENT_TYPES = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)
ACTIONS = frozenset({"ADD", "OBSERVE", "DELETE"})

BIZ_STEPS = frozenset(
    """accepting arriving assembling collecting commissioning consigning creating_class_instance
    cycle_counting decommissioning departing destroying disassembling dispensing encoding
    entering_exiting holding inspecting installing killing loading other packing picking receiving
    removing repackaging repairing replacing reserving retail_selling shipping staging_outbound
    stock_taking stocking storing transporting unloading unpacking void_shipping sensor_reporting
    sampling""".split()
)
DISPOSITIONS = frozenset(
    """active container_closed damaged destroyed dispensed disposed encoded expired in_progress
    in_transit inactive no_pedigree_match non_sellable_other partially_dispensed recalled reserved
    retail_sold returned sellable_accessible sellable_not_accessible stolen unknown available
    completeness_verified completeness_inferred conformant container_open mismatch_instance
    mismatch_class mismatch_quantity needs_replacement non_conformant unavailable""".split()
)
BIZ_TRANSACTION_TYPES = frozenset(
    "bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres upevt".split()
)
SOURCE_DEST_TYPES = frozenset({"owning_party", "possessing_party", "location"})
ERROR_REASONS = frozenset({"did_not_occur", "incorrect_data"})
SENSOR_ALERT_TYPES = frozenset({"ALARM_CONDITION", "ERROR_CONDITION"})
COMPONENTS = frozenset(
    """x y z axial_distance azimuth height spherical_radius polar_angle elevation_angle easting
    northing latitude longitude altitude""".split()
)
# GS1 Web Vocabulary measurement types (gs1:MeasurementType), bare names.
MEASUREMENT_TYPES = frozenset(
    """AbsoluteHumidity AbsorbedDose AbsorbedDoseRate Acceleration Radioactivity Altitude
    AmountOfSubstance AmountOfSubstancePerUnitVolume Angle AngularAcceleration AngularMomentum
    AngularVelocity Area Capacitance Conductance Conductivity Count Density Dimensionless
    DoseEquivalent DoseEquivalentRate DynamicViscosity ElectricCharge ElectricCurrent
    ElectricCurrentDensity ElectricFieldStrength Energy Exposure Force Frequency Illuminance
    Inductance Irradiance KinematicViscosity Length LinearMomentum Luminance LuminousFlux
    LuminousIntensity MagneticFlux MagneticFluxDensity MagneticVectorPotential Mass
    MassConcentration MassFlowRate MassPerAreaTime MemoryCapacity MolalityOfSolute MolarEnergy
    MolarMass MolarVolume Power Pressure RadiantFlux RadiantIntensity RelativeHumidity Resistance
    Resistivity SolidAngle SpecificVolume Speed SurfaceDensity SurfaceTension Temperature Time
    Torque Voltage Volume VolumeFlowRate VolumeFraction VolumetricFlux Wavenumber""".split()
)

# --------------------------------------------------------------------------
# lexical forms

# An absolute URI (RFC 3986): scheme ":" then only characters a URI may hold,
# with "%" only as the start of a percent-encoded octet.
_URI_CHARS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*\Z")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class _URIMatcher:
    """``_URI.match(s)``: truthy when ``s`` is an absolute URI (character-level RFC 3986)."""

    __slots__ = ()

    @staticmethod
    def match(s: str) -> bool:
        if _URI_CHARS.match(s) is None:
            return False
        return "%" not in s or _BAD_PCT.search(s) is None


_URI = _URIMatcher()
# CBV terms must be bare ("shipping"), never in their URN or GS1 Web URI forms.
_CBV_URI_PREFIXES = ("urn:epcglobal:cbv", "http://ns.gs1.org/cbv/", "https://ns.gs1.org/cbv/")
_GS1_VOC_PREFIXES = ("http://gs1.org/voc/", "https://gs1.org/voc/", "http://www.gs1.org/voc/", "https://www.gs1.org/voc/")

# re.ASCII: a str pattern's \d would also match other scripts' digits (Arabic-Indic, Devanagari, ...),
# which no EPC URI, date-time or offset may hold.
_DATETIME = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-]\d\d:\d\d)\Z", re.ASCII)
_TZ_OFFSET = re.compile(r"[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00)\Z", re.ASCII)
_UOM = re.compile(r"[A-Z0-9]{2,3}\Z")
_HEX = re.compile(r"[A-Fa-f0-9]+\Z")
_VERSION = re.compile(r"\d+(?:\.\d+)*\Z", re.ASCII)
_fromiso = datetime.fromisoformat


def _is_time(s: Any) -> bool:
    """An RFC 3339 date-time with a time zone (Z or ±hh:mm), at most nanosecond digits, no leap second."""
    if type(s) is not str or _DATETIME.match(s) is None:
        return False
    try:  # the calendar: month and day ranges, leap years, hour < 24, offset < 24h
        _fromiso(s.upper() if s[10] == "t" or s[-1] == "z" else s)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- GS1 keys

# characters of GS1 AI encodable character set 82, as they appear in EPC URIs
# (reserved characters percent-encoded)
# characters of the GS1 AI encodable character set 82 as they appear in EPC URIs
# (reserved characters percent-encoded; the URI check vets the %xx escapes)
_C82 = r"[!'()*+,\-.0-9:;=A-Z_a-z%]"


def _digits(total: int, ref_min: int, ref_max: int) -> str:
    """Company prefix (6-12 digits) "." reference, adding up to ``total`` digits."""
    alts = [rf"\d{{{cp}}}\.\d{{{total - cp}}}" for cp in range(6, 13) if ref_min <= total - cp <= ref_max]
    return "(?:" + "|".join(alts) + ")"


# scheme -> (regex of the part after "urn:epc:id:<scheme>:", human-readable form)
_EPC_ID_FORMS: dict[str, tuple[str, str]] = {
    "sgtin": (
        _digits(13, 1, 7) + r"\." + _C82 + "{1,20}",
        "CompanyPrefix.ItemRef.Serial (13 digits before the serial)",
    ),
    "sscc": (_digits(17, 5, 11), "CompanyPrefix.SerialRef (17 digits)"),
    "sgln": (_digits(12, 0, 6) + r"\." + _C82 + "{1,20}", "CompanyPrefix.LocationRef.Extension (12 digits)"),
    "grai": (_digits(12, 0, 6) + r"\." + _C82 + "{0,16}", "CompanyPrefix.AssetType.Serial (12 digits)"),
    "giai": (r"\d{6,12}\." + _C82 + "{1,24}", "CompanyPrefix.AssetRef"),
    "gsrn": (_digits(17, 5, 11), "CompanyPrefix.ServiceRef (17 digits)"),
    "gsrnp": (_digits(17, 5, 11), "CompanyPrefix.ServiceRef (17 digits)"),
    "gdti": (_digits(12, 0, 6) + r"\." + _C82 + "{0,17}", "CompanyPrefix.DocumentType.Serial (12 digits)"),
    "cpi": (r"\d{6,12}\.(?:[\-#/0-9A-Z]|%2[3dDfF]){1,24}\.\d{1,12}", "CompanyPrefix.ComponentPartRef.Serial"),
    "sgcn": (_digits(12, 0, 6) + r"\.\d{1,12}", "CompanyPrefix.CouponRef.Serial (12 digits)"),
    "ginc": (r"\d{6,12}\." + _C82 + "{1,24}", "CompanyPrefix.ConsignmentRef"),
    "gsin": (_digits(16, 4, 10), "CompanyPrefix.ShipperRef (16 digits)"),
    "itip": (_digits(13, 1, 7) + r"\.\d\d\.\d\d\." + _C82 + "{1,20}", "CompanyPrefix.ItemRef.Piece.Total.Serial"),
    "upui": (_digits(13, 1, 7) + r"\." + _C82 + "{1,28}", "CompanyPrefix.ItemRef.TPX"),
    "pgln": (_digits(12, 0, 6), "CompanyPrefix.PartyRef (12 digits)"),
    "gid": (r"\d{1,9}\.\d{1,8}\.\d{1,11}", "Manager.Class.Serial"),
    "usdod": (r"[0-9A-Z ]{1,6}\.\d{1,11}", "CAGE.Serial"),
    "adi": (r"[0-9A-Z]{1,6}\.[0-9A-Z/\-%]{0,30}\.[#0-9A-Z/\-%]{1,30}", "CAGE.PartNumber.Serial"),
    "bic": (r"[A-Z]{3}[JUZ]\d{7}", "container code"),
    "imovn": (r"\d{7}", "IMO vessel number"),
}
_EPC_CLASS_FORMS: dict[str, tuple[str, str]] = {
    "lgtin": (_digits(13, 1, 7) + r"\." + _C82 + "{1,20}", "CompanyPrefix.ItemRef.Lot (13 digits before the lot)"),
}
_IDPAT_SCHEMES = "|".join(_EPC_ID_FORMS)
# One regex for every well-formed EPC URI, EPC class URI and EPC pattern URI.
_EPC_URI = re.compile(
    "urn:epc:(?:id:(?:"
    + "|".join(f"{k}:{rx}" for k, (rx, _) in _EPC_ID_FORMS.items())
    + ")|class:(?:"
    + "|".join(f"{k}:{rx}" for k, (rx, _) in _EPC_CLASS_FORMS.items())
    + rf")|idpat:(?:{_IDPAT_SCHEMES}):[!'()*+,\-.0-9:;=A-Z_a-z#/ %]+"
    + r"|raw:[0-9]+\.(?:x[0-9A-Fa-f]+|[0-9]+))\Z",
    re.ASCII,
)
# GS1 Digital Link: primary keys the EPCIS identifiers use, with their formats
# (regex on the key value; whether a GS1 check digit ends the numeric part).
_DL_KEYS: dict[str, tuple[re.Pattern[str], int | None]] = {
    "00": (re.compile(r"\d{18}\Z", re.ASCII), 18),
    "01": (re.compile(r"\d{14}\Z", re.ASCII), 14),
    "253": (re.compile(r"\d{13}" + _C82 + r"{0,17}\Z", re.ASCII), 13),
    "255": (re.compile(r"\d{13}\d{0,12}\Z", re.ASCII), 13),
    "401": (re.compile(_C82 + r"{1,30}\Z", re.ASCII), None),
    "402": (re.compile(r"\d{17}\Z", re.ASCII), 17),
    "414": (re.compile(r"\d{13}\Z", re.ASCII), 13),
    "417": (re.compile(r"\d{13}\Z", re.ASCII), 13),
    "8003": (re.compile(r"\d{14}" + _C82 + r"{0,16}\Z", re.ASCII), 14),
    "8004": (re.compile(_C82 + r"{1,30}\Z", re.ASCII), None),
    "8006": (re.compile(r"\d{18}\Z", re.ASCII), 14),
    "8010": (re.compile(r"(?:[\-#/0-9A-Z]|%2[3dDfF]){1,30}\Z", re.ASCII), None),
    "8017": (re.compile(r"\d{18}\Z", re.ASCII), 18),
    "8018": (re.compile(r"\d{18}\Z", re.ASCII), 18),
}
_DL_PRIMARY = re.compile(r"https?://[^/?#]+(?:/[^/?#]*)*?/(00|01|253|255|401|402|414|417|8003|8004|8006|8010|8017|8018)/([^/?#]+)")
_DL_ALPHA = {
    "sscc": "00", "gtin": "01", "gdti": "253", "gcn": "255", "ginc": "401", "gsin": "402", "gln": "414",
    "party": "417", "grai": "8003", "giai": "8004", "itip": "8006", "cpid": "8010", "gsrnp": "8017", "gsrn": "8018",
}


def gs1_check_digit(digits: str) -> int:
    """The GS1 (mod 10) check digit for the digits that precede it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def _epc_problem(v: str) -> str:
    """Why ``v`` (starting with ``urn:epc:``) is not a well-formed EPC URI."""
    rest = v[8:]
    for kind, forms in (("id:", _EPC_ID_FORMS), ("class:", _EPC_CLASS_FORMS)):
        if rest.startswith(kind):
            scheme = rest[len(kind):].partition(":")[0]
            if scheme not in forms:
                return f"unknown EPC {kind[:-1]} URI scheme {scheme!r}"
            return f"malformed {scheme} EPC URI (expected urn:epc:{kind}{scheme}:{forms[scheme][1]})"
    if rest.startswith("idpat:"):
        return "malformed EPC pattern URI"
    return "unknown EPC URI form"


def _check_gs1_uri(v: str) -> str | None:
    """None when ``v`` is a well-formed GS1 identifier URI or not a GS1 form at all;
    otherwise a message saying what is wrong."""
    if v.startswith("urn:epc:"):
        return None if _EPC_URI.match(v) else _epc_problem(v)
    if v.startswith("http"):
        m = _DL_PRIMARY.match(v)
        if m is None:
            if v.startswith(("https://id.gs1.org/", "http://id.gs1.org/")):
                return "GS1 Digital Link URI without a GS1 primary key"
            return None  # some other URI: allowed (EPCIS 2.0 admits any URI)
        ai, value = m.group(1), m.group(2)
        rx, cd_len = _DL_KEYS[ai]
        if rx.match(value) is None:
            return f"malformed GS1 Digital Link URI (AI {ai})"
        if cd_len is not None:
            digits = value[:cd_len]
            if gs1_check_digit(digits[:-1]) != int(digits[-1]):
                return f"GS1 Digital Link URI with a wrong check digit (AI {ai})"
        return None
    return None


def is_gs1_identifier(v: Any) -> bool:
    """True when ``v`` is an EPC URI or a GS1 Digital Link URI with a valid key."""
    if type(v) is not str or not _URI.match(v):
        return False
    if v.startswith("urn:epc:") or _DL_PRIMARY.match(v):
        return _check_gs1_uri(v) is None
    return False


# --------------------------------------------------------------------------
# value checkers: f(value) -> None, or raise _Err naming the problem

_GOOD_IDS: set[str] = set()  # identifiers already verified (bounded; cleared when full)
_GOOD_IDS_MAX = 65_536


def _uri(v: Any) -> None:
    if type(v) is not str:
        _bad("must be a string (URI)")
    if len(v) > MAX_URI_LENGTH:
        _bad(f"longer than {MAX_URI_LENGTH} characters")
    if not _URI.match(v):
        _bad("must be an absolute URI")


def _id(v: Any) -> None:
    """An identifier of an object, class, location or party: any absolute URI,
    with EPC URIs and GS1 Digital Link URIs checked for their structure."""
    if type(v) is str:
        if v in _GOOD_IDS:
            return
        if v.startswith("urn:epc:") and len(v) <= 256 and "%" not in v and _EPC_URI.match(v):
            _remember(v)
            return
    _uri(v)
    if v[0] in "uh":
        err = _check_gs1_uri(v)
        if err is not None:
            _bad(err)
    _remember(v)


def _remember(v: str) -> None:
    if len(_GOOD_IDS) >= _GOOD_IDS_MAX:
        _GOOD_IDS.clear()
    _GOOD_IDS.add(v)


def _time(v: Any) -> None:
    if not _is_time(v):
        if type(v) is not str:
            _bad("must be a string (RFC 3339 date-time)")
        _bad("must be an RFC 3339 date-time with a time zone (e.g. 2024-05-01T08:30:00+07:00)")


def _tz_offset(v: Any) -> None:
    if type(v) is not str or _TZ_OFFSET.match(v) is None:
        _bad("must be a time zone offset ±hh:mm between -14:00 and +14:00")


def _vocab(terms: frozenset[str], what: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if type(v) is not str:
            _bad(f"must be a string ({what})")
        if v in terms:
            return
        if len(v) > MAX_URI_LENGTH or not _URI.match(v):
            _bad(f"unknown {what} {v[:80]!r}: use a bare CBV term or a URI of your own")
        if v.startswith(_CBV_URI_PREFIXES):
            _bad(f"{what} {v[:80]!r}: write CBV terms bare (e.g. 'shipping'), not as URN or GS1 Web URI")

    return check


def _nonvoc_vocab(terms: frozenset[str], what: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if type(v) is not str:
            _bad(f"must be a string ({what})")
        if v in terms:
            return
        if len(v) > MAX_URI_LENGTH or not _URI.match(v):
            _bad(f"unknown {what} {v[:80]!r}")
        if v.startswith(_GS1_VOC_PREFIXES):
            _bad(f"{what} {v[:80]!r}: write GS1 vocabulary terms bare (e.g. 'Temperature')")

    return check


_biz_step = _vocab(BIZ_STEPS, "bizStep")
_disposition = _vocab(DISPOSITIONS, "disposition")
_btt = _vocab(BIZ_TRANSACTION_TYPES, "business transaction type")
_sdt = _vocab(SOURCE_DEST_TYPES, "source/destination type")
_error_reason = _vocab(ERROR_REASONS, "error reason")
_component = _vocab(COMPONENTS, "component")
_measurement_type = _nonvoc_vocab(MEASUREMENT_TYPES, "measurement type")
_alert_type = _nonvoc_vocab(SENSOR_ALERT_TYPES, "sensor alert type")


def _action(v: Any) -> None:
    if type(v) is not str or v not in ACTIONS:
        _bad("must be one of ADD, OBSERVE, DELETE")


def _number(v: Any) -> None:
    t = type(v)
    if t is int:
        if -(10**30) < v < 10**30:
            return
        _bad("number out of range")
    if t is not float:
        _bad("must be a number")
    if not math.isfinite(v):
        _bad("must be a finite number")


def _string(v: Any) -> None:
    if type(v) is not str:
        _bad("must be a string")
    if len(v) > MAX_TEXT_LENGTH:
        _bad(f"longer than {MAX_TEXT_LENGTH} characters")


def _boolean(v: Any) -> None:
    if type(v) is not bool:
        _bad("must be true or false")


def _hex(v: Any) -> None:
    if type(v) is not str or _HEX.match(v) is None:
        _bad("must be a hexadecimal string")
    if len(v) > MAX_TEXT_LENGTH:
        _bad(f"longer than {MAX_TEXT_LENGTH} characters")


def _list(v: Any, min_items: int = 0) -> list[Any]:
    if type(v) is not list:
        _bad("must be a list")
    n = len(v)
    if n > MAX_LIST_ITEMS:
        _bad(f"more than {MAX_LIST_ITEMS} items")
    if n < min_items:
        _bad(f"must hold at least {min_items} item{'s' if min_items > 1 else ''}")
    return v


def _is_ext_key(k: Any) -> bool:
    """A namespaced extension key: ``prefix:name`` (a JSON-LD compact IRI) or a full URI."""
    return type(k) is str and ":" in k and len(k) <= MAX_URI_LENGTH and bool(_URI.match(k))


def _json_value(v: Any, depth: int = 0) -> None:
    """A bounded JSON value (extension contents, ILMD values)."""
    t = type(v)
    if t is str:
        if len(v) > MAX_TEXT_LENGTH:
            _bad(f"longer than {MAX_TEXT_LENGTH} characters")
    elif t is bool or v is None:
        pass
    elif t is int or t is float:
        _number(v)
    elif depth >= MAX_DEPTH:
        _bad(f"nested deeper than {MAX_DEPTH} levels")
    elif t is dict:
        if len(v) > MAX_KEYS:
            _bad(f"more than {MAX_KEYS} keys")
        for k, x in v.items():
            if type(k) is not str or len(k) > MAX_URI_LENGTH:
                _bad("keys must be strings of bounded length")
            try:
                _json_value(x, depth + 1)
            except _Err as e:
                e.parts.append(f".{k}")
                raise
    elif t is list:
        if len(v) > MAX_LIST_ITEMS:
            _bad(f"more than {MAX_LIST_ITEMS} items")
        for i, x in enumerate(v):
            try:
                _json_value(x, depth + 1)
            except _Err as e:
                e.parts.append(f"[{i}]")
                raise
    else:
        _bad("must be a JSON value")


_UNKNOWN = "unknown field (extensions need a namespace prefix, e.g. 'example:field')"


def _object(fields: dict[str, Callable[[Any], None]], required: tuple[str, ...] = (),
            extensions: bool = True) -> Callable[[Any], None]:
    """A checker for an object with known fields (and namespaced extensions)."""

    def check(v: Any) -> None:
        if type(v) is not dict:
            _bad("must be an object")
        for r in required:
            if r not in v:
                _bad("required", f".{r}")
        for k, x in v.items():
            f = fields.get(k)
            try:
                if f is not None:
                    f(x)
                elif extensions and _is_ext_key(k):
                    _json_value(x, 1)
                else:
                    _bad(_UNKNOWN)
            except _Err as e:
                e.parts.append(f".{k}")
                raise

    return check


def _list_of(item: Callable[[Any], None], min_items: int = 0, unique: bool = False) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        _list(v, min_items)
        for i, x in enumerate(v):  # a try inside the loop costs nothing until it raises (3.11)
            try:
                item(x)
            except _Err as e:
                e.parts.append(f"[{i}]")
                raise
        if unique and len(v) > 1:
            _unique(v)

    return check


def _unique(v: list[Any]) -> None:
    try:
        if len(set(v)) == len(v):
            return
    except TypeError:  # unhashable items: checked for type elsewhere
        return
    seen: set[Any] = set()
    for i, x in enumerate(v):
        if x in seen:
            _bad(f"duplicate item {x!r:.80}", f"[{i}]")
        seen.add(x)


def _epc_list(v: Any) -> None:
    _list(v)
    good = _GOOD_IDS
    for i, x in enumerate(v):
        if type(x) is not str or x not in good:
            try:
                _id(x)
            except _Err as e:
                e.parts.append(f"[{i}]")
                raise
    if len(v) > 1:
        _unique(v)


def _uom(v: Any) -> None:
    if type(v) is not str or _UOM.match(v) is None:
        _bad("must be a UN/CEFACT Rec. 20 unit code (2-3 capitals or digits, e.g. KGM)")


def _quantity_element(v: Any) -> None:
    if type(v) is not dict:
        _bad("must be an object")
    if "epcClass" not in v:
        _bad("required", ".epcClass")
    for k, x in v.items():
        try:
            if k == "epcClass":
                _id(x)
            elif k == "quantity":
                _number(x)
                if x < 0:
                    _bad("must not be negative")
            elif k == "uom":
                _uom(x)
            else:
                _bad("unknown field (a quantity element has epcClass, quantity, uom)")
        except _Err as e:
            e.parts.append(f".{k}")
            raise


_quantity_list = _list_of(_quantity_element)


def _context(v: Any) -> None:
    t = type(v)
    if t is str:
        _uri(v)
    elif t is dict:
        _json_value(v, 1)
    elif t is list:
        _list(v)
        for i, x in enumerate(v):
            try:
                if type(x) is str:
                    _uri(x)
                elif type(x) is dict:
                    _json_value(x, 2)
                else:
                    _bad("must be a URI or an object")
            except _Err as e:
                e.parts.append(f"[{i}]")
                raise
        strs = [x for x in v if type(x) is str]
        if len(set(strs)) != len(strs):
            _bad("duplicate context entries")
    else:
        _bad("must be a URI, an object or a list of them")


def _certification_info(v: Any) -> None:
    if type(v) is list:
        _list_of(_uri)(v)
    else:
        _uri(v)


_error_declaration = _object(
    {"declarationTime": _time, "reason": _error_reason, "correctiveEventIDs": _list_of(_uri)},
    required=("declarationTime",),
)


def _location(v: Any) -> None:
    """readPoint / bizLocation: {"id": URI} plus namespaced extensions."""
    if type(v) is not dict:
        _bad("must be an object")
    if "id" not in v:
        _bad("required", ".id")
    for k, x in v.items():
        try:
            if k == "id":
                _id(x)
            elif _is_ext_key(k):
                _json_value(x, 1)
            else:
                _bad(_UNKNOWN)
        except _Err as e:
            e.parts.append(f".{k}")
            raise


def _typed_pair(value_key: str, type_check: Callable[[Any], None], value_check: Callable[[Any], None],
                type_required: bool) -> Callable[[Any], None]:
    """bizTransaction / source / destination: exactly {type, <value_key>}."""
    required = ("type", value_key) if type_required else (value_key,)

    def check(v: Any) -> None:
        if type(v) is not dict:
            _bad("must be an object")
        for r in required:
            if r not in v:
                _bad("required", f".{r}")
        for k, x in v.items():
            try:
                if k == value_key:
                    value_check(x)
                elif k == "type":
                    type_check(x)
                else:
                    _bad(f"unknown field (allowed: type, {value_key})")
            except _Err as e:
                e.parts.append(f".{k}")
                raise

    return check


_biz_transaction = _typed_pair("bizTransaction", _btt, _uri, False)
_source = _typed_pair("source", _sdt, _id, True)
_destination = _typed_pair("destination", _sdt, _id, True)

_pd_list = _list_of(_disposition, 1, unique=True)
_pd_object = _object({"set": _pd_list, "unset": _pd_list}, extensions=False)


def _persistent_disposition(v: Any) -> None:
    _pd_object(v)
    if "set" not in v and "unset" not in v:
        _bad("needs 'set' or 'unset'")


_sensor_metadata = _object(
    {
        "time": _time,
        "deviceID": _uri,
        "deviceMetadata": _uri,
        "rawData": _uri,
        "startTime": _time,
        "endTime": _time,
        "dataProcessingMethod": _uri,
        "bizRules": _uri,
    }
)
_sensor_report = _object(
    {
        "type": _measurement_type,
        "exception": _alert_type,
        "deviceID": _uri,
        "deviceMetadata": _uri,
        "rawData": _uri,
        "dataProcessingMethod": _uri,
        "bizRules": _uri,
        "time": _time,
        "microorganism": _uri,
        "chemicalSubstance": _uri,
        "coordinateReferenceSystem": _uri,
        "value": _number,
        "component": _component,
        "stringValue": _string,
        "booleanValue": _boolean,
        "hexBinaryValue": _hex,
        "uriValue": _uri,
        "minValue": _number,
        "maxValue": _number,
        "meanValue": _number,
        "sDev": _number,
        "percRank": _number,
        "percValue": _number,
        "uom": _string,
    },
    required=("type",),
)
_sensor_element = _object(
    {"sensorMetadata": _sensor_metadata, "sensorReport": _list_of(_sensor_report, 1)},
    required=("sensorReport",),
)


def _ilmd(v: Any) -> None:
    if type(v) is not dict:
        _bad("must be an object")
    if len(v) > MAX_KEYS:
        _bad(f"more than {MAX_KEYS} keys")
    for k, x in v.items():
        try:
            if not _is_ext_key(k):
                _bad("ILMD keys need a namespace prefix (e.g. 'cbvmda:lotNumber')")
            _json_value(x, 2)
        except _Err as e:
            e.parts.append(f".{k}")
            raise


# ------------------------------------------------------------- event types

_COMMON: dict[str, Callable[[Any], None]] = {
    "@context": _context,
    "eventTime": _time,
    "recordTime": _time,
    "eventTimeZoneOffset": _tz_offset,
    "eventID": _uri,
    "certificationInfo": _certification_info,
    "errorDeclaration": _error_declaration,
}
_WHAT_WHERE_WHY: dict[str, Callable[[Any], None]] = {
    "bizStep": _biz_step,
    "disposition": _disposition,
    "readPoint": _location,
    "bizLocation": _location,
    "bizTransactionList": _list_of(_biz_transaction),
    "sourceList": _list_of(_source),
    "destinationList": _list_of(_destination),
    "sensorElementList": _list_of(_sensor_element),
}

_FIELDS: dict[str, dict[str, Callable[[Any], None]]] = {
    "ObjectEvent": {
        **_COMMON,
        **_WHAT_WHERE_WHY,
        "action": _action,
        "epcList": _epc_list,
        "quantityList": _quantity_list,
        "persistentDisposition": _persistent_disposition,
        "ilmd": _ilmd,
    },
    "AggregationEvent": {
        **_COMMON,
        **_WHAT_WHERE_WHY,
        "action": _action,
        "parentID": _id,
        "childEPCs": _epc_list,
        "childQuantityList": _quantity_list,
    },
    "TransactionEvent": {
        **_COMMON,
        **_WHAT_WHERE_WHY,
        "action": _action,
        "bizTransactionList": _list_of(_biz_transaction, 1),
        "parentID": _id,
        "epcList": _epc_list,
        "quantityList": _quantity_list,
    },
    "TransformationEvent": {
        **_COMMON,
        **_WHAT_WHERE_WHY,
        "inputEPCList": _epc_list,
        "inputQuantityList": _quantity_list,
        "outputEPCList": _epc_list,
        "outputQuantityList": _quantity_list,
        "transformationID": _uri,
        "persistentDisposition": _persistent_disposition,
        "ilmd": _ilmd,
    },
    "AssociationEvent": {
        **_COMMON,
        **_WHAT_WHERE_WHY,
        "action": _action,
        "parentID": _id,
        "childEPCs": _epc_list,
        "childQuantityList": _quantity_list,
    },
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "ObjectEvent": ("eventTime", "eventTimeZoneOffset", "action"),
    "AggregationEvent": ("eventTime", "eventTimeZoneOffset", "action"),
    "TransactionEvent": ("eventTime", "eventTimeZoneOffset", "action", "bizTransactionList"),
    "TransformationEvent": ("eventTime", "eventTimeZoneOffset"),
    "AssociationEvent": ("eventTime", "eventTimeZoneOffset", "action", "parentID"),
}
_TYPES_TEXT = "must be one of " + ", ".join(sorted(EVENT_TYPES))


def _nonempty(event: dict[str, Any], key: str) -> bool:
    v = event.get(key)
    return type(v) is list and len(v) > 0


def _check_event(event: Any) -> None:
    if type(event) is not dict:
        _bad("must be an object")
    etype = event.get("type")
    if etype is None:
        _bad("required", ".type")
    if type(etype) is not str or etype not in EVENT_TYPES:
        _bad(_TYPES_TEXT, ".type")
    for r in _REQUIRED[etype]:
        if r not in event:
            _bad("required", f".{r}")
    fields = _FIELDS[etype]
    for k, v in event.items():
        f = fields.get(k)
        try:
            if f is not None:
                f(v)
            elif k == "type":
                continue
            elif _is_ext_key(k):
                _json_value(v, 1)
            else:
                _bad(f"unknown field for {etype} (extensions need a namespace prefix, e.g. 'example:field')")
        except _Err as e:
            e.parts.append(f".{k}")
            raise

    # what each event type must say about its objects
    action = event.get("action")
    if etype == "ObjectEvent":
        if not ("epcList" in event or _nonempty(event, "quantityList")
                or (_nonempty(event, "sensorElementList") and "readPoint" in event)):
            _bad("required (or a non-empty quantityList, or sensorElementList with readPoint)", ".epcList")
        if "ilmd" in event and action != "ADD":
            _bad("only allowed when action is ADD", ".ilmd")
    elif etype == "AggregationEvent" or etype == "AssociationEvent":
        if action != "DELETE" and not (_nonempty(event, "childEPCs") or _nonempty(event, "childQuantityList")):
            _bad("required (or a non-empty childQuantityList) unless action is DELETE", ".childEPCs")
        if etype == "AggregationEvent" and action != "OBSERVE" and "parentID" not in event:
            _bad("required when action is ADD or DELETE", ".parentID")
    elif etype == "TransactionEvent":
        if action != "DELETE" and not ("epcList" in event or _nonempty(event, "quantityList")):
            _bad("required (or a non-empty quantityList) unless action is DELETE", ".epcList")
    else:  # TransformationEvent
        has_in = _nonempty(event, "inputEPCList") or _nonempty(event, "inputQuantityList")
        has_out = _nonempty(event, "outputEPCList") or _nonempty(event, "outputQuantityList")
        if not (has_in and has_out):
            if not (has_in or has_out):
                _bad("a TransformationEvent needs inputs and outputs", ".inputEPCList")
            if "transformationID" not in event:
                _bad("required (or a transformationID linking to the other side)",
                     ".outputEPCList" if has_in else ".inputEPCList")


def _raise(base: str, e: _Err) -> NoReturn:
    path = base + "".join(reversed(e.parts))
    if path.startswith("."):
        path = path[1:]
    raise EventInvalid(path or "document", e.msg) from None


def validate_event(event: Any, path: str = "event") -> None:
    """Check one EPCIS 2.0 event (a JSON object as a dict); raise :class:`EventInvalid` if it breaks a rule.

    ``path`` is the name used for the event in error paths (default ``event``),
    e.g. ``schema: event.epcList[2]: must be an absolute URI``.
    """
    try:
        _check_event(event)
    except _Err as e:
        _raise(path, e)


# --------------------------------------------------------------- documents

_DOC_FIELDS = frozenset(
    {"@context", "id", "type", "schemaVersion", "creationDate", "instanceIdentifier", "sender", "receiver",
     "epcisHeader", "epcisBody"}
)
_QUERY_DOC_FIELDS = frozenset({"@context", "id", "type", "schemaVersion", "creationDate", "epcisBody"})


def _doc_header(doc: dict[str, Any], allowed: frozenset[str]) -> None:
    for k, v in doc.items():
        try:
            if k not in allowed:
                if not _is_ext_key(k):
                    _bad("unknown field")
                _json_value(v, 1)
            elif k == "@context":
                _context(v)
            elif k == "id":
                _uri(v)
            elif k == "schemaVersion":
                if type(v) is not str or _VERSION.match(v) is None:
                    _bad("must be a version string such as '2.0'")
            elif k == "creationDate":
                _time(v)
            elif k in ("instanceIdentifier", "sender", "receiver"):
                _string(v)
            elif k == "epcisHeader":
                if type(v) is not dict:
                    _bad("must be an object")
                _json_value(v, 1)
        except _Err as e:
            e.parts.append(f".{k}")
            raise


def _body_events(doc: Any) -> tuple[str, list[Any]]:
    if type(doc) is not dict:
        _bad("must be an object")
    dtype = doc.get("type")
    if dtype == "EPCISDocument":
        for r in ("@context", "schemaVersion", "creationDate", "epcisBody"):
            if r not in doc:
                _bad("required", f".{r}")
        _doc_header(doc, _DOC_FIELDS)
        body = doc["epcisBody"]
        if type(body) is not dict:
            _bad("must be an object", ".epcisBody")
        if "eventList" not in body:
            _bad("required", ".epcisBody.eventList")
        for k in body:
            if k != "eventList" and not _is_ext_key(k):
                _bad("unknown field", f".epcisBody.{k}")
        base = "epcisBody.eventList"
        events = body["eventList"]
    elif dtype == "EPCISQueryDocument":
        for r in ("@context", "epcisBody"):
            if r not in doc:
                _bad("required", f".{r}")
        _doc_header(doc, _QUERY_DOC_FIELDS)
        body = doc["epcisBody"]
        qr = body.get("queryResults") if type(body) is dict else None
        if type(qr) is not dict:
            _bad("required (an object)", ".epcisBody.queryResults")
        if type(qr.get("queryName")) is not str:
            _bad("required (a string)", ".epcisBody.queryResults.queryName")
        rb = qr.get("resultsBody")
        if type(rb) is not dict or "eventList" not in rb:
            _bad("required", ".epcisBody.queryResults.resultsBody.eventList")
        base = "epcisBody.queryResults.resultsBody.eventList"
        events = rb["eventList"]
    elif dtype is None:
        _bad("required", ".type")
    else:
        _bad("must be EPCISDocument or EPCISQueryDocument", ".type")
    try:
        _list(events)
    except _Err as e:
        e.parts.append("." + base)
        raise
    return base, events


def document_events(doc: Any) -> list[Any]:
    """The event list of an EPCISDocument or EPCISQueryDocument (after checking the document's own fields)."""
    try:
        return _body_events(doc)[1]
    except _Err as e:
        _raise("", e)


def validate_document(doc: Any) -> int:
    """Check an EPCISDocument (or an EPCISQueryDocument) and every event in it.

    Errors name the path from the document root, e.g.
    ``schema: epcisBody.eventList[3].eventTime: required``.
    Returns the number of events checked.
    """
    try:
        base, events = _body_events(doc)
    except _Err as e:
        _raise("", e)
    for i, ev in enumerate(events):
        validate_event(ev, f"{base}[{i}]")
    return len(events)
