"""CBV 2.0 event hash IDs: worked examples derived by hand, and invariance.

The three worked examples are the ones in docs/epcis.md; their pre-hash
strings were written by hand from the algorithm (check digits computed by hand,
see the document), so these tests check the code against the document.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random

import pytest
from epcis_testdata import EXAMPLES, events_of, load, requires_shared

from rantai.client.format.epcis import event_hash_id, event_prehash, validate_event
from rantai.client.format.epcis.event_hash import epc_to_digital_link, normalise_identifier, normalise_timestamp

NS = "https://ns.example.co.id/epcis/"


def ni(prehash: str) -> str:
    return "ni:///sha-256;" + hashlib.sha256(prehash.encode("utf-8")).hexdigest() + "?ver=CBV2.0"


EXAMPLE_1 = {
    "type": "ObjectEvent",
    "eventTime": "2024-05-01T08:30:00+07:00",
    "eventTimeZoneOffset": "+07:00",
    "eventID": "urn:uuid:6f1c1f5e-2b4b-4f53-9e7e-2f0b8f4b9a11",
    "recordTime": "2024-05-01T08:31:12.345+07:00",
    "epcList": ["urn:epc:id:sgtin:8991234.012345.1002", "urn:epc:id:sgtin:8991234.012345.1001"],
    "action": "OBSERVE",
    "bizStep": "shipping",
    "disposition": "in_transit",
    "readPoint": {"id": "urn:epc:id:sgln:8991234.00001.0"},
    "bizTransactionList": [{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:8991234000003:PO-77"}],
    "sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:8991234.00000"}],
    "destinationList": [{"type": "owning_party", "destination": "urn:epc:id:pgln:8995678.00000"}],
}
PREHASH_1 = (
    "eventType=ObjectEvent"
    "eventTime=2024-05-01T01:30:00.000Z"
    "eventTimeZoneOffset=+07:00"
    "epcList"
    "epc=https://id.gs1.org/01/08991234123455/21/1001"
    "epc=https://id.gs1.org/01/08991234123455/21/1002"
    "action=OBSERVE"
    "bizStep=https://ref.gs1.org/cbv/BizStep-shipping"
    "disposition=https://ref.gs1.org/cbv/Disp-in_transit"
    "readPointid=https://id.gs1.org/414/8991234000015"
    "bizTransactionListtype=https://ref.gs1.org/cbv/BTT-pobizTransaction=urn:epcglobal:cbv:bt:8991234000003:PO-77"
    "sourceListtype=https://ref.gs1.org/cbv/SDT-owning_partysource=https://id.gs1.org/417/8991234000008"
    "destinationListtype=https://ref.gs1.org/cbv/SDT-owning_partydestination=https://id.gs1.org/417/8995678000006"
)

EXAMPLE_2 = {
    "type": "AggregationEvent",
    "eventTime": "2024-05-02T23:59:59.9996-05:00",
    "eventTimeZoneOffset": "-05:00",
    "parentID": "https://brand.example.com/00/189912340000000012?linkType=all",
    "childEPCs": ["https://id.gs1.org/01/08991234123455/10/LOT7/21/A%2F1"],
    "childQuantityList": [{"epcClass": "urn:epc:class:lgtin:8991234.012345.LOT7", "quantity": 12.50, "uom": "KGM"}],
    "action": "ADD",
    "bizStep": "packing",
    "readPoint": {"id": "urn:epc:id:sgln:8991234.00001.D7"},
}
PREHASH_2 = (
    "eventType=AggregationEvent"
    "eventTime=2024-05-03T05:00:00.000Z"
    "eventTimeZoneOffset=-05:00"
    "parentID=https://id.gs1.org/00/189912340000000012"
    "childEPCsepc=https://id.gs1.org/01/08991234123455/21/A%2F1"
    "childQuantityListquantityElementepcClass=https://id.gs1.org/01/08991234123455/10/LOT7quantity=12.5uom=KGM"
    "action=ADD"
    "bizStep=https://ref.gs1.org/cbv/BizStep-packing"
    "readPointid=https://id.gs1.org/414/8991234000015/254/D7"
)

EXAMPLE_3 = {
    "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"ex": NS}],
    "type": "ObjectEvent",
    "eventTime": "2024-05-01T10:00:00Z",
    "eventTimeZoneOffset": "+07:00",
    "quantityList": [{"epcClass": "urn:epc:class:lgtin:8991234.012345.LOT7", "quantity": 100, "uom": "KGM"}],
    "action": "ADD",
    "bizStep": "commissioning",
    "disposition": "active",
    "readPoint": {"id": "urn:epc:id:sgln:8991234.00001.0", "ex:gate": "G2"},
    "ilmd": {"cbvmda:lotNumber": "LOT7", "ex:harvest": {"ex:farm": "Kebun 3", "ex:day": "2024-04-30"}},
    "sensorElementList": [{
        "sensorMetadata": {"time": "2024-05-01T16:55:00+07:00", "deviceID": "urn:epc:id:giai:8991234.T1"},
        "sensorReport": [{"type": "Temperature", "value": 4.50, "uom": "CEL"},
                         {"type": "RelativeHumidity", "value": 81, "uom": "P1"}],
    }],
    "ex:grade": "A",
    "ex:tags": ["organic", "fair"],
}
PREHASH_3 = (
    "eventType=ObjectEvent"
    "eventTime=2024-05-01T10:00:00.000Z"
    "eventTimeZoneOffset=+07:00"
    "quantityListquantityElementepcClass=https://id.gs1.org/01/08991234123455/10/LOT7quantity=100uom=KGM"
    "action=ADD"
    "bizStep=https://ref.gs1.org/cbv/BizStep-commissioning"
    "disposition=https://ref.gs1.org/cbv/Disp-active"
    "readPointid=https://id.gs1.org/414/8991234000015{https://ns.example.co.id/epcis/}gate=G2"
    "sensorElementListsensorElement"
    "sensorMetadatatime=2024-05-01T09:55:00.000ZdeviceID=https://id.gs1.org/8004/8991234T1"
    "sensorReporttype=https://gs1.org/voc/RelativeHumidityvalue=81uom=P1"
    "sensorReporttype=https://gs1.org/voc/Temperaturevalue=4.5uom=CEL"
    "ilmd"
    "{https://ns.example.co.id/epcis/}harvest"
    "{https://ns.example.co.id/epcis/}day=2024-04-30{https://ns.example.co.id/epcis/}farm=Kebun 3"
    "{urn:epcglobal:cbv:mda:}lotNumber=LOT7"
    "{https://ns.example.co.id/epcis/}grade=A"
    "{https://ns.example.co.id/epcis/}tags=fair"
    "{https://ns.example.co.id/epcis/}tags=organic"
)

WORKED = [(EXAMPLE_1, PREHASH_1), (EXAMPLE_2, PREHASH_2), (EXAMPLE_3, PREHASH_3)]


@pytest.mark.parametrize("event, prehash", WORKED, ids=["shipping", "packing", "extensions"])
def test_worked_examples(event, prehash):
    validate_event(event)  # the examples are valid events
    assert event_prehash(event) == prehash
    assert event_hash_id(event) == ni(prehash)


def test_worked_examples_match_the_document():
    """docs/epcis.md shows the same pre-hash strings and hash IDs."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "epcis.md").read_text(encoding="utf-8")
    for event, prehash in WORKED:
        assert event_hash_id(event) in doc
        assert prehash in doc.replace("\n", "")


