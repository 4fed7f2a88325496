"""Catch-up: a validator that is behind fetches blocks from its peers and stores them after checking
each one by the rules an auditor applies (``rantai.client.format.validity``: the block rules with this
node's index as the chain's memory, the records' signatures, the commit certificate against the
validators in force at its height). A peer that lies is refused at the first broken rule; the next
peer is asked. Progress is in the log every few seconds, in ``GET /v1/status`` (``catch_up``) and in
the counters ``catch-up-blocks`` and ``catch-up-records``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from rantai.client.format.errors import NodeError, RantaiError
from rantai.client.format.stream import BlockStreamReader
from rantai.client.format.validity import certificate_of, check_certificate
from rantai.consensus import wire
from rantai.consensus.effects import FetchState

if TYPE_CHECKING:
    from .driver import Node

__all__ = ["CATCH_UP_BATCH", "CatchUp"]

log = logging.getLogger("rantai.node")

CATCH_UP_BATCH = 1000  # blocks per GET /v1/blocks (the API's limit)
CATCH_UP_LOG_S = 3.0  # catch-up progress in the log this often


class CatchUp:
    """The catch-up of one node (``run`` is started by the driver on the replica's ``FetchState``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.state: dict[str, Any] = {"running": False, "from": 0, "height": 0, "target": 0, "blocks": 0,
                                      "records": 0, "records_per_s": 0.0}
        self.t0 = self.logged = time.monotonic()

    async def run(self, fs: FetchState) -> None:
        """Fetch blocks from peers, verify each like an auditor (chain link, records, certificate), store."""
        peers = [p for p in fs.peers if p in self.node.peer_urls] or list(self.node.peer_urls)
        target = fs.to_height
        attempt = 0
        height = self.node.storage.height
        self.state = {"running": True, "from": height, "height": height, "target": target, "blocks": 0,
                      "records": 0, "records_per_s": 0.0}
        self.t0 = self.logged = time.monotonic()
        try:
            while self.node.storage.height < target and attempt < 3 * len(peers):
                peer = peers[attempt % len(peers)]
                start = self.node.storage.height + 1
                stop = min(target, start + CATCH_UP_BATCH - 1)
                try:
                    got = await self.fetch_from(peer, start, stop)
                except (httpx.HTTPError, OSError, RantaiError, ValueError, AttributeError) as exc:
                    # AttributeError: httpcore/anyio on a connection reset at once (getpeername on None);
                    # whatever a peer's connection does, this round fails and the next peer is asked.
                    log.warning("catch-up from %s failed: %s", peer, exc)
                    self.node._count("catch-up-failures")
                    got = 0
                if got == 0:
                    attempt += 1
                    await asyncio.sleep(0.05)
        finally:
            self.state["running"] = False
            self.progress(force=True)
            height, digest = self.node.storage.head()
            self.node._post("transferred", height, digest)

    def progress(self, force: bool = False) -> None:
        """Catch-up progress in ``status()["catch_up"]``, and in the log every few seconds."""
        c = self.state
        now = time.monotonic()
        c["height"] = self.node.storage.height
        c["records_per_s"] = round(c["records"] / max(now - self.t0, 1e-6), 1)
        if force or now - self.logged >= CATCH_UP_LOG_S:
            self.logged = now
            log.info("catch-up: height %d of %d, %d records in %d blocks, %.0f records/s%s", c["height"],
                     c["target"], c["records"], c["blocks"], c["records_per_s"], "" if c["running"] else " (done)")

    async def fetch_from(self, peer: str, start: int, stop: int) -> int:
        client = self.node.transport.client(peer)
        if client is None:
            raise NodeError(f"catch-up: no client for peer {peer}")
        got = 0
        reader = BlockStreamReader(wire.MAX_MESSAGE_BYTES)
        async with client.stream(
            "GET", "/v1/blocks", params={"from": start, "to": stop}, headers={"accept": "application/msgpack"}
        ) as r:
            if r.status_code != 200:
                raise NodeError(f"catch-up: {peer} answered HTTP {r.status_code}")
            async for chunk in r.aiter_bytes():
                for raw, cert_obj in reader.feed(chunk):
                    await self.verify_and_store(raw, cert_obj)
                    got += 1
        return got

    async def verify_and_store(self, raw: bytes, cert_obj: Any) -> None:
        """A peer's block, checked by the rules an auditor applies (``validity``), then stored."""
        height, _ = self.node.storage.head()
        parent = self.node.ledger.head_parent()
        block = await self.node.validator.check_block(raw, height + 1, None, parent,
                                                 governance=self.node.ledger.governance.fork)
        cert = certificate_of(cert_obj, block.height)
        loop = asyncio.get_running_loop()
        consortium = self.node.ledger.governance.at(block.height)
        await loop.run_in_executor(self.node.validator.pool, check_certificate, cert, consortium, block.header)
        if await self.node._store(block, cert):
            if block.height + 1 in self.node._scheduled:
                # The block before a new validator set's first height: consensus starts that epoch from
                # it, so it hears of it now, not at the end of the catch-up (docs/consensus.md).
                self.node._post("transferred", block.height, block.hash)
            self.node._count("catch-up-blocks")
            self.node.counters["catch-up-records"] = self.node.counters.get("catch-up-records", 0) + len(block.records)
            self.state["blocks"] += 1
            self.state["records"] += len(block.records)
            self.progress()
