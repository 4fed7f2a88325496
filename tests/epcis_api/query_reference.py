"""A brute-force SimpleEventQuery, written from the EPCIS 2.0 query-parameter descriptions
(../shared/epcis/rest/openapi.yaml and the standard's section 8.2.7.1), independently of node/:
it walks each event's JSON itself and shares with the node only the value normal forms of the event
hash (client/format/epcis/event_hash.py: EPC URI = its Digital Link, bare CBV term = its web URI).

``reference(params, rows)`` returns the locs of the matching events in the order the repository must
answer them; the differential tests compare it with the index (node/epcis_query.py) and the HTTP API.
"""

from __future__ import annotations

import re
from typing import Any

from rantai.client.format.epcis.event_hash import _Ctx, _value, event_hash_id, normalise_number, timestamp_us

CBV = "https://ref.gs1.org/cbv/"
DEFAULT = _Ctx([])
QTY_LISTS = {"quantityList": "c", "childQuantityList": "c", "inputQuantityList": "i", "outputQuantityList": "o"}
STANDARD = {"type", "eventTime", "eventTimeZoneOffset", "recordTime", "eventID", "errorDeclaration", "@context",
            "certificationInfo", "epcList", "parentID", "inputEPCList", "childEPCs", "quantityList",
            "childQuantityList", "inputQuantityList", "outputEPCList", "outputQuantityList", "action",
            "transformationID", "bizStep", "disposition", "persistentDisposition", "readPoint", "bizLocation",
            "bizTransactionList", "sourceList", "destinationList", "sensorElementList", "ilmd", "rdfs:comment",
            "comment"}


def _ctxs(event: dict) -> list[_Ctx]:
    own = event.get("@context")
    return [DEFAULT] if own is None else [_Ctx([own]), DEFAULT]


def _v(value: Any, ctx: _Ctx = DEFAULT, vocab: str | None = None) -> str:
    return _value(value, ctx, vocab) if isinstance(value, str) else ""


def _has_value(event: dict, value: Any, wanted: set[str], vocab: str | None = None) -> bool:
    """The event's value, read with its own prefixes or as written, is one of ``wanted``."""
    return any(_v(value, c, vocab) in wanted for c in _ctxs(event)) if isinstance(value, str) else False


def _time(s: str) -> int:
    return timestamp_us(s)  # type: ignore[return-value]


# -- EPC patterns (Tag Data Standard pattern URIs), on Digital Link / EPC URI values ------------------
_PAT_AI = {"sgtin": ("01", 1, "21"), "sscc": ("00", 1, None), "sgln": ("414", 0, None), "grai": ("8003", 1, None),
           "giai": ("8004", 0, None), "pgln": ("417", 0, None), "gdti": ("253", 0, None)}


def _pattern_match(pattern: str, value: str, instance: bool) -> bool:
    scheme, comps = pattern[len("urn:epc:idpat:"):].split(":", 1)
    parts = comps.split(".")
    fixed = [p for p in parts if p != "*"]
    if len(fixed) == len(parts):  # no wildcard: that one EPC
        return value == _v(f"urn:epc:id:{scheme}:{comps}")
    if scheme == "gid":
        if not value.startswith("urn:epc:id:gid:"):
            return False
        return value[len("urn:epc:id:gid:"):].split(".")[:len(fixed)] == fixed
    ai, off, qual = _PAT_AI[scheme]
    root = f"https://id.gs1.org/{ai}/"
    if not value.startswith(root):
        return False
    segs = value[len(root):].split("/")
    if instance and qual and (len(segs) < 3 or segs[1] != qual):
        return False
    key = segs[0]
    if not fixed:
        return True
    if len(fixed) == 1:
        return key[off:off + len(fixed[0])] == fixed[0]
    # CP.X.*: the key the same as for any instance with those components
    sample = _v(f"urn:epc:id:{scheme}:{fixed[0]}.{fixed[1]}.0")
    skey = sample[len(root):].split("/")[0]
    return key.startswith(skey[:-1] if scheme in ("grai", "gdti") else skey)


def _id_matches(wanted: list[str], values: list[str], instance: bool) -> bool:
    for w in wanted:
        for v in values:
            if w.startswith("urn:epc:idpat:"):
                if _pattern_match(w, v, instance):
                    return True
            elif _v(w) == v:
                return True
    return False


def _epcs(event: dict, keys: tuple[str, ...]) -> list[str]:
    out = []
    for k in keys:
        vals = [event[k]] if k == "parentID" and k in event else event.get(k, []) if k != "parentID" else []
        for x in vals:
            out += [_v(x, c) for c in _ctxs(event)]
    return out


def _classes(event: dict, keys: tuple[str, ...]) -> list[str]:
    return [_v(q["epcClass"], c) for k in keys for q in event.get(k, []) for c in _ctxs(event)]


