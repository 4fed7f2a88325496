"""The EPCIS 2.0 REST binding's standard endpoints and headers on four in-process validators, checked
against GS1's openapi (../shared/epcis/rest/openapi.yaml, read as its JSON twin): each answer's status is
one the openapi lists for that path and method, errors are RFC 7807 problem details of the listed type,
and the headers it names are there. Random queries through HTTP (every page, with proofs) are compared
with the brute-force reference (query_reference.py) over the committed events.
"""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import quote

import pytest

from rantai.client.documents import served_event, sign_document
from rantai.client.format.encoding import encode
from rantai.client.format.epcis import event_hash_id
from rantai.client.format.epcis.event_hash import normalise_identifier
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import sign_event
from rantai.client.http import verify_receipt

from .conftest import Cluster
from .helpers import SHARED
from .query_reference import reference
from .test_query_differential import make_event, random_params

pytestmark = pytest.mark.timeout(300)
OPENAPI = SHARED / "rest" / "openapi.json"
MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}
JSONLD = {"content-type": "application/ld+json"}


def _openapi() -> dict | None:
    return json.loads(OPENAPI.read_text()) if OPENAPI.is_file() else None


def _template(path: str) -> str:
    """Our path under /epcis -> the openapi's path template."""
    p = path.split("?")[0][len("/epcis"):] or "/"
    parts = p.split("/")
    if len(parts) >= 3 and parts[1] in ("events", "capture") and parts[2]:
        return f"/{parts[1]}/{{{'eventID' if parts[1] == 'events' else 'captureID'}}}"
    names = {"eventTypes": "eventType", "epcs": "epc", "bizSteps": "bizStep", "bizLocations": "bizLocation",
             "readPoints": "readPoint", "dispositions": "disposition"}
    if len(parts) >= 3 and parts[1] in names:
        return f"/{parts[1]}/{{{names[parts[1]]}}}" + ("/events" if parts[-1] == "events" else "")
    return p.rstrip("/") or "/"


def check_openapi(spec: dict | None, method: str, path: str, r) -> None:
    """The answer is one the openapi describes: a listed status, its problem type, its headers."""
    assert r.headers.get("gs1-epcis-version") == "2.0.0" or r.status_code == 204 or r.status_code >= 400
    if spec is None:
        return
    op = spec["paths"][_template(path)][method.lower()]
    listed = dict(op["responses"])
    if method == "GET" and _template(path) == "/events":
        # The openapi lists query exceptions for /{resource}/{value}/events and /queries/{name}/events but
        # not for GET /events, which takes the same parameters: checked against the same responses.
        listed.setdefault("400", {"$ref": "#/components/responses/400QueryIssues"})
        listed.setdefault("413", {"$ref": "#/components/responses/413QueryScopeOrSize"})
    assert str(r.status_code) in listed or r.status_code == 429, (method, path, r.status_code, sorted(listed))
    if r.status_code == 429:
        return
    resp = listed[str(r.status_code)]
    if "$ref" in resp:
        resp = spec["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    for h in resp.get("headers", {}):
        if h in ("Allow", "GS1-EPCIS-Version", "GS1-CBV-Version", "Location", "GS1-EPCIS-Min", "GS1-EPCIS-Max",
                 "GS1-CBV-Min", "GS1-CBV-Max", "GS1-EPC-Format"):
            assert h.lower() in r.headers, (method, path, r.status_code, h)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), (path, r.text)
        body = r.json()
        assert {"type", "title", "status"} <= set(body) and body["status"] == r.status_code
        schema = resp["content"]["application/problem+json"]["schema"]
        enum = [x["properties"]["type"]["enum"] for x in schema.get("allOf", []) if "properties" in x]
        if enum and r.status_code != 404:  # 404: the openapi's example and enum disagree (NoSuchResource/Name)
            assert body["type"] in enum[0], (path, body["type"], enum[0])


