"""The EPCIS indexes over LevelDB, without nodes: query planning against brute force, time buckets,
hash-ID index determinism, and that a selective query reads only its own postings.

Goal: every SimpleEventQuery the node answers from its postings returns exactly the events a
scan of the whole chain would, in chain order, with paging that neither repeats nor skips.
Method: a ledger of ~400 generated events (varied types, steps, locations, EPC forms, times,
record times) and ~300 random queries compared with a brute-force filter.
"""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from rantai.client.format.blocks import Block
from rantai.client.format.epcis import event_hash_id, validate_event
from rantai.client.format.records import sign_event
from rantai.consensus.certificate import CommitCertificate
from rantai.node import epcis_index as ix
from rantai.node import epcis_query as qx
from rantai.node.ledger import Ledger
from rantai.node.storage import Storage

from .helpers import make_net

STEPS = ["shipping", "receiving", "packing", "commissioning"]
DISPS = ["in_transit", "in_progress", "active"]
LOCS = ["urn:epc:id:sgln:0614141.07346.1234", "urn:epc:id:sgln:0614141.07346.0", "urn:epc:id:sgln:8991234.00001.0"]
GTINS = [("0614141", "107346"), ("0614141", "107347"), ("8991234", "012345")]
DAY = 86_400


def _epc(rng: random.Random) -> str:
    cp, ir = rng.choice(GTINS)
    return f"urn:epc:id:sgtin:{cp}.{ir}.{rng.randint(1, 40)}"


def _time(sec: int, rng: random.Random) -> str:
    from datetime import datetime, timedelta, timezone

    off = rng.choice([0, 7, -5])
    t = datetime.fromtimestamp(sec, tz=timezone.utc).astimezone(timezone(timedelta(hours=off)))
    return t.isoformat(timespec="milliseconds")


