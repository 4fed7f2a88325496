"""Every answer of the API has the error shape of docs/api.md, and nothing a client sends makes a
node answer 5xx (issue 15, item 7): deeply nested JSON, FastAPI's own 404/405/422, a forged page
token, a ``wait=commit`` cut short by shutdown, and 4,000 random or malformed requests.

Methodology: one node of a 4-validator chain in-process behind ``httpx.ASGITransport`` (so no
commit happens: admission needs no quorum), and a devnet of real processes for what only a real
server shows (uvicorn's own answers, a shutdown under a waiting request). The fuzz corpus comes from
a seeded PRNG, so a failure names a request that can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading

import httpx
import pytest

from rantai.client.format.encoding import encode
from rantai.client.format.records import SignedRecord
from rantai.node import answers
from rantai.node.admission import AdmissionConfig
from rantai.node.app import create_app
from rantai.node.driver import Node
from rantai.node.epcis_query import EventQuery
from rantai.node.paging import encode_token

from .conftest import make_net

pytestmark = pytest.mark.timeout(300)
MP = {"content-type": "application/msgpack"}
JS = {"content-type": "application/json"}
DEEP = b"[" * 100_000 + b"]" * 100_000


def in_process(tmp_path, net, body, **limits):
    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "v1", verify_workers=0)
        app = create_app(node, manage_lifecycle=False, admission=AdmissionConfig(**limits))
        await node.start()
        try:
            transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 4000))
            async with httpx.AsyncClient(transport=transport, base_url="http://n", timeout=30) as c:
                await body(node, c)
        finally:
            await node.stop()

    asyncio.run(main())


def is_error_shape(r: httpx.Response) -> bool:
    obj = r.json()
    return isinstance(obj, dict) and isinstance(obj.get("error"), str) and isinstance(obj.get("message"), str)


def test_deeply_nested_json_is_refused_with_400(tmp_path):
    net = make_net()

    async def body(node, c):
        for payload in (DEEP, b'{"records": ' + b"[" * 65 + b"]" * 65 + b"}", b'{"a":' * 5000 + b"1" + b"}" * 5000):
            r = await c.post("/v1/records", content=payload, headers=JS)
            assert r.status_code == 400 and r.json()["error"] == "encoding" and "nested" in r.json()["message"]
        r = await c.post("/v1/records", content=b'{"records": ["' + b"[" * 500 + b'"]}', headers=JS)
        assert r.status_code == 400 and "hex" in r.json()["message"]  # brackets inside a string do not nest
        r = await c.post("/v1/records", content=b"\x91" * 100_000 + b"\x00", headers=MP)
        assert r.status_code == 400 and r.json()["error"] == "encoding"
        for media in ("application/ld+json", "application/json"):
            r = await c.post("/epcis/capture", content=DEEP, headers={"content-type": media})
            assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == "epcisException:ValidationException" and "nested" in r.json()["detail"]
        assert (await c.get("/healthz")).json() == {"ok": True}

    in_process(tmp_path, net, body)


def test_json_depth_scan():
    depth = answers.json_depth
    many = b"[" * 70
    assert depth(b'{"a": [1, {"b": []}]}' + b" []" * 70) == 4
    assert depth(b'{"a": "' + many + b'", "b": []}' + b" {}" * 70) == 2  # brackets inside strings do not nest
    assert depth(b'["\\"' + many + b'"' + b", []" * 70 + b"]") == 2  # an escaped quote does not end the string
    assert depth(b"[]" * 1000) == 1 and depth(DEEP) == 100_000


def test_fastapi_answers_have_the_error_shape(tmp_path):
    net = make_net()

    async def body(node, c):
        cases = [("GET", "/nope", 404, "not found"), ("GET", "/v1/records", 405, "method not allowed"),
                 ("DELETE", "/v1/head", 405, "method not allowed"), ("GET", "/v1/blocks/abc", 400, "bad request"),
                 ("GET", "/v1/blocks/99999999999999999999999", 404, "not found")]
        for method, path, status, rule in cases:
            r = await c.request(method, path)
            as_msgpack = await c.request(method, path, headers={"accept": "application/msgpack"})
            assert r.status_code == as_msgpack.status_code
            assert r.status_code == status and is_error_shape(r) and r.json()["error"] == rule, (path, r.text)
        r = await c.get("/v1/records", headers={"accept": "application/msgpack"})
        assert r.status_code == 405 and r.headers["content-type"] == "application/msgpack"
        r = await c.get("/epcis/nothing")
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == "epcisException:NoSuchResourceException" and is_error_shape(r)
        r = await c.delete("/epcis/events")
        assert r.status_code == 405 and r.json()["type"] == "epcisException:MethodNotAllowedException"

    in_process(tmp_path, net, body)


def test_forged_page_token_above_every_head_is_400_and_a_token_from_ahead_is_503(tmp_path, monkeypatch):
    net = make_net()
    fp = EventQuery.parse([]).fingerprint()

    def token(max_height: int, h: int = 1) -> str:
        return encode_token(max_height, (h, 0), fp)

    async def body(node, c):
        r = await c.get("/epcis/events", params={"nextPageToken": token(10**9)})
        assert r.status_code == 400 and r.json()["type"] == "epcisException:QueryParameterException"
        assert "above every validator's head" in r.json()["detail"]
        r = await c.get("/epcis/events", params={"nextPageToken": token(0, h=5)})
        assert r.status_code == 400

        async def ahead():
            return {"x": 12}

        monkeypatch.setattr(node, "peer_heights", ahead)
        await asyncio.sleep(1.05)  # peer heights are asked at most once a second
        r = await c.get("/epcis/events", params={"nextPageToken": token(12)})
        assert r.status_code == 503 and is_error_shape(r)  # a peer is there: retry, or ask another node

    in_process(tmp_path, net, body)


def test_wait_for_commit_cut_short_by_shutdown_is_a_clean_503(tmp_path):
    net = make_net()

    async def body(node, c):
        rec = net.record()
        task = asyncio.create_task(c.post("/v1/records", params={"wait": "commit", "timeout_ms": "60000"},
                                          content=encode({"records": [rec.raw]}), headers=MP))
        while rec.id not in node.mempool:
            await asyncio.sleep(0.01)
        node.begin_shutdown()
        r = await asyncio.wait_for(task, 10)
        assert r.status_code == 503 and r.json()["error"] == "unavailable" and r.headers["retry-after"] == "1"
        assert r.json()["results"][0]["status"] == "accepted"

    in_process(tmp_path, net, body)


# -- fuzz -----------------------------------------------------------------------------------------

PATHS = ["/v1/records", "/v1/records/" + "ab" * 32, "/v1/records/zz", "/v1/blocks", "/v1/blocks/1", "/v1/blocks/-1",
         "/v1/head", "/v1/genesis", "/v1/items/urn:x/history", "/v1/events/ni:///sha-256;00?ver=CBV2.0",
         "/v1/status", "/healthz", "/epcis/capture", "/epcis/capture/abc", "/epcis/events", "/v1/peer/records",
         "/v1/peer/messages", "/v1/peer/stream", "/docs", "/openapi.json", "/", "/v1/%00", "/v1/blocks/1e9"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
MEDIA = ["application/msgpack", "application/json", "application/ld+json", "text/plain", "", "application/msgpack; x=1"]


def fuzz_requests(net, n: int, seed: int) -> list[tuple[str, str, dict, dict, bytes]]:
    rng = random.Random(seed)
    good = net.record()
    bad_sig = SignedRecord.from_fields({**net.record().fields, "signature": bytes(64)}).raw

    def body() -> bytes:
        kind = rng.randrange(14)
        if kind == 0:
            return rng.randbytes(rng.randrange(0, 300))
        if kind == 1:
            return encode({"records": [rng.choice([good.raw, bad_sig, rng.randbytes(40), good.raw[:-3]])
                                       for _ in range(rng.randrange(1, 20))]})
        if kind == 2:
            return json.dumps({"records": [rng.choice([good.raw.hex(), "zz", 5, None, [], {}])
                                           for _ in range(rng.randrange(0, 5))]}).encode()
        if kind == 3:
            return rng.choice([b"[", b"{", b'{"a":']) * rng.randrange(1, 3000)
        if kind == 4:
            return json.dumps({"epcisBody": {"eventList": [rng.choice([{}, 1, "x", {"type": "ObjectEvent"}])]},
                               "type": "EPCISDocument"}).encode()
        if kind == 5:
            return encode(rng.choice([{"records": []}, {"records": 1}, [1, 2], {"x": b"1"}, None, 2**63]))
        if kind == 6:
            b = bytearray(good.raw)
            for _ in range(rng.randrange(1, 5)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            return encode({"records": [bytes(b)]})
        if kind == 7:
            return b"\x00\x00\x00\x05" + rng.randbytes(rng.randrange(0, 12))  # peer-stream frames
        if kind == 8:
            return json.dumps("\ud800" if rng.random() < 0.5 else 1e309).encode(errors="surrogatepass")
        return b""

    out = []
    for _ in range(n):
        path = rng.choice(PATHS)
        if rng.random() < 0.2:
            path += "?" + rng.choice(["wait=commit&timeout_ms=0", "timeout_ms=x", "from=1&to=5000", "from=a",
                                      "perPage=0", "perPage=1001", "nextPageToken=%%%", "eventType=Nope",
                                      "GE_eventTime=yesterday", "proofs=maybe", "nextPageToken=" + "A" * 40,
                                      "MATCH_epc=" + "x" * 5000, "from=1&to=1", "wait=commit&timeout_ms=-5"])
        headers = {"content-type": rng.choice(MEDIA), "accept": rng.choice(["application/msgpack", "*/*", ""])}
        if rng.random() < 0.3:
            headers["x-rantai-sender"] = rng.choice([net.validators[0].id, "x", net.validators[1].id])
        if rng.random() < 0.3:
            headers["x-rantai-lane"] = rng.choice(["messages", "records", "votes"])
        params = {}
        method = rng.choice(METHODS) if rng.random() < 0.2 else rng.choice(["GET", "POST"])
        if method == "POST" and rng.random() < 0.6:
            path = rng.choice(["/v1/records", "/v1/records?wait=commit&timeout_ms=1", "/epcis/capture",
                               "/v1/peer/records", "/v1/peer/stream"])
        out.append((method, path, headers, params, body() if method in ("POST", "PUT", "PATCH") else b""))
    return out


def test_fuzz_4000_requests_no_5xx(tmp_path):
    net = make_net()
    corpus = fuzz_requests(net, 4000, seed=15)

    async def body(node, c):
        statuses: dict[int, int] = {}
        for k, (method, path, headers, _, content) in enumerate(corpus):
            r = await c.request(method, path, headers=headers, content=content)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (k, method, path, headers, content[:200], r.status_code, r.text[:300])
            if r.status_code >= 400 and method != "HEAD":
                if r.headers.get("content-type", "").startswith("application/msgpack"):
                    continue
                assert is_error_shape(r), (k, method, path, r.status_code, r.text[:300])
        assert (await c.get("/healthz")).json() == {"ok": True}
        assert statuses.get(429, 0) > 0 and statuses.get(400, 0) > 0, statuses  # it reaches the limits and the rules

    in_process(tmp_path, net, body, refused_burst=50, refused_per_s=0.001)  # no refill to speak of: no timing


# -- a real process ---------------------------------------------------------------------------------


def test_real_process_answers_malformed_requests_and_shuts_down_cleanly_under_a_wait(tmp_path):
    from .procs import make_devnet, wait_until

    net = make_devnet(tmp_path)
    try:
        url = net.urls[0]
        with httpx.Client(base_url=url, timeout=30) as c:
            for method, path, content, headers in (
                ("POST", "/v1/records", DEEP, JS),
                ("POST", "/epcis/capture", DEEP, {"content-type": "application/ld+json"}),
                ("GET", "/nope", b"", {}), ("PUT", "/v1/head", b"", {}), ("GET", "/v1/blocks/x", b"", {}),
                ("POST", "/v1/peer/stream", b"\x00\x00\x00\x01", {"x-rantai-lane": "messages"}),
                ("POST", "/v1/records", b"\xc1" * 1000, MP),
            ):
                r = c.request(method, path, content=content, headers=headers)
                assert 400 <= r.status_code < 500 and is_error_shape(r), (path, r.status_code, r.text[:200])
        # No quorum (two of four down), so a wait for commit is still waiting when the node is stopped.
        net.kill(2)
        net.kill(3)
        genesis = net.genesis
        from rantai.client.format.records import sign_event

        from .conftest import event

        rec = sign_event(net.member_key("acme"), genesis, event())
        out: dict[str, httpx.Response] = {}

        def waiting():
            out["r"] = httpx.post(url + "/v1/records", params={"wait": "commit", "timeout_ms": "60000"},
                                  content=encode({"records": [rec.raw]}), headers=MP, timeout=60)

        t = threading.Thread(target=waiting)
        t.start()
        wait_until("the record to be pending", lambda: httpx.get(url + "/v1/status", timeout=5).json()["mempool"] >= 1,
                   timeout=30)
        net.procs[0].send_signal(signal.SIGTERM)
        t.join(timeout=30)
        r = out["r"]
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
        assert net.procs[0].wait(timeout=30) == 0
    finally:
        net.stop()
