"""Catch-up's pipeline (node/catchup.py) against a peer served in-process: it stores exactly what
storing the blocks one by one stores (blocks, certificates, every index entry, the head), whether it
verifies in worker processes or in the node's threads, and a refused block in the middle of a long
run keeps every block before it and nothing after. Speed is measured by tests/node/measure_resync.py."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

from rantai.client.format.blocks import Block
from rantai.client.format.encoding import encode
from rantai.client.format.records import sign_event
from rantai.consensus.certificate import COMMIT_KIND, CommitCertificate, commit_body
from rantai.consensus.effects import FetchState
from rantai.node import catchup
from rantai.node.driver import Node
from rantai.node.ledger import Ledger
from rantai.node.storage import Storage

from .conftest import event, make_net

pytestmark = pytest.mark.timeout(180)

MSGPACK = "application/msgpack"
T = 1_772_326_900_000
NET = make_net(4, params={"view_change_timeout_ms": 60_000, "view_change_timeout_max_ms": 60_000})
G = NET.genesis
V = NET.validators


def certify(block: Block) -> dict[str, Any]:
    body = commit_body(block.height, block.header.view, block.hash)
    votes = sorted((s.id, s.sign(COMMIT_KIND, G.hash, body)) for s in V[:3])
    return CommitCertificate(block.height, block.header.view, block.hash, tuple(votes)).to_obj()


def chain(blocks: int, per_block: int, *, repeat_at: int | None = None) -> list[tuple[Block, dict[str, Any]]]:
    """A valid chain (block ``repeat_at``, if given, repeats the event of block 1's first record)."""
    out: list[tuple[Block, dict[str, Any]]] = []
    prev = G.hash
    for h in range(1, blocks + 1):
        records = [sign_event(NET.acme, G, event(h * 1000 + i)) for i in range(per_block)]
        if h == repeat_at:
            records[-1] = sign_event(NET.acme, G, event(1000))  # a new record id, block 1's event
        b = Block.build(chain=G.hash, height=h, prev_hash=prev, view=0, proposer=V[0].id, timestamp=T + h,
                        records=records)
        out.append((b, certify(b)))
        prev = b.hash
    return out


def peer(blocks: list[tuple[Block, dict[str, Any]]]) -> httpx.MockTransport:
    """A peer serving ``GET /v1/blocks`` (in 7-block pages, so the fetch asks again and again)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/blocks":
            a = int(request.url.params["from"])
            b = min(int(request.url.params["to"]), len(blocks), a + 6)
            body = b"".join(encode({"block": blocks[h - 1][0].raw, "certificate": blocks[h - 1][1]})
                            for h in range(a, b + 1))
            return httpx.Response(200, content=body, headers={"content-type": MSGPACK})
        return httpx.Response(200, content=b"")

    return httpx.MockTransport(handle)


def catch_up(tmp_path, blocks: list[tuple[Block, dict[str, Any]]], target: int, processes: bool) -> dict[str, Any]:
    """Start a node with the lying or honest peer, run one catch-up to ``target``; its store's contents.

    ``processes``: the worker processes are started first (a catch-up this short would otherwise be
    over, verified in the node's threads, before they are up)."""

    async def main() -> dict[str, Any]:
        node = Node(genesis=G, signer=V[3], data_dir=tmp_path / "caught", verify_workers=0,
                    transport={v.id: peer(blocks) for v in V[:3]})
        await node.start()
        try:
            if processes:
                node.catching_up._fetched_bytes = catchup.POOL_AFTER_BYTES
                node.catching_up._maybe_start_pool()
                if node.catching_up._pool_start is not None:  # None: a one-core machine, no processes
                    await node.catching_up._pool_start
            await node.catching_up.run(FetchState(1, target, tuple(v.id for v in V[:3])))
            return {"height": node.storage.height, "state": dict(node.catching_up.state),
                    "counters": dict(node.counters), "store": contents(node.storage)}
        finally:
            await node.stop()

    return asyncio.run(main())


def contents(storage: Storage) -> dict[str, Any]:
    """Everything stored but the consensus state: the chain database and the index database."""
    return {"chain": list(storage.chain_db.iterator()),
            "index": [(k, v) for k, v in storage.db.iterator() if not k.startswith(b"s")]}


def reference(tmp_path, blocks: list[tuple[Block, dict[str, Any]]]) -> dict[str, Any]:
    """The same blocks stored one by one (``Ledger.apply``), the way consensus stores a commit."""
    storage = Storage(tmp_path / "reference", G.hash)
    try:
        ledger = Ledger(G, storage)
        for b, cert in blocks:
            ledger.apply(b, CommitCertificate.from_obj(cert))
        return contents(storage)
    finally:
        storage.close()


@pytest.mark.parametrize("processes", [True, False], ids=["worker-processes", "in-process"])
def test_catch_up_stores_what_block_by_block_stores(tmp_path, monkeypatch, processes):
    blocks = chain(40, 3)
    monkeypatch.setattr(catchup, "TASK_BYTES", 8 * 1024)  # many tasks in flight, several write runs
    got = catch_up(tmp_path, blocks, 40, processes)
    assert got["height"] == 40
    assert got["state"]["blocks"] == 40 and got["state"]["records"] == 120 and got["state"]["running"] is False
    assert got["counters"]["catch-up-blocks"] == 40 and got["counters"]["catch-up-records"] == 120
    assert got["state"]["workers"] == (min(os.cpu_count() or 1, catchup.MAX_WORKERS) if processes else 0) or (
        (os.cpu_count() or 1) < 2)
    assert got["store"] == reference(tmp_path, blocks)


@pytest.mark.parametrize("processes", [True, False], ids=["worker-processes", "in-process"])
def test_a_refused_block_keeps_the_blocks_before_it_and_nothing_after(tmp_path, monkeypatch, processes):
    blocks = chain(40, 3, repeat_at=30)
    monkeypatch.setattr(catchup, "TASK_BYTES", 8 * 1024)
    got = catch_up(tmp_path, blocks, 40, processes)
    assert got["height"] == 29  # every peer serves the same forged block 30: asked 3 times each, refused
    assert got["counters"]["catch-up-failures"] >= 3
    assert got["store"] == reference(tmp_path, blocks[:29])
