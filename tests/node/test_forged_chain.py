"""Forged chains (issue 11, "Done when"): blocks that break one rule each, certified by a quorum of
the network's own validator keys, are refused, naming the rule, by

- a validator checking them as proposals (``node.validator.check_block``),
- a node catching up from a lying peer (``GET /v1/blocks`` served by an ``httpx.MockTransport``),
- ``rantai audit --node URL`` against that lying peer,
- ``rantai-node audit --data-dir DIR`` on a data directory holding the forged chain,
- ``rantai verify`` for receipts cut from the forged blocks;

and ``POST /v1/records`` refuses every type-confused record with 400 and the rule's name.

Every forged chain is a valid block 1 followed by a forged block 2.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any

import httpx
import msgpack
import pytest
from click.testing import CliRunner

from rantai.client.cli import cli
from rantai.client.format import merkle
from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode, encode
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import RECORD_KIND, SignedRecord
from rantai.client.format.validity import Parent
from rantai.client.http import SignedReads
from rantai.consensus.certificate import COMMIT_KIND, CommitCertificate, commit_body
from rantai.consensus.crypto import sha256
from rantai.node.app import create_app
from rantai.node.cli import cli as node_cli
from rantai.node.driver import Node

from .conftest import event, make_net

pytestmark = pytest.mark.timeout(120)

MSGPACK = "application/msgpack"
PEER_URL = "http://127.0.0.1:7101"  # validator 1's URL in make_net's genesis: the lying peer
T = 1_772_326_900_000
NET = make_net(4, params={"view_change_timeout_ms": 60_000, "view_change_timeout_max_ms": 60_000})
G = NET.genesis
V = NET.validators


# -- forging ---------------------------------------------------------------------------------------


def fields(serial: int, ev: dict[str, Any] | None = None, nonce: int | None = None) -> dict[str, Any]:
    return {"chain": G.hash, "event": event(serial) if ev is None else ev,
            "nonce": bytes([serial % 256 if nonce is None else nonce]) * 16, "submitted_at": T + serial,
            "submitter": NET.acme.id, "version": 1}


def signed(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "signature": NET.acme.sign(RECORD_KIND, G.hash, encode(f))}


def rec(serial: int, **kw: Any) -> SignedRecord:
    return SignedRecord.from_fields(signed(fields(serial, **kw)))


def raw_rec(raw: bytes) -> SignedRecord:
    """Bytes carried in a block as a record, unparsed (``Block.build`` needs only ``raw`` and ``id``)."""
    return SignedRecord(raw, sha256(raw), {})


def certify(block_hash: bytes, height: int, view: int, order: int = 1) -> dict[str, Any]:
    body = commit_body(height, view, block_hash)
    votes = sorted(([s.id, s.sign(COMMIT_KIND, G.hash, body)] for s in V[:3]), reverse=order < 0)
    return CommitCertificate(height, view, block_hash, tuple((v, s) for v, s in votes)).to_obj()


@dataclass
class Forged:
    name: str
    rule: str
    blocks: list[bytes]  # raw block bytes, heights 1 and 2
    certs: list[dict[str, Any]]
    block_rule: bool  # a rule of the block (a proposal breaks it), not only of its certificate

    @property
    def head(self) -> dict[str, Any]:
        h2 = msgpack.unpackb(self.blocks[1], raw=False)["header"]  # leniently: block 2 may be non-canonical
        return {"height": 2, "block_hash": sha256(encode(h2)), "header": h2, "certificate": self.certs[1]}


B1_RECORDS = [rec(1), rec(2)]
B1 = Block.build(chain=G.hash, height=1, prev_hash=G.hash, view=0, proposer=V[0].id, timestamp=T,
                 records=B1_RECORDS)


def forge(name: str) -> Forged:
    kw: dict[str, Any] = {"chain": G.hash, "height": 2, "prev_hash": B1.hash, "view": 0, "proposer": V[0].id,
                          "timestamp": T + 1000}
    records = [rec(3), rec(4)]
    order, cert_view = 1, None
    rule, block_rule = "", True
    raw: bytes | None = None
    if name == "repeated-event":
        records, rule = [rec(3), rec(3, nonce=99)], "duplicate event"
    elif name == "event-of-block-1":
        records, rule = [rec(3), rec(1, nonce=99)], "duplicate event"
    elif name == "record-of-block-1":
        records, rule = [rec(3), B1_RECORDS[0]], "duplicate record"
    elif name == "non-validator-proposer":
        kw["proposer"], rule = NET.acme.id, "proposer"
    elif name == "wrong-proposer":
        kw["proposer"], rule = V[1].id, "proposer"
    elif name == "timestamp-backwards":
        kw["timestamp"], rule = T - 1, "timestamp"
    elif name == "version-true":
        records, rule = [rec(3), raw_rec(encode(signed({**fields(4), "version": True})))], "record version"
    elif name == "version-float":
        records, rule = [rec(3), raw_rec(encode(signed({**fields(4), "version": 1.0})))], "record version"
    elif name == "record-unsorted-keys":
        f = signed(fields(4))
        records, rule = [rec(3), raw_rec(msgpack.packb(dict(reversed(list(f.items()))), use_bin_type=True))], "encoding"
    elif name == "record-long-form-int":
        good = rec(4).raw
        records, rule = [rec(3), raw_rec(good[:-1] + b"\xcc\x01")], "encoding"  # version 1 as uint8
    elif name == "record-duplicate-keys":
        good = rec(4).raw
        records, rule = [rec(3), raw_rec(b"\x88" + good[1:] + b"\xa7version\x01")], "encoding"
    elif name == "block-unsorted-header":
        rule = "encoding"
    elif name == "certificate-view-low":
        kw["view"], kw["proposer"], cert_view = 1, V[1].id, 0
        rule, block_rule = "certificate view", False
    elif name == "votes-unsorted":
        order, rule, block_rule = -1, "certificate votes", False
    else:  # pragma: no cover
        raise AssertionError(name)
    b2 = Block.build(records=records, **kw)
    raw = b2.raw
    if name == "block-unsorted-header":
        h = b2.header.to_obj()
        raw = b2.raw.replace(encode(h), msgpack.packb(dict(reversed(list(h.items()))), use_bin_type=True))
    cert2 = certify(b2.hash, 2, kw["view"] if cert_view is None else cert_view, order)
    return Forged(name, rule, [B1.raw, raw], [certify(B1.hash, 1, 0), cert2], block_rule)


NAMES = ["repeated-event", "event-of-block-1", "record-of-block-1", "non-validator-proposer", "wrong-proposer",
         "timestamp-backwards", "version-true", "version-float", "record-unsorted-keys", "record-long-form-int",
         "record-duplicate-keys", "block-unsorted-header", "certificate-view-low", "votes-unsorted"]
BLOCK_NAMES = [n for n in NAMES if forge(n).block_rule]


def lying_peer(forged: Forged) -> httpx.MockTransport:
    """A peer serving the forged chain: /v1/head and /v1/blocks; every other request is taken and ignored."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/blocks":
            a = int(request.url.params["from"])
            b = min(int(request.url.params.get("to", a + 999)), 2)
            body = b"".join(encode({"block": forged.blocks[h - 1], "certificate": forged.certs[h - 1]})
                            for h in range(a, b + 1))
            return httpx.Response(200, content=body, headers={"content-type": MSGPACK})
        if request.url.path == "/v1/head":
            return httpx.Response(200, content=encode(forged.head), headers={"content-type": MSGPACK})
        return httpx.Response(200, content=b"")

    return httpx.MockTransport(handle)


