"""Test fixtures for the client: a chain built in memory, and fake nodes that can lie.

``Net`` makes validator and member keys from fixed seeds, a genesis, and commits blocks with real
commit certificates, exactly as the format modules define them. ``FakeNode`` answers the HTTP API
of docs/api.md from a ``Net`` (msgpack only), and its ``lie`` switch makes it misbehave in one
precise way; ``transport(nodes)`` routes an ``httpx.MockTransport`` to them by host name, so the
client under test talks to them with no socket.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from rantai.client.format import merkle
from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode, encode
from rantai.client.format.errors import RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import SignedRecord, sign_event
from rantai.consensus.certificate import COMMIT_KIND, CommitCertificate, commit_body
from rantai.consensus.crypto import Signer

MSGPACK = "application/msgpack"
ITEM = "urn:epc:id:sgtin:0614141.107346.2017"


def seeded(label: str) -> Signer:
    return Signer.from_seed(hashlib.sha256(label.encode()).digest())


def object_event(i: int = 0, epcs: list[str] | None = None, step: str = "shipping") -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": f"2024-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": epcs if epcs is not None else [f"urn:epc:id:sgtin:0614141.107346.{1000 + i}"],
        "action": "OBSERVE",
        "bizStep": step,
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }


class Net:
    """A chain in memory: genesis, blocks, certificates, and where each record sits."""

    def __init__(self, n_validators: int = 4, chain_id: str = "test-chain") -> None:
        self.validators = [seeded(f"validator-{i}") for i in range(n_validators)]
        self.members = {name: seeded(f"member-{name}") for name in ("acme", "beta", "audit")}
        self.outsider = seeded("outsider")
        roles = {"acme": ["submitter"], "beta": ["submitter"], "audit": ["auditor"]}
        self.genesis = Genesis.build(
            chain_id,
            [(v.public_key, f"v{i}", f"http://node{i}.test") for i, v in enumerate(self.validators)],
            [(s.public_key, name, name.title() + " Ltd", roles[name]) for name, s in self.members.items()],
            created_at="2024-01-01T00:00:00Z",
        )
        self.blocks: list[Block] = []
        self.certs: list[CommitCertificate] = []
        self.where: dict[bytes, tuple[int, int]] = {}
        self.pending: list[SignedRecord] = []
        self.clock = 1_700_000_000_000

    @property
    def urls(self) -> list[str]:
        return [v.url for v in self.genesis.validators]

    @property
    def height(self) -> int:
        return len(self.blocks)

    def sign(self, event: dict[str, Any], who: str = "acme") -> SignedRecord:
        signer = self.outsider if who == "outsider" else self.members[who]
        return sign_event(signer, self.genesis, event)

    def certify(self, height: int, view: int, block_hash: bytes,
                signers: list[Signer] | None = None) -> CommitCertificate:
        signers = self.validators if signers is None else signers
        body = commit_body(height, view, block_hash)
        votes = sorted((s.id, s.sign(COMMIT_KIND, self.genesis.hash, body)) for s in signers)
        return CommitCertificate(height, view, block_hash, tuple(votes))

    def commit(self, records: list[SignedRecord], view: int = 0) -> Block:
        prev = self.blocks[-1].hash if self.blocks else self.genesis.hash
        self.clock += 1000
        block = Block.build(chain=self.genesis.hash, height=self.height + 1, prev_hash=prev, view=view,
                            proposer=self.validators[view % len(self.validators)].id, timestamp=self.clock,
                            records=records)
        self.blocks.append(block)
        self.certs.append(self.certify(block.height, view, block.hash))
        for i, r in enumerate(records):
            self.where[r.id] = (block.height, i)
        return block

    def flush(self) -> None:
        if self.pending:
            records, self.pending = self.pending, []
            self.commit(records)

    def receipt(self, record_id: bytes) -> Receipt:
        height, index = self.where[record_id]
        block = self.blocks[height - 1]
        return Receipt(block.records[index], index, tuple(merkle.inclusion_proof(block.record_ids(), index)),
                       block.header, self.certs[height - 1])

    def build_chain(self, blocks: int, per_block: int, who: str = "acme") -> None:
        n = 0
        for _ in range(blocks):
            recs = []
            for _ in range(per_block):
                recs.append(self.sign(object_event(n), who))
                n += 1
            self.commit(recs)


def _resp(status: int, obj: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=encode(obj), headers={"content-type": MSGPACK, **(headers or {})})


def _err(status: int, rule: str, message: str) -> httpx.Response:
    return _resp(status, {"error": rule, "message": message})


def _flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


class FakeNode:
    """One node of the API over a shared ``Net``. ``lie`` picks one way to misbehave:

    down, error500, garbage, alter-record, alter-proof, forge-cert, few-votes, wrong-record,
    stale-head, reject (refuses good records), not-found (hides records), foreign-history
    (adds a record that does not name the item), omit-history (leaves the last one out), alter-block (flips a byte
    of served blocks), behind (its history is one block behind), ignore-pin (answers history as of its own head,
    whatever height is asked), flaky-pages (fails every history page after the first).
    ``commit`` is "now" (wait=commit answers with receipts) or "later" (records stay pending
    until the next GET).
    """

    def __init__(self, net: Net, url: str, lie: str | None = None, commit: str = "now") -> None:
        self.net = net
        self.url = url
        self.lie = lie
        self.commit_mode = commit
        self.requests: list[str] = []

    # -- helpers ----------------------------------------------------------------------------------
    def _receipt_obj(self, record_id: bytes) -> dict[str, Any]:
        obj = self.net.receipt(record_id).to_obj()
        lie = self.lie
        if lie == "alter-record":
            fields = decode(obj["record"])
            fields["event"] = {**fields["event"], "bizStep": "receiving"}
            obj["record"] = encode(fields)
        elif lie == "alter-proof":
            if obj["path"]:
                obj["path"] = [_flip(obj["path"][0])] + obj["path"][1:]
            else:  # a one-record block has an empty path: claim a second leaf instead
                obj["header"]["records_root"] = _flip(obj["header"]["records_root"])
        elif lie == "forge-cert":
            forger = seeded("forger")
            cert = obj["certificate"]
            body = commit_body(cert["height"], cert["view"], cert["block_hash"])
            cert["votes"] = [[vid, forger.sign(COMMIT_KIND, self.net.genesis.hash, body)] for vid, _ in cert["votes"]]
        elif lie == "few-votes":
            obj["certificate"]["votes"] = obj["certificate"]["votes"][:2]
        elif lie == "wrong-record":
            other = next(rid for rid in self.net.where if rid != record_id)
            obj = self.net.receipt(other).to_obj()
        return obj

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if self.lie == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.lie == "error500":
            return httpx.Response(500, text="internal error")
        if self.lie == "garbage":
            return httpx.Response(200, content=b"\x82\xa1b\x01\xa1a\x02", headers={"content-type": MSGPACK})
        if request.method == "POST" and path == "/v1/records":
            return self._post_records(request)
        if request.method == "GET" and path.startswith("/v1/records/"):
            if self.net.pending:
                self.net.flush()
            try:
                rid = bytes.fromhex(path.rsplit("/", 1)[1])
            except ValueError:
                return _err(400, "encoding", "bad id")
            if rid not in self.net.where or self.lie == "not-found":
                return _err(404, "not found", "no such record")
            return _resp(200, self._receipt_obj(rid))
        if request.method == "GET" and path == "/v1/head":
            h = self.net.height - (1 if self.lie == "stale-head" else 0)
            if h <= 0:
                return _resp(200, {"height": 0, "block_hash": self.net.genesis.hash, "header": None,
                                   "certificate": None})
            block = self.net.blocks[h - 1]
            return _resp(200, {"height": h, "block_hash": block.hash, "header": block.header.to_obj(),
                               "certificate": self.net.certs[h - 1].to_obj()})
        if request.method == "GET" and path.startswith("/v1/items/") and path.endswith("/history"):
            return self._history(request, path)
        if request.method == "GET" and path == "/v1/changes":  # this chain has no configuration changes
            return _resp(200, {"to": self.net.height, "changes": []})
        if request.method == "GET" and path == "/v1/blocks":
            a = int(request.url.params["from"])
            b = min(int(request.url.params["to"]), self.net.height, a + 999)
            out = b"".join(encode({"block": self._block_raw(h), "certificate": self.net.certs[h - 1].to_obj()})
                           for h in range(a, b + 1))
            return httpx.Response(200, content=out, headers={"content-type": MSGPACK})
        return _err(404, "not found", f"no route {path}")

    def _history(self, request: httpx.Request, path: str) -> httpx.Response:
        """The node's paged history (node/history.py): ``limit``, ``page`` (here: the next position,
        pinned height), ``height``; each page carries the pinned block's header and certificate."""
        from urllib.parse import unquote

        from rantai.client.trace import identifiers

        item = unquote(path[len("/v1/items/"):-len("/history")])
        params = request.url.params
        limit = int(params.get("limit", 1000))
        height = self.net.height - (1 if self.lie == "behind" else 0)
        if "page" in params:
            if self.lie == "flaky-pages":
                return httpx.Response(500, text="internal error")
            pinned, start = (int(x) for x in params["page"].split(":"))
        else:
            pinned = int(params["height"]) if "height" in params and self.lie != "ignore-pin" else height
            start = 0
        if pinned > height:
            return _err(503, "behind", f"at height {height}, asked as of {pinned}")
        ids = [rid for rid, (h, _) in sorted(self.net.where.items(), key=lambda kv: kv[1])
               if h <= pinned and item in identifiers(self.net.receipt(rid).record.event)]
        if self.lie == "omit-history":
            ids = ids[:-1]
        if self.lie == "foreign-history":
            ids.append(next(rid for rid in self.net.where if rid not in ids))
        page = ids[start:start + limit]
        nxt = f"{pinned}:{start + limit}" if start + limit < len(ids) else None
        head = None
        if pinned > 0:
            block = self.net.blocks[pinned - 1]
            head = {"height": pinned, "block_hash": block.hash, "header": block.header.to_obj(),
                    "certificate": self.net.certs[pinned - 1].to_obj()}
        return _resp(200, {"item": item, "height": pinned, "head": head, "complete": nxt is None, "next": nxt,
                           "receipts": [self._receipt_obj(rid) for rid in page]})

    def _block_raw(self, h: int) -> bytes:
        raw = self.net.blocks[h - 1].raw
        if self.lie == "alter-block" and h == 2:
            return _flip(raw, len(raw) - 100)
        return raw

    def _post_records(self, request: httpx.Request) -> httpx.Response:
        body = decode(request.content)
        wait = request.url.params.get("wait") == "commit"
        results: list[dict[str, Any]] = []
        fresh: list[SignedRecord] = []
        for raw in body["records"]:
            rec = SignedRecord.from_bytes(raw)
            if self.lie == "reject":
                results.append({"id": rec.id, "status": "rejected",
                                "error": {"error": "signature does not verify", "message": "record: forged"}})
                continue
            try:
                rec.verify(self.net.genesis)
            except RantaiError as exc:
                results.append({"id": rec.id, "status": "rejected", "error": exc.to_obj()})
                continue
            if (rec.id in self.net.where or any(p.id == rec.id for p in self.net.pending)
                    or any(p.id == rec.id for p in fresh)):
                results.append({"id": rec.id, "status": "duplicate"})
            else:
                fresh.append(rec)
                results.append({"id": rec.id, "status": "accepted"})
        if len(results) == 1 and results[0]["status"] == "rejected":
            e = results[0]["error"]
            status = {"signature does not verify": 401, "unknown member": 401, "role denied": 403}.get(e["error"], 400)
            return _resp(status, e)
        if fresh:
            if self.commit_mode == "now":
                self.net.commit(fresh)
            else:
                self.net.pending.extend(fresh)
        if wait and self.commit_mode == "now":
            for res in results:
                if res["status"] == "accepted":
                    res["status"] = "committed"
                    res["receipt"] = self._receipt_obj(res["id"])
        return _resp(200 if wait else 202, {"results": results})


def transport(nodes: list[FakeNode]) -> httpx.MockTransport:
    by_host = {httpx.URL(n.url).host: n for n in nodes}

    def route(request: httpx.Request) -> httpx.Response:
        node = by_host.get(request.url.host)
        if node is None:
            raise httpx.ConnectError("no such host", request=request)
        return node.handle(request)

    return httpx.MockTransport(route)


def fake_network(net: Net, lies: dict[int, str] | None = None,
                 commit: str = "now") -> tuple[list[FakeNode], httpx.MockTransport]:
    lies = lies or {}
    nodes = [FakeNode(net, url, lies.get(i), commit) for i, url in enumerate(net.urls)]
    return nodes, transport(nodes)
