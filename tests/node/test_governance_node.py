"""Governance through real validators (in process, no sockets): a member joins by proposal and
approval and only then records; a member is removed and its next record is refused (403, with the
rule) while its old receipt still verifies offline with the genesis alone; refusals name their rule.

Method: four validators with a small pipelining window (so changes are in force three blocks after
their approval), three admins (majority: two approvals); records go in through POST /v1/records.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from rantai.client.format.encoding import decode, encode
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import POSSESSION_KIND, possession_body
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import sign_change, sign_event
from rantai.consensus.crypto import Signer
from rantai.node.app import create_app
from rantai.node.driver import Node

MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}


def seeded(label: str) -> Signer:
    return Signer.from_seed(hashlib.sha256(label.encode()).digest())


def event(n: int) -> dict:
    return {"type": "ObjectEvent", "eventTime": f"2025-03-0{1 + n % 9}T08:00:{n % 60:02d}.000+07:00",
            "eventTimeZoneOffset": "+07:00", "epcList": [f"urn:epc:id:sgtin:0614141.107346.{n}"],
            "action": "OBSERVE", "bizStep": "shipping", "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"}}


class Cluster:
    def __init__(self, tmp_path) -> None:
        self.validators = [seeded(f"gn-v{i}") for i in range(4)]
        self.people = {n: seeded(f"gn-{n}") for n in ("tani", "kopi", "pasar", "acme")}
        admins = ("tani", "kopi", "pasar")
        self.genesis = Genesis.build(
            "gov-node-test",
            [(v.public_key, f"v{i}", f"http://127.0.0.1:{7900 + i}") for i, v in enumerate(self.validators)],
            [(self.people[n].public_key, n, n.title(), ["admin"]) for n in admins]
            + [(self.people["acme"].public_key, "acme", "Acme", ["submitter"])],
            params={"window": 2, "batch_timeout_ms": 5},
        )
        self.transports: dict[str, httpx.ASGITransport] = {}
        self.filler = 1000  # events of filler records: each distinct
        self.nodes = []
        for i, signer in enumerate(self.validators):
            node = Node(genesis=self.genesis, signer=signer, data_dir=tmp_path / f"v{i}", transport=self.transports)
            self.nodes.append(node)
            self.transports[signer.id] = httpx.ASGITransport(app=create_app(node, manage_lifecycle=False))

    def client(self, i: int = 0) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transports[self.nodes[i].id], base_url="http://node", timeout=60)

    async def post(self, records, i: int = 0):
        async with self.client(i) as cl:
            r = await cl.post("/v1/records?wait=commit&timeout_ms=20000",
                              content=encode({"records": [x.raw for x in records]}), headers=MP)
            body = decode(r.content)
            # A request refused as a whole answers the error itself, with its status.
            return r.status_code, body if "results" in body else {"results": [body]}

    async def advance_to(self, height: int) -> None:
        """Commit filler records until every node is at ``height`` or above."""
        while min(node.storage.height for node in self.nodes) < height:
            self.filler += 1
            status, body = await self.post([sign_event(self.people["acme"], self.genesis, event(self.filler))])
            assert status == 200, body
            await asyncio.sleep(0.05)


def test_join_remove_and_refusals(tmp_path):
    async def main():
        c = Cluster(tmp_path)
        for n in c.nodes:
            await n.start()
        try:
            g, people = c.genesis, c.people
            cafe = seeded("gn-cafe")
            proof = cafe.sign(POSSESSION_KIND, g.hash, possession_body(g.hash, "cafe", cafe.public_key))
            proposal = sign_change(people["tani"], g, {"op": "add_member", "name": "cafe", "organisation": "Kafe",
                                                       "public_key": cafe.public_key, "roles": ["submitter"],
                                                       "proof": proof})
            # A non-admin's proposal is refused at admission with its rule.
            status, body = await c.post([sign_change(people["acme"], g, {"op": "remove_member", "member": "tani"})])
            assert status == 403 and body["results"][0]["error"] == "not an admin", body
            status, body = await c.post([proposal])
            assert status == 200 and "receipt" in body["results"][0], body
            await c.advance_to(body["results"][0]["height"])  # every validator has the proposal now
            sale = sign_event(cafe, g, event(1))
            status, body = await c.post([sale])
            assert body["results"][0]["error"] == "unknown member", body  # not yet a member
            # tani cannot approve its own proposal again
            status, body = await c.post([sign_change(people["tani"], g, {"op": "approve", "proposal": proposal.id})])
            assert body["results"][0]["error"] == "approved twice", body
            status, body = await c.post([sign_change(people["kopi"], g, {"op": "approve", "proposal": proposal.id})],
                                        i=1)
            assert "receipt" in body["results"][0], body
            approved = c.nodes[1].ledger.governance.proposals[proposal.id]  # node 1 answered: it has the block
            assert approved.effective is not None
            await c.advance_to(approved.effective - 1)
            status, body = await c.post([sale], i=2)
            assert "receipt" in body["results"][0], body
            await c.advance_to(approved.effective)
            for node in c.nodes:  # every validator learnt the change, in force from the same height
                assert node.ledger.governance.at(approved.effective).member_by_name("cafe") is not None
                assert node.ledger.governance.at(approved.effective - 1).member_by_name("cafe") is None

            # acme is removed; its receipt from before verifies offline with the genesis alone.
            old = sign_event(people["acme"], g, event(2))
            status, body = await c.post([old])
            old_receipt = Receipt.from_obj(body["results"][0]["receipt"])
            removal = sign_change(people["pasar"], g, {"op": "remove_member", "member": "acme"})
            await c.post([removal])
            status, body = await c.post([sign_change(people["kopi"], g, {"op": "approve", "proposal": removal.id})])
            assert "receipt" in body["results"][0], body
            effective = c.nodes[0].ledger.governance.proposals[removal.id].effective
            n = 2000
            while min(node.storage.height for node in c.nodes) < effective - 1:
                n += 1
                await c.post([sign_event(cafe, g, event(n))])
            status, body = await c.post([sign_event(people["acme"], g, event(3))], i=3)
            assert body["results"][0]["error"] == "member removed", body
            old_receipt.verify(g)  # signed while acme was a member: valid forever
            heights = {node.storage.height for node in c.nodes}
            hashes = {node.storage.head()[1] for node in c.nodes if node.storage.height == min(heights)}
            assert len(hashes) == 1
        finally:
            for n in c.nodes:
                await n.stop()

    asyncio.run(main())


def test_a_fifth_validator_joins_then_one_leaves(tmp_path):
    """4 -> 5 -> 4 validators on a running chain: the new validator observes and catches up, then votes
    from the height its addition is in force; a removed validator retires; commits go on, every chain
    is identical, and the whole chain audits clean against the set in force at each height."""
    from rantai.client.format.audit import Auditor, MemorySource

    async def main():
        c = Cluster(tmp_path)
        spare = seeded("gn-v4")
        newcomer = Node(genesis=c.genesis, signer=spare, data_dir=tmp_path / "v4", transport=c.transports,
                        name="v4")
        c.transports[spare.id] = httpx.ASGITransport(app=create_app(newcomer, manage_lifecycle=False))
        for n in (*c.nodes, newcomer):
            await n.start()
        try:
            g, people = c.genesis, c.people
            assert newcomer.status()["mode"] == "observer"
            proof = spare.sign(POSSESSION_KIND, g.hash, possession_body(g.hash, "v4", spare.public_key))
            add = sign_change(people["tani"], g, {"op": "add_validator", "name": "v4", "public_key": spare.public_key,
                                                  "url": "http://127.0.0.1:7904", "proof": proof})
            status, body = await c.post([add], i=1)
            await c.advance_to(body["results"][0]["height"])
            status, body = await c.post([sign_change(people["kopi"], g, {"op": "approve", "proposal": add.id})], i=1)
            assert "receipt" in body["results"][0], body
            joined = c.nodes[1].ledger.governance.proposals[add.id].effective
            await c.advance_to(joined + 3)
            for _ in range(400):
                if newcomer.storage.height >= joined + 3:
                    break
                await asyncio.sleep(0.05)
            assert newcomer.status()["mode"] == "normal", newcomer.status()  # a member from `joined` on
            assert len(c.nodes[1].ledger.governance.at(joined).validators) == 5

            # v0 leaves
            remove = sign_change(people["pasar"], g, {"op": "remove_validator", "validator": "v0"})
            status, body = await c.post([remove], i=1)
            await c.advance_to(body["results"][0]["height"])
            status, body = await c.post([sign_change(people["tani"], g, {"op": "approve", "proposal": remove.id})],
                                        i=2)
            assert "receipt" in body["results"][0], body
            left = c.nodes[2].ledger.governance.proposals[remove.id].effective  # node 2 answered: it has it
            staying = [*c.nodes[1:], newcomer]
            while min(n.storage.height for n in staying) < left + 3:
                c.filler += 1
                status, body = await c.post([sign_event(people["acme"], g, event(c.filler))], i=1)
                assert status == 200, body
            assert c.nodes[0].replica.retired and c.nodes[0].status()["mode"] == "retired"
            # A retired validator no longer follows the chain: it refuses records at once (503) instead of
            # accepting them and never seeing them committed (found by tests/node/test_reconfig_processes.py).
            c.filler += 1
            status, body = await c.post([sign_event(people["acme"], g, event(c.filler))], i=0)
            assert status == 503 and body["results"][0]["error"] == "unavailable", body
            assert "retired" in body["results"][0]["message"], body
            top = min(n.storage.height for n in staying)
            chains = {tuple(n.storage.block(h) for h in range(1, top + 1)) for n in staying}
            assert len(chains) == 1  # no fork: the same blocks everywhere
            items = [(newcomer.storage.block(h), decode(newcomer.storage.certificate(h))) for h in range(1, top + 1)]
            with Auditor(g, workers=0) as auditor:
                report = auditor.run(MemorySource(items))
            assert report.ok, report.summary()
        finally:
            for n in (*c.nodes, newcomer):
                await n.stop()

    asyncio.run(main())