def test_standard_endpoints_headers_and_errors(tmp_path):
    spec = _openapi()

    async def main():
        c = Cluster(tmp_path)
        await c.start()
        try:
            net = c.net
            rng = random.Random(7)
            events = [make_event(rng, n) for n in range(40)]
            records = [sign_event(net.acme, net.genesis, e) for e in events]
            async with c.client(0) as cl:
                r = await cl.post("/v1/records?wait=commit&timeout_ms=20000",
                                  content=encode({"records": [x.raw for x in records]}), headers=MP)
                assert r.status_code == 200, r.text
                height = await c.settle()

                async def call(method, path, **kw):
                    r = await cl.request(method, path, **kw)
                    check_openapi(spec, method, path, r)
                    return r

                # -- top level and discovery
                r = await call("GET", "/epcis/")
                assert r.json()["type"] == "Collection" and "events" in r.json()["member"]
                for path in ("/epcis", "/epcis/events", "/epcis/capture", "/epcis/eventTypes",
                             "/epcis/bizSteps/shipping/events"):
                    r = await call("OPTIONS", path)
                    method = "POST" if path.endswith("capture") else "GET"
                    assert r.status_code == 204 and method in r.headers["allow"], path
                    assert r.headers["gs1-epcis-min"] == "2.0.0" and r.headers["gs1-cbv-max"] == "2.0.0"
                r = await call("OPTIONS", "/epcis/events")
                assert "POST" in r.headers["allow"]
                r = await call("OPTIONS", "/epcis/capture")
                assert r.headers["gs1-capture-error-behaviour"] == "all"
                assert int(r.headers["gs1-epcis-capture-limit"]) > 0

                # -- collections and their events
                r = await call("GET", "/epcis/eventTypes")
                assert r.json()["member"] == ["ObjectEvent", "AggregationEvent", "TransactionEvent",
                                              "TransformationEvent", "AssociationEvent"]
                r = await call("GET", "/epcis/eventTypes/ObjectEvent")
                assert r.json()["member"] == ["events"]
                r = await call("GET", "/epcis/eventTypes/QuantityEvent")
                assert r.status_code == 404
                steps = (await call("GET", "/epcis/bizSteps")).json()["member"]
                assert "https://ref.gs1.org/cbv/BizStep-shipping" in steps
                r = await call("GET", "/epcis/bizSteps", params={"perPage": "1"})
                assert len(r.json()["member"]) == 1 and 'rel="next"' in r.headers["link"]
                r2 = await call("GET", "/epcis/bizSteps", params={"perPage": "1",
                                                                  "nextPageToken": r.headers["gs1-next-page-token"]})
                assert r2.json()["member"][0] > r.json()["member"][0]
                locs = (await call("GET", "/epcis/readPoints")).json()["member"]
                assert locs and all(x.startswith("https://id.gs1.org/414/") for x in locs)
                for resource, value, param in (("bizSteps", "shipping", "EQ_bizStep"),
                                               ("dispositions", "in_transit", "EQ_disposition"),
                                               ("readPoints", "urn:epc:id:sgln:0614141.07346.1234", "EQ_readPoint"),
                                               ("bizLocations", "urn:epc:id:sgln:0614141.07346.0", "EQ_bizLocation"),
                                               ("eventTypes", "AggregationEvent", "eventType")):
                    r = await call("GET", f"/epcis/{resource}/{quote(value, safe='')}")
                    assert r.json()["member"] == ["events"], (resource, r.text)
                    got = await _pages(cl, f"/epcis/{resource}/{quote(value, safe='')}/events", [])
                    same = await _pages(cl, "/epcis/events", [(param, value)])
                    assert got == same and got, resource
                r = await call("GET", "/epcis/bizSteps/decommissioning")
                assert r.status_code == 404
                r = await call("GET", "/epcis/bizSteps/shipping/events", params={"EQ_bizStep": "receiving"})
                assert r.status_code == 400
                epc = next(e["epcList"][0] for e in events if e.get("epcList"))
                got = await _pages(cl, f"/epcis/epcs/{quote(epc, safe='')}/events", [])
                assert got == await _pages(cl, "/epcis/events", [("MATCH_anyEPC", epc)]) and got

                # -- one event by its eventID (own, or hash ID), with its error declaration
                own = next(e for e in events if e.get("eventID"))
                r = await call("GET", f"/epcis/events/{quote(own['eventID'], safe='')}", params={"proofs": "true"})
                doc = r.json()
                assert doc["type"] == "EPCISQueryDocument"
                served = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                assert own["eventID"] in [e["eventID"] for e in served]
                for e, proof in zip(served, doc["rantai:proofs"], strict=True):
                    receipt = Receipt.from_json(json.dumps(proof["receipt"]))
                    verify_receipt(receipt, net.genesis)
                    assert served_event(receipt) == e
                anon = next(e for e in events if not e.get("eventID"))
                hid = event_hash_id(anon)
                r = await call("GET", f"/epcis/events/{quote(hid, safe='')}")
                listed = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                assert [e["eventID"] for e in listed] == [hid]
                declared = {**anon, "errorDeclaration": {"declarationTime": "2025-03-02T09:00:00.000+07:00",
                                                         "reason": "incorrect_data"}}
                r = await call("POST", "/epcis/events", content=json.dumps(_signed(net, declared)), headers=JSONLD)
                assert r.status_code == 201, r.text
                assert r.headers["location"] == f"/epcis/events/{quote(hid, safe='')}"
                assert r.json()["errorDeclaration"]["reason"] == "incorrect_data"
                r = await call("GET", r.headers["location"])
                listed = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                assert len(listed) == 2 and "errorDeclaration" in listed[1] and "errorDeclaration" not in listed[0]
                r = await call("GET", "/epcis/events", params={"EXISTS_errorDeclaration": "true", "EQ_eventID": hid})
                assert len(r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 1
                r = await call("GET", f"/epcis/events/{quote('urn:uuid:00000000-dead-4000-8000-000000000000')}")
                assert r.status_code == 404

                # -- POST /epcis/events: duplicates, unsigned, media type
                r = await call("POST", "/epcis/events", content=json.dumps(_signed(net, declared)), headers=JSONLD)
                assert r.status_code == 409 and r.json()["type"] == "epcisException:ResourceAlreadyExistsException"
                r = await call("POST", "/epcis/events", content=json.dumps(events[0]), headers=JSONLD)
                assert r.status_code == 400 and "unsigned" in r.json()["detail"]
                r = await call("POST", "/epcis/events", content=b"<xml/>", headers={"content-type": "application/xml"})
                assert r.status_code == 415

                # -- GS1 headers and content negotiation
                r = await call("GET", "/epcis/events", headers={"accept": "application/xml"})
                assert r.status_code == 406 and r.json()["type"] == "epcisException:NotAcceptableException"
                r = await call("GET", "/epcis/events", headers={"GS1-EPCIS-Min": "2.1.0"})
                assert r.status_code == 406
                r = await call("GET", "/epcis/events", headers={"GS1-EPCIS-Max": "1.2"})
                assert r.status_code == 406
                r = await call("GET", "/epcis/events", headers={"GS1-CBV-Min": "1.2.0", "GS1-CBV-Max": "2.0",
                                                                "GS1-EPCIS-Min": "1.0", "GS1-EPCIS-Max": "2.0.0"})
                assert r.status_code == 200
                r = await call("GET", "/epcis/events", headers={"GS1-EPC-Format": "Always_EPC_URN"})
                assert r.status_code == 406 and "company prefix" in r.json()["detail"]
                epc = next(x for e in events for x in e.get("epcList", []) if x.startswith("urn:epc:id:sgtin"))
                for fmt, want in (("Always_GS1_Digital_Link", normalise_identifier(epc)), ("Never_Translates", epc),
                                  (None, epc)):
                    r = await call("GET", "/epcis/events", params={"MATCH_epc": epc, "perPage": "1000"},
                                   headers={"GS1-EPC-Format": fmt} if fmt else {})
                    listed = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                    assert any(want in e.get("epcList", []) for e in listed), fmt
                    assert r.headers["gs1-epc-format"] == (fmt or "Never_Translates")

                # -- small departures: no time zone, unknown routes, bad parameters
                r = await call("GET", "/epcis/events", params={"GE_eventTime": "2024-05-01T08:30:00"})
                assert r.status_code == 400 and "no time zone" in r.json()["detail"]
                r = await cl.get("/epcis/nothing/here/at/all")
                assert r.status_code == 404 and r.json()["type"] == "epcisException:NoSuchResourceException"
                assert "detail" in r.json() and r.headers["content-type"].startswith("application/problem+json")
                r = await cl.delete("/epcis/events")
                assert r.status_code == 405 and r.headers["content-type"].startswith("application/problem+json")
                r = await call("GET", "/epcis/events", params={"maxEventCount": "1"})
                assert r.status_code == 413 and r.json()["type"] == "epcisException:QueryTooLargeException"
                r = await call("GET", "/epcis/events", params={"orderBy": "eventTime", "perPage": "5",
                                                               "eventCountLimit": "12"})
                assert r.status_code == 200 and "gs1-next-page-token" in r.headers

                # -- capture: rollback (the default) records nothing when one event is refused; proceed does
                good = [make_event(rng, 100 + k) for k in range(3)]
                doc = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                       "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2025-01-01T00:00:00Z",
                       "epcisBody": {"eventList": good}}
                signed = sign_document(doc, net.acme, net.genesis)
                signed["epcisBody"]["eventList"][1]["rantai:signature"]["signature"] = "00" * 64
                r = await call("POST", "/epcis/capture", content=json.dumps(signed), headers=JSONLD)
                assert r.status_code == 202
                job = await _job(cl, r.headers["location"])
                assert job["captureErrorBehaviour"] == "rollback" and not job["success"]
                assert [e["status"] for e in job["events"]] == ["rejected"] * 3
                r = await call("POST", "/epcis/capture", content=json.dumps(signed),
                               headers={**JSONLD, "GS1-Capture-Error-Behaviour": "proceed"})
                job = await _job(cl, r.headers["location"])
                assert job["captureErrorBehaviour"] == "proceed"
                assert [e["status"] for e in job["events"]] == ["recorded", "rejected", "recorded"]
                r = await call("POST", "/epcis/capture", content=json.dumps(signed),
                               headers={**JSONLD, "GS1-Capture-Error-Behaviour": "sometimes"})
                assert r.status_code == 400
                assert height > 0
        finally:
            await c.stop()

    asyncio.run(main())