def _ext_items(obj: dict, ctx: _Ctx, skip: set[str], nested: bool = False):
    for k, v in obj.items():
        if (not nested and k in skip) or k.startswith("@") or k in ("rdfs:comment", "comment"):
            continue
        for item in v if isinstance(v, list) else [v]:
            yield ctx.key(k), nested, item
            if isinstance(item, dict):
                yield from _ext_items(item, ctx, skip, True)


def _field_names(text: str) -> set[str]:
    out = {DEFAULT.key(text)}
    if "#" in text:
        i = text.rfind("#")
        out.add("{" + text[:i] + "}" + text[i + 1:])
    return out


def _scalar(v: Any, ctx: _Ctx) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return normalise_number(v)
    if isinstance(v, str):
        return _v(v, ctx)
    return None


def _cmp(op: str, a: float, b: float) -> bool:
    return {"EQ": a == b, "GT": a > b, "GE": a >= b, "LT": a < b, "LE": a <= b}[op]


def _sensor_parts(event: dict) -> list[dict]:
    out = []
    for el in event.get("sensorElementList", []):
        if "sensorMetadata" in el:
            out.append(el["sensorMetadata"])
        out += el.get("sensorReport", [])
    return out


def accepts(params: dict[str, list[str]], event: dict, record_us: int, hash_id: str) -> bool:  # noqa: C901
    for name, vals in params.items():
        if name in ("perPage", "orderBy", "orderDirection", "eventCountLimit", "maxEventCount"):
            continue
        op, _, rest = name.partition("_")
        if name == "eventType":
            ok = event["type"] in vals
        elif name == "EQ_action":
            ok = event.get("action") in vals
        elif name in ("EQ_bizStep", "EQ_disposition"):
            f = name[3:]
            ok = _has_value(event, event.get(f), {_v(x, DEFAULT, f) for x in vals}, f)
        elif name in ("EQ_readPoint", "EQ_bizLocation"):
            loc = event.get(name[3:])
            ok = isinstance(loc, dict) and _has_value(event, loc.get("id"), {_v(x) for x in vals})
        elif name.startswith("MATCH_") and name.endswith("Class"):
            keys = {"MATCH_epcClass": ("quantityList", "childQuantityList"),
                    "MATCH_inputEPCClass": ("inputQuantityList",), "MATCH_outputEPCClass": ("outputQuantityList",),
                    "MATCH_anyEPCClass": tuple(QTY_LISTS)}[name]
            ok = _id_matches(vals, _classes(event, keys), False)
        elif name.startswith("MATCH_"):
            keys = {"MATCH_epc": ("epcList", "childEPCs"), "MATCH_parentID": ("parentID",),
                    "MATCH_inputEPC": ("inputEPCList",), "MATCH_outputEPC": ("outputEPCList",),
                    "MATCH_anyEPC": ("epcList", "childEPCs", "parentID", "inputEPCList", "outputEPCList")}[name]
            ok = _id_matches(vals, _epcs(event, keys), True)
        elif name == "EQ_eventID":
            served = event.get("eventID") or hash_id
            ok = served in vals or any(v.split("?")[0] == served.split("?")[0] for v in vals if v.startswith("ni:"))
        elif name.startswith(("EQ_bizTransaction_", "EQ_source_", "EQ_destination_")):
            kind, typ = name[3:].split("_", 1)
            lst = {"bizTransaction": "bizTransactionList", "source": "sourceList",
                   "destination": "destinationList"}[kind]
            vocab = "bizTransactionType" if kind == "bizTransaction" else "sourceDestType"
            ok = any(_has_value(event, x.get("type"), {_v(typ, DEFAULT, vocab)}, vocab)
                     and _has_value(event, x.get(kind), {_v(v) for v in vals}) for x in event.get(lst, []))
        elif name == "EQ_transformationID":
            ok = _has_value(event, event.get("transformationID"), {_v(v) for v in vals})
        elif name.startswith("EQ_persistentDisposition_"):
            k = name.rsplit("_", 1)[1]
            ok = any(_has_value(event, d, {_v(v, DEFAULT, k) for v in vals}, k)
                     for d in event.get("persistentDisposition", {}).get(k, []))
        elif name == "EXISTS_errorDeclaration":
            ok = vals[0] == "false" or "errorDeclaration" in event
        elif name == "EQ_errorReason":
            r = event.get("errorDeclaration", {}).get("reason")

            def reason(x: str) -> str:
                return CBV + "ER-" + x if ":" not in x else _v(x)
            ok = isinstance(r, str) and reason(r) in {reason(v) for v in vals}
        elif name == "EQ_correctiveEventID":
            ok = bool(set(event.get("errorDeclaration", {}).get("correctiveEventIDs", [])) & set(vals))
        elif rest == "errorDeclarationTime":
            d = event.get("errorDeclaration", {}).get("declarationTime")
            ok = d is not None and _cmp(op, _time(d), _time(vals[0]))
        elif rest in ("startTime", "endTime"):
            ok = any(rest in p and _cmp(op, _time(p[rest]), _time(vals[0])) for p in _sensor_parts(event))
        elif rest in ("eventTime", "recordTime"):
            t = _time(event["eventTime"]) if rest == "eventTime" else record_us
            ok = _cmp(op, t, _time(vals[0]))
        elif rest == "quantity":
            ok = any(_cmp(op, q["quantity"], float(vals[0])) for k in QTY_LISTS for q in event.get(k, [])
                     if "quantity" in q)
        elif rest.split("_")[0] in ("value", "minValue", "maxValue", "meanValue", "sDev", "percValue", "percRank") \
                and op in ("EQ", "GT", "GE", "LT", "LE"):
            attr, _, uom = rest.partition("_")
            ok = any(isinstance(p.get(attr), (int, float)) and (not uom or p.get("uom") == uom)
                     and _cmp(op, p[attr], float(vals[0])) for p in _sensor_parts(event))
        elif name in ("EQ_type", "EQ_deviceID", "EQ_dataProcessingMethod", "EQ_microorganism", "EQ_chemicalSubstance",
                      "EQ_bizRules", "EQ_stringValue", "EQ_hexBinaryValue", "EQ_uriValue", "EQ_booleanValue"):
            ok = any(_sensor_eq(rest, p.get(rest), vals, event) for p in _sensor_parts(event) if rest in p)
        else:  # extension / ILMD fields: [INNER_][ILMD_]<field>
            inner = rest.startswith("INNER_")
            rest = rest[6:] if inner else rest
            ilmd = rest.startswith("ILMD_")
            rest = rest[5:] if ilmd else rest
            names = _field_names(rest)
            obj = event.get("ilmd", {}) if ilmd else event
            ctx = _ctxs(event)[0]
            items = [v for n, nested, v in _ext_items(obj, ctx, set() if ilmd else STANDARD)
                     if n in names and nested == inner]
            if op == "EXISTS":
                ok = vals[0] == "false" or bool(items)
            elif op == "EQ":
                want = set(vals) | {normalise_number(float(v)) for v in vals if re.fullmatch(r"-?\d+(\.\d+)?", v)}
                want = {(_scalar(w, DEFAULT) or w) for w in want}
                ok = any(_scalar(v, ctx) in want for v in items)
            else:
                q = vals[0]
                if re.fullmatch(r"-?\d+(\.\d+)?", q):
                    ok = any(isinstance(v, (int, float)) and not isinstance(v, bool) and _cmp(op, v, float(q))
                             for v in items)
                else:
                    ok = any(isinstance(v, str) and timestamp_us(v) is not None and _cmp(op, _time(v), _time(q))
                             for v in items)
        if not ok:
            return False
    return True


