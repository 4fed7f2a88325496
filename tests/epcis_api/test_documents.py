"""client.documents without a network: the document's context travels with each event, signed
documents turn back into the very records that were signed, and served events match receipts."""

from __future__ import annotations

import json

import pytest

from rantai.client.documents import embed_context, prepare_events, sign_document
from rantai.client.format.epcis import event_hash_id
from rantai.client.format.errors import InvalidRecord
from rantai.node.epcis_api import present_event, record_of_captured

from .helpers import EXAMPLES, example_files, make_net

DOC = {
    "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"ex": "https://ns.example.co.id/epcis/"}],
    "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-05-01T00:00:00Z",
    "epcisBody": {"eventList": [
        {"type": "ObjectEvent", "eventTime": "2024-05-01T08:30:00+07:00", "eventTimeZoneOffset": "+07:00",
         "epcList": ["urn:epc:id:sgtin:8991234.012345.1001"], "action": "OBSERVE", "bizStep": "shipping",
         "ex:grade": "A"},
        {"type": "ObjectEvent", "eventTime": "2024-05-01T08:30:00+07:00", "eventTimeZoneOffset": "+07:00",
         "epcList": ["urn:epc:id:sgtin:8991234.012345.1001"], "action": "OBSERVE", "bizStep": "shipping",
         "@context": {"ex": "https://other.example/"}, "ex:grade": "A"},
        {"type": "ObjectEvent", "eventTime": "bad"},
    ]},
}


def test_context_travels_with_each_event():
    prepared = prepare_events(DOC)
    ev0, ev1 = DOC["epcisBody"]["eventList"][:2]
    assert prepared[0].hash_id == event_hash_id(ev0, DOC["@context"]) == event_hash_id(prepared[0].event)
    assert prepared[1].hash_id == event_hash_id(ev1, DOC["@context"]) != prepared[0].hash_id  # the event's own wins
    assert prepared[2].event is None and "eventTime" in prepared[2].error
    plain = {"type": "ObjectEvent"}
    assert embed_context(plain, "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld") is plain


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="GS1 examples not found")
def test_examples_hash_alike_inside_and_outside_their_document():
    for path in example_files():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if "epcisBody" not in doc:
            continue
        for p in prepare_events(doc):
            if p.event is not None:
                assert event_hash_id(p.event) == p.hash_id


def test_signed_document_round_trips_to_records():
    net = make_net()
    two = {**DOC, "epcisBody": {"eventList": DOC["epcisBody"]["eventList"][:2]}}
    signed = sign_document(two, net.acme, net.genesis)
    assert {"rantai": "urn:rantai:"} in signed["@context"]
    wire = json.loads(json.dumps(signed))  # what the node parses
    for ev, p in zip(wire["epcisBody"]["eventList"], prepare_events(two), strict=True):
        record = record_of_captured(ev, net.genesis.hash)
        record.verify(net.genesis)
        assert record.event == p.event and event_hash_id(record.event) == p.hash_id
        forged = {**ev, "ex:grade": "B"}
        with pytest.raises(InvalidRecord):
            record_of_captured(forged, net.genesis.hash).verify(net.genesis)
    with pytest.raises(InvalidRecord, match="unsigned"):
        record_of_captured(DOC["epcisBody"]["eventList"][0], net.genesis.hash)


def test_served_event_keeps_own_event_id_and_hash():
    ev = DOC["epcisBody"]["eventList"][0]
    hid = event_hash_id(ev)
    served = present_event(ev, hid, 1_714_527_000_123)
    assert served["eventID"] == hid and served["recordTime"] == "2024-05-01T01:30:00.123Z"
    assert event_hash_id(served) == hid
    own = present_event({**ev, "eventID": "urn:uuid:1"}, hid, 0)
    assert own["eventID"] == "urn:uuid:1"