def test_hash_id_format():
    h = event_hash_id(EXAMPLE_1)
    assert h.startswith("ni:///sha-256;") and h.endswith("?ver=CBV2.0")
    assert len(h.split(";")[1].split("?")[0]) == 64


def _shuffled(obj, rng):
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(obj, list):
        items = [_shuffled(v, rng) for v in obj]
        rng.shuffle(items)  # EPCIS lists are unordered
        return items
    return obj


@pytest.mark.parametrize("event", [e for e, _ in WORKED], ids=["shipping", "packing", "extensions"])
def test_key_and_list_order_and_whitespace_do_not_matter(event):
    want = event_hash_id(event)
    rng = random.Random(7)
    for _ in range(20):
        assert event_hash_id(_shuffled(event, rng)) == want
    # JSON formatting is gone after parsing; leading/trailing whitespace in values is trimmed
    assert event_hash_id(json.loads(json.dumps(event, indent=4))) == want
    spaced = copy.deepcopy(event)
    spaced["bizStep"] = "  " + spaced["bizStep"] + "\n"
    spaced["eventTimeZoneOffset"] = " " + spaced["eventTimeZoneOffset"]
    assert event_hash_id(spaced) == want


@pytest.mark.parametrize("t", [
    "2024-05-01T08:30:00+07:00", "2024-05-01T01:30:00Z", "2024-05-01T01:30:00.000Z", "2024-05-01T01:30:00.0000001Z",
    "2024-04-30T19:30:00-06:00", "2024-05-01T01:30:00.000+00:00", "2024-05-01t01:30:00z",
])
def test_timezone_notation_does_not_matter(t):
    ev = dict(EXAMPLE_1, eventTime=t)
    assert event_hash_id(ev) == event_hash_id(EXAMPLE_1)