def make_event(rng: random.Random, n: int) -> dict:
    sec = 1_700_000_000 + rng.randint(0, 400 * DAY)
    kind = rng.choice(["ObjectEvent", "ObjectEvent", "AggregationEvent", "TransformationEvent"])
    off = rng.choice(["+07:00", "+00:00", "-05:00"])
    ev: dict = {"type": kind, "eventTime": _time(sec, rng), "eventTimeZoneOffset": off}
    if kind == "ObjectEvent":
        ev["epcList"] = sorted({_epc(rng) for _ in range(rng.randint(1, 3))})
        ev["action"] = rng.choice(["ADD", "OBSERVE", "DELETE"])
    elif kind == "AggregationEvent":
        ev["parentID"] = f"urn:epc:id:sscc:0614141.{n:010d}"
        ev["childEPCs"] = sorted({_epc(rng) for _ in range(rng.randint(1, 3))})
        ev["action"] = rng.choice(["ADD", "OBSERVE"])
    else:
        ev["inputEPCList"] = sorted({_epc(rng) for _ in range(2)})
        ev["outputEPCList"] = [f"urn:epc:id:sgtin:8991234.012345.9{n}"]
    if rng.random() < 0.8:
        ev["bizStep"] = rng.choice(STEPS)
    if rng.random() < 0.6:
        ev["disposition"] = rng.choice(DISPS)
    if rng.random() < 0.8:
        ev["readPoint"] = {"id": rng.choice(LOCS)}
    if rng.random() < 0.5:
        ev["bizLocation"] = {"id": rng.choice(LOCS)}
    ev["ex:n"] = n  # unique content: no two events share a hash ID
    validate_event(ev)
    return ev


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    net = make_net()
    rng = random.Random(6)
    st = Storage(tmp_path_factory.mktemp("ix") / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    rows = []  # (height, index, event, record_time_us)
    prev = net.genesis.hash
    n = 0
    for height in range(1, 41):
        ts = 1_700_000_000_000 + height * 3_600_000 + rng.randint(-1000, 1000) * 1000  # not monotone
        records = []
        for _ in range(rng.randint(5, 15)):
            records.append(sign_event(net.acme, net.genesis, make_event(rng, n)))
            n += 1
        block = Block.build(chain=net.genesis.hash, height=height, prev_hash=prev, view=0,
                            proposer=net.validators[0].id, timestamp=ts, records=records)
        ledger.apply(block, CommitCertificate(height, 0, block.hash, (("a" * 16, b"s" * 64),)))
        prev = block.hash
        rows += [(height, i, r.event, ts * 1000) for i, r in enumerate(records)]
    yield st, ledger, rows
    st.close()


def _load(rows):
    by_loc = {(h, i): (ev, rt, (h, i)) for h, i, ev, rt in rows}
    return lambda h, i: by_loc.get((h, i))


def _all_pages(st, q, rows, max_height=10**9):
    out, start = [], (0, 0)
    while True:
        found, resume, _ = qx.run_query(st.db, q, start=start, max_height=max_height, load=_load(rows))
        out += [(h, i) for h, i, _ in found]
        if resume is None:
            return out
        assert resume > (out[-1] if out else (0, 0))
        start = resume


def _random_params(rng: random.Random, rows) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    pick = rng.sample(["eventType", "EQ_action", "EQ_bizStep", "EQ_disposition", "EQ_readPoint", "EQ_bizLocation",
                       "MATCH_epc", "MATCH_anyEPC", "MATCH_parentID", "MATCH_inputEPC", "MATCH_outputEPC",
                       "eventTime", "recordTime"], rng.randint(1, 3))
    for p in pick:
        if p == "eventType":
            params.append((p, "|".join(rng.sample(qx.EVENT_TYPES[:4], rng.randint(1, 2)))))
        elif p == "EQ_action":
            params.append((p, rng.choice(["ADD", "OBSERVE", "DELETE", "ADD|DELETE"])))
        elif p == "EQ_bizStep":  # the three spellings of a CBV term agree
            s = rng.choice(STEPS)
            params.append((p, rng.choice([s, f"urn:epcglobal:cbv:bizstep:{s}", f"https://ref.gs1.org/cbv/BizStep-{s}"])))
        elif p == "EQ_disposition":
            params.append((p, rng.choice(DISPS)))
        elif p in ("EQ_readPoint", "EQ_bizLocation"):
            loc = rng.choice(LOCS)
            params.append((p, loc if rng.random() < 0.7 else ix.norm_id(loc)))  # EPC URI or Digital Link
        elif p == "MATCH_parentID":
            params.append((p, rng.choice([r[2].get("parentID") for r in rows if r[2].get("parentID")])))
        elif p.startswith("MATCH_"):
            if rng.random() < 0.3:
                cp, ir = rng.choice(GTINS)
                params.append((p, f"urn:epc:idpat:sgtin:{cp}.{ir}.*"))
            else:
                e = _epc(rng)
                params.append((p, e if rng.random() < 0.7 else ix.norm_id(e)))
        else:
            if p == "eventTime":
                lo = 1_700_000_000 + rng.randint(0, 400 * DAY)
                width = rng.choice([3600, DAY, 30 * DAY, 200 * DAY])
            else:
                lo = 1_700_000_000 + rng.randint(0, 41 * 3600)
                width = rng.choice([1800, 5 * 3600, 20 * 3600])
            which = rng.choice(["GE", "LT", "both"])
            if which in ("GE", "both"):
                params.append((f"GE_{p}", _time(lo, rng)))
            if which in ("LT", "both"):
                params.append((f"LT_{p}", _time(lo + width, rng)))
    return params


def test_queries_match_brute_force(chain):
    st, _, rows = chain
    rng = random.Random(61)
    nonempty = 0
    for _ in range(300):
        params = _random_params(rng, rows)
        per_page = rng.choice([1, 3, 7, 50, 1000])
        q = qx.EventQuery.parse(params + [("perPage", str(per_page))])
        expect = [(h, i) for h, i, ev, rt in rows if q.accepts(ev, rt)]
        got = _all_pages(st, q, rows)
        assert got == expect, params
        nonempty += bool(expect)
    assert nonempty > 100  # the generator makes queries that find something


def test_accepts_is_the_reference(chain):
    """The brute-force reference itself, checked on hand-picked cases."""
    _, _, rows = chain
    ev = {"type": "ObjectEvent", "eventTime": "2024-05-01T08:30:00+07:00", "eventTimeZoneOffset": "+07:00",
          "epcList": ["urn:epc:id:sgtin:0614141.107346.2018"], "action": "OBSERVE", "bizStep": "shipping",
          "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"}}
    P = qx.EventQuery.parse
    assert P([("MATCH_epc", "https://id.gs1.org/01/10614141073464/21/2018")]).accepts(ev, 0)
    assert P([("MATCH_epc", "urn:epc:idpat:sgtin:0614141.107346.*")]).accepts(ev, 0)
    assert not P([("MATCH_epc", "urn:epc:idpat:sgtin:0614141.107347.*")]).accepts(ev, 0)
    assert P([("EQ_bizStep", "urn:epcglobal:cbv:bizstep:shipping")]).accepts(ev, 0)
    assert P([("GE_eventTime", "2024-05-01T01:30:00Z"), ("LT_eventTime", "2024-05-01T01:30:00.001Z")]).accepts(ev, 0)
    assert not P([("LT_eventTime", "2024-05-01T01:30:00Z")]).accepts(ev, 0)
    assert not P([("MATCH_parentID", "urn:epc:id:sgtin:0614141.107346.2018")]).accepts(ev, 0)
    assert P([("MATCH_anyEPC", "urn:epc:id:sgtin:0614141.107346.2018")]).accepts(ev, 0)


