"""Four nodes wired in one process through httpx.ASGITransport (no sockets): the whole node path,
from POST /v1/records through PBFT to receipts that verify against the genesis alone."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from rantai.client.format.encoding import decode, encode
from rantai.client.format.receipts import Receipt
from rantai.client.http import SignedReads
from rantai.node.app import create_app
from rantai.node.driver import Node

from .conftest import make_net

pytestmark = pytest.mark.timeout(120)


class Cluster:
    def __init__(self, tmp_path, n=4):
        self.net = make_net(n, params={"batch_timeout_ms": 5})
        self.apps = {}
        self.transports = {}
        self.nodes = []
        for i, signer in enumerate(self.net.validators):
            node = Node(genesis=self.net.genesis, signer=signer, data_dir=tmp_path / f"v{i}", transport=self.transports)
            self.nodes.append(node)
            app = create_app(node, manage_lifecycle=False)
            self.apps[signer.id] = app
            self.transports[signer.id] = httpx.ASGITransport(app=app)

    async def start(self):
        for n in self.nodes:
            await n.start()

    async def stop(self):
        for n in self.nodes:
            await n.stop()

    def client(self, i):
        node = self.nodes[i]
        return httpx.AsyncClient(transport=self.transports[node.id], base_url="http://node",
                                 auth=SignedReads(self.net.acme))  # reads are signed (docs/api.md)

    async def wait_height(self, h, nodes=None, timeout=30):
        nodes = nodes or self.nodes
        for _ in range(int(timeout / 0.02)):
            if all(n.storage.height >= h for n in nodes):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"heights {[n.storage.height for n in nodes]} did not reach {h}")


def test_four_nodes_commit_and_serve_receipts(tmp_path):
    async def main():
        c = Cluster(tmp_path)
        await c.start()
        try:
            net = c.net
            records = [net.record() for _ in range(10)]
            async with c.client(2) as cl:  # submit to a backup: it gossips to the primary
                r = await cl.post("/v1/records?wait=commit&timeout_ms=20000",
                                  content=encode({"records": [x.raw for x in records[:5]]}),
                                  headers={"content-type": "application/msgpack", "accept": "application/msgpack"})
                assert r.status_code == 200, r.text
                body = decode(r.content)
                assert [e["status"] for e in body["results"]] == ["committed"] * 5
                for e in body["results"]:
                    Receipt.from_obj(e["receipt"]).verify(net.genesis)
                # JSON body and JSON receipts
                r = await cl.post("/v1/records?wait=commit", json={"records": [x.raw.hex() for x in records[5:]]})
                assert r.status_code == 200, r.text
                for e in r.json()["results"]:
                    assert e["status"] == "committed"
                    Receipt.from_json(json.dumps(e["receipt"])).verify(net.genesis)
            h = max(n.storage.height for n in c.nodes)
            await c.wait_height(h)
            for _ in range(1000):  # the mempool settles on the loop right after the block's write
                if all(len(n.mempool) == 0 for n in c.nodes):
                    break
                await asyncio.sleep(0.01)
            chains = [[n.storage.block(i) for i in range(1, h + 1)] for n in c.nodes]
            assert all(ch == chains[0] for ch in chains)
            async with c.client(3) as cl:
                r = await cl.get(f"/v1/records/{records[0].id.hex()}")
                assert r.status_code == 200
                Receipt.from_json(r.text).verify(net.genesis)
                epc = records[0].event["epcList"][0]
                r = await cl.get(f"/v1/items/{epc}/history", headers={"accept": "application/msgpack"})
                hist = decode(r.content)
                assert [Receipt.from_obj(x).record.id for x in hist["receipts"]] == [records[0].id]
                r = await cl.get("/v1/head")
                assert r.json()["height"] == h
                r = await cl.get("/v1/status")
                assert r.json()["height"] == h and r.json()["mempool"] == 0
                # replay: 409 with the committed height
                r = await cl.post("/v1/records", json={"records": [records[0].raw.hex()]})
                assert r.status_code == 409 and r.json()["error"] == "duplicate record" and r.json()["height"] >= 1
        finally:
            await c.stop()

    asyncio.run(main())
