"""Builders: every output passes our validation and GS1's official JSON schema."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from epcis_testdata import requires_shared

from rantai.client.format.epcis import (
    JAKARTA,
    biz_transaction_id,
    commission,
    digital_link,
    epcis_document,
    event_hash_id,
    gdti,
    giai,
    grai,
    is_gs1_identifier,
    lgtin,
    pack,
    pgln,
    receive,
    sell,
    sgln,
    sgtin,
    ship,
    sscc,
    transform,
    unpack,
    validate_document,
    validate_event,
)

T0 = datetime(2024, 5, 1, 8, 0)  # naive: read as Asia/Jakarta
CP = "8991234"
ITEMS = [sgtin(CP, "012345", s) for s in ("1001", "1002", "A/7")]
BOX = sscc(CP, "1", extension="1")
FARM = sgln(CP, "00001")
MILL = sgln(CP, "00002", "D7")
SHOP = sgln("8995678", "00002")
SELLER = pgln(CP, "00000")
BUYER = pgln("8995678")
LOT = lgtin(CP, "012345", "LOT7")


def all_events() -> dict[str, dict]:
    return {
        "commission": commission(ITEMS, FARM, T0, lot="LOT7", best_before="2024-12-31",
                                 ilmd={"ex:variety": "robusta"}),
        "commission_quantity": commission(None, FARM, T0, quantities=[(LOT, 250, "KGM")]),
        "pack": pack(BOX, ITEMS, T0 + timedelta(hours=1), biz_location=FARM),
        "pack_quantity": pack(BOX, None, T0, child_quantities=[(LOT, 12.5, "KGM")], read_point=FARM),
        "unpack": unpack(BOX, when=T0, biz_location=SHOP),
        "ship": ship([BOX], SELLER, BUYER, T0 + timedelta(hours=2), source_location=FARM,
                     destination_location=SHOP, po="PO-77", despatch_advice="DA-1"),
        "ship_quantity": ship(None, SELLER, BUYER, T0, quantities=[(LOT, 100, "KGM")],
                              biz_transactions=[("inv", gdti(CP, "00001", "INV9"))]),
        "receive": receive([BOX], SELLER, BUYER, T0 + timedelta(days=1), destination_location=SHOP, po="PO-77"),
        "transform": transform(None, None, T0, input_quantities=[(lgtin(CP, "012345", "GREEN1"), 100, "KGM")],
                               output_quantities=[(lgtin(CP, "022222", "ROAST1"), 82.5, "KGM")],
                               biz_location=MILL, lot="ROAST1"),
        "transform_epcs": transform(ITEMS[:2], [sgtin(CP, "033333", "9")], T0,
                                    transformation_id="urn:uuid:3a6b1f3c-8d7e-4e0b-9a4c-5d2f1e0a9b8c"),
        "sell": sell([ITEMS[0]], T0, biz_location=SHOP),
        "with_extension_and_id": sell([ITEMS[1]], T0, biz_location=SHOP,
                                      extensions={"ex:till": "T3", "ex:price": {"ex:idr": 45000}}, event_id=True),
    }


EVENTS = all_events()


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_builder_output_is_valid(name):
    validate_event(EVENTS[name])


@requires_shared
@pytest.mark.parametrize("name", sorted(EVENTS))
def test_builder_output_passes_official_schema(name, official_event_validator):
    errors = [e.message for e in official_event_validator.iter_errors(EVENTS[name])]
    assert not errors


@requires_shared
def test_builder_document_passes_official_schema(official_document_validator):
    doc = epcis_document(EVENTS.values(), created=T0, context=[{"ex": "https://ns.example.co.id/epcis/"}])
    errors = [e.message for e in official_document_validator.iter_errors(doc)]
    assert not errors
    assert validate_document(doc) == len(EVENTS)


def test_what_the_builders_say():
    c = EVENTS["commission"]
    assert (c["type"], c["action"], c["bizStep"], c["disposition"]) == ("ObjectEvent", "ADD", "commissioning", "active")
    assert c["ilmd"]["cbvmda:lotNumber"] == "LOT7"
    assert c["eventTime"] == "2024-05-01T08:00:00.000+07:00" and c["eventTimeZoneOffset"] == "+07:00"
    p = EVENTS["pack"]
    assert (p["type"], p["action"], p["bizStep"], p["parentID"]) == ("AggregationEvent", "ADD", "packing", BOX)
    s = EVENTS["ship"]
    assert (s["action"], s["bizStep"], s["disposition"]) == ("OBSERVE", "shipping", "in_transit")
    assert {"type": "owning_party", "source": SELLER} in s["sourceList"]
    assert {"type": "location", "source": FARM} in s["sourceList"]
    assert {"type": "owning_party", "destination": BUYER} in s["destinationList"]
    assert {"type": "location", "destination": SHOP} in s["destinationList"]
    assert {"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:8995678000006:PO-77"} in s["bizTransactionList"]
    assert {"type": "desadv", "bizTransaction": "urn:epcglobal:cbv:bt:8991234000008:DA-1"} in s["bizTransactionList"]
    r = EVENTS["receive"]
    assert (r["bizStep"], r["disposition"], r["bizLocation"]["id"]) == ("receiving", "in_progress", SHOP)
    assert EVENTS["sell"]["bizStep"] == "retail_selling" and EVENTS["sell"]["disposition"] == "retail_sold"
    assert EVENTS["unpack"]["action"] == "DELETE"
    ev = EVENTS["with_extension_and_id"]
    assert ev["eventID"] == event_hash_id({k: v for k, v in ev.items() if k != "eventID"})


def test_time_zones():
    utc = datetime(2024, 5, 1, 1, 0, tzinfo=timezone.utc)
    assert sell(ITEMS[:1], utc)["eventTime"] == "2024-05-01T01:00:00.000+00:00"
    jkt = sell(ITEMS[:1], utc, tz=JAKARTA)
    assert (jkt["eventTime"], jkt["eventTimeZoneOffset"]) == ("2024-05-01T08:00:00.000+07:00", "+07:00")
    india = timezone(timedelta(hours=5, minutes=30))
    assert sell(ITEMS[:1], T0, tz=india)["eventTimeZoneOffset"] == "+05:30"
    west = timezone(timedelta(hours=-3))
    assert sell(ITEMS[:1], T0, tz=west)["eventTime"] == "2024-05-01T08:00:00.000-03:00"
    now = sell(ITEMS[:1])
    assert now["eventTimeZoneOffset"] == "+07:00"
    # same instant, different notation -> same hash ID
    assert event_hash_id(sell(ITEMS[:1], utc)) != event_hash_id(jkt)  # offsets differ (eventTimeZoneOffset)
    assert event_hash_id(sell(ITEMS[:1], utc.astimezone(JAKARTA))) == event_hash_id(jkt)


def test_identifier_helpers():
    assert sgtin("0614141", "107346", "2017") == "urn:epc:id:sgtin:0614141.107346.2017"
    assert sgtin("0614141", "7346", 1) == "urn:epc:id:sgtin:0614141.007346.1"
    assert sgtin(CP, "012345", "A/7") == "urn:epc:id:sgtin:8991234.012345.A%2F7"
    assert sscc("0614141", "234567890", extension="1") == "urn:epc:id:sscc:0614141.1234567890"
    assert sgln("0614141", "07346", "1234") == "urn:epc:id:sgln:0614141.07346.1234"
    assert pgln("0614141", "00777") == "urn:epc:id:pgln:0614141.00777"
    assert grai("4012345", "55555", "987") == "urn:epc:id:grai:4012345.55555.987"
    assert giai("4000001", "111") == "urn:epc:id:giai:4000001.111"
    assert gdti("0614141", "00001", "1618034") == "urn:epc:id:gdti:0614141.00001.1618034"
    assert lgtin("4012345", "012345", "998877") == "urn:epc:class:lgtin:4012345.012345.998877"
    assert digital_link(sgtin("0614141", "107346", "2017")) == "https://id.gs1.org/01/10614141073464/21/2017"
    assert biz_transaction_id(SELLER, "PO 1") == "urn:epcglobal:cbv:bt:8991234000008:PO%201"
    for uri in (ITEMS + [BOX, FARM, MILL, SELLER, LOT]):
        assert is_gs1_identifier(uri), uri
    with pytest.raises(ValueError):
        sgtin("12345", "1", "1")  # company prefix too short
    with pytest.raises(ValueError):
        sgtin(CP, "12345678", "1")  # 7 + 8 digits > 13
    with pytest.raises(ValueError):
        sgtin(CP, "012345", "x" * 21)
    with pytest.raises(ValueError):
        sgtin(CP, "012345", "caf\u00e9")
    with pytest.raises(ValueError):
        ship([BOX], None, None, po="PO-1")  # bare PO reference without a party
