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
from typing import Any, Callable

__all__ = [
    "EventInvalid",
    "validate_event",
    "validate_document",
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

try:  # the project-wide exception hierarchy, when it is there
    from ..errors import InvalidRecord as _Base  # type: ignore[import-not-found]
except Exception:  # pragma: no cover - errors.py is written by another engineer
    _Base = ValueError  # type: ignore[misc,assignment]


_BASES: tuple[type, ...] = (_Base,) if issubclass(_Base, ValueError) else (_Base, ValueError)


class EventInvalid(*_BASES):  # type: ignore[misc]
    """An EPCIS event or document broke a validation rule.

    ``path`` names the failing element (``event.eventTime``,
    ``epcisBody.eventList[3].epcList[0]``); ``reason`` says what is wrong.
    ``str(err)`` is ``"schema: <path>: <reason>"``.
    """

    status_hint = 400

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        text = f"schema: {path}: {message}"
        Exception.__init__(self, text)
        self.args = (text,)

    def __str__(self) -> str:
        return f"schema: {self.path}: {self.reason}"


def _fail(path: str, message: str) -> None:
    raise EventInvalid(path, message)


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
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*\Z")
# CBV terms must be bare ("shipping"), never in their URN or GS1 Web URI forms.
_CBV_URI_PREFIXES = ("urn:epcglobal:cbv", "http://ns.gs1.org/cbv/", "https://ns.gs1.org/cbv/")
_GS1_VOC_PREFIXES = ("http://gs1.org/voc/", "https://gs1.org/voc/", "http://www.gs1.org/voc/", "https://www.gs1.org/voc/")

_DATETIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?(?:[Zz]|([+-])(\d\d):(\d\d))\Z"
)
_TZ_OFFSET = re.compile(r"[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00)\Z")
_UOM = re.compile(r"[A-Z0-9]{2,3}\Z")
_HEX = re.compile(r"[A-Fa-f0-9]+\Z")
_VERSION = re.compile(r"\d+(?:\.\d+)*\Z")
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_time(s: Any) -> bool:
    if type(s) is not str or len(s) > 64:
        return False
    m = _DATETIME.match(s)
    if m is None:
        return False
    y, mo, d, h, mi, sec, _sign, oh, om = m.groups()
    mo_i = int(mo)
    if not 1 <= mo_i <= 12:
        return False
    d_i = int(d)
    if d_i < 1 or d_i > _DAYS[mo_i]:
        return False
    if mo_i == 2 and d_i == 29:
        y_i = int(y)
        if not (y_i % 4 == 0 and (y_i % 100 != 0 or y_i % 400 == 0)):
            return False
    if int(h) > 23 or int(mi) > 59 or int(sec) > 59:
        return False
    if oh is not None and (int(oh) > 23 or int(om) > 59):
        return False
    return True


# ---------------------------------------------------------------- GS1 keys

