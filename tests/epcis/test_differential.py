"""Differential test: rantai's EPCIS rules against GS1's official EPCIS 2.0 JSON schema.

* Every event of every official example that the official schema accepts is
  accepted by ours (and the documents are accepted by validate_document).
* Events mutated to break the official schema (a required field dropped, a
  wrong JSON type, a URN-form CBV term, a bad time zone offset or timestamp, an
  unknown action, ...) are rejected by ours too.  Each mutation is first checked
  to be rejected by the official schema, so the test is honest.
* The example written with URN-form CBV terms is rejected by both.

The official schema and examples are read from ../shared/epcis (never copied).
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable, Iterator

import pytest
from epcis_testdata import (
    EXAMPLES,
    URN_CBV_EXAMPLE,
    events_of,
    example_files,
    load,
    requires_shared,
    shared_available,
)

from rantai.client.format.epcis import EventInvalid, validate_document, validate_event

pytestmark = requires_shared


def _rel(p) -> str:
    return str(p.relative_to(EXAMPLES))


FILES = example_files()


def test_format_checks_are_enforced():
    """Without rfc3987/rfc3339 the official 'uri'/'date-time' formats are silently skipped."""
    from jsonschema import FormatChecker

    fc = FormatChecker()
    assert not fc.conforms("not a uri", "uri"), "install jsonschema[format] (rfc3987) for the differential test"
    assert not fc.conforms("2020-01-01T00:00:00", "date-time"), "install jsonschema[format] (rfc3339-validator)"


def test_official_examples_are_there():
    assert len(FILES) >= 40, f"expected the 48 official example documents, found {len(FILES)}"


@pytest.mark.parametrize("path", FILES, ids=[_rel(p) for p in FILES])
def test_official_examples_agree(path, official_document_validator, official_event_validator):
    doc = load(path)
    official_ok = official_document_validator.is_valid(doc)
    if _rel(path) == URN_CBV_EXAMPLE:
        assert not official_ok, "the URN-CBV example is expected to fail the official schema"
        with pytest.raises(EventInvalid) as ei:
            validate_document(doc)
        assert "urn:epcglobal:cbv" in str(ei.value)
        for ev in events_of(doc):
            with pytest.raises(EventInvalid):
                validate_event(ev)
        return
    assert official_ok, f"{_rel(path)} was expected to pass the official schema"
    events = events_of(doc)
    assert events
    for i, ev in enumerate(events):
        assert official_event_validator.is_valid(ev)
        try:
            validate_event(ev)
        except EventInvalid as e:  # pragma: no cover - failure report
            pytest.fail(f"{_rel(path)} event {i} rejected by ours: {e}")
    assert validate_document(doc) == len(events)


# ------------------------------------------------------------------ mutations


@functools.cache
def _accepted_events() -> list[tuple[str, int, dict]]:
    if not shared_available():
        return []
    from epcis_testdata import official_validator

    v = official_validator("document")
    out = []
    for p in FILES:
        doc = load(p)
        if _rel(p) == URN_CBV_EXAMPLE or not v.is_valid(doc):
            continue
        for i, ev in enumerate(events_of(doc)):
            out.append((_rel(p), i, ev))
    return out


Mutation = Callable[[dict], Iterator[dict]]
MUTATIONS: dict[str, Mutation] = {}


def mutation(name: str):
    def deco(fn: Mutation) -> Mutation:
        MUTATIONS[name] = fn
        return fn

    return deco


def _copy(ev: dict) -> dict:
    return copy.deepcopy(ev)


def _set(ev: dict, key: str, value: Any) -> Iterator[dict]:
    if key in ev:
        e = _copy(ev)
        e[key] = value
        yield e


def _drop(ev: dict, key: str) -> Iterator[dict]:
    if key in ev:
        e = _copy(ev)
        del e[key]
        yield e


def _items(ev: dict, list_key: str) -> Iterator[tuple[dict, dict]]:
    """(copy of the event, first item of its list list_key in the copy)."""
    if ev.get(list_key):
        e = _copy(ev)
        yield e, e[list_key][0]


ACTION_TYPES = {"ObjectEvent", "AggregationEvent", "TransactionEvent", "AssociationEvent"}
QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")

# -- required fields dropped
for _k in ("eventTime", "eventTimeZoneOffset", "type"):
    MUTATIONS[f"drop:{_k}"] = (lambda k: lambda ev: _drop(ev, k))(_k)


@mutation("drop:action")
def _(ev):
    if ev["type"] in ACTION_TYPES:
        yield from _drop(ev, "action")


@mutation("drop:bizTransactionList(TransactionEvent)")
def _(ev):
    if ev["type"] == "TransactionEvent":
        yield from _drop(ev, "bizTransactionList")


@mutation("drop:parentID(AssociationEvent)")
def _(ev):
    if ev["type"] == "AssociationEvent":
        yield from _drop(ev, "parentID")


@mutation("drop:readPoint.id")
def _(ev):
    for key in ("readPoint", "bizLocation"):
        if key in ev:
            e = _copy(ev)
            e[key].pop("id")
            yield e


@mutation("drop:bizTransaction.bizTransaction")
def _(ev):
    for e, item in _items(ev, "bizTransactionList"):
        del item["bizTransaction"]
        yield e


@mutation("drop:source/destination fields")
def _(ev):
    for lk, ik in (("sourceList", "source"), ("destinationList", "destination")):
        for field in ("type", ik):
            for e, item in _items(ev, lk):
                del item[field]
                yield e


@mutation("drop:quantityElement.epcClass")
def _(ev):
    for lk in QUANTITY_LISTS:
        for e, item in _items(ev, lk):
            del item["epcClass"]
            yield e


@mutation("drop:errorDeclaration.declarationTime")
def _(ev):
    if "errorDeclaration" in ev:
        e = _copy(ev)
        del e["errorDeclaration"]["declarationTime"]
        yield e


@mutation("drop:sensorReport.type / sensorElement.sensorReport")
def _(ev):
    for e, item in _items(ev, "sensorElementList"):
        del item["sensorReport"][0]["type"]
        yield e
    for e, item in _items(ev, "sensorElementList"):
        del item["sensorReport"]
        yield e


@mutation("drop:what (no EPCs, quantities or sensor data)")
def _(ev):
    e = _copy(ev)
    t = e["type"]
    if t == "ObjectEvent":
        for k in ("epcList", "quantityList", "sensorElementList"):
            e.pop(k, None)
    elif t in ("AggregationEvent", "AssociationEvent", "TransactionEvent"):
        if e.get("action") == "DELETE":
            return
        keys = ("epcList", "quantityList") if t == "TransactionEvent" else ("childEPCs", "childQuantityList")
        for k in keys:
            e.pop(k, None)
    else:
        for k in ("outputEPCList", "outputQuantityList", "transformationID"):
            e.pop(k, None)
    yield e


# -- wrong JSON types
_WRONG_TYPES = {
    "eventTime": 1583316030,
    "eventTimeZoneOffset": 7,
    "recordTime": True,
    "action": 1,
    "bizStep": 5,
    "disposition": ["in_transit"],
    "readPoint": "urn:epc:id:sgln:4012345.00001.0",
    "bizLocation": ["urn:epc:id:sgln:4012345.00001.0"],
    "epcList": "urn:epc:id:sgtin:4012345.011111.1",
    "childEPCs": {"epc": "urn:epc:id:sgtin:4012345.011111.1"},
    "parentID": 42,
    "bizTransactionList": {"type": "po", "bizTransaction": "urn:example:po:1"},
    "sourceList": "urn:epc:id:pgln:4012345.00000",
    "quantityList": {"epcClass": "urn:epc:class:lgtin:4012345.012345.998877"},
    "eventID": 12345,
    "certificationInfo": 5,
    "ilmd": ["example:lot"],
    "sensorElementList": {"sensorReport": []},
    "persistentDisposition": ["recalled"],
    "errorDeclaration": "2020-01-01T00:00:00Z",
}
for _k, _v in _WRONG_TYPES.items():
    MUTATIONS[f"type:{_k}"] = (lambda k, v: lambda ev: _set(ev, k, v))(_k, _v)


@mutation("type:quantity as string")
def _(ev):
    for lk in QUANTITY_LISTS:
        for e, item in _items(ev, lk):
            item["quantity"] = "5"
            yield e


@mutation("type:sensor values")
def _(ev):
    for field, bad in (("value", "26"), ("booleanValue", "true"), ("stringValue", 3), ("hexBinaryValue", "XYZ")):
        for e, item in _items(ev, "sensorElementList"):
            item["sensorReport"][0][field] = bad
            yield e


@mutation("type:epc item not a URI")
def _(ev):
    for lk in EPC_LISTS:
        for e, _item in _items(ev, lk):
            e[lk][0] = "4012345.011111.1"
            yield e
        for e, _item in _items(ev, lk):
            e[lk][0] = 4012345011111
            yield e


# -- CBV terms in URN or GS1 Web URI form (the JSON binding needs bare terms)
def _cbv_forms(prefix_urn: str, prefix_web: str, bare: str) -> list[str]:
    return [f"urn:epcglobal:cbv:{prefix_urn}:{bare}", f"https://ns.gs1.org/cbv/{prefix_web}-{bare}"]


@mutation("cbv:bizStep URN/URI form")
def _(ev):
    for v in _cbv_forms("bizstep", "BizStep", ev.get("bizStep", "receiving")):
        e = _copy(ev)
        e["bizStep"] = v
        yield e


@mutation("cbv:disposition URN/URI form")
def _(ev):
    for v in _cbv_forms("disp", "Disp", ev.get("disposition", "in_progress")):
        e = _copy(ev)
        e["disposition"] = v
        yield e


@mutation("cbv:bizTransaction type URN form")
def _(ev):
    for e, item in _items(ev, "bizTransactionList"):
        item["type"] = "urn:epcglobal:cbv:btt:po"
        yield e


@mutation("cbv:source/destination type URN form")
def _(ev):
    for lk in ("sourceList", "destinationList"):
        for e, item in _items(ev, lk):
            item["type"] = "urn:epcglobal:cbv:sdt:" + item["type"]
            yield e


@mutation("cbv:persistentDisposition URN form")
def _(ev):
    if "persistentDisposition" in ev:
        e = _copy(ev)
        pd = e["persistentDisposition"]
        k = "set" if "set" in pd else "unset"
        pd[k][0] = "urn:epcglobal:cbv:disp:" + pd[k][0]
        yield e


@mutation("cbv:error reason URN form")
def _(ev):
    if "errorDeclaration" in ev:
        e = _copy(ev)
        e["errorDeclaration"]["reason"] = "urn:epcglobal:cbv:er:incorrect_data"
        yield e


@mutation("cbv:unknown bare terms")
def _(ev):
    for k, bad in (("bizStep", "shipped"), ("disposition", "in-transit")):
        e = _copy(ev)
        e[k] = bad
        yield e
    for e, item in _items(ev, "bizTransactionList"):
        item["type"] = "purchase order"
        yield e
    for e, item in _items(ev, "sourceList"):
        item["type"] = "owner"
        yield e


# -- time zone offsets and timestamps
@mutation("tz:bad eventTimeZoneOffset")
def _(ev):
    for bad in ("+7:00", "+15:00", "0700", "Z", "+07:00:00", "UTC+07:00", "+14:30", "-13:60", ""):
        yield from _set(ev, "eventTimeZoneOffset", bad)


@mutation("time:bad eventTime")
def _(ev):
    for bad in (
        "2020-13-01T00:00:00Z",
        "2021-02-29T10:00:00Z",
        "2020-04-31T10:00:00+02:00",
        "2020-01-01T00:00:00",
        "2020-01-01T24:00:00Z",
        "2020-01-01T10:61:00Z",
        "2020-01-01",
        "yesterday",
        "2020-01-01T10:00:00+2:00",
        "",
    ):
        yield from _set(ev, "eventTime", bad)


@mutation("time:bad other timestamps")
def _(ev):
    yield from _set(ev, "recordTime", "2020-01-01T00:00:00")
    if "errorDeclaration" in ev:
        e = _copy(ev)
        e["errorDeclaration"]["declarationTime"] = "2020-02-30T00:00:00Z"
        yield e
    for e, item in _items(ev, "sensorElementList"):
        if "sensorMetadata" in item:
            item["sensorMetadata"]["time"] = "noon"
            yield e


# -- actions
@mutation("action:unknown")
def _(ev):
    for bad in ("UPDATE", "add", "Observe", ""):
        yield from _set(ev, "action", bad)


@mutation("action:on TransformationEvent / ilmd without ADD")
def _(ev):
    if ev["type"] == "TransformationEvent":
        e = _copy(ev)
        e["action"] = "ADD"
        yield e
    if ev["type"] == "ObjectEvent" and "ilmd" in ev:
        for act in ("OBSERVE", "DELETE"):
            e = _copy(ev)
            e["action"] = act
            yield e


# -- structure
@mutation("struct:unknown un-namespaced field")
def _(ev):
    e = _copy(ev)
    e["myField"] = "value"
    yield e
    if "errorDeclaration" in ev:
        e = _copy(ev)
        e["errorDeclaration"]["comment"] = "x"
        yield e
    for e, item in _items(ev, "sensorElementList"):
        item["sensorReport"][0]["colour"] = "red"
        yield e


@mutation("struct:extra property in closed objects")
def _(ev):
    for lk in QUANTITY_LISTS:
        for e, item in _items(ev, lk):
            item["lot"] = "123"
            yield e
    for e, item in _items(ev, "bizTransactionList"):
        item["date"] = "2020-01-01"
        yield e
    for e, item in _items(ev, "sourceList"):
        item["name"] = "ACME"
        yield e


@mutation("struct:bad uom")
def _(ev):
    for lk in QUANTITY_LISTS:
        for e, item in _items(ev, lk):
            item["uom"] = "kg"
            yield e


@mutation("struct:duplicate EPC")
def _(ev):
    for lk in ("epcList", "inputEPCList", "outputEPCList"):
        if ev["type"] in ("ObjectEvent", "TransformationEvent"):
            for e, item in _items(ev, lk):
                e[lk].append(item)
                yield e


@mutation("struct:empty required lists")
def _(ev):
    if ev["type"] == "TransactionEvent":
        yield from _set(ev, "bizTransactionList", [])
    if "persistentDisposition" in ev:
        e = _copy(ev)
        e["persistentDisposition"] = {}
        yield e
        e = _copy(ev)
        e["persistentDisposition"] = {"set": []}
        yield e
    for e, item in _items(ev, "sensorElementList"):
        item["sensorReport"] = []
        yield e


@mutation("struct:readPoint id not a URI")
def _(ev):
    for key in ("readPoint", "bizLocation"):
        if key in ev:
            e = _copy(ev)
            e[key]["id"] = "warehouse 7"
            yield e


@mutation("struct:eventID / certificationInfo not URIs")
def _(ev):
    yield from _set(ev, "eventID", "event 42")
    yield from _set(ev, "certificationInfo", "certificate ABC")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutations_rejected_by_both(name, official_event_validator):
    mutate = MUTATIONS[name]
    applied = 0
    for fname, i, ev in _accepted_events():
        for j, bad in enumerate(mutate(ev)):
            applied += 1
            where = f"{name}: {fname} event {i} variant {j}"
            assert not official_event_validator.is_valid(bad), f"official schema accepts mutation {where}"
            with pytest.raises(EventInvalid):
                validate_event(bad)
    assert applied > 0, f"mutation {name!r} applied to no official event"


def test_mutation_errors_name_the_path():
    fname, i, ev = _accepted_events()[0]
    bad = _copy(ev)
    del bad["eventTime"]
    with pytest.raises(EventInvalid) as ei:
        validate_event(bad)
    assert ei.value.path == "event.eventTime"
    assert str(ei.value) == "schema: event.eventTime: required"
