"""The EPCIS endpoints on four in-process validators (ASGI, no sockets).

Goal: event hash IDs make capture idempotent the same way on every node; capture, lookup by
eventID and SimpleEventQuery answer per the EPCIS binding, with proofs that verify against the
genesis alone; query pages are identical across nodes. Method: drive the HTTP API of a real
4-node PBFT cluster in one process; waits are bounded polls, never timed assertions.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from rantai.client.documents import prepare_events, served_event, sign_document
from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode, encode
from rantai.client.format.epcis import event_hash_id
from rantai.client.format.errors import InvalidBlock
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import sign_event
from rantai.client.format.validity import Parent
from rantai.client.http import verify_receipt

from .conftest import Cluster
from .helpers import example_files

pytestmark = pytest.mark.timeout(120)

MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}


def ev(n: int, **kw) -> dict:
    e = {"type": "ObjectEvent", "eventTime": f"2025-0{1 + n % 9}-0{1 + n % 9}T08:00:00.000+07:00",
         "eventTimeZoneOffset": "+07:00", "epcList": [f"urn:epc:id:sgtin:0614141.107346.{n}"], "action": "OBSERVE",
         "bizStep": "shipping" if n % 2 else "receiving", "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"}}
    e.update(kw)
    return e


async def post(cl, records, wait=True):
    q = "?wait=commit&timeout_ms=20000" if wait else ""
    r = await cl.post("/v1/records" + q, content=encode({"records": [x.raw for x in records]}), headers=MP)
    return r.status_code, decode(r.content)


def test_duplicates_capture_lookup_and_query(tmp_path):
    async def main():
        c = Cluster(tmp_path)
        await c.start()
        try:
            net = c.net
            sign = lambda e: sign_event(net.acme, net.genesis, e)  # noqa: E731
            async with c.client(1) as cl:
                # -- idempotency by event hash ID ------------------------------------------------
                first = sign(ev(1))
                status, body = await post(cl, [first])
                assert status == 200 and body["results"][0]["status"] == "committed"
                again = sign(ev(1, eventID="urn:uuid:0b0e3c52-5d4b-4b8e-9d4c-1c2b3a4d5e6f"))  # eventID: not hashed
                status, body = await post(cl, [again])
                assert status == 409 and body["error"] == "duplicate event"
                assert body["existing"] == first.id.hex() and body["event_hash_id"] == event_hash_id(ev(1))
                # twice in one request, and pending under another record id
                a, b = sign(ev(2)), sign(ev(2))
                status, body = await post(cl, [a, b, sign(ev(3))])
                assert [x["status"] for x in body["results"]] == ["committed", "rejected", "committed"]
                assert body["results"][1]["error"]["error"] == "duplicate event"
                p1, p2 = sign(ev(4)), sign(ev(4))
                status, _ = await post(cl, [p1], wait=False)
                assert status == 202
                status, body = await post(cl, [p2], wait=False)
                assert status == 409 and body.get("pending") is True and body["existing"] == p1.id.hex()
                # a backup has the loser pending while the winner commits elsewhere: it drops the loser
                w1, w2 = sign(ev(5)), sign(ev(5))
                async with c.client(3) as other:
                    (s1, _), (s2, _) = await asyncio.gather(post(cl, [w1], wait=False), post(other, [w2], wait=False))
                height = await c.settle()
                for n in c.nodes:  # each event once on every node, nothing left pending anywhere
                    assert len(n.mempool) == 0
                    assert n.storage.height == height

                # -- capture: a signed official document, then again (duplicates) -----------------
                # GS1's official example when ../shared/epcis is beside the checkout, else one of ours.
                official = [p for p in example_files() if p.name == "Example_9.6.1-ObjectEvent.jsonld"]
                if official:
                    doc = json.loads(official[0].read_text())
                else:
                    from rantai.client.format.epcis.builders import commission, epcis_document, sgln, sgtin

                    doc = epcis_document([commission([sgtin("0614141", "107346", f"9{i}")], sgln("0614141", "00777"),
                                                     event_id=f"urn:uuid:6f1c2a7e-0000-4000-8000-00000000000{i}")
                                          for i in range(2)])
                signed = sign_document(doc, net.acme, net.genesis)
                jsonld = {"content-type": "application/ld+json"}
                r = await cl.post("/epcis/capture", content=json.dumps(signed), headers=jsonld)
                assert r.status_code == 202, r.text
                job = await _job(cl, r.headers["location"])
                assert job["success"] and {e["status"] for e in job["events"]} == {"recorded"}
                n_events = len(job["events"])
                resigned = sign_document(doc, net.acme, net.genesis)
                r = await cl.post("/epcis/capture", content=json.dumps(resigned), headers=jsonld)
                job2 = await _job(cl, r.headers["location"])
                assert [e["status"] for e in job2["events"]] == ["duplicate"] * n_events
                assert [e["existing"] for e in job2["events"]] == [e["record"] for e in job["events"]]
                r = await cl.post("/epcis/capture", content=json.dumps(doc), headers=jsonld)
                job3 = await _job(cl, r.headers["location"])  # unsigned: every event refused, with the reason
                assert not job3["success"] and all("unsigned" in e["error"]["message"] for e in job3["events"])
                assert job3["errors"][0]["instance"] == "/epcisBody/eventList/0"
                r = await cl.post("/epcis/capture", content=b"{", headers={"content-type": "application/json"})
                assert r.status_code == 400 and r.json()["type"] == "epcisException:ValidationException"
                r = await cl.get("/epcis/capture/nope")
                assert r.status_code == 404

                # -- GET /v1/events/{eventID}: hash ID (escaped or not) and own eventID -------------
                prepared = prepare_events(doc)
                hid = prepared[0].hash_id
                own = doc["epcisBody"]["eventList"][0]["eventID"]
                urls = (f"/v1/events/{quote(hid, safe='')}", f"/v1/events/{hid}", f"/v1/events/{quote(own, safe='')}")
                for url in urls:
                    r = await cl.get(url, headers={"accept": "application/msgpack"})
                    assert r.status_code == 200, (url, r.text)
                    receipt = Receipt.from_obj(decode(r.content))
                    verify_receipt(receipt, net.genesis)
                    assert event_hash_id(receipt.record.event) == hid == r.headers["x-rantai-event-hash-id"]
                r = await cl.get(f"/v1/events/{quote(event_hash_id(ev(999)), safe='')}")
                assert r.status_code == 404 and r.json()["error"] == "not found"

            # -- queries: identical on every node, paged, with proofs ---------------------------------
            height = await c.settle()
            queries = [
                [("eventType", "ObjectEvent"), ("perPage", "2")],
                [("EQ_bizStep", "shipping|receiving"), ("perPage", "3")],
                [("MATCH_epc", "urn:epc:idpat:sgtin:0614141.107346.*")],
                [("GE_eventTime", "2025-02-01T00:00:00Z"), ("LT_eventTime", "2025-06-01T00:00:00Z")],
                [("GE_recordTime", "2000-01-01T00:00:00Z"), ("EQ_readPoint", "urn:epc:id:sgln:0614141.07346.1234")],
                [],
            ]
            for params in queries:
                pages = []
                for i in range(4):
                    async with c.client(i) as cl:
                        pages.append(await _all(cl, params))
                # the same events, records, headers and paths everywhere; only the certificates' 2f+1
                # vote subsets may differ (each node keeps the quorum it assembled; each one verifies)
                assert all(_without_votes(p) == _without_votes(pages[0]) for p in pages), params
                docs = pages[0]
                for d in docs:
                    assert d["type"] == "EPCISQueryDocument"
                    events = d["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                    for e, proof in zip(events, d["rantai:proofs"], strict=True):
                        receipt = Receipt.from_json(json.dumps(proof["receipt"]))
                        verify_receipt(receipt, net.genesis)
                        assert served_event(receipt) == e
            n_all = sum(len(d["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) for d in await _all_one(c, []))
            assert n_all == _count_records(c)

            async with c.client(0) as cl:
                r = await cl.get("/epcis/events", params={"EQ_bizstep": "shipping"})  # case matters
                assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["type"] == "epcisException:QueryParameterException"
                r = await cl.get("/epcis/events", params={"perPage": "1"})
                token = r.headers["gs1-next-page-token"]
                assert 'rel="next"' in r.headers["link"]
                r = await cl.get("/epcis/events", params={"perPage": "2", "nextPageToken": token})
                assert r.status_code == 400 and "other query parameters" in r.json()["detail"]
                r = await cl.get("/epcis/events", params={"nextPageToken": "garbage!"})
                assert r.status_code == 400
        finally:
            await c.stop()

    asyncio.run(main())


def _without_votes(docs: list[dict]) -> list[dict]:
    out = []
    for d in docs:
        d = json.loads(json.dumps(d))
        for proof in d.get("rantai:proofs", []):
            proof["receipt"]["certificate"].pop("votes")
        out.append(d)
    return out


def _count_records(c: Cluster) -> int:
    node = c.nodes[0]
    return sum(len(node.ledger.block_json(h)["record_ids"]) for h in range(1, node.storage.height + 1))


async def _all_one(c: Cluster, params):
    async with c.client(0) as cl:
        return await _all(cl, params)


async def _all(cl, params) -> list[dict]:
    docs = []
    extra: list[tuple[str, str]] = []
    while True:
        r = await cl.get("/epcis/events", params=[*params, ("proofs", "true"), *extra])
        assert r.status_code == 200, r.text
        docs.append(r.json())
        token = r.headers.get("gs1-next-page-token")
        if not token:
            return docs
        extra = [("nextPageToken", token)]


async def _job(cl, url: str) -> dict:
    for _ in range(1500):
        r = await cl.get(url)
        assert r.status_code == 200
        job = r.json()
        if not job["running"]:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"capture job still running: {job}")


def test_proposals_repeating_an_event_are_refused(tmp_path):
    """Every honest validator refuses the same blocks: a repeated event hash within a block, or one on the chain."""

    async def main():
        c = Cluster(tmp_path, n=4)
        await c.start()
        try:
            net = c.net
            node = c.nodes[2]
            e = ev(7)
            r1, r2 = sign_event(net.acme, net.genesis, e), sign_event(net.acme, net.genesis, e)
            g = net.genesis

            def block(height, prev, records):
                return Block.build(chain=g.hash, height=height, prev_hash=prev, view=0, proposer=net.validators[0].id,
                                   timestamp=2**42, records=records)  # not below any parent's

            b = block(1, g.hash, [r1, r2])
            with pytest.raises(InvalidBlock, match="repeats the event of record 0") as err:
                await node.validator.check_block(b.raw, 1, b.hash, Parent.genesis(g))
            assert err.value.rule == "duplicate event"
            async with c.client(0) as cl:
                status, _ = await post(cl, [r1])
                assert status == 200
            await c.wait_height(1)
            height, head = node.storage.head()
            b = block(height + 1, head, [r2])
            with pytest.raises(InvalidBlock, match="is already in block 1") as err:
                await node.validator.check_block(b.raw, height + 1, b.hash, node.ledger.head_parent())
            assert err.value.rule == "duplicate event"
        finally:
            await c.stop()

    asyncio.run(main())


def test_an_event_is_corrected_once_by_an_error_declaration(tmp_path):
    """A ledger has no rollback: the EPCIS way to correct an event is to record it again with an
    errorDeclaration. That event has its original's hash ID, and is accepted once beside it; a second
    error declaration of the same event is a duplicate, and the API still shows the true hash ID."""

    async def main():
        c = Cluster(tmp_path)
        await c.start()
        try:
            net = c.net
            e = ev(41)
            declared = {**e, "errorDeclaration": {"declarationTime": "2025-03-02T09:00:00.000+07:00",
                                                  "reason": "incorrect_data"}}
            original, fix, again = (sign_event(net.acme, net.genesis, x) for x in (e, declared, declared))
            async with c.client(0) as cl:
                status, body = await post(cl, [original])
                assert status == 200, body
                status, body = await post(cl, [fix])
                assert status == 200 and "receipt" in body["results"][0], body
                status, body = await post(cl, [again])
                assert status == 409 and body["error"] == "duplicate event", body
                assert "already declared erroneous" in body["message"]
                assert body["event_hash_id"] == event_hash_id(e) == event_hash_id(declared)
        finally:
            await c.stop()

    asyncio.run(main())