def test_timestamp_rounding():
    assert normalise_timestamp("2023-01-18T11:04:03.1415Z") == "2023-01-18T11:04:03.142Z"
    assert normalise_timestamp("2023-01-18T11:04:03.1414999Z") == "2023-01-18T11:04:03.141Z"
    assert normalise_timestamp("2023-12-31T23:59:59.9995Z") == "2024-01-01T00:00:00.000Z"
    assert normalise_timestamp("2024-05-01T08:30:00+07:00") == "2024-05-01T01:30:00.000Z"


def test_namespace_prefixes_do_not_matter():
    want = event_hash_id(EXAMPLE_3)
    # another prefix for the same namespace
    other = json.loads(json.dumps(EXAMPLE_3).replace('"ex:', '"acme:').replace('"ex"', '"acme"'))
    assert other["@context"][1] == {"acme": NS}
    assert event_hash_id(other) == want
    # full IRIs instead of compact ones, and the context given by the enclosing document
    full = json.loads(json.dumps(EXAMPLE_3).replace('"ex:', '"' + NS))
    del full["@context"]
    assert event_hash_id(full) == want
    doc_ctx = copy.deepcopy(EXAMPLE_3)
    ctx = doc_ctx.pop("@context")
    assert event_hash_id(doc_ctx, context=ctx) == want
    # but a different namespace is a different event
    moved = copy.deepcopy(EXAMPLE_3)
    moved["@context"][1] = {"ex": "https://ns.other.example/epcis/"}
    assert event_hash_id(moved) != want


def test_identifier_and_vocabulary_forms_do_not_matter():
    want = event_hash_id(EXAMPLE_1)
    ev = copy.deepcopy(EXAMPLE_1)
    ev["epcList"] = ["https://id.gs1.org/01/08991234123455/21/1001",
                     "https://shop.example.co.id/products/01/8991234123455/21/1002?utm=x"]  # GTIN-13 padded
    ev["readPoint"] = {"id": "https://id.gs1.org/414/8991234000015"}
    ev["bizStep"] = "urn:epcglobal:cbv:bizstep:shipping"
    ev["disposition"] = "https://ref.gs1.org/cbv/Disp-in_transit"
    ev["bizTransactionList"][0]["type"] = "urn:epcglobal:cbv:btt:po"
    ev["sourceList"][0]["type"] = "cbv:SDT-owning_party"
    assert event_hash_id(ev) == want


def test_any_change_changes_the_hash():
    want = event_hash_id(EXAMPLE_1)
    changes = [
        ("eventTime", "2024-05-01T08:30:00.001+07:00"), ("eventTimeZoneOffset", "+08:00"), ("action", "ADD"),
        ("bizStep", "receiving"), ("disposition", "in_progress"),
        ("epcList", ["urn:epc:id:sgtin:8991234.012345.1001"]),
        ("readPoint", {"id": "urn:epc:id:sgln:8991234.00001.1"}),
        ("bizLocation", {"id": "urn:epc:id:sgln:8991234.00001.0"}),
        ("example:note", "x"),
    ]
    seen = {want}
    for k, v in changes:
        h = event_hash_id(dict(EXAMPLE_1, **{k: v}))
        assert h not in seen, k
        seen.add(h)
    # fields outside the hash: eventID, recordTime, errorDeclaration
    ev = dict(EXAMPLE_1, eventID="urn:uuid:00000000-0000-4000-8000-000000000000", recordTime="2030-01-01T00:00:00Z",
              errorDeclaration={"declarationTime": "2024-05-02T00:00:00Z", "reason": "incorrect_data"})
    assert event_hash_id(ev) == want


