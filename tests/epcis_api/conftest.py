"""In-process nodes (httpx.ASGITransport, no sockets) for the EPCIS API tests, and the official test data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from rantai.client.http import SignedReads
from rantai.node.app import create_app
from rantai.node.driver import Node

from .helpers import make_net


class Cluster:
    """``n`` validators in one process; ``client(i)`` talks to node i through its ASGI app."""

    def __init__(self, tmp_path: Path, n: int = 4, params: dict | None = None) -> None:
        self.net = make_net(n, params={"batch_timeout_ms": 5, **(params or {})})
        self.transports: dict[str, httpx.ASGITransport] = {}
        self.nodes: list[Node] = []
        for i, signer in enumerate(self.net.validators):
            node = Node(genesis=self.net.genesis, signer=signer, data_dir=tmp_path / f"v{i}", transport=self.transports)
            self.nodes.append(node)
            self.transports[signer.id] = httpx.ASGITransport(app=create_app(node, manage_lifecycle=False))

    async def start(self) -> None:
        for n in self.nodes:
            await n.start()

    async def stop(self) -> None:
        for n in self.nodes:
            await n.stop()

    def client(self, i: int = 0) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transports[self.nodes[i].id], base_url="http://node", timeout=60,
                                 auth=SignedReads(self.net.acme))  # reads are signed (docs/api.md)

    def transport(self, i: int = 0) -> httpx.ASGITransport:
        return self.transports[self.nodes[i].id]

    async def wait_height(self, h: int, timeout: float = 30) -> None:
        for _ in range(int(timeout / 0.02)):
            if all(n.storage.height >= h for n in self.nodes):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"heights {[n.storage.height for n in self.nodes]} did not reach {h}")

    async def settle(self, timeout: float = 30) -> int:
        """Wait until every node holds the same height and no mempool holds anything."""
        for _ in range(int(timeout / 0.02)):
            hs = {n.storage.height for n in self.nodes}
            if len(hs) == 1 and all(len(n.mempool) == 0 for n in self.nodes):
                return hs.pop()
            await asyncio.sleep(0.02)
        raise AssertionError(f"heights {[n.storage.height for n in self.nodes]}, "
                             f"mempools {[len(n.mempool) for n in self.nodes]} did not settle")


@pytest.fixture
def run():
    """Run an async test body with a fresh event loop."""
    return lambda coro: asyncio.run(coro)
