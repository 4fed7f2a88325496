"""Peer transport: one keep-alive ``httpx.AsyncClient`` per peer, a bounded queue and a sender task each.

``send``/``broadcast`` never block and never raise: a message goes into one of the peer's two
lanes — consensus votes, or bulk (record gossip) — each a bounded queue with its own sender task,
so a vote never waits behind a large gossip request the peer is still verifying. When a queue is
full its oldest message is dropped (PBFT retransmits what matters); consensus messages waiting
behind the one being sent ride in the same request, as a batch; a lane retries with exponential
backoff while the peer is unreachable. Messages older than ``max_age_s`` are dropped rather than
sent late. The httpx transport is injectable, so tests can wire nodes in-process with
``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import msgpack

__all__ = ["BATCH_HEADER", "MSGPACK", "PeerTransport"]

log = logging.getLogger("rantai.node.transport")
MSGPACK = "application/msgpack"
BATCHABLE = "/v1/peer/messages"
BATCH_HEADER = "x-rantai-batch"  # body: a msgpack array of wire messages (bin), see docs/operations.md
BATCH_MAX = 64
BATCH_BYTES = 16 * 1024 * 1024


@dataclass
class _Peer:
    """One lane to one peer (each peer has a votes lane and a bulk lane, sharing its client)."""

    id: str
    url: str
    client: httpx.AsyncClient
    queue: collections.deque = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    reachable: bool = False
    failures: int = 0
    sent: int = 0
    dropped: int = 0
    last_error: str = ""


class PeerTransport:
    def __init__(
        self,
        peers: Mapping[str, str],
        *,
        sender: str = "",
        transport: httpx.AsyncBaseTransport | Mapping[str, httpx.AsyncBaseTransport] | None = None,
        queue_max: int = 4096,
        max_age_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.05, 1.0),
    ) -> None:
        self.queue_max = queue_max
        self.max_age_s = max_age_s
        self.backoff_s = backoff_s
        self.sender = sender
        self.peers: dict[str, _Peer] = {}  # the votes lane of each peer
        self.bulk: dict[str, _Peer] = {}  # the bulk lane (record gossip) of each peer
        for pid, url in peers.items():
            t = transport.get(pid) if isinstance(transport, Mapping) else transport
            client = httpx.AsyncClient(
                base_url=url,
                transport=t,
                timeout=httpx.Timeout(10.0, connect=2.0),
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
                headers={"x-rantai-sender": sender} if sender else None,
            )
            self.peers[pid] = _Peer(pid, url, client)
            self.bulk[pid] = _Peer(pid, url, client)
        self._closed = False

    def _lanes(self) -> list[_Peer]:
        return [*self.peers.values(), *self.bulk.values()]

    def start(self) -> None:
        for p in self._lanes():
            if p.task is None:
                lane = "votes" if self.peers.get(p.id) is p else "bulk"
                p.task = asyncio.create_task(self._sender(p), name=f"peer-{p.id}-{lane}")

    async def close(self) -> None:
        self._closed = True
        for p in self._lanes():
            p.wake.set()
            if p.task is not None:
                p.task.cancel()
        for p in self._lanes():
            if p.task is not None:
                try:
                    await p.task
                except (asyncio.CancelledError, Exception):
                    pass
        for p in self.peers.values():
            await p.client.aclose()

    # -- queueing --------------------------------------------------------------------------
    def send(self, peer_id: str, path: str, body: bytes) -> None:
        p = (self.peers if path == BATCHABLE else self.bulk).get(peer_id)
        if p is None or self._closed:
            return
        if len(p.queue) >= self.queue_max:
            p.queue.popleft()
            p.dropped += 1
        p.queue.append((time.monotonic(), path, body))
        p.wake.set()

    def broadcast(self, path: str, body: bytes) -> None:
        for pid in self.peers:
            self.send(pid, path, body)

    async def _sender(self, p: _Peer) -> None:
        backoff = self.backoff_s[0]
        while not self._closed:
            if not p.queue:
                p.wake.clear()
                await p.wake.wait()
                continue
            enqueued, path, body = p.queue[0]
            if time.monotonic() - enqueued > self.max_age_s:
                p.queue.popleft()
                p.dropped += 1
                continue
            # Consensus messages queued behind this one go in the same request (one round trip).
            take = 1
            if path == BATCHABLE:
                size = len(body)
                while take < len(p.queue) and take < BATCH_MAX and p.queue[take][1] == path:
                    size += len(p.queue[take][2])
                    if size > BATCH_BYTES:
                        break
                    take += 1
            headers = {"content-type": MSGPACK}
            if take > 1:
                body = msgpack.packb([p.queue[k][2] for k in range(take)], use_bin_type=True)
                headers[BATCH_HEADER] = str(take)
            try:
                r = await p.client.post(path, content=body, headers=headers)
            except (httpx.HTTPError, OSError) as exc:
                p.reachable = False
                p.failures += 1
                p.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_s[1])
                continue
            for _ in range(take):
                p.queue.popleft()
            p.reachable = True
            backoff = self.backoff_s[0]
            if r.status_code >= 400:
                p.dropped += 1
                p.last_error = f"HTTP {r.status_code}"
            else:
                p.sent += 1

    # -- requests --------------------------------------------------------------------------
    def client(self, peer_id: str) -> httpx.AsyncClient | None:
        p = self.peers.get(peer_id)
        return None if p is None else p.client

    def status(self) -> list[dict]:
        out = []
        for pid, p in self.peers.items():
            b = self.bulk[pid]
            out.append({"id": pid, "url": p.url, "reachable": p.reachable or b.reachable,
                        "queued": len(p.queue) + len(b.queue), "sent": p.sent + b.sent, "dropped": p.dropped + b.dropped})
        return out