def test_epc_to_digital_link():
    assert epc_to_digital_link("urn:epc:id:sgtin:0614141.107346.2017") == "https://id.gs1.org/01/10614141073464/21/2017"
    assert epc_to_digital_link("urn:epc:id:sscc:0614141.1234567890") == "https://id.gs1.org/00/106141412345678908"
    assert epc_to_digital_link("urn:epc:id:sgln:0614141.07346.1234") == "https://id.gs1.org/414/0614141073467/254/1234"
    assert epc_to_digital_link("urn:epc:id:grai:4012345.55555.987") == "https://id.gs1.org/8003/04012345555554987"
    assert epc_to_digital_link("urn:epc:id:giai:4000001.111") == "https://id.gs1.org/8004/4000001111"
    assert epc_to_digital_link("urn:epc:id:gdti:0614141.00001.1618034") == "https://id.gs1.org/253/06141410000121618034"
    assert epc_to_digital_link("urn:epc:class:lgtin:4012345.012345.998877") == \
        "https://id.gs1.org/01/04012345123456/10/998877"
    assert epc_to_digital_link("urn:epc:idpat:sgtin:4012345.012345.*") == "https://id.gs1.org/01/04012345123456"
    assert epc_to_digital_link("urn:epc:id:sgtin:0614141.107346.a%2Fb") == "https://id.gs1.org/01/10614141073464/21/a%2Fb"
    assert normalise_identifier("https://example.com/01/10614141073464/10/L1/21/2017?x=1") == \
        "https://id.gs1.org/01/10614141073464/21/2017"
    assert normalise_identifier("urn:uuid:1234") == "urn:uuid:1234"


# ----------------------------------------------------------- GS1 examples


@requires_shared
def test_official_examples_hash():
    """Every official example event gets a hash ID.  The same event written with EPC
    URIs and with Digital Link URIs (Example 9.6.4), or with an rdfs:comment
    (Example 9.6.1), gets the same ID; the examples' own eventIDs are placeholders
    (see the shared README) and none equals the computed ID."""
    ids = {}
    by_name = {}
    for path in sorted(EXAMPLES.rglob("*.json*")):
        doc = load(path)
        for i, ev in enumerate(events_of(doc)):
            h = event_hash_id(ev, doc.get("@context"))
            assert h.startswith("ni:///sha-256;")
            assert ev.get("eventID") != h
            ids.setdefault(h, []).append(f"{path.name}[{i}]")
            by_name[f"{path.relative_to(EXAMPLES)}[{i}]"] = h
    assert len(ids) >= 40
    assert by_name["Example_9.6.4-TransformationEvent.jsonld[0]"] == \
        by_name["WithDigitalLinkID/Example_9.6.4-TransformationEventWithDigitalLink.jsonld[0]"]
    assert by_name["Example_9.6.1-ObjectEvent.jsonld[0]"] == by_name["Example_9.6.1-with-comment.jsonld[0]"]


@requires_shared
def test_urn_cbv_example_hashes_like_its_bare_form():
    """event_with_identical_hash_id_7.json was written (with URN CBV terms) as one of 7
    representations meant to yield one hash ID; it carries no eventID of its own, so
    there is no embedded value to reproduce.  Its URN terms and their bare JSON
    forms must give the same hash ID."""
    doc = load(EXAMPLES / "WithEventHashID" / "event_with_identical_hash_id_7.json")
    ev = events_of(doc)[0]
    assert "eventID" not in ev
    bare = json.loads(json.dumps(ev))
    for k, prefix in (("bizStep", "urn:epcglobal:cbv:bizstep:"), ("disposition", "urn:epcglobal:cbv:disp:")):
        bare[k] = bare[k].removeprefix(prefix)
    for bt in bare["bizTransactionList"]:
        bt["type"] = bt["type"].removeprefix("urn:epcglobal:cbv:btt:")
    for lst in ("sourceList", "destinationList"):
        for x in bare[lst]:
            x["type"] = x["type"].removeprefix("urn:epcglobal:cbv:sdt:")
    pd = bare["persistentDisposition"]
    for k in pd:
        pd[k] = [v.removeprefix("urn:epcglobal:cbv:disp:") for v in pd[k]]
    assert "urn:epcglobal:cbv:bizstep" not in json.dumps(bare)
    assert event_hash_id(bare, doc["@context"]) == event_hash_id(ev, doc["@context"])