# characters of GS1 AI encodable character set 82, as they appear in EPC URIs
# (reserved characters percent-encoded)
_C82 = r"(?:[!'()*+,\-.0-9:;=A-Z_a-z]|%[0-9A-Fa-f]{2})"
_EPC_ID = {
    # scheme: (regex on the part after "urn:epc:id:<scheme>:", digits that the
    #          company prefix + the following numeric field must add up to)
    "sgtin": (re.compile(r"(\d{6,12})\.(\d{1,7})\." + _C82 + r"{1,20}\Z"), 13),
    "sscc": (re.compile(r"(\d{6,12})\.(\d{5,11})\Z"), 17),
    "sgln": (re.compile(r"(\d{6,12})\.(\d{0,6})\." + _C82 + r"{1,20}\Z"), 12),
    "grai": (re.compile(r"(\d{6,12})\.(\d{0,6})\." + _C82 + r"{0,16}\Z"), 12),
    "giai": (re.compile(r"(\d{6,12})\.()" + _C82 + r"{1,24}\Z"), None),
    "gsrn": (re.compile(r"(\d{6,12})\.(\d{5,11})\Z"), 17),
    "gsrnp": (re.compile(r"(\d{6,12})\.(\d{5,11})\Z"), 17),
    "gdti": (re.compile(r"(\d{6,12})\.(\d{0,6})\." + _C82 + r"{0,17}\Z"), 12),
    "cpi": (re.compile(r"(\d{6,12})\.()(?:[\-#/0-9A-Z]|%2[3dDfF]){1,24}\.\d{1,12}\Z"), None),
    "sgcn": (re.compile(r"(\d{6,12})\.(\d{0,6})\.\d{1,12}\Z"), 12),
    "ginc": (re.compile(r"(\d{6,12})\.()" + _C82 + r"{1,24}\Z"), None),
    "gsin": (re.compile(r"(\d{6,12})\.(\d{4,10})\Z"), 16),
    "itip": (re.compile(r"(\d{6,12})\.(\d{1,7})\.\d\d\.\d\d\." + _C82 + r"{1,20}\Z"), 13),
    "upui": (re.compile(r"(\d{6,12})\.(\d{1,7})\." + _C82 + r"{1,28}\Z"), 13),
    "pgln": (re.compile(r"(\d{6,12})\.(\d{0,6})\Z"), 12),
    "gid": (re.compile(r"()()\d{1,9}\.\d{1,8}\.\d{1,11}\Z"), None),
    "usdod": (re.compile(r"()()[0-9A-Z ]{1,6}\.\d{1,11}\Z"), None),
    "adi": (re.compile(r"()()" + r"[0-9A-Z]{1,6}\.[0-9A-Z/\-%]{0,30}\.[#0-9A-Z/\-%]{1,30}\Z"), None),
    "bic": (re.compile(r"()()[A-Z]{3}[JUZ]\d{7}\Z"), None),
    "imovn": (re.compile(r"()()\d{7}\Z"), None),
}
_EPC_CLASS = {
    "lgtin": (re.compile(r"(\d{6,12})\.(\d{1,7})\." + _C82 + r"{1,20}\Z"), 13),
}
_EPC_IDPAT = re.compile(
    r"(sgtin|sscc|sgln|grai|giai|gsrn|gsrnp|gdti|cpi|sgcn|ginc|gsin|itip|upui|pgln|gid|usdod|adi|bic|imovn):"
    r"(?:[!'()*+,\-.0-9:;=A-Z_a-z#/ ]|%[0-9A-Fa-f]{2})+\Z"
)

# GS1 Digital Link: primary keys the EPCIS identifiers use, with their formats
# (regex on the key value; whether a GS1 check digit ends the numeric part).
_DL_KEYS: dict[str, tuple[re.Pattern[str], int | None]] = {
    "00": (re.compile(r"\d{18}\Z"), 18),
    "01": (re.compile(r"\d{14}\Z"), 14),
    "253": (re.compile(r"\d{13}" + _C82 + r"{0,17}\Z"), 13),
    "255": (re.compile(r"\d{13}\d{0,12}\Z"), 13),
    "401": (re.compile(_C82 + r"{1,30}\Z"), None),
    "402": (re.compile(r"\d{17}\Z"), 17),
    "414": (re.compile(r"\d{13}\Z"), 13),
    "417": (re.compile(r"\d{13}\Z"), 13),
    "8003": (re.compile(r"\d{14}" + _C82 + r"{0,16}\Z"), 14),
    "8004": (re.compile(_C82 + r"{1,30}\Z"), None),
    "8006": (re.compile(r"\d{18}\Z"), 14),
    "8010": (re.compile(r"(?:[\-#/0-9A-Z]|%2[3dDfF]){1,30}\Z"), None),
    "8017": (re.compile(r"\d{18}\Z"), 18),
    "8018": (re.compile(r"\d{18}\Z"), 18),
}
_DL_PRIMARY = re.compile(r"https?://[^/?#]+(?:/[^/?#]*)*?/(00|01|253|255|401|402|414|417|8003|8004|8006|8010|8017|8018)/([^/?#]+)")
_DL_ALPHA = {"sscc": "00", "gtin": "01", "gdti": "253", "gcn": "255", "ginc": "401", "gsin": "402", "gln": "414", "party": "417", "grai": "8003", "giai": "8004", "itip": "8006", "cpid": "8010", "gsrnp": "8017", "gsrn": "8018"}