def test_selective_query_reads_only_its_postings(chain):
    st, _, rows = chain
    parent = next(r[2]["parentID"] for r in rows if r[2].get("parentID"))
    q = qx.EventQuery.parse([("MATCH_parentID", parent)])
    found, resume, reads = qx.run_query(st.db, q, start=(0, 0), max_height=10**9, load=_load(rows))
    assert len(found) == 1 and resume is None
    assert reads <= 2  # one posting, not a scan of the ~400 events


def test_max_height_bounds_a_query(chain):
    st, _, rows = chain
    q = qx.EventQuery.parse([("eventType", "ObjectEvent")])
    got = _all_pages(st, q, rows, max_height=10)
    assert got and all(h <= 10 for h, _ in got)
    assert got == [(h, i) for h, i, ev, _ in rows if h <= 10 and ev["type"] == "ObjectEvent"]


def test_hash_and_event_id_index(chain):
    st, ledger, rows = chain
    h, i, ev, _ = rows[17]
    digest = ix.parse_hash_id(event_hash_id(ev))
    rid, hh, ii = ix.lookup_hash(st.db, digest)
    assert (hh, ii) == (h, i) and ledger.receipt_at(h, i).record.id == rid


@pytest.mark.parametrize("lo,hi", [(None, None), (0, 10), (1_700_000_000_123_456, 1_700_000_000_123_457),
                                   (1_700_000_000_000_000, 1_734_000_000_000_000), (None, 1_700_000_000_000_000),
                                   (1_600_000_000_500_000, None)])
def test_time_buckets_cover_exactly(lo, hi):
    buckets = qx.time_buckets(lo, hi)
    assert len(buckets) <= 5 * 32
    spans = sorted(((b << lv) * 1_000_000, ((b + 1) << lv) * 1_000_000, exact) for lv, b, exact in buckets)
    for (_, a1, _), (b0, _, _) in pairwise(spans):
        assert a1 == b0  # contiguous, no overlap
    assert spans[0][0] <= (lo or 0) and (hi is None or spans[-1][1] >= hi)
    for a, b, exact in spans:  # exact buckets lie inside the range
        if exact:
            assert (lo is None or a >= lo) and (hi is None or b <= hi)


