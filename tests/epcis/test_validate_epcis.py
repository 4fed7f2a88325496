"""Unit tests of rantai's own EPCIS 2.0 validation rules (no GS1 test data needed)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rantai.client.format.epcis import EventInvalid, is_gs1_identifier, validate_document, validate_event
from rantai.client.format.epcis.validate import MAX_LIST_ITEMS, MAX_TEXT_LENGTH, gs1_check_digit


def ship() -> dict:
    return {
        "type": "ObjectEvent",
        "eventTime": "2024-05-01T08:30:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": ["urn:epc:id:sgtin:8991234.012345.1001", "https://id.gs1.org/01/08991234123455/21/1002"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:8991234.00001.0"},
        "bizTransactionList": [{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:8991234000003:PO-77"}],
        "sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:8991234.00000"}],
        "destinationList": [{"type": "location", "destination": "https://id.gs1.org/414/8995678000006"}],
        "example:carrier": {"example:name": "PT Kirim", "example:legs": [1, 2.5, True, None]},
    }


def rejects(event: dict, path: str, words: str = "") -> EventInvalid:
    with pytest.raises(EventInvalid) as ei:
        validate_event(event)
    assert ei.value.path == path, str(ei.value)
    assert words in ei.value.reason, str(ei.value)
    assert str(ei.value) == f"schema: {path}: {ei.value.reason}"
    return ei.value


def test_typical_event_is_valid_and_untouched():
    ev = ship()
    before = copy.deepcopy(ev)
    validate_event(ev)
    assert ev == before  # extensions kept intact, nothing rewritten


def test_error_is_a_value_error_with_status_hint():
    ev = ship()
    del ev["eventTime"]
    err = rejects(ev, "event.eventTime", "required")
    assert isinstance(err, ValueError)
    assert err.status_hint == 400
    from rantai.client.format.errors import InvalidRecord

    assert isinstance(err, InvalidRecord)
    assert err.to_obj()["path"] == "event.eventTime"
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.reason, str(again)) == (err.path, err.reason, str(err))
    assert str(err) == "schema: event.eventTime: required"


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (lambda e: e.pop("type"), "event.type", "required"),
        (lambda e: e.update(type="ThingEvent"), "event.type", "must be one of"),
        (lambda e: e.update(action="MOVE"), "event.action", "ADD, OBSERVE, DELETE"),
        (lambda e: e.update(eventTime="2024-05-01T08:30:00"), "event.eventTime", "RFC 3339"),
        (lambda e: e.update(eventTime="2023-02-29T08:30:00Z"), "event.eventTime", "RFC 3339"),
        (lambda e: e.update(eventTimeZoneOffset="+7:00"), "event.eventTimeZoneOffset", "±hh:mm"),
        (lambda e: e.update(bizStep="urn:epcglobal:cbv:bizstep:shipping"), "event.bizStep", "bare"),
        (lambda e: e.update(bizStep="https://ns.gs1.org/cbv/BizStep-shipping"), "event.bizStep", "bare"),
        (lambda e: e.update(disposition="sold"), "event.disposition", "unknown disposition"),
        (lambda e: e["epcList"].append("urn:epc:id:sgtin:8991234.012345.1001"), "event.epcList[2]", "duplicate"),
        (lambda e: e["epcList"].append("urn:epc:id:sgtin:8991234.12345.1"), "event.epcList[2]", "13 digits"),
        (lambda e: e["epcList"].append("urn:epc:id:foo:1.2"), "event.epcList[2]", "unknown EPC id URI scheme"),
        (lambda e: e["epcList"].append("https://id.gs1.org/01/08991234123456"), "event.epcList[2]", "check digit"),
        (lambda e: e["epcList"].append("https://id.gs1.org/01/0899123412345"), "event.epcList[2]", "AI 01"),
        (lambda e: e["epcList"].append("urn:epc:id:sgtin:8991234.012345.a%zz"), "event.epcList[2]", "URI"),
        # digits are ASCII digits: \d in a str pattern also matches other scripts' (here Arabic-Indic)
        (lambda e: e["epcList"].append("urn:epc:id:sgtin:\u0668\u0669\u0669\u0661\u0662\u0663\u0664.012345.1"),
         "event.epcList[2]", "absolute URI"),
        (lambda e: e.update(eventTimeZoneOffset="+0\u0667:00"), "event.eventTimeZoneOffset", "±hh:mm"),
        (lambda e: e["readPoint"].pop("id"), "event.readPoint.id", "required"),
        (lambda e: e["readPoint"].update(floor=2), "event.readPoint.floor", "namespace"),
        (lambda e: e["sourceList"][0].update(type="urn:epcglobal:cbv:sdt:owning_party"), "event.sourceList[0].type",
         "bare"),
        (lambda e: e["bizTransactionList"][0].pop("bizTransaction"), "event.bizTransactionList[0].bizTransaction",
         "required"),
        (lambda e: e.update(colour="red"), "event.colour", "namespace"),
        (lambda e: e.update(ilmd={"example:lot": "A"}), "event.ilmd", "ADD"),
        (lambda e: e.update(quantityList=[{"epcClass": "urn:epc:class:lgtin:8991234.012345.L1", "quantity": True}]),
         "event.quantityList[0].quantity", "number"),
        (lambda e: e.update(quantityList=[{"epcClass": "urn:epc:class:lgtin:8991234.012345.L1", "uom": "kg"}]),
         "event.quantityList[0].uom", "unit code"),
        (lambda e: e.update(quantityList=[{"epcClass": "urn:epc:class:lgtin:8991234.012345.L1",
                                           "quantity": float("nan")}]),
         "event.quantityList[0].quantity", "finite"),
        (lambda e: e.update({"example:deep": [[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]}),
         "event.example:deep" + "[0]" * 15, "deeper"),
        (lambda e: e.update({"example:big": "x" * (MAX_TEXT_LENGTH + 1)}), "event.example:big", "longer"),
        (lambda e: e.update(epcList=[f"urn:epc:id:sgtin:8991234.012345.{i}"
                                     for i in range(MAX_LIST_ITEMS + 1)]),
         "event.epcList", "more than"),
    ],
)
def test_rejections_name_the_path(mutate, path, words):
    ev = ship()
    mutate(ev)
    rejects(ev, path, words)


def test_event_types_and_their_requirements():
    base = {"eventTime": "2024-05-01T01:00:00Z", "eventTimeZoneOffset": "+00:00"}
    agg = {**base, "type": "AggregationEvent", "action": "ADD", "parentID": "urn:epc:id:sscc:8991234.0000000001",
           "childEPCs": ["urn:epc:id:sgtin:8991234.012345.1"]}
    validate_event(agg)
    rejects({**agg, "childEPCs": []}, "event.childEPCs", "required")
    validate_event({**agg, "action": "DELETE", "childEPCs": []})
    rejects({k: v for k, v in agg.items() if k != "parentID"}, "event.parentID", "ADD or DELETE")
    tx = {**base, "type": "TransactionEvent", "action": "ADD", "epcList": ["urn:epc:id:sscc:8991234.0000000001"],
          "bizTransactionList": [{"type": "inv", "bizTransaction": "https://example.co.id/inv/1"}]}
    validate_event(tx)
    rejects({**tx, "bizTransactionList": []}, "event.bizTransactionList", "at least 1")
    tf = {**base, "type": "TransformationEvent", "inputEPCList": ["urn:epc:id:sgtin:8991234.012345.1"],
          "outputQuantityList": [{"epcClass": "https://id.gs1.org/01/08991234123455/10/LOT1", "quantity": 12.5,
                                  "uom": "KGM"}]}
    validate_event(tf)
    rejects({**tf, "action": "ADD"}, "event.action", "unknown field")
    rejects({**tf, "outputQuantityList": []}, "event.outputEPCList", "transformationID")
    validate_event({**tf, "outputQuantityList": [],
                    "transformationID": "urn:uuid:0d8a8f2e-7c1e-4a53-9d1e-0b1f1e2d3c4b"})
    assoc = {**base, "type": "AssociationEvent", "action": "ADD", "parentID": "urn:epc:id:grai:8991234.00001.7",
             "childEPCs": ["urn:epc:id:giai:8991234.SENSOR7"]}
    validate_event(assoc)
    rejects({k: v for k, v in assoc.items() if k != "parentID"}, "event.parentID", "required")


def test_sensor_data_and_persistent_disposition():
    ev = {
        "type": "ObjectEvent", "action": "OBSERVE", "eventTime": "2024-05-01T01:00:00.5Z",
        "eventTimeZoneOffset": "+07:00",
        "readPoint": {"id": "urn:epc:id:sgln:8991234.00001.0"},
        "persistentDisposition": {"set": ["recalled"], "unset": ["active"]},
        "sensorElementList": [{
            "sensorMetadata": {"time": "2024-05-01T01:00:00Z", "deviceID": "urn:epc:id:giai:8991234.T1",
                               "example:firmware": "1.2"},
            "sensorReport": [{"type": "Temperature", "value": 4.5, "uom": "CEL"},
                             {"type": "https://example.org/voc/Ripeness", "stringValue": "ripe"}],
        }],
    }
    validate_event(ev)
    bad = copy.deepcopy(ev)
    bad["sensorElementList"][0]["sensorReport"][1]["type"] = "https://gs1.org/voc/Temperature"
    rejects(bad, "event.sensorElementList[0].sensorReport[1].type", "bare")
    bad = copy.deepcopy(ev)
    bad["persistentDisposition"]["set"] = ["recalled", "recalled"]
    rejects(bad, "event.persistentDisposition.set[1]", "duplicate")


def test_gs1_identifiers():
    good = [
        "urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sscc:0614141.1234567890",
        "urn:epc:id:sgln:0614141.00777.0", "urn:epc:id:pgln:4012345.00000", "urn:epc:id:grai:4012345.55555.987",
        "urn:epc:id:giai:4000001.111", "urn:epc:class:lgtin:4012345.012345.998877",
        "urn:epc:idpat:sgtin:4012345.012345.*", "https://id.gs1.org/01/09506000134352/21/12345",
        "https://id.gs1.org/00/106141411234567897", "https://id.gs1.org/414/9506000134307",
        "https://brand.example.com/01/09506000134352/10/LOT-1?exp=250101",
    ]
    for g in good:
        assert is_gs1_identifier(g), g
    for b in ["urn:epc:id:sgtin:0614141.10734.2017", "urn:epc:id:sscc:0614141.123456789",
              "https://id.gs1.org/01/09506000134353", "https://id.gs1.org/about", "not a uri",
              "https://example.com/page"]:
        assert not is_gs1_identifier(b), b
    assert gs1_check_digit("0950600013435") == 2


def test_non_gs1_uris_are_still_allowed_as_identifiers():
    ev = ship()
    ev["epcList"] = ["urn:uuid:8f6b7a8e-1111-4c5d-9e0f-123456789abc", "https://example.co.id/item/77"]
    validate_event(ev)


def test_document_paths():
    ev = ship()
    doc = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument",
           "schemaVersion": "2.0", "creationDate": "2024-05-01T08:31:00+07:00",
           "epcisBody": {"eventList": [ev, ev, ev, copy.deepcopy(ev)]}}
    assert validate_document(doc) == 4
    del doc["epcisBody"]["eventList"][3]["eventTime"]
    with pytest.raises(EventInvalid) as ei:
        validate_document(doc)
    assert str(ei.value) == "schema: epcisBody.eventList[3].eventTime: required"
    with pytest.raises(EventInvalid) as ei:
        validate_document({**doc, "schemaVersion": "two"})
    assert ei.value.path == "schemaVersion"
    with pytest.raises(EventInvalid) as ei:
        validate_document({**doc, "epcisBody": {}})
    assert ei.value.path == "epcisBody.eventList"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=10,
)
_keys = st.sampled_from(["type", "eventTime", "eventTimeZoneOffset", "action", "epcList", "bizStep", "readPoint",
                         "quantityList", "childEPCs", "parentID", "sourceList", "ilmd", "ex:x", "persistentDisposition",
                         "sensorElementList", "bizTransactionList", "errorDeclaration", "@context"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=10), st.sampled_from(["ObjectEvent", "AggregationEvent",
       "TransactionEvent", "TransformationEvent", "AssociationEvent", 7]))
def test_fuzz_only_event_invalid(event, etype):
    event = dict(event, type=etype)
    try:
        validate_event(event)
    except EventInvalid as e:
        assert e.path.startswith("event")


@settings(max_examples=200, deadline=None)
@given(_json)
def test_fuzz_any_json(value):
    try:
        validate_event(value)
    except EventInvalid:
        pass
