"""API rejections: malformed bodies, wrong content types, oversized payloads, unknown members, bad
signatures, replays and peer messages from non-validators get the errors of docs/api.md, and the
node keeps serving afterwards. One node of a 4-validator chain, in-process (admission needs no quorum)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rantai.client.format.encoding import decode, encode
from rantai.client.format.records import SignedRecord, sign_event
from rantai.client.http import SignedReads
from rantai.consensus import wire
from rantai.consensus.messages import Prepare, vote_body
from rantai.node.app import create_app
from rantai.node.driver import Node

from .conftest import event, make_net

pytestmark = pytest.mark.timeout(60)
MP = {"content-type": "application/msgpack"}
PEER = {"x-rantai-sender": make_net().validators[0].id}  # peer endpoints name the calling validator


def test_rejections_and_node_keeps_serving(tmp_path):
    net = make_net(params={"max_record_bytes": 2048})

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "v1")
        app = create_app(node, manage_lifecycle=False)
        await node.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n",
                                         auth=SignedReads(net.acme)) as c:
                async def post(body, headers=MP, path="/v1/records"):
                    return await c.post(path, content=body, headers=headers)

                good = net.record()
                # malformed bodies
                for body in (b"\xc1", b"\x81\xa1a", encode({"records": "x"}), encode({"records": [1]}), encode([1]),
                             encode({"records": []})):
                    r = await post(body)
                    assert r.status_code == 400 and r.json()["error"] == "encoding", (body, r.text)
                r = await post(b"{not json", {"content-type": "application/json"})
                assert r.status_code == 400 and r.json()["error"] == "encoding"
                r = await post(encode({"records": [b"\x01\x02"]}))  # bytes that are no record
                assert r.status_code == 400
                # wrong content types
                r = await post(encode({"records": [good.raw]}), {"content-type": "text/plain"})
                assert r.status_code == 415
                r = await post(wire.encode(Prepare(0, 1, b"\0" * 32, net.validators[0].id, b"\0" * 64)),
                               {"content-type": "application/json", **PEER}, "/v1/peer/messages")
                assert r.status_code == 415
                # oversized: one record over max_record_bytes, a body over the body limit
                big = sign_event(net.acme, net.genesis, {**event(), "example:pad": "x" * 4000})
                r = await post(encode({"records": [big.raw]}))
                assert r.status_code == 413 and r.json()["error"] == "too large"
                r = await post(b"\x00" * (40 * 1024 * 1024))
                assert r.status_code == 413
                # unknown member, role denied, bad signature, wrong chain, schema
                r = await post(encode({"records": [net.record(net.stranger).raw]}))
                assert (r.status_code, r.json()["error"]) == (401, "unknown member")
                r = await post(encode({"records": [net.record(net.auditor).raw]}))
                assert (r.status_code, r.json()["error"]) == (403, "role denied")
                forged = SignedRecord.from_fields({**net.record().fields, "signature": bytes(64)})
                r = await post(encode({"records": [forged.raw]}))
                assert (r.status_code, r.json()["error"]) == (401, "signature does not verify")
                r = await post(encode({"records": [make_net(params={"window": 3}).record().raw]}))
                assert (r.status_code, r.json()["error"]) == (400, "wrong chain")
                bad_event = sign_event(net.acme, net.genesis, {**event(), "action": "JUMP"})
                r = await post(encode({"records": [bad_event.raw]}))
                assert (r.status_code, r.json()["error"]) == (400, "schema")
                # accepted, then replayed: 409; in a batch the replay is a "duplicate" entry
                r = await post(encode({"records": [good.raw]}))
                assert r.status_code == 202 and r.json()["results"][0]["status"] == "accepted"
                r = await post(encode({"records": [good.raw]}))
                assert (r.status_code, r.json()["error"]) == (409, "duplicate record")
                other = net.record()
                r = await post(encode({"records": [good.raw, other.raw, forged.raw]}),
                               {**MP, "accept": "application/msgpack"})
                assert r.status_code == 202
                res = decode(r.content)["results"]
                assert [e["status"] for e in res] == ["duplicate", "accepted", "rejected"]
                assert res[1]["id"] == other.id and res[2]["error"]["error"] == "signature does not verify"
                # peer messages: garbage, and a well-formed message from a non-validator
                r = await post(b"\x93\x01\x02", {**MP, **PEER}, "/v1/peer/messages")
                assert r.status_code == 400
                body = vote_body(0, 1, b"\0" * 32)
                msg = Prepare(0, 1, b"\0" * 32, net.stranger.id, net.stranger.sign("prepare", net.genesis.hash, body))
                r = await post(wire.encode(msg), {**MP, **PEER}, "/v1/peer/messages")
                assert r.status_code == 403
                # unknown things
                assert (await c.get("/v1/records/" + "00" * 32)).status_code == 404
                assert (await c.get("/v1/records/xyz")).status_code == 400
                assert (await c.get("/v1/blocks/5")).status_code == 404
                # and the node still serves
                assert (await c.get("/healthz")).json() == {"ok": True}
                s = (await c.get("/v1/status")).json()
                assert s["mempool"] == 2 and s["height"] == 0
                assert (await c.get("/v1/genesis")).content == node.genesis_bytes
                assert (await c.get("/docs")).status_code == 200
        finally:
            await node.stop()

    asyncio.run(main())