def test_unknown_and_bad_parameters():
    for params in ([("foo", "1")], [("EQ_action", "MOVE")], [("eventType", "QuantityEvent")],
                   [("GE_eventTime", "yesterday")], [("perPage", "0")], [("perPage", "x")],
                   [("MATCH_epc", "urn:epc:idpat:sgtin:0614141.*.7")], [("MATCH_epc", "a*")],
                   [("GE_eventTime", "2024-01-01T00:00:00")], [("eventCountLimit", "3")], [("orderDirection", "UP")],
                   [("EQ_bizStep", "")]):
        with pytest.raises(qx.QueryParameterError):
            qx.EventQuery.parse(params)


def test_first_record_keeps_a_repeated_hash(tmp_path):
    """Validation refuses such blocks; if one is stored anyway, the index is the same on every node."""
    net = make_net()
    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    ev = make_event(random.Random(1), 1)
    r1, r2 = sign_event(net.acme, net.genesis, ev), sign_event(net.acme, net.genesis, ev)
    b = Block.build(chain=net.genesis.hash, height=1, prev_hash=net.genesis.hash, view=0,
                    proposer=net.validators[0].id, timestamp=1, records=[r1, r2])
    seen = []
    st.on_commit.append(lambda h, hashed: seen.append(hashed))
    ledger.apply(b, CommitCertificate(1, 0, b.hash, (("a" * 16, b"s" * 64),)))
    assert ix.lookup_hash(st.db, ix.record_digest(r1))[0] == r1.id
    assert seen == [[(ix.record_digest(r1), r1.id)]]
    st.close()


def test_record_time_is_posted_per_block_and_an_older_index_is_upgraded(tmp_path):
    """recordTime costs 5 keys per block, not per record; a store indexed the older way (per record,
    field R) is upgraded when a Ledger opens it, and answers recordTime queries as before."""
    net = make_net()
    rng = random.Random(9)
    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    rows, prev, n = [], net.genesis.hash, 0
    for height in range(1, 9):
        ts = 1_700_000_000_000 + height * 3_600_000
        records = [sign_event(net.acme, net.genesis, make_event(rng, n + k)) for k in range(rng.randint(3, 6))]
        n += len(records)
        block = Block.build(chain=net.genesis.hash, height=height, prev_hash=prev, view=0,
                            proposer=net.validators[0].id, timestamp=ts, records=records)
        ledger.apply(block, CommitCertificate(height, 0, block.hash, (("a" * 16, b"s" * 64),)))
        prev = block.hash
        rows += [(height, i, r.event, ts * 1000) for i, r in enumerate(records)]
    posted = list(st.db.iterator(prefix=ix.POSTING + ix.F_BLOCK_TIME, include_value=False))
    assert len(posted) == 8 * len(ix.LEVELS)  # per block, not per record
    assert not list(st.db.iterator(prefix=ix.POSTING + ix.F_RECORD_TIME, include_value=False))

    queries = [[("GE_recordTime", _time(1_700_000_000 + 3 * 3600, rng))],
               [("LT_recordTime", _time(1_700_000_000 + 5 * 3600 + 1, rng)), ("eventType", "ObjectEvent")],
               [("GE_recordTime", _time(1_700_000_000 + 2 * 3600, rng)),
                ("LT_recordTime", _time(1_700_000_000 + 7 * 3600, rng))]]

    def check() -> None:
        for params in queries:
            q = qx.EventQuery.parse(params)
            expect = [(h, i) for h, i, ev, rt in rows if q.accepts(ev, rt)]
            assert expect and _all_pages(st, q, rows) == expect, params

    check()
    # Rewrite the index as the older version had it: recordTime per record (R), no B, no version.
    with st.db.write_batch() as wb:
        for k in posted:
            wb.delete(k)
        for h, i, _, rt in rows:
            for k, v in ix._time_entries(ix.F_RECORD_TIME, rt, ix._LOC.pack(h, i)):
                wb.put(k, v)
        wb.delete(b"mepcis-index")
    Ledger(net.genesis, st)  # opening upgrades it
    assert not list(st.db.iterator(prefix=ix.POSTING + ix.F_RECORD_TIME, include_value=False))
    assert sorted(st.db.iterator(prefix=ix.POSTING + ix.F_BLOCK_TIME, include_value=False)) == sorted(posted)
    check()
    assert ix.upgrade(st.db, []) is False  # and only once
    st.close()