@pytest.mark.parametrize("text, expect", [
    ("1970-01-01T00:00:00Z", 0),
    ("2026-11-28T16:00:00.000+07:00", 1_795_856_400_000_000),
    ("2026-11-28T09:00:00Z", 1_795_856_400_000_000),
    ("2026-11-28T09:00:00z", 1_795_856_400_000_000),  # the general path (lower-case z)
    ("2026-11-28t09:00:00+00:00", 1_795_856_400_000_000),
    (" 2026-11-28T09:00:00Z ", 1_795_856_400_000_000),
    ("2026-11-28T09:00:00.1Z", 1_795_856_400_100_000),
    ("2026-11-28T09:00:00.12345Z", 1_795_856_400_123_450),
    ("2026-11-28T09:00:00.1234567Z", 1_795_856_400_123_456),  # 7 digits: truncated to µs
    ("2026-11-28T09:00:00", 1_795_856_400_000_000),  # no zone: UTC
    ("2026-13-28T09:00:00Z", None), ("2026-11-28T09:00:00+25:00", None), ("tomorrow", None), (17, None),
])
def test_timestamp_us_fast_and_general_paths_agree(text, expect):
    """``timestamp_us`` reads the plain RFC 3339 form with ``fromisoformat`` alone (issue 16) and every other
    spelling by the general path: both give the same µs (the index's eventTime postings depend on it)."""
    from rantai.client.format.epcis.event_hash import timestamp_us

    assert timestamp_us(text) == expect


def test_prehash_plan_per_shape_reads_every_event_alike():
    """``event_prehash`` keeps a rendering plan per key tuple (issue 16): the key order an event was built
    in, a shape seen before with other values, and extension keys it leaves out change nothing."""
    from rantai.client.format.epcis.event_hash import _PLANS, event_prehash

    ev = {"type": "ObjectEvent", "eventTime": "2026-11-28T16:00:00.000+07:00", "eventTimeZoneOffset": "+07:00",
          "epcList": ["urn:epc:id:sgtin:0614141.107346.1"], "action": "OBSERVE", "bizStep": "shipping",
          "ex:b": {"#text": "t", "ex:c": 2}, "ex:a": "1", "#text": "x", "@xmlns:ex": "https://ex.org/", "comment": "c"}
    again = dict(reversed(list(ev.items())))
    assert tuple(again) != tuple(ev)
    assert event_prehash(again) == event_prehash(ev)
    other = {**ev, "epcList": ["urn:epc:id:sgtin:0614141.107346.2"], "ex:a": "2"}
    assert tuple(other) in _PLANS or tuple(other) == tuple(ev)
    text = event_prehash(other)
    assert "01/10614141073464/21/2" in text and "{ex:}a=2" in text and text != event_prehash(ev)
    _PLANS.clear()
    assert event_prehash(other) == text


def test_check_digit_fast_path_is_the_int_reading():
    """``_cd`` sums ASCII digits' byte values (issue 16); it gives what ``int`` of each digit gives, for other
    scripts' digits too, and a non-digit still raises ValueError."""
    import random

    from rantai.client.format.epcis.event_hash import _cd

    def reference(digits: str) -> str:
        total = 3 * sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2]))
        return str((10 - total % 10) % 10)

    rng = random.Random(16)
    for n in [*range(20), *(rng.randint(1, 30) for _ in range(500))]:
        digits = "".join(rng.choice("0123456789") for _ in range(n))
        assert _cd(digits) == reference(digits), digits
    assert _cd("061414110734") == "6" and _cd("\u0661\u0662\u0663") == reference("123")
    with pytest.raises(ValueError):
        _cd("06141411073a")