def _sensor_eq(attr: str, have: Any, vals: list[str], event: dict) -> bool:
    if attr == "booleanValue":
        return isinstance(have, bool) and ("true" if have else "false") in vals
    if attr == "hexBinaryValue":
        return have.upper() in {v.upper() for v in vals}
    if attr == "stringValue":
        return have in vals
    vocab = "measurementType" if attr == "type" else None
    return _has_value(event, have, {_v(v, DEFAULT, vocab) for v in vals}, vocab)


def _order_key(params: dict[str, list[str]], event: dict, record_us: int):
    by = params["orderBy"][0]
    if by == "eventTime":
        return (1, _time(event["eventTime"]))
    if by == "recordTime":
        return (1, record_us)
    ctx = _ctxs(event)[0]
    for n, nested, v in _ext_items(event, ctx, STANDARD):
        if not nested and n in _field_names(by) and not isinstance(v, bool):
            if isinstance(v, (int, float)):
                return (0, float(v))
            if isinstance(v, str):
                t = timestamp_us(v) if re.search(r"(Z|[+-]\d\d:\d\d)$", v) and "T" in v else None
                return (1, t) if t is not None else (2, v)
    return None


def reference(params: list[tuple[str, str]], rows: list[tuple[int, int, dict, int]]) -> list[tuple[int, int]]:
    """The locs of the matching events: chain order, or per orderBy (missing last, ties in chain order)."""
    p: dict[str, list[str]] = {}
    for k, v in params:
        p.setdefault(k, []).extend(v.split("|"))
    hits = [(h, i, ev, rt) for h, i, ev, rt in rows if accepts(p, ev, rt, event_hash_id(ev) if "EQ_eventID" in p
                                                                  else "")]
    if "orderBy" not in p:
        return [(h, i) for h, i, _, _ in hits]
    keyed = [(_order_key(p, ev, rt), h, i) for h, i, ev, rt in hits]
    present = [x for x in keyed if x[0] is not None]
    present.sort(key=lambda x: x[0], reverse=p.get("orderDirection", ["DESC"])[0] == "DESC")
    out = [(h, i) for _, h, i in present] + [(h, i) for k, h, i in keyed if k is None]
    if "eventCountLimit" in p:
        out = out[:int(p["eventCountLimit"][0])]
    return out