def test_posting_values_round_trip():
    """A block's record indices (and times) as one posting value: u16 below 65,535, u32 from there."""
    from rantai.node.postings import group, pack_indices, unpack_indices

    for ix_, ts in (([0], ()), ([3, 9, 65_534], ()), ([1, 65_535], ()), ([0, 70_000, 2**31], ()),
                    ([2, 5], (1_700_000_000_000_000, 0)), ([4, 100_000], (7, 8))):
        value = pack_indices(ix_, ts)
        assert unpack_indices(value, timed=bool(ts)) == (tuple(ix_), tuple(ts))
    assert len(pack_indices([3, 9, 65_534])) == 6
    assert group([(b"a", 1), (b"b", 1), (b"a", 1), (b"a", 4)]) == {b"a": [1, 4], b"b": [1]}
    assert group([(b"a", 4), (b"a", 1), (b"a", 4)]) == {b"a": [1, 4]}


def test_postings_per_block_and_a_version_3_index_is_upgraded(tmp_path):
    """A block writes one posting key per distinct value (and one item history key per item), whatever the
    number of its records that have it; a store indexed per (value, record) as version 3 did is re-indexed
    when a Ledger opens it, to exactly the keys a new store holds, and answers as before."""
    from rantai.client.format.epcis.event_hash import timestamp_us
    from rantai.client.format.epcis.items import event_identifiers
    from rantai.node.storage import ITEM, item_key

    net = make_net()
    rng = random.Random(12)
    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    rows, prev, n = [], net.genesis.hash, 0
    for height in range(1, 7):
        ts = 1_700_000_000_000 + height * 3_600_000
        records = [sign_event(net.acme, net.genesis, make_event(rng, n + k)) for k in range(rng.randint(20, 40))]
        n += len(records)
        block = Block.build(chain=net.genesis.hash, height=height, prev_hash=prev, view=0,
                            proposer=net.validators[0].id, timestamp=ts, records=records)
        ledger.apply(block, CommitCertificate(height, 0, block.hash, (("a" * 16, b"s" * 64),)))
        prev = block.hash
        rows += [(height, i, r.event, ts * 1000) for i, r in enumerate(records)]

    def index() -> dict[bytes, bytes]:
        return {k: v for p in (ix.POSTING, ix.VALUES, ITEM) for k, v in st.db.iterator(prefix=p)}

    new = index()
    step_keys = [k for k in new if k.startswith(ix.POSTING + ix.F_STEP + ix._vkey(ix.norm_term("shipping", "bizStep")))]
    shipping_heights = {h for h, _, ev, _ in rows if ev.get("bizStep") == "shipping"}
    assert len(step_keys) == len(shipping_heights) > 0  # one key per block, not per record
    item = _epc(random.Random(1))
    expect_item = [(h, i) for h, i, ev, _ in rows if item in event_identifiers(ev)]
    assert expect_item and st.item_locations(item) == expect_item
    assert st.item_locations(item, 2, expect_item[1]) == expect_item[1:3]  # a page from a loc inside a block
    assert st.item_locations(item, max_height=expect_item[-1][0] - 1) == [
        x for x in expect_item if x[0] < expect_item[-1][0]]
    queries = [[("EQ_bizStep", "shipping")], [("GE_eventTime", _time(1_700_000_000 + 100 * DAY, rng))],
               [("MATCH_epc", item)], [("eventType", "AggregationEvent"), ("perPage", "3")]]

    def check() -> None:
        for params in queries:
            q = qx.EventQuery.parse(params)
            expect = [(h, i) for h, i, ev, rt in rows if q.accepts(ev, rt)]
            assert expect and _all_pages(st, q, rows) == expect, params
        assert st.item_locations(item) == expect_item

    check()
    # Rewrite the postings and item keys as version 3 had them: one key per (value, record), no version.
    with st.db.write_batch() as wb:
        for k in new:
            if not k.startswith(ix.POSTING + ix.F_BLOCK_TIME):
                wb.delete(k)
        for h, i, ev, _ in rows:
            loc = ix._LOC.pack(h, i)
            for f, v in ix.event_postings(ev):
                wb.put(ix.POSTING + f + ix._vkey(v) + loc, b"")
            t = timestamp_us(ev.get("eventTime"))
            for k, v in ix._time_entries(ix.F_EVENT_TIME, t, loc):
                wb.put(k, v)
            for it in event_identifiers(ev):
                wb.put(ITEM + item_key(it) + loc, b"")
        wb.delete(b"mepcis-index")
    Ledger(net.genesis, st)  # opening upgrades it
    assert index() == new
    check()
    st.close()


