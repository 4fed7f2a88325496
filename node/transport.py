"""Peer transport: to each peer, two long-lived HTTP streams (consensus votes; record gossip), fed by queues.

A message costs little more than its bytes: each lane holds one ``POST /v1/peer/stream`` open
and writes length-prefixed frames into its chunked body as messages are queued, so the per-request
cost of HTTP (about a millisecond of CPU on each side, most of it h11 parsing in pure Python)
is paid once per connection rather than once per message. The wire format is in
docs/operations.md ("Peer streams").

``send``/``broadcast`` never block and never raise. Votes and gossip have separate lanes so a vote
never waits behind records the peer is still verifying. When a queue is full its oldest message is
dropped, and messages older than ``max_age_s`` are dropped rather than sent late; frames written
into a connection that then breaks are lost too. All of that is safe because the replica
retransmits what matters (consensus/replica.py ``_retransmit``) and a record that reaches no
proposal is shared with every validator later (node/driver.py). A broken stream is reopened with
exponential backoff. The httpx transport is injectable, so tests can wire nodes in-process with
``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import httpx

__all__ = ["FRAME_HEADER", "LANES", "MSGPACK", "STREAM_PATH", "PeerTransport", "frames"]

log = logging.getLogger("rantai.node.transport")
MSGPACK = "application/msgpack"
STREAM_PATH = "/v1/peer/stream"
STREAM_MEDIA = "application/x-rantai-frames"
# What a frame of each lane holds: exactly the body a POST to that path would carry.
LANES = {"/v1/peer/messages": "messages", "/v1/peer/records": "records"}
FRAME_HEADER = struct.Struct(">I")  # each frame: u32 big-endian length, then that many bytes
STALL_TIMEOUT_S = 15.0  # a stream that takes no queued message for this long is given up (``_open``)
CHUNK_BYTES = 1024 * 1024  # frames written in one chunk of the request body, at most (one frame may exceed it)


@dataclass
class _Lane:
    """One lane to one peer: a queue of bodies and the task that streams them."""

    id: str
    url: str
    kind: str
    client: httpx.AsyncClient
    queue: collections.deque = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    reachable: bool = False
    failures: int = 0
    sent: int = 0
    dropped: int = 0
    last_error: str = ""
    phase: str = "idle"  # idle | opening (no body byte taken yet) | streaming | backoff: for status pages
    pulled: float = 0.0  # when the stream's body last asked for more (monotonic)


def frames(buffer: bytearray, limit: int) -> list[bytes]:
    """Cut the complete frames off the front of ``buffer``; ``ValueError`` if one is over ``limit``."""
    out = []
    pos, n = 0, len(buffer)
    while n - pos >= 4:
        (size,) = FRAME_HEADER.unpack_from(buffer, pos)
        if size > limit:
            raise ValueError(f"frame of {size} bytes, the limit is {limit}")
        if n - pos - 4 < size:
            break
        out.append(bytes(buffer[pos + 4:pos + 4 + size]))
        pos += 4 + size
    if pos:
        del buffer[:pos]
    return out


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
        auth: httpx.Auth | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.queue_max = queue_max
        self.max_age_s = max_age_s
        self.backoff_s = backoff_s
        self.sender = sender
        self.lanes: dict[str, dict[str, _Lane]] = {kind: {} for kind in LANES.values()}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._transport = transport
        self._auth = auth  # signs this validator's reads of its peers (node/read_policy.py)
        self._verify = verify  # for https:// peers: node/tls.py's context (CA, pins, this node's certificate)
        self._started = False
        self._closed = False
        for pid, url in peers.items():
            self.add_peer(pid, url)

    def add_peer(self, pid: str, url: str) -> None:
        """A validator the consortium added (docs/governance.md): its lanes open now if this transport runs."""
        if pid in self._clients or pid == self.sender:
            return
        client = self._client(pid, url)
        self._clients[pid] = client
        for kind in self.lanes:
            self.lanes[kind][pid] = lane = _Lane(pid, url, kind, client)
            if self._started and not self._closed:
                lane.task = asyncio.create_task(self._stream(lane), name=f"peer-{lane.id}-{lane.kind}")

    def _client(self, pid: str, url: str) -> httpx.AsyncClient:
        transport = self._transport
        t = transport.get(pid) if isinstance(transport, Mapping) else transport
        return httpx.AsyncClient(
            base_url=url,
            transport=t,
            verify=self._verify,
            # No read timeout: a stream's answer comes only when it ends. A write that the peer
            # does not take for 10 s breaks the stream (it is reopened).
            timeout=httpx.Timeout(10.0, connect=2.0, read=None),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"x-rantai-sender": self.sender} if self.sender else None,
            auth=self._auth,
        )

    def _all(self) -> list[_Lane]:
        return [lane for by_peer in self.lanes.values() for lane in by_peer.values()]

    def start(self) -> None:
        self._started = True
        for lane in self._all():
            if lane.task is None:
                lane.task = asyncio.create_task(self._stream(lane), name=f"peer-{lane.id}-{lane.kind}")

    async def close(self) -> None:
        self._closed = True
        for lane in self._all():
            lane.wake.set()
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._all():
            if lane.task is not None:
                try:
                    await lane.task
                except (asyncio.CancelledError, Exception):
                    pass
        clients = {id(c): c for c in [*self._clients.values(), *(lane.client for lane in self._all())]}
        for client in clients.values():
            try:
                await asyncio.wait_for(client.aclose(), 5.0)
            except (asyncio.TimeoutError, httpx.HTTPError, OSError):
                pass

    # -- queueing --------------------------------------------------------------------------
    def send(self, peer_id: str, path: str, body: bytes) -> None:
        lane = self.lanes[LANES[path]].get(peer_id)
        if lane is None or self._closed:
            return
        if len(lane.queue) >= self.queue_max:
            lane.queue.popleft()
            lane.dropped += 1
        lane.queue.append((time.monotonic(), body))
        lane.wake.set()

    def broadcast(self, path: str, body: bytes) -> None:
        for pid in self._clients:
            self.send(pid, path, body)

    # -- streaming -------------------------------------------------------------------------
    async def _stream(self, lane: _Lane) -> None:
        """Keep one stream open to the peer while there is anything to send; reopen it when it breaks."""
        backoff = self.backoff_s[0]
        headers = {"content-type": STREAM_MEDIA, "x-rantai-lane": lane.kind}
        while not self._closed:
            if not lane.queue:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            sent_before = lane.sent
            lane.phase = "opening"
            try:
                r = await self._open(lane, headers)
            except (httpx.HTTPError, OSError) as exc:
                lane.reachable = False
                lane.failures += 1
                lane.last_error = f"{type(exc).__name__}: {exc}"
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed or task is None or task.cancelling():
                    raise
                # Nobody cancelled this lane: the HTTP stack let a cancellation of its own escape (a
                # timeout's cancel scope around a connection that broke). Before this was caught, it
                # ended the lane's task silently: the peer was never written to again (tests/faults).
                self._lane_failed(lane, "CancelledError from the HTTP client")
            except Exception as exc:  # noqa: BLE001 - whatever the HTTP stack raises, the lane must go on
                # Seen: AttributeError ('NoneType' object has no attribute 'getpeername') from httpcore
                # asking anyio for the socket's details of a connection that was reset just after it
                # was accepted (a proxy or a middlebox in front of a peer that is down). It escaped the
                # handler above and ended the lane's task, silently: the peer was never written to
                # again while the lane looked ``reachable`` with its queue growing; with two such
                # lanes the validators sat in view changes (the SIGTERM-restart steps of tests/faults).
                self._lane_failed(lane, f"{type(exc).__name__}: {exc}")
            else:  # the peer ended the stream: it is shutting down, or it refused what we sent
                lane.last_error = f"stream ended: HTTP {r.status_code}"
                if r.status_code >= 400:
                    lane.dropped += 1
                    log.warning("peer %s refused the %s stream: %s %s", lane.id, lane.kind, r.status_code, r.text[:200])
            if self._closed:
                return
            if lane.sent > sent_before:  # it worked for a while: reopen promptly
                backoff = self.backoff_s[0]
            lane.phase = "backoff"
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_s[1])

    def _lane_failed(self, lane: _Lane, why: str) -> None:
        lane.reachable = False
        lane.failures += 1
        lane.last_error = why
        log.warning("peer %s: the %s stream failed unexpectedly (%s); reopening it", lane.id, lane.kind, why,
                    exc_info=True)

    async def _open(self, lane: _Lane, headers: dict[str, str]) -> httpx.Response:
        """``POST /v1/peer/stream``, given up when messages wait and the body has not been asked for
        more for ``STALL_TIMEOUT_S`` (not started, or not taking more).

        A guard, not a cure: the client has no read timeout (a stream's answer comes only when it
        ends), and httpcore, when a write of the request body fails, suppresses the error and waits
        for the answer, so a connection half-closed at the wrong moment could hold a lane without a
        bound. (The stall the fault suite found was another thing: ``_stream``'s AttributeError.)
        """
        lane.pulled = time.monotonic()
        post = asyncio.ensure_future(lane.client.post(STREAM_PATH, content=self._body(lane), headers=headers))
        try:
            while True:
                done, _ = await asyncio.wait({post}, timeout=STALL_TIMEOUT_S / 4)
                if done:
                    return post.result()
                # stalled: a message has waited that long, and the body was not asked for more since it came
                if lane.queue and time.monotonic() - max(lane.pulled, lane.queue[0][0]) > STALL_TIMEOUT_S:
                    log.warning("peer %s: the %s stream stalled (%s; no message taken for %.0f s): reopening it",
                                lane.id, lane.kind, lane.phase, STALL_TIMEOUT_S)
                    post.cancel()
                    await asyncio.wait({post}, timeout=2.0)
                    if not post.done():  # the request does not even end: leave it, and its connection pool
                        log.warning("peer %s: the stalled %s stream did not end when cancelled; the lane "
                                    "gets a new client", lane.id, lane.kind)
                        lane.client = self._client(lane.id, lane.url)
                    raise httpx.WriteTimeout(f"peer stream stalled ({lane.phase}): no message taken for "
                                             f"{STALL_TIMEOUT_S:.0f} s")
        except asyncio.CancelledError:
            post.cancel()
            await asyncio.gather(post, return_exceptions=True)
            raise

    async def _body(self, lane: _Lane) -> AsyncIterator[bytes]:
        """The stream's body: whatever is queued, as frames, one chunk per wake-up."""
        pack = FRAME_HEADER.pack
        lane.phase = "streaming"
        while not self._closed:
            lane.pulled = time.monotonic()
            if not lane.queue:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            oldest_ok = time.monotonic() - self.max_age_s
            parts: list[bytes] = []
            size = 0
            while lane.queue and size < CHUNK_BYTES:
                enqueued, body = lane.queue.popleft()
                if enqueued < oldest_ok:
                    lane.dropped += 1
                    continue
                parts.append(pack(len(body)))
                parts.append(body)
                size += 4 + len(body)
            if parts:
                lane.reachable = True
                lane.sent += len(parts) // 2
                yield b"".join(parts)

    # -- requests --------------------------------------------------------------------------
    def client(self, peer_id: str) -> httpx.AsyncClient | None:
        return self._clients.get(peer_id)

    def status(self) -> list[dict]:
        out = []
        for pid, votes in self.lanes["messages"].items():
            bulk = self.lanes["records"][pid]
            out.append({"id": pid, "url": votes.url, "reachable": votes.reachable or bulk.reachable,
                        "queued": len(votes.queue) + len(bulk.queue), "sent": votes.sent + bulk.sent,
                        "dropped": votes.dropped + bulk.dropped,
                        "lanes": {lane.kind: {"phase": lane.phase, "queued": len(lane.queue), "sent": lane.sent,
                                              "failures": lane.failures, "last_error": lane.last_error[:200]}
                                  for lane in (votes, bulk)}})
        return out
