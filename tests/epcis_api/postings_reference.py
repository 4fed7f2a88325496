"""The query postings of an event read field by field, as node/epcis_index.py read them up to issue 16's
single-pass ``_postings``: the differential test (test_postings_single_pass) holds the fast reading to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rantai.node.epcis_index import (
    F_ACTION,
    F_ATTR,
    F_BIZLOC,
    F_DISP,
    F_PARENT,
    F_READPOINT,
    F_STEP,
    F_TYPE,
    QUANTITY_FIELDS,
    SENSOR_EQ,
    SENSOR_NUMBERS,
    SENSOR_TIMES,
    STANDARD_FIELDS,
    _CLASS_OF,
    _EPC_FIELDS,
    _PARTY_FIELDS,
    _Ctx,
    _list,
    attr,
    epc_class,
    event_context,
    extension_values,
    forms,
    norm_reason,
    scalar_text,
    sensor_value_text,
)


def reference_postings(event: Mapping[str, Any]) -> list[tuple[bytes, str]]:
    """(field, normalised value) pairs of one event, without repeats: everything an exact query parameter
    can select on. Range parameters select on a ``has`` presence mark and check the value exactly."""
    out: dict[tuple[bytes, str], None] = {}
    ctx = event_context(event)

    def add(f: bytes, v: str) -> None:
        if v:
            out[(f, v)] = None

    def attrs(name: str, value: Any, vocab: str | None = None) -> None:
        for x in forms(value, ctx, vocab):
            out[(F_ATTR, attr(name, x))] = None

    def has(mark: str) -> None:
        out[(F_ATTR, attr("has", mark))] = None

    add(F_TYPE, str(event.get("type", "")))
    add(F_ACTION, str(event.get("action", "")) if isinstance(event.get("action"), str) else "")
    for x in forms(event.get("bizStep"), ctx, "bizStep"):
        add(F_STEP, x)
    for x in forms(event.get("disposition"), ctx, "disposition"):
        add(F_DISP, x)
    for key, f in (("readPoint", F_READPOINT), ("bizLocation", F_BIZLOC)):
        loc = event.get(key)
        if isinstance(loc, dict):
            for x in forms(loc.get("id"), ctx):
                add(f, x)
    out.update(dict.fromkeys(reference_identifier_postings(event, ctx)))
    # absent fields are skipped before any call: most events have few of them (index build cost, issue 16)
    for key, _ in QUANTITY_FIELDS:
        if key in event and any(isinstance(q, dict) and isinstance(q.get("quantity"), (int, float))
                                for q in _list(event[key])):
            has("quantity")
    if "transformationID" in event:
        attrs("transformationID", event["transformationID"])
    for key, item_key, vocab in _PARTY_FIELDS:
        if key not in event:
            continue
        for item in _list(event[key]):
            if isinstance(item, dict):
                for t in forms(item.get("type"), ctx, vocab):
                    attrs(f"{item_key}:{t}", item.get(item_key))
    pd = event.get("persistentDisposition")
    if isinstance(pd, dict):
        for k in ("set", "unset"):
            for v in _list(pd.get(k)):
                attrs("persistentDisposition_" + k, v, k)
    err = event.get("errorDeclaration")
    if isinstance(err, dict):
        has("errorDeclaration")
        for x in dict.fromkeys((norm_reason(err.get("reason"), ctx), norm_reason(err.get("reason")))):
            if x:
                out[(F_ATTR, attr("errorReason", x))] = None
        for v in _list(err.get("correctiveEventIDs")):
            if isinstance(v, str) and v.strip():
                out[(F_ATTR, attr("correctiveEventID", v.strip()))] = None
    for el in _list(event.get("sensorElementList")) if "sensorElementList" in event else ():
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
                    has(f"sensor:{name}:")
                    if isinstance(part.get("uom"), str):
                        has(f"sensor:{name}:{part['uom']}")
            for name in SENSOR_TIMES:
                if isinstance(part.get(name), str):
                    has("sensor:" + name)
    for where, obj, skip in (("ext", event, STANDARD_FIELDS), ("ilmd", event.get("ilmd"), frozenset())):
        if not isinstance(obj, dict):
            continue
        for name, nested, v in extension_values(obj, ctx, skip):
            family = f"{where}:inner:" if nested else f"{where}:"
            has(family + name)
            text = scalar_text(v, ctx)
            if text is not None:
                out[(F_ATTR, attr(family + name, text))] = None
    return list(out)


def reference_identifier_postings(event: Mapping[str, Any], ctx: _Ctx | None = None) -> list[tuple[bytes, str]]:
    """The EPC and quantity-class postings of an event (what MATCH_ parameters select on), alone: the
    exact check of a MATCH_ query needs only these."""
    ctx = event_context(event) if ctx is None else ctx
    out: dict[tuple[bytes, str], None] = {}
    ids: list[tuple[bytes, str]] = [(F_PARENT, x) for x in forms(event["parentID"], ctx)] \
        if "parentID" in event else []
    for key, f in _EPC_FIELDS:
        if key in event:
            for v in _list(event[key]):
                ids.extend((f, x) for x in forms(v, ctx))
    for f, v in ids:
        out[(f, v)] = None
        c = epc_class(v)
        if c:
            out[(_CLASS_OF[f], c)] = None
    for key, name in QUANTITY_FIELDS:
        for q in _list(event[key]) if key in event else ():
            if isinstance(q, dict):
                for v in forms(q.get("epcClass"), ctx):
                    out[(F_ATTR, attr(name, v))] = None
                    c = epc_class(v)
                    if c:
                        out[(F_ATTR, attr(name + "~", c))] = None
    return list(out)