def test_postings_single_pass_match_the_field_by_field_reading():
    """``event_postings`` (one pass over the event's fields, issue 16) posts exactly what the former
    field-by-field reading did, for generated events of every shape and the demo's journeys."""
    from datetime import datetime, timezone

    from rantai.client.bench import shipment_event
    from rantai.client.demo import journey

    from .postings_reference import reference_identifier_postings, reference_postings
    from .test_query_differential import make_event

    rng = random.Random(16)
    events = [make_event(rng, n) for n in range(3000)] + [shipment_event(n, 300) for n in range(5)]
    start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    events += [step.event for run in range(4) for step in journey(f"{run:05d}", start)[0]]
    events.append({"type": "ObjectEvent", "@context": [{"ex": "https://ex.org/"}], "ex:a": [{"ex:b": 1, "@id": "x"}, 2],
                   "comment": "c", "ilmd": {"ex:lot": "L1", "rdfs:comment": "n", "ex:o": {"ex:p": True}},
                   "parentID": "urn:epc:id:sscc:0614141.1234567890", "errorDeclaration": {"reason": "incorrect_data"}})
    for ev in events:
        fast = ix.event_postings(ev)
        assert len(fast) == len(set(fast))
        assert set(fast) == set(reference_postings(ev)), ev
        assert set(ix.identifier_postings(ev)) == set(reference_identifier_postings(ev)), ev


def test_index_entries_do_not_read_the_hash_index():
    """Committing a block reads no ``e`` key per record (issue 16): the ``duplicate event`` rule was met
    before the block is stored. The entries are those of an empty index (catch-up's), a hash ID repeated
    inside the block still keeps its first record."""
    from rantai.node.ledger import NO_INDEX

    net = make_net()
    rng = random.Random(3)
    records = [sign_event(net.acme, net.genesis, make_event(rng, n)) for n in range(12)]
    records.append(sign_event(net.acme, net.genesis, records[0].event))  # the same event again

    class Spy:
        def __init__(self) -> None:
            self.keys: list[bytes] = []

        def get(self, key: bytes) -> None:
            self.keys.append(key)

    spy = Spy()
    puts, fresh = ix.index_entries(spy, 7, 1_700_000_000_000, records)
    assert spy.keys and all(k.startswith(ix.VALUES) for k in spy.keys)
    assert (puts, fresh) == ix.index_entries(NO_INDEX, 7, 1_700_000_000_000, records)
    d0 = ix.record_digest(records[0])
    assert [v for k, v in puts if k == ix.HASH + d0] == [records[0].id + ix._LOC.pack(7, 0)]
    assert [d for d, _ in fresh].count(d0) == 1