def test_random_queries_over_http_match_brute_force(tmp_path):
    """A share of the differential test through the API: pages, orderBy tokens, proofs."""

    async def main():
        c = Cluster(tmp_path)
        await c.start()
        try:
            net = c.net
            rng = random.Random(77)
            records = [sign_event(net.acme, net.genesis, make_event(rng, n)) for n in range(120)]
            async with c.client(2) as cl:
                for k in range(0, len(records), 40):
                    r = await cl.post("/v1/records?wait=commit&timeout_ms=20000",
                                      content=encode({"records": [x.raw for x in records[k:k + 40]]}), headers=MP)
                    assert r.status_code == 200, r.text
            await c.settle()
            node = c.nodes[0]
            rows, by_record = [], {}
            for h in range(1, node.storage.height + 1):
                block = node.ledger.block_json(h)
                for i in range(len(block["record_ids"])):
                    receipt = node.ledger.receipt_at(h, i)
                    rows.append((h, i, receipt.record.event, receipt.header.timestamp * 1000))
                    by_record[receipt.record.id.hex()] = (h, i)
            async with c.client(1) as cl:
                for _ in range(60):
                    params = random_params(rng, rows)
                    expect = reference(params, rows)
                    per_page = str(rng.choice([2, 7, 50]))
                    r = await cl.get("/epcis/events", params=[*params, ("perPage", per_page)])
                    limit = dict(params).get("maxEventCount")
                    if limit is not None and len(expect) > int(limit):
                        assert r.status_code == 413, params
                        continue
                    assert r.status_code == 200, (params, r.text)
                    got = [by_record[x] for x in await _pages(cl, "/epcis/events", [*params, ("perPage", per_page)],
                                                              records=True)]
                    assert got == expect, params
        finally:
            await c.stop()

    asyncio.run(main())


def _signed(net, event: dict) -> dict:
    doc = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument",
           "schemaVersion": "2.0", "creationDate": "2025-01-01T00:00:00Z", "epcisBody": {"eventList": [event]}}
    return sign_document(doc, net.acme, net.genesis)["epcisBody"]["eventList"][0]


async def _pages(cl, path: str, params: list, records: bool = False) -> list:
    out, extra = [], []
    while True:
        r = await cl.get(path, params=[*params, ("proofs", "true"), *extra])
        assert r.status_code == 200, r.text
        d = r.json()
        if records:
            out += [p["record"] for p in d["rantai:proofs"]]
        else:
            out += [e["eventID"] for e in d["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]
        token = r.headers.get("gs1-next-page-token")
        if not token:
            return out
        extra = [("nextPageToken", token)]


async def _job(cl, url: str) -> dict:
    for _ in range(1500):
        r = await cl.get(url)
        job = r.json()
        if not job["running"]:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"capture job still running: {job}")