async def started_node(tmp_path, transport: Any = None) -> Node:
    node = Node(genesis=G, signer=V[0], data_dir=tmp_path / "v0", transport=transport, verify_workers=0)
    await node.start()
    return node


# -- validators and catch-up -----------------------------------------------------------------------


@pytest.mark.parametrize("name", BLOCK_NAMES)
def test_validator_refuses_the_forged_block_as_a_proposal(tmp_path, name):
    forged = forge(name)

    async def main():
        node = await started_node(tmp_path)
        try:
            block1 = await node.validator.check_block(forged.blocks[0], 1, None, Parent.genesis(G), now_ms=T)
            assert block1.hash == B1.hash
            with pytest.raises(Exception) as info:
                await node.validator.check_block(forged.blocks[1], 2, None, Parent.of(B1.header),
                                                 ancestors={r.id: 1 for r in B1_RECORDS}, now_ms=T + 1000)
            assert getattr(info.value, "rule", None) == forged.rule, info.value
        finally:
            await node.stop()

    asyncio.run(main())


@pytest.mark.parametrize("name", NAMES)
def test_catch_up_from_a_lying_peer_refuses_the_forged_block(tmp_path, name):
    forged = forge(name)
    peers = {v.id: lying_peer(forged) for v in V[1:]}

    async def main():
        node = await started_node(tmp_path, peers)
        try:
            with pytest.raises(Exception) as info:
                await node.catching_up.fetch_from(V[1].id, 1, 2)
            assert getattr(info.value, "rule", None) == forged.rule, info.value
            assert node.storage.height == 1 and node.storage.head()[1] == B1.hash  # block 1 kept, block 2 not
        finally:
            await node.stop()

    asyncio.run(main())


