"""Who may read what, enforced by a node (docs/api.md "Signed reads", docs/governance.md "Read policy").

Four validators in one process (httpx.ASGITransport): unsigned, stale, misdirected and non-member reads are
refused with their rule and counted in /metrics; a member removed by governance can no longer read once the
removal is in force; under ``parties`` a member sees its own records only, an auditor and validators see all.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import quote

import httpx
import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect

from rantai.client.format.encoding import decode, encode
from rantai.client.format.epcis import event_hash_id
from rantai.client.format.genesis import Genesis
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import sign_change, sign_event
from rantai.client.format.signed_requests import sign_request
from rantai.client.http import SignedReads
from rantai.consensus.crypto import Signer
from rantai.node.app import create_app
from rantai.node.driver import Node

from .conftest import event

pytestmark = pytest.mark.timeout(180)
MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}


class Cluster:
    def __init__(self, tmp_path, policy: str, prefixes: dict[str, list[str]] | None = None) -> None:
        self.validators = [Signer.from_seed(bytes([i + 1]) * 32) for i in range(4)]
        self.acme, self.kopi, self.watchdog, self.stranger = (Signer.from_seed(bytes([60 + i]) * 32) for i in range(4))
        self.genesis = Genesis.build(
            "read-policy-test",
            [(v.public_key, f"v{i}", f"http://127.0.0.1:{7100 + i}") for i, v in enumerate(self.validators)],
            [(self.acme.public_key, "acme", "Acme", ["submitter", "admin"]),
             (self.kopi.public_key, "kopi", "Kopi", ["submitter"]),
             (self.watchdog.public_key, "watchdog", "Watchdog", ["auditor"])],
            params={"batch_timeout_ms": 5, "window": 2}, approvals=1, read_policy=policy, company_prefixes=prefixes)
        self.transports: dict[str, httpx.ASGITransport] = {}
        self.nodes = [Node(genesis=self.genesis, signer=v, data_dir=tmp_path / f"v{i}", transport=self.transports)
                      for i, v in enumerate(self.validators)]
        for node in self.nodes:
            self.transports[node.id] = httpx.ASGITransport(app=create_app(node, manage_lifecycle=False))

    def client(self, reader: Signer | None, i: int = 0) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transports[self.nodes[i].id], base_url="http://node", timeout=60,
                                 auth=SignedReads(reader))

    async def commit(self, *records) -> list[Receipt]:
        async with self.client(None) as c:
            r = await c.post("/v1/records?wait=commit&timeout_ms=30000",
                             content=encode({"records": [x.raw for x in records]}), headers=MP)
        assert r.status_code == 200, r.text
        assert all("receipt" in e for e in decode(r.content)["results"]), [e.get("error")
                                                                           for e in decode(r.content)["results"]]
        return [Receipt.from_obj(e["receipt"]) for e in decode(r.content)["results"]]

    async def until(self, height: int) -> None:
        """Commit filler records until the chain is at ``height`` (so a change comes into force)."""
        while self.nodes[0].storage.height < height:
            await self.commit(sign_event(self.acme, self.genesis, event()))
        for _ in range(1500):
            if all(n.storage.height >= height for n in self.nodes):
                return
            await asyncio.sleep(0.02)


def refused(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]


def metric(text: str, rule: str) -> int:
    m = re.search(rf'^rantai_read_refused_total{{rule="{re.escape(rule)}"}} (\d+)(?:\.0)?$', text, re.M)
    assert m, text
    return int(m.group(1))


def test_members_policy_refusals_removal_and_metrics(tmp_path):
    async def main():
        c = Cluster(tmp_path, "members")
        for n in c.nodes:
            await n.start()
        try:
            [receipt] = await c.commit(sign_event(c.kopi, c.genesis, event()))
            rid = receipt.record.id.hex()
            async with c.client(None) as anon:
                for path in ("/v1/head", f"/v1/records/{rid}", "/v1/blocks/1", "/v1/changes", "/v1/genesis",
                             "/v1/config", "/epcis/events", f"/v1/items/{receipt.record.event['epcList'][0]}/history"):
                    r = await anon.get(path)
                    assert refused(r) == (401, "read.unsigned"), path
                    assert r.headers["accept-signature"].startswith('rantai=("@method" "@authority" "@path" "@query")')
                assert (await anon.get("/epcis/events")).headers["content-type"] == "application/problem+json"
                for path in ("/healthz", "/v1/status", "/metrics", "/openapi.json"):
                    assert (await anon.get(path)).status_code == 200, path
                # headers made by hand: stale, for another path, or by a stranger
                now = int(time.time())
                stale = sign_request(c.acme, "GET", "node", "http", "/v1/head", now - 301)
                assert refused(await anon.get("/v1/head", headers=stale)) == (401, "read.stale")
                elsewhere = sign_request(c.acme, "GET", "node", "http", "/v1/head", now)
                assert refused(await anon.get("/v1/blocks/1", headers=elsewhere)) == (401, "read.signature")
                other_query = sign_request(c.acme, "GET", "node", "http", "/v1/changes?to=1", now)
                assert refused(await anon.get("/v1/changes?to=2", headers=other_query)) == (401, "read.signature")
                r = await anon.get("/v1/head", headers=sign_request(c.acme, "GET", "node", "http", "/v1/head", now))
                assert r.status_code == 200
            async with c.client(c.stranger) as s:
                assert refused(await s.get("/v1/head")) == (403, "read.not-member")
            for reader in (c.acme, c.kopi, c.watchdog, c.validators[2]):
                async with c.client(reader, 1) as cl:
                    assert (await cl.get(f"/v1/records/{rid}")).status_code == 200
                    assert (await cl.get("/v1/blocks/1")).status_code == 200
                    assert len((await cl.get("/epcis/events")).json()["epcisBody"]["queryResults"]["resultsBody"]
                               ["eventList"]) == 1
            # kopi removed by governance (acme alone approves: approvals 1): refused once the removal is in force
            [change] = await c.commit(sign_change(c.acme, c.genesis, {"op": "remove_member", "member": "kopi"}))
            effective = change.height + c.genesis.params["window"] + 1
            async with c.client(c.kopi) as k:
                await c.until(effective - 2)
                assert (await k.get("/v1/head")).status_code == 200  # still a member at the next height
                await c.until(effective)
                r = await k.get(f"/v1/records/{rid}")
                assert refused(r) == (403, "read.not-member") and "removed" in r.json()["message"]
            async with c.client(None) as anon:
                text = (await anon.get("/metrics")).text
            assert metric(text, "read.unsigned") == 9 and metric(text, "read.stale") == 1
            assert metric(text, "read.signature") == 2 and metric(text, "read.not-member") == 2
            assert metric(text, "read.not-allowed") == 0
            # governance opens the chain: public from its effective height, unsigned reads served
            public = {"op": "set_read_policy", "read_policy": "public"}
            [change] = await c.commit(sign_change(c.acme, c.genesis, public))
            await c.until(change.height + c.genesis.params["window"] + 1)
            async with c.client(None, 3) as anon:
                assert (await anon.get(f"/v1/records/{rid}")).status_code == 200
                assert (await anon.get("/v1/config")).json()["read_policy"] == "public"
            async with c.client(c.kopi, 3) as k:  # a removed member's valid signature reads as anonymous
                assert (await k.get(f"/v1/records/{rid}")).status_code == 200
        finally:
            for n in c.nodes:
                await n.stop()

    asyncio.run(main())


def test_parties_policy_filters_by_reader(tmp_path):
    async def main():
        c = Cluster(tmp_path, "parties", {"acme": ["0614141"], "kopi": ["8991234"]})
        for n in c.nodes:
            await n.start()
        try:
            acme_own = sign_event(c.acme, c.genesis, event(epc="urn:epc:id:sgtin:0614141.107346.1"))
            kopi_to_acme = sign_event(c.kopi, c.genesis, {**event(epc="urn:epc:id:sgtin:8991234.012345.1"),
                                                          "readPoint": {"id": "urn:epc:id:sgln:0614141.00001.0"}})
            kopi_own = sign_event(c.kopi, c.genesis, {**event(epc="urn:epc:id:sgtin:8991234.012345.2"),
                                                      "readPoint": {"id": "urn:epc:id:sgln:8991234.00001.0"}})
            await c.commit(acme_own, kopi_to_acme, kopi_own)

            async def events(cl, query=""):
                r = await cl.get("/epcis/events" + query)
                assert r.status_code == 200, r.text
                return len(r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"])

            async with c.client(c.acme) as a:
                assert (await a.get(f"/v1/records/{acme_own.id.hex()}")).status_code == 200
                assert (await a.get(f"/v1/records/{kopi_to_acme.id.hex()}")).status_code == 200  # names acme's GLN
                assert refused(await a.get(f"/v1/records/{kopi_own.id.hex()}")) == (403, "read.not-allowed")
                assert await events(a) == 2 and await events(a, "?perPage=1") == 1
                r = await a.get("/v1/items/urn:epc:id:sgtin:8991234.012345.2/history")
                assert r.status_code == 200 and r.json()["receipts"] == []
                assert refused(await a.get("/v1/blocks/1")) == (403, "read.not-allowed")
                assert refused(await a.get("/v1/blocks?from=1")) == (403, "read.not-allowed")
                for path in ("/v1/head", "/v1/changes", "/v1/config", "/v1/genesis"):
                    assert (await a.get(path)).status_code == 200, path
            async with c.client(c.kopi) as k:
                assert await events(k) == 2
                assert refused(await k.get(f"/v1/records/{acme_own.id.hex()}")) == (403, "read.not-allowed")
                r = await k.get(f"/v1/events/{quote(event_hash_id(acme_own.event), safe='')}")
                assert refused(r) == (403, "read.not-allowed")
            for sees_all in (c.watchdog, c.validators[3]):
                async with c.client(sees_all) as w:
                    assert await events(w) == 3
                    assert (await w.get("/v1/blocks/1")).status_code == 200
                    assert (await w.get(f"/v1/records/{kopi_own.id.hex()}")).status_code == 200
            async with c.client(None) as anon:
                text = (await anon.get("/metrics")).text
            assert metric(text, "read.not-allowed") == 5
        finally:
            for n in c.nodes:
                await n.stop()

    asyncio.run(main())


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_websocket_is_a_read_too(tmp_path):
    """A subscription's WebSocket carries records: its handshake is checked like any GET (refused: 1008)."""
    from starlette.testclient import TestClient

    c = Cluster(tmp_path, "members")
    app = create_app(c.nodes[0])

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    app.api.add_api_websocket_route("/v1/test-stream", echo)
    with TestClient(app) as tc:  # its WebSocket requests go to ws://testserver
        with pytest.raises(WebSocketDisconnect) as info, tc.websocket_connect("/v1/test-stream"):
            pass
        assert info.value.code == 1008 and info.value.reason == "read.unsigned"
        signed = sign_request(c.acme, "GET", "testserver", "ws", "/v1/test-stream", int(time.time()))
        with tc.websocket_connect("/v1/test-stream", headers=signed) as ws:
            assert ws.receive_text() == "hello"