def gs1_check_digit(digits: str) -> int:
    """The GS1 (mod 10) check digit for the digits that precede it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def _check_gs1_uri(v: str) -> str | None:
    """None when ``v`` is a well-formed GS1 identifier URI or not a GS1 form at all;
    otherwise a message saying what is wrong."""
    if v.startswith("urn:epc:"):
        rest = v[8:]
        if rest.startswith("id:"):
            scheme, _, body = rest[3:].partition(":")
            spec = _EPC_ID.get(scheme)
            if spec is None:
                return f"unknown EPC URI scheme {scheme!r}"
        elif rest.startswith("class:"):
            scheme, _, body = rest[6:].partition(":")
            spec = _EPC_CLASS.get(scheme)
            if spec is None:
                return f"unknown EPC class URI scheme {scheme!r}"
        elif rest.startswith("idpat:"):
            return None if _EPC_IDPAT.match(rest[6:]) else "malformed EPC pattern URI"
        elif rest.startswith(("raw:", "tag:", "pat:")):
            return None
        else:
            return "unknown EPC URI form"
        rx, total = spec
        m = rx.match(body)
        if m is None:
            return f"malformed {scheme} EPC URI"
        if total is not None and len(m.group(1)) + len(m.group(2)) != total:
            return f"malformed {scheme} EPC URI (company prefix and reference must have {total} digits)"
        return None
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
# value checkers: f(value, path) -> None or raise

def _uri(v: Any, path: str) -> None:
    if type(v) is not str:
        _fail(path, "must be a string (URI)")
    if len(v) > MAX_URI_LENGTH:
        _fail(path, f"longer than {MAX_URI_LENGTH} characters")
    if _URI.match(v) is None:
        _fail(path, "must be an absolute URI")


def _id(v: Any, path: str) -> None:
    """An identifier of an object or class: any absolute URI, with EPC URIs
    and GS1 Digital Link URIs checked for their structure."""
    _uri(v, path)
    if v[0] in "uh":
        err = _check_gs1_uri(v)
        if err is not None:
            _fail(path, err)


def _time(v: Any, path: str) -> None:
    if not _is_time(v):
        if type(v) is not str:
            _fail(path, "must be a string (RFC 3339 date-time)")
        _fail(path, "must be an RFC 3339 date-time with a time zone (e.g. 2024-05-01T08:30:00+07:00)")


def _tz_offset(v: Any, path: str) -> None:
    if type(v) is not str or _TZ_OFFSET.match(v) is None:
        _fail(path, "must be a time zone offset ±hh:mm between -14:00 and +14:00")


def _vocab(terms: frozenset[str], what: str) -> Callable[[Any, str], None]:
    def check(v: Any, path: str) -> None:
        if type(v) is not str:
            _fail(path, f"must be a string ({what})")
        if v in terms:
            return
        if len(v) > MAX_URI_LENGTH or _URI.match(v) is None:
            _fail(path, f"unknown {what} {v!r}: use a bare CBV term or a URI of your own")
        if v.startswith(_CBV_URI_PREFIXES):
            _fail(path, f"{what} {v!r}: write CBV terms bare (e.g. 'shipping'), not as URN or GS1 Web URI")

    return check


def _nonvoc_vocab(terms: frozenset[str], what: str) -> Callable[[Any, str], None]:
    def check(v: Any, path: str) -> None:
        if type(v) is not str:
            _fail(path, f"must be a string ({what})")
        if v in terms:
            return
        if len(v) > MAX_URI_LENGTH or _URI.match(v) is None:
            _fail(path, f"unknown {what} {v!r}")
        if v.startswith(_GS1_VOC_PREFIXES):
            _fail(path, f"{what} {v!r}: write GS1 vocabulary terms bare (e.g. 'Temperature')")

    return check


_biz_step = _vocab(BIZ_STEPS, "bizStep")
_disposition = _vocab(DISPOSITIONS, "disposition")
_btt = _vocab(BIZ_TRANSACTION_TYPES, "business transaction type")
_sdt = _vocab(SOURCE_DEST_TYPES, "source/destination type")
_error_reason = _vocab(ERROR_REASONS, "error reason")
_component = _vocab(COMPONENTS, "component")
_measurement_type = _nonvoc_vocab(MEASUREMENT_TYPES, "measurement type")
_alert_type = _nonvoc_vocab(SENSOR_ALERT_TYPES, "sensor alert type")


def _action(v: Any, path: str) -> None:
    if type(v) is not str or v not in ACTIONS:
        _fail(path, "must be one of ADD, OBSERVE, DELETE")


def _number(v: Any, path: str) -> None:
    t = type(v)
    if t is int:
        if -(10**30) < v < 10**30:
            return
        _fail(path, "number out of range")
    if t is not float:
        _fail(path, "must be a number")
    if not math.isfinite(v):
        _fail(path, "must be a finite number")


def _string(v: Any, path: str) -> None:
    if type(v) is not str:
        _fail(path, "must be a string")
    if len(v) > MAX_TEXT_LENGTH:
        _fail(path, f"longer than {MAX_TEXT_LENGTH} characters")


def _boolean(v: Any, path: str) -> None:
    if type(v) is not bool:
        _fail(path, "must be true or false")


def _hex(v: Any, path: str) -> None:
    if type(v) is not str or _HEX.match(v) is None:
        _fail(path, "must be a hexadecimal string")
    if len(v) > MAX_TEXT_LENGTH:
        _fail(path, f"longer than {MAX_TEXT_LENGTH} characters")


def _list(v: Any, path: str, min_items: int = 0) -> list:
    if type(v) is not list:
        _fail(path, "must be a list")
    n = len(v)
    if n > MAX_LIST_ITEMS:
        _fail(path, f"more than {MAX_LIST_ITEMS} items")
    if n < min_items:
        _fail(path, f"must hold at least {min_items} item{'s' if min_items > 1 else ''}")
    return v


def _dict(v: Any, path: str) -> dict:
    if type(v) is not dict:
        _fail(path, "must be an object")
    return v


def _is_ext_key(k: Any) -> bool:
    """A namespaced extension key: ``prefix:name`` (a JSON-LD compact IRI) or a full URI."""
    return type(k) is str and ":" in k and len(k) <= MAX_URI_LENGTH and _URI.match(k) is not None


def _json_value(v: Any, path: str, depth: int = 0) -> None:
    """A bounded JSON value (extension contents, ILMD values)."""
    t = type(v)
    if t is str:
        if len(v) > MAX_TEXT_LENGTH:
            _fail(path, f"longer than {MAX_TEXT_LENGTH} characters")
    elif t is bool or v is None:
        pass
    elif t is int or t is float:
        _number(v, path)
    elif depth >= MAX_DEPTH:
        _fail(path, f"nested deeper than {MAX_DEPTH} levels")
    elif t is dict:
        if len(v) > MAX_KEYS:
            _fail(path, f"more than {MAX_KEYS} keys")
        for k, x in v.items():
            if type(k) is not str or len(k) > MAX_URI_LENGTH:
                _fail(path, "keys must be strings of bounded length")
            _json_value(x, f"{path}.{k}", depth + 1)
    elif t is list:
        if len(v) > MAX_LIST_ITEMS:
            _fail(path, f"more than {MAX_LIST_ITEMS} items")
        for i, x in enumerate(v):
            _json_value(x, f"{path}[{i}]", depth + 1)
    else:
        _fail(path, "must be a JSON value")


def _object(fields: dict[str, Callable[[Any, str], None]], required: tuple[str, ...] = (),
            extensions: bool = True) -> Callable[[Any, str], None]:
    """A checker for an object with known fields (and namespaced extensions)."""

    def check(v: Any, path: str) -> None:
        if type(v) is not dict:
            _fail(path, "must be an object")
        for r in required:
            if r not in v:
                _fail(f"{path}.{r}", "required")
        for k, x in v.items():
            f = fields.get(k)
            if f is not None:
                f(x, f"{path}.{k}")
            elif extensions and _is_ext_key(k):
                _json_value(x, f"{path}.{k}", 1)
            else:
                _fail(f"{path}.{k}", "unknown field (extensions need a namespace prefix, e.g. 'example:field')")

    return check


def _list_of(item: Callable[[Any, str], None], min_items: int = 0, unique: bool = False) -> Callable[[Any, str], None]:
    def check(v: Any, path: str) -> None:
        _list(v, path, min_items)
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")
        if unique and len(v) > 1:
            try:
                distinct = len(set(v)) == len(v)
            except TypeError:  # unhashable items were rejected above; be safe anyway
                distinct = True
            if not distinct:
                seen: set = set()
                for i, x in enumerate(v):
                    if x in seen:
                        _fail(f"{path}[{i}]", f"duplicate item {x!r}")
                    seen.add(x)

    return check


def _epc_list(v: Any, path: str) -> None:
    _list(v, path)
    for i, x in enumerate(v):
        if type(x) is str and len(x) <= MAX_URI_LENGTH and _URI.match(x) is not None:
            if x[0] in "uh":
                err = _check_gs1_uri(x)
                if err is not None:
                    _fail(f"{path}[{i}]", err)
        else:
            _id(x, f"{path}[{i}]")
    if len(v) > 1 and len(set(v)) != len(v):
        seen: set = set()
        for i, x in enumerate(v):
            if x in seen:
                _fail(f"{path}[{i}]", f"duplicate EPC {x!r}")
            seen.add(x)


def _uom(v: Any, path: str) -> None:
    if type(v) is not str or _UOM.match(v) is None:
        _fail(path, "must be a UN/CEFACT Rec. 20 unit code (2-3 capitals or digits, e.g. KGM)")


_quantity_element = _object(
    {"epcClass": _id, "quantity": _number, "uom": _uom}, required=("epcClass",), extensions=False
)


def _quantity_element_fast(v: Any, path: str) -> None:
    _quantity_element(v, path)
    q = v.get("quantity")
    if q is not None and q < 0:
        _fail(f"{path}.quantity", "must not be negative")


_quantity_list = _list_of(_quantity_element_fast)


def _context(v: Any, path: str) -> None:
    t = type(v)
    if t is str:
        _uri(v, path)
    elif t is dict:
        _json_value(v, path, 1)
    elif t is list:
        _list(v, path)
        for i, x in enumerate(v):
            if type(x) is str:
                _uri(x, f"{path}[{i}]")
            elif type(x) is dict:
                _json_value(x, f"{path}[{i}]", 2)
            else:
                _fail(f"{path}[{i}]", "must be a URI or an object")
        strs = [x for x in v if type(x) is str]
        if len(set(strs)) != len(strs):
            _fail(path, "duplicate context entries")
    else:
        _fail(path, "must be a URI, an object or a list of them")


def _certification_info(v: Any, path: str) -> None:
    if type(v) is list:
        _list_of(_uri)(v, path)
    else:
        _uri(v, path)


_error_declaration = _object(
    {"declarationTime": _time, "reason": _error_reason, "correctiveEventIDs": _list_of(_uri)},
    required=("declarationTime",),
)

_location = _object({"id": _id}, required=("id",))

_biz_transaction = _object({"type": _btt, "bizTransaction": _uri}, required=("bizTransaction",), extensions=False)
_source = _object({"type": _sdt, "source": _id}, required=("type", "source"), extensions=False)
_destination = _object({"type": _sdt, "destination": _id}, required=("type", "destination"), extensions=False)


def _persistent_disposition(v: Any, path: str) -> None:
    _object(
        {"set": _list_of(_disposition, 1, unique=True), "unset": _list_of(_disposition, 1, unique=True)},
        extensions=False,
    )(v, path)
    if "set" not in v and "unset" not in v:
        _fail(path, "needs 'set' or 'unset'")


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


def _ilmd(v: Any, path: str) -> None:
    _dict(v, path)
    if len(v) > MAX_KEYS:
        _fail(path, f"more than {MAX_KEYS} keys")
    for k, x in v.items():
        if not _is_ext_key(k):
            _fail(f"{path}.{k}", "ILMD keys need a namespace prefix (e.g. 'cbvmda:lotNumber')")
        _json_value(x, f"{path}.{k}", 2)


# ------------------------------------------------------------- event types

_COMMON: dict[str, Callable[[Any, str], None]] = {
    "@context": _context,
    "eventTime": _time,
    "recordTime": _time,
    "eventTimeZoneOffset": _tz_offset,
    "eventID": _uri,
    "certificationInfo": _certification_info,
    "errorDeclaration": _error_declaration,
}
_WHAT_WHERE_WHY = {
    "bizStep": _biz_step,
    "disposition": _disposition,
    "readPoint": _location,
    "bizLocation": _location,
    "bizTransactionList": _list_of(_biz_transaction),
    "sourceList": _list_of(_source),
    "destinationList": _list_of(_destination),
    "sensorElementList": _list_of(_sensor_element),
}

_FIELDS: dict[str, dict[str, Callable[[Any, str], None]]] = {
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


def _nonempty(event: dict, key: str) -> bool:
    v = event.get(key)
    return type(v) is list and len(v) > 0


def _check_event(event: Any, path: str) -> None:
    if type(event) is not dict:
        _fail(path, "must be an object")
    etype = event.get("type")
    if etype is None:
        _fail(f"{path}.type", "required")
    if type(etype) is not str or etype not in EVENT_TYPES:
        _fail(f"{path}.type", "must be one of " + ", ".join(sorted(EVENT_TYPES)))
    for r in _REQUIRED[etype]:
        if r not in event:
            _fail(f"{path}.{r}", "required")
    fields = _FIELDS[etype]
    for k, v in event.items():
        f = fields.get(k)
        if f is not None:
            f(v, f"{path}.{k}")
        elif k == "type":
            continue
        elif _is_ext_key(k):
            _json_value(v, f"{path}.{k}", 1)
        else:
            _fail(f"{path}.{k}", f"unknown field for {etype} (extensions need a namespace prefix, e.g. 'example:field')")

    # what each event type must say about its objects
    action = event.get("action")
    if etype == "ObjectEvent":
        if not ("epcList" in event or _nonempty(event, "quantityList")
                or (_nonempty(event, "sensorElementList") and "readPoint" in event)):
            _fail(f"{path}.epcList", "required (or a non-empty quantityList, or sensorElementList with readPoint)")
        if "ilmd" in event and action != "ADD":
            _fail(f"{path}.ilmd", "only allowed when action is ADD")
    elif etype == "AggregationEvent" or etype == "AssociationEvent":
        if action != "DELETE" and not (_nonempty(event, "childEPCs") or _nonempty(event, "childQuantityList")):
            _fail(f"{path}.childEPCs", "required (or a non-empty childQuantityList) unless action is DELETE")
        if etype == "AggregationEvent" and action != "OBSERVE" and "parentID" not in event:
            _fail(f"{path}.parentID", "required when action is ADD or DELETE")
    elif etype == "TransactionEvent":
        if action != "DELETE" and not ("epcList" in event or _nonempty(event, "quantityList")):
            _fail(f"{path}.epcList", "required (or a non-empty quantityList) unless action is DELETE")
    else:  # TransformationEvent
        has_in = _nonempty(event, "inputEPCList") or _nonempty(event, "inputQuantityList")
        has_out = _nonempty(event, "outputEPCList") or _nonempty(event, "outputQuantityList")
        if not (has_in and has_out):
            if not (has_in or has_out):
                _fail(f"{path}.inputEPCList", "a TransformationEvent needs inputs and outputs")
            if "transformationID" not in event:
                _fail(f"{path}.{'outputEPCList' if has_in else 'inputEPCList'}",
                      "required (or a transformationID linking to the other side)")


def validate_event(event: Any, path: str = "event") -> None:
    """Check one EPCIS 2.0 event (a JSON object as a dict); raise :class:`EventInvalid` if it breaks a rule.

    ``path`` is the name used for the event in error paths (default ``event``).
    """
    _check_event(event, path)


# --------------------------------------------------------------- documents

_DOC_FIELDS = frozenset(
    {"@context", "id", "type", "schemaVersion", "creationDate", "instanceIdentifier", "sender", "receiver",
     "epcisHeader", "epcisBody"}
)


def _check_doc_header(doc: dict, path: str, allowed: frozenset[str]) -> None:
    for k, v in doc.items():
        p = f"{path}{k}"
        if k not in allowed:
            if not _is_ext_key(k):
                _fail(p, "unknown field")
            _json_value(v, p, 1)
        elif k == "@context":
            _context(v, p)
        elif k == "id":
            _uri(v, p)
        elif k == "schemaVersion":
            if type(v) is not str or _VERSION.match(v) is None:
                _fail(p, "must be a version string such as '2.0'")
        elif k == "creationDate":
            _time(v, p)
        elif k in ("instanceIdentifier", "sender", "receiver"):
            _string(v, p)
        elif k == "epcisHeader":
            _dict(v, p)
            _json_value(v, p, 1)


def validate_document(doc: Any) -> int:
    """Check an EPCISDocument (or an EPCISQueryDocument) and every event in it.

    Errors name the path from the document root, e.g.
    ``schema: epcisBody.eventList[3].eventTime: required``.
    Returns the number of events checked.
    """
    if type(doc) is not dict:
        _fail("document", "must be an object")
    dtype = doc.get("type")
    if dtype == "EPCISDocument":
        for r in ("@context", "schemaVersion", "creationDate", "epcisBody"):
            if r not in doc:
                _fail(r, "required")
        _check_doc_header(doc, "", _DOC_FIELDS)
        body = _dict(doc["epcisBody"], "epcisBody")
        if "eventList" not in body:
            _fail("epcisBody.eventList", "required")
        for k, v in body.items():
            if k != "eventList" and not _is_ext_key(k):
                _fail(f"epcisBody.{k}", "unknown field")
        base = "epcisBody.eventList"
        events = _list(body["eventList"], base)
    elif dtype == "EPCISQueryDocument":
        for r in ("@context", "epcisBody"):
            if r not in doc:
                _fail(r, "required")
        _check_doc_header(doc, "", frozenset({"@context", "id", "type", "schemaVersion", "creationDate", "epcisBody"}))
        body = _dict(doc["epcisBody"], "epcisBody")
        qr = _dict(body.get("queryResults"), "epcisBody.queryResults")
        if type(qr.get("queryName")) is not str:
            _fail("epcisBody.queryResults.queryName", "required (a string)")
        rb = _dict(qr.get("resultsBody"), "epcisBody.queryResults.resultsBody")
        base = "epcisBody.queryResults.resultsBody.eventList"
        if "eventList" not in rb:
            _fail(base, "required")
        events = _list(rb["eventList"], base)
    elif dtype is None:
        _fail("type", "required")
    else:
        _fail("type", "must be EPCISDocument or EPCISQueryDocument")
    for i, ev in enumerate(events):
        _check_event(ev, f"{base}[{i}]")
    return len(events)