# -- auditors --------------------------------------------------------------------------------------


@pytest.fixture
def genesis_file(tmp_path):
    path = tmp_path / "genesis.json"
    path.write_text(G.to_json())
    return path


def failures_at_2(report: dict[str, Any]) -> set[str]:
    assert report["ok"] is False
    return {f["rule"] for f in report["failures"] if f["height"] == 2}


@pytest.mark.parametrize("name", NAMES)
def test_rantai_audit_node_names_the_rule(genesis_file, name):
    forged = forge(name)
    res = CliRunner().invoke(cli, ["audit", "--node", PEER_URL, "--workers", "0", "--json", "--genesis",
                                   str(genesis_file)], obj={"transport": lying_peer(forged)}, catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert forged.rule in failures_at_2(json.loads(res.stdout))


U64 = struct.Struct(">Q")


def write_datadir(forged: Forged, path) -> None:
    import plyvel

    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(b"mformat", b"rantai-node/1")
    for h, (raw, cert) in enumerate(zip(forged.blocks, forged.certs, strict=True), start=1):
        db.put(b"b" + U64.pack(h), raw)
        db.put(b"c" + U64.pack(h), encode(cert))
    db.put(b"h", U64.pack(2) + forged.head["block_hash"])
    db.close()


@pytest.mark.parametrize("name", NAMES)
def test_rantai_node_audit_data_dir_names_the_rule(tmp_path, genesis_file, name):
    forged = forge(name)
    write_datadir(forged, tmp_path / "db")
    res = CliRunner().invoke(node_cli, ["audit", "--data-dir", str(tmp_path / "db"), "--genesis", str(genesis_file),
                                        "--workers", "0", "--json"])
    assert res.exit_code == 1, res.output
    assert forged.rule in failures_at_2(json.loads(res.stdout))


# -- receipts --------------------------------------------------------------------------------------

# Receipts prove a record and its block's certificate; proposer, timestamp and repeats are the chain's
# rules (audit), not a receipt's: one receipt cannot see the parent or the rest of the chain.
RECEIPT_NAMES = ["version-true", "version-float", "record-unsorted-keys", "record-long-form-int",
                 "record-duplicate-keys", "certificate-view-low", "votes-unsorted"]


def receipt_file(forged: Forged, index: int = 1) -> str:
    """A receipt file for record ``index`` of forged block 2, written as the file form writes any receipt."""
    good = Block.build(chain=G.hash, height=1, prev_hash=G.hash, view=0, proposer=V[0].id, timestamp=T,
                       records=[rec(9)])
    doc = json.loads(Receipt(good.records[0], 0, (), good.header, CommitCertificate.from_obj(certify(good.hash, 1, 0)))
                     .to_json())
    obj = decode(forged.blocks[1])
    raws = obj["records"]
    h = obj["header"]
    raw = raws[index]
    try:
        ev = decode(raw)["event"]
    except Exception:  # noqa: BLE001 - not canonical: the readable event as the bytes say it
        ev = msgpack.unpackb(raw, raw=False)["event"]
    doc.update(
        record=raw.hex(), record_id=sha256(raw).hex(), index=index, event=ev,
        path=[p.hex() for p in merkle.inclusion_proof([sha256(r) for r in raws], index)],
        header={k: (v.hex() if isinstance(v, bytes) else v) for k, v in h.items()},
        certificate={"block_hash": forged.certs[1]["block_hash"].hex(), "height": 2,
                     "view": forged.certs[1]["view"], "votes": [[i, s.hex()] for i, s in forged.certs[1]["votes"]]},
    )
    return json.dumps(doc, indent=2) + "\n"


@pytest.mark.parametrize("name", RECEIPT_NAMES)
def test_rantai_verify_names_the_rule(tmp_path, genesis_file, name):
    forged = forge(name)
    path = tmp_path / "receipt.json"
    path.write_text(receipt_file(forged))
    res = CliRunner().invoke(cli, ["verify", str(path), "--genesis", str(genesis_file)])
    assert res.exit_code != 0, res.output
    assert f"error: {forged.rule}: " in res.output, res.output
    res = CliRunner().invoke(cli, ["verify", str(path), "--genesis", str(genesis_file), "--json"])
    assert res.exit_code != 0 and json.loads(res.stdout)["rule"] == forged.rule, res.output
    # the good record of the same block: receipts of these blocks verify only where the rule is the record's
    path.write_text(receipt_file(forged, 0))
    res = CliRunner().invoke(cli, ["verify", str(path), "--genesis", str(genesis_file)])
    assert (res.exit_code == 0) == forged.name.startswith(("version", "record")), res.output


# -- admission -------------------------------------------------------------------------------------

TYPE_CONFUSED = {
    "version true": ("record version", encode(signed({**fields(5), "version": True}))),
    "version 1.0": ("record version", encode(signed({**fields(5), "version": 1.0}))),
    "version '1'": ("record version", encode(signed({**fields(5), "version": "1"}))),
    "chain as text": ("record field", encode(signed({**fields(5), "chain": G.hash.hex()}))),
    "submitter as bytes": ("record field", encode(signed({**fields(5), "submitter": NET.acme.id.encode()}))),
    "submitter upper-case": ("record field", encode(signed({**fields(5), "submitter": NET.acme.id.upper()}))),
    "nonce as text": ("record field", encode(signed({**fields(5), "nonce": "00" * 16}))),
    "submitted_at 1.0e12": ("record field", encode(signed({**fields(5), "submitted_at": float(T)}))),
    "submitted_at true": ("record field", encode(signed({**fields(5), "submitted_at": True}))),
    "submitted_at -1": ("record field", encode(signed({**fields(5), "submitted_at": -1}))),
    "submitted_at 2^63": ("record field", encode(signed({**fields(5), "submitted_at": 2**63}))),
    "event as array": ("record field", encode(signed({**fields(5), "event": [event(5)]}))),
    "signature as text": ("record field", encode({**signed(fields(5)), "signature": "00" * 64})),
    "not a map": ("record shape", encode([1, 2])),
    "extra field": ("record shape", encode(signed({**fields(5), "note": 1}))),
    "unsorted keys": ("encoding", msgpack.packb(dict(reversed(list(signed(fields(5)).items()))), use_bin_type=True)),
    "long-form int": ("encoding", rec(5).raw[:-1] + b"\xcc\x01"),
    "duplicate keys": ("encoding", b"\x88" + rec(5).raw[1:] + b"\xa7version\x01"),
    "trailing bytes": ("encoding", rec(5).raw + b"\xc0"),
    "float32": ("encoding", msgpack.packb({**signed(fields(5)), "event": {**event(5), "x:temp": 2.5}},
                                          use_bin_type=True, use_single_float=True)),
}


def test_post_records_refuses_every_type_confused_record_with_400_and_its_rule(tmp_path):
    async def main():
        node = await started_node(tmp_path)
        app = create_app(node, manage_lifecycle=False)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node",
                                         auth=SignedReads(NET.acme)) as cl:
                for what, (rule, raw) in TYPE_CONFUSED.items():
                    r = await cl.post("/v1/records", content=encode({"records": [raw]}),
                                      headers={"content-type": MSGPACK, "accept": MSGPACK})
                    body = decode(r.content) if r.headers["content-type"] == MSGPACK else r.json()
                    assert (r.status_code, body["error"]) == (400, rule), (what, r.status_code, r.content)
                    r = await cl.post("/v1/records", json={"records": [raw.hex()]})
                    assert (r.status_code, r.json()["error"]) == (400, rule), (what, r.text)
                # in a batch: each refused with its rule, the good one accepted
                raws = [raw for _, raw in TYPE_CONFUSED.values()] + [rec(6).raw]
                r = await cl.post("/v1/records", json={"records": [x.hex() for x in raws]})
                assert r.status_code == 202, r.text
                results = r.json()["results"]
                assert [e["error"]["error"] for e in results[:-1]] == [rule for rule, _ in TYPE_CONFUSED.values()]
                assert results[-1]["status"] == "accepted"
                # the API's head at height 0 and blocks past the head (docs/api.md)
                r = await cl.get("/v1/head")
                assert r.json() == {"height": 0, "block_hash": G.hash.hex(), "header": None, "certificate": None}
                r = await cl.get("/v1/blocks", params={"from": 1, "to": 5})
                assert r.status_code == 200 and r.content == b""
        finally:
            await node.stop()

    asyncio.run(main())
