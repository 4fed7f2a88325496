"""The driver: one asyncio loop that runs a validator — replica, mempool, validation, ledger and peers.

Everything that changes consensus state happens on this loop, in this order, per iteration:

1. queued events (peer messages, validation verdicts, state-transfer results) -> ``Replica``;
2. a tick every ``tick_ms`` -> ``Replica.tick(now, pending)``;
3. as primary with an open slot: cut a batch when ``max_block_records`` are ready or the oldest
   ready record waited ``batch_timeout_ms``, build the block, ``Replica.propose``.

Effects run in list order. Consecutive ``Persist`` effects are written as one synced batch before
any later effect (so a vote is durable before it is sent); ``Send``/``Broadcast`` only enqueue;
``Commit`` stores the block (one synced batch) and wakes ``?wait=commit`` callers; ``Validate``
goes to the validation task (in order, signatures in the thread pool); ``FetchState`` starts a
catch-up task that verifies fetched blocks with the same ``client`` code an auditor uses.
Disk writes run in a one-thread executor so the loop keeps serving HTTP while LevelDB syncs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode, encode
from rantai.client.format.errors import DuplicateRecord, InvalidBlock, NodeError, Overloaded, RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import Governance
from rantai.client.format.keys import Signer, load_key
from rantai.client.format.records import SignedRecord
from rantai.client.format.stream import BlockStreamReader
from rantai.client.format.validity import Parent, certificate_of, check_certificate
from rantai.consensus import wire
from rantai.consensus.config import ReplicaConfig
from rantai.consensus.crypto import sha256
from rantai.consensus.effects import (
    Broadcast,
    Commit,
    FetchState,
    Persist,
    Proposal,
    Send,
    Validate,
)
from rantai.consensus.errors import InvariantBroken
from rantai.consensus.replica import Replica

from .config import NodeConfig
from .ledger import Ledger
from .mempool import Mempool
from .storage import Storage
from .storecheck import check_store
from .transport import PeerTransport
from .validation import RecordValidator, error_body

__all__ = ["Node"]

log = logging.getLogger("rantai.node")

PEER_MESSAGES = "/v1/peer/messages"
PEER_RECORDS = "/v1/peer/records"
GOSSIP_CHUNK_BYTES = 4 * 1024 * 1024
CATCH_UP_BATCH = 1000  # blocks per GET /v1/blocks (the API's limit)
CATCH_UP_LOG_S = 3.0  # catch-up progress in the log this often
SHARE_ALL_MS = 3000  # a forwarded record in no proposal by then goes to every validator
SHARE_ALL_TIMES = 3  # ... at most this many times
PARTIAL_IN_FLIGHT = 2


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class Node:
    """A validator: owns the storage, the replica and the loop. ``start``/``stop`` from a running loop."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        signer: Signer,
        data_dir: str | Path,
        peers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | Mapping[str, httpx.AsyncBaseTransport] | None = None,
        tick_ms: int = 10,
        genesis_bytes: bytes | None = None,
        mempool_max: int = 50_000,
        name: str = "",
        verify_workers: int = 2,
    ) -> None:
        if signer.id not in genesis.validator_by_id:
            raise NodeError(f"node: key {signer.id} is not a validator of chain {genesis.chain_id}")
        self.genesis = genesis
        self.genesis_bytes = genesis_bytes if genesis_bytes is not None else genesis.to_json().encode()
        self.signer = signer
        self.id = signer.id
        self.name = name or genesis.validator_by_id[signer.id].name
        self.data_dir = Path(data_dir)
        self.tick_ms = tick_ms
        self.params = genesis.params
        urls = {v.id: v.url for v in genesis.validators if v.id != self.id}
        urls.update({k: v for k, v in (peers or {}).items() if k in urls})
        self.peer_urls = urls
        self._transport_arg = transport
        self._mempool_max = mempool_max
        self._verify_workers = verify_workers
        self._storage: Storage | None = None
        self.started = False
        self.fatal: BaseException | None = None  # an invariant broke: this validator no longer takes part
        self.admission: Any = None  # the API's admission control (node/admission.py), set by create_app
        self.on_fatal: Callable[[BaseException], None] | None = None
        self.closing: asyncio.Future | None = None  # done once the node begins to shut down (ends peer streams)

    @classmethod
    def from_config(cls, cfg: NodeConfig, **kw: Any) -> "Node":
        genesis_bytes = Path(cfg.genesis_path).read_bytes()
        genesis = Genesis.from_json(genesis_bytes)
        signer = load_key(cfg.key_path)
        if signer.id != cfg.id:
            raise NodeError(f"node: config id {cfg.id} does not match the key in {cfg.key_path} ({signer.id})")
        return cls(
            genesis=genesis,
            signer=signer,
            data_dir=cfg.data_dir,
            peers=cfg.peers,
            tick_ms=cfg.tick_ms,
            verify_workers=cfg.verify_workers,
            genesis_bytes=genesis_bytes,
            name=cfg.name,
            **kw,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def open_store(self) -> Storage:
        """Open the data directory and check it (node/storecheck.py), repairing what only costs a re-fetch.

        ``rantai-node run`` calls this before the HTTP server starts, so a damaged store stops the
        process with one line instead of a failed server start-up; ``start`` calls it otherwise.
        """
        if self._storage is not None and not self._storage.closed:
            return self._storage
        storage = Storage(self.data_dir, self.genesis.hash)
        try:
            note = check_store(storage, self.genesis)
        except BaseException:
            storage.close()
            raise
        if note:
            log.warning("%s", note)
        self._storage = storage
        return storage

    @property
    def storage(self) -> Storage:
        """The opened store (``open_store``); asking before that is a bug, not a state."""
        if self._storage is None:
            raise InvariantBroken(f"node {self.name}: the store is not open")
        return self._storage

    async def start(self) -> None:
        g = self.genesis
        self.open_store()
        self.ledger = Ledger(g, self.storage)
        self.mempool = Mempool(max_records=self._mempool_max)
        self.validator = RecordValidator(g, self.storage, self.mempool, workers=self._verify_workers,
                                         governance=lambda: self.ledger.governance)
        self.disk = ThreadPoolExecutor(1, thread_name_prefix="rantai-disk")
        p = self.params
        self.replica = Replica(
            ReplicaConfig(
                chain=g.hash,
                validators=tuple((v.id, v.public_key) for v in g.validators),
                checkpoint_interval=p["checkpoint_interval"],
                window=p["window"],
                view_change_timeout_ms=p["view_change_timeout_ms"],
                view_change_timeout_max_ms=p["view_change_timeout_max_ms"],
            ),
            self.signer,
            self.storage.persisted(),
            self.storage.head(),
            verifiers=g.validator_verifiers,
        )
        self.closing = asyncio.get_running_loop().create_future()
        self.transport = PeerTransport(self.peer_urls, sender=self.id, transport=self._transport_arg)
        self.transport.start()
        self._events: list[tuple[Any, ...]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._blocks: dict[bytes, Block] = {}  # digest -> parsed block (proposed or validated)
        self._deferred: dict[int, tuple[Block, Any]] = {}
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._gossip: list[tuple[bytes, bytes]] = []  # (id, raw) admitted from clients, to forward to the primary
        # record id -> (forwarded or last shared at ms, raw, times shared with all), until committed
        self._unshared: dict[bytes, tuple[int, bytes, int]] = {}
        self._forwarded_view = -1
        self._next_share_check = 0
        self._validate_q: asyncio.Queue[Validate] = asyncio.Queue()
        self._store_lock = asyncio.Lock()
        self._catch_up: asyncio.Task | None = None
        self.catch_up: dict[str, Any] = {"running": False, "from": 0, "height": 0, "target": 0, "blocks": 0,
                                         "records": 0, "records_per_s": 0.0}
        self._catch_up_t0 = self._catch_up_logged = time.monotonic()
        self.counters: dict[str, int] = {}
        self._tasks = [
            asyncio.create_task(self._loop(), name="rantai-driver"),
            asyncio.create_task(self._validation_worker(), name="rantai-validate"),
        ]
        self.started = True
        log.info("node %s (%s) started at height %d", self.name, self.id, self.storage.height)

    def begin_shutdown(self) -> None:
        """End the peer streams this node is serving, so the HTTP server can drain before ``stop``."""
        if self.closing is not None and not self.closing.done():
            self.closing.set_result(None)

    async def stop(self) -> None:
        if not self.started:
            return
        self.begin_shutdown()
        self.started = False
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks) + ([self._catch_up] if self._catch_up else [])
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.cancel()
        await self.transport.close()
        self.validator.close()
        self.disk.shutdown(wait=True)
        self.storage.close()
        log.info("node %s stopped at height %d", self.name, self.storage.height)

    def _fail(self, exc: BaseException) -> None:
        """Stop loudly on a broken invariant: no more votes, ``fatal`` set (``/healthz`` and ``status``
        say so), and ``on_fatal`` told (``rantai-node run`` then exits with code 70)."""
        log.critical("invariant broken, the validator stops: %s", exc, exc_info=exc)
        self.fatal = exc
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def _post(self, *event: Any) -> None:
        self._events.append(event)
        self._wake.set()

    async def _on_disk(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.disk, fn, *args)

    # -- the loop --------------------------------------------------------------------------
    async def _loop(self) -> None:
        next_tick = _now_ms()
        while not self._stopping:
            try:
                while self._events:
                    # Everything queued is handed to the replica first and the effects run together:
                    # the votes of many messages then share one synced write (see ``_run``).
                    events, self._events = self._events, []
                    effects: list[Any] = []
                    for ev in events:
                        effects.extend(self._on_event(ev))
                    await self._run(effects)
                now = _now_ms()
                if now >= next_tick:
                    next_tick = now + self.tick_ms
                    await self._run(self.replica.tick(now, self.mempool.ready_count > 0))
                await self._maybe_propose()
                self._flush_gossip()
            except asyncio.CancelledError:
                raise
            except InvariantBroken as exc:  # our own bug: continuing could sign something wrong
                self._fail(exc)
                return
            except Exception:  # a failed step (a peer's bad input, I/O) must not stop the validator
                log.exception("driver step failed")
                self._count("driver-errors")
            if self._events:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, (next_tick - _now_ms()) / 1000))
            except asyncio.TimeoutError:
                pass

    def _on_event(self, ev: tuple[Any, ...]) -> list[Any]:
        kind = ev[0]
        now = _now_ms()
        if kind == "message":
            return self.replica.handle(ev[1], now)
        if kind == "validated":
            _, view, height, digest, ok = ev
            return self.replica.validated(view, height, digest, ok, now)
        if kind == "transferred":
            _, height, digest = ev
            return self.replica.state_transferred(height, digest, now)
        return []

    async def _run(self, effects: Sequence[Any]) -> None:
        """Execute effects in order, with every ``Persist`` of the list written first, in one synced batch.

        Writing a Persist earlier than its place in the list is always safe (it only has to be
        durable before the effects after it), and one fsync for a whole batch of handled messages
        is what keeps a node's vote latency near one disk sync rather than one per message.
        """
        entries = [kv for e in effects if type(e) is Persist for kv in e.entries]
        if entries:
            await self._on_disk(self.storage.persist, entries)
        i, n = 0, len(effects)
        while i < n:
            e = effects[i]
            t = type(e)
            if t is Persist:
                pass  # written above
            elif t is Send:
                self.transport.send(e.to, PEER_MESSAGES, wire.encode(e.message))
            elif t is Broadcast:
                self.transport.broadcast(PEER_MESSAGES, wire.encode(e.message))
            elif t is Commit:
                await self._commit(e)
            elif t is Validate:
                self._validate_q.put_nowait(e)
            elif t is FetchState:
                if self._catch_up is None or self._catch_up.done():
                    self._catch_up = asyncio.create_task(self._fetch_state(e))
            else:
                log.warning("unknown effect %r", e)
            i += 1

    # -- proposing -------------------------------------------------------------------------
    async def _maybe_propose(self) -> None:
        p = self.params
        for _ in range(p["window"]):
            slot = self.replica.next_slot()
            if slot is None:
                return
            if self.mempool.release_off_chain(slot.parent):
                self._count("proposals-abandoned")
            # Group commit: a full block goes out at once, but a partial one only while fewer than
            # PARTIAL_IN_FLIGHT blocks are uncommitted. Under load, records gather while earlier
            # blocks commit, so blocks grow and the per-block cost (votes, HTTP, fsync) is shared;
            # when idle, a lone record still leaves after batch_timeout_ms.
            full = self.mempool.ready_count >= p["max_block_records"]
            if not full and slot.height - 1 - self.storage.height >= PARTIAL_IN_FLIGHT:
                return
            if not self.mempool.should_propose(_now_ms(), p["max_block_records"], p["batch_timeout_ms"]):
                return
            parent = self._parent(slot.height - 1, slot.parent)
            if parent is None:  # the replica offers a slot only on a parent it accepted: a bug if unknown
                raise InvariantBroken(f"slot {slot.height}: parent {slot.parent.hex()[:12]} "
                                      "is neither stored nor in flight")
            limits = self.ledger.governance.at(slot.height).params
            records = self.mempool.cut(limits["max_block_records"], limits["max_block_bytes"] - 4096)
            records = self._admissible(records, slot.height, slot.parent)
            if not records:
                return
            block = Block.build(
                chain=self.genesis.hash,
                height=slot.height,
                prev_hash=slot.parent,
                view=slot.view,
                proposer=self.id,
                timestamp=max(_wall_ms(), parent.timestamp),  # the rule: never below the parent's
                records=records,
            )
            self._blocks[block.hash] = block
            self.mempool.track(block.hash, slot.height, slot.parent, tuple(block.record_ids()))
            proposal = Proposal(slot.height, slot.parent, block.hash, block.raw)
            await self._run(self.replica.propose(proposal, _now_ms()))

    # -- validating ------------------------------------------------------------------------
    async def _validation_worker(self) -> None:
        while True:
            v = await self._validate_q.get()
            p = v.proposal
            block = self._blocks.get(p.digest)
            ok = True
            if block is None:
                try:
                    parent = self._parent(p.height - 1, p.parent)
                    if parent is None:
                        raise InvalidBlock(f"block {p.height}: its parent {p.parent.hex()[:12]} is unknown here",
                                           rule="hash link", height=p.height)
                    block = await self.validator.check_block(
                        p.payload, p.height, p.digest, parent,
                        ancestors=self.mempool.ancestor_ids(p.parent), now_ms=_wall_ms(),
                        governance=functools.partial(self._governance_after, p.height - 1, p.parent))
                except RantaiError as exc:
                    log.warning("proposal %d/%s refused: %s", p.height, p.digest.hex()[:12], exc)
                    self._count("proposals-refused")
                    ok = False
                except Exception:
                    log.exception("validating proposal %d failed", p.height)
                    ok = False
            if ok and block is not None:
                self._blocks[p.digest] = block
                self.mempool.track(p.digest, p.height, p.parent, tuple(block.record_ids()))
            self._post("validated", v.view, v.height, p.digest, ok)

    # -- committing ------------------------------------------------------------------------
    async def _commit(self, c: Commit) -> None:
        p = c.proposal
        block = self._blocks.get(p.digest)
        if block is None:
            block = Block.from_bytes(p.payload)
        await self._store(block, c.certificate)

    async def _store(self, block: Block, certificate: Any) -> bool:
        """Store ``block`` if it is the next height (defer it if ahead, skip it if stored). True if stored."""
        async with self._store_lock:
            height = self.storage.height
            if block.height <= height:
                return False
            if block.height > height + 1:
                self._deferred[block.height] = (block, certificate)
                return False
            await self._on_disk(self.ledger.apply, block, certificate)
            self._after_store(block)
            while (nxt := self._deferred.pop(self.storage.height + 1, None)) is not None:
                await self._on_disk(self.ledger.apply, *nxt)
                self._after_store(nxt[0])
            for h in [h for h in self._deferred if h <= self.storage.height]:
                del self._deferred[h]
            return True

    def _after_store(self, block: Block) -> None:
        ids = block.record_ids()
        self.mempool.settle(block.height, ids)
        for digest in [d for d, b in self._blocks.items() if b.height <= block.height]:
            del self._blocks[digest]
        for index, rid in enumerate(ids):
            for fut in self._waiters.pop(rid, ()):
                if not fut.done():
                    fut.set_result((block.height, index))

    # -- catch-up --------------------------------------------------------------------------
    async def _fetch_state(self, fs: FetchState) -> None:
        """Fetch blocks from peers, verify each like an auditor (chain link, records, certificate), store."""
        peers = [p for p in fs.peers if p in self.peer_urls] or list(self.peer_urls)
        target = fs.to_height
        attempt = 0
        self.catch_up = {"running": True, "from": self.storage.height, "height": self.storage.height,
                         "target": target, "blocks": 0, "records": 0, "records_per_s": 0.0}
        self._catch_up_t0 = self._catch_up_logged = time.monotonic()
        try:
            while self.storage.height < target and attempt < 3 * len(peers):
                peer = peers[attempt % len(peers)]
                start = self.storage.height + 1
                stop = min(target, start + CATCH_UP_BATCH - 1)
                try:
                    got = await self._fetch_from(peer, start, stop)
                except (httpx.HTTPError, OSError, RantaiError, ValueError) as exc:
                    log.warning("catch-up from %s failed: %s", peer, exc)
                    self._count("catch-up-failures")
                    got = 0
                if got == 0:
                    attempt += 1
                    await asyncio.sleep(0.05)
        finally:
            self.catch_up["running"] = False
            self._progress(force=True)
            height, digest = self.storage.head()
            self._post("transferred", height, digest)

    def _progress(self, force: bool = False) -> None:
        """Catch-up progress in ``status()["catch_up"]``, and in the log every few seconds."""
        c = self.catch_up
        now = time.monotonic()
        c["height"] = self.storage.height
        c["records_per_s"] = round(c["records"] / max(now - self._catch_up_t0, 1e-6), 1)
        if force or now - self._catch_up_logged >= CATCH_UP_LOG_S:
            self._catch_up_logged = now
            log.info("catch-up: height %d of %d, %d records in %d blocks, %.0f records/s%s", c["height"],
                     c["target"], c["records"], c["blocks"], c["records_per_s"], "" if c["running"] else " (done)")

    async def _fetch_from(self, peer: str, start: int, stop: int) -> int:
        client = self.transport.client(peer)
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
                    await self._verify_and_store(raw, cert_obj)
                    got += 1
        return got

    async def _verify_and_store(self, raw: bytes, cert_obj: Any) -> None:
        """A peer's block, checked by the rules an auditor applies (``validity``), then stored."""
        height, _ = self.storage.head()
        parent = self.ledger.head_parent()
        block = await self.validator.check_block(raw, height + 1, None, parent,
                                                 governance=self.ledger.governance.fork)
        cert = certificate_of(cert_obj, block.height)
        loop = asyncio.get_running_loop()
        consortium = self.ledger.governance.at(block.height)
        await loop.run_in_executor(self.validator.pool, check_certificate, cert, consortium, block.header)
        if await self._store(block, cert):
            self._count("catch-up-blocks")
            self.counters["catch-up-records"] = self.counters.get("catch-up-records", 0) + len(block.records)
            self.catch_up["blocks"] += 1
            self.catch_up["records"] += len(block.records)
            self._progress()

    def _governance_after(self, height: int, digest: bytes) -> Governance:
        """The governance state after block ``height`` (hash ``digest``): the committed state, plus the
        change entries of the proposals in flight between the head and that block."""
        committed = self.ledger.governance
        chain: list[Block] = []
        while height > committed.height:
            block = self._blocks.get(digest)
            if block is None or block.height != height:
                raise InvalidBlock(f"block {height + 1}: its ancestor at height {height} is unknown here",
                                   rule="hash link", height=height + 1)
            chain.append(block)
            digest, height = block.header.prev_hash, height - 1
        gov = committed.fork()
        for block in reversed(chain):
            changes = [(i, r) for i, r in enumerate(block.records) if r.is_change]
            if changes:
                gov.apply(block.height, changes)
            gov.height = block.height
        return gov

    def _admissible(self, records: list[SignedRecord], height: int, parent: bytes) -> list[SignedRecord]:
        """The records a block at ``height`` may hold, in order; the others leave the mempool.

        A record admitted earlier may no longer be valid here: its member removed or suspended, its
        role withdrawn, a change entry overtaken by another (approved twice, proposal closed).
        """
        consortium = self.ledger.governance.at(height)
        gov: Governance | None = None
        keep: list[SignedRecord] = []
        drop: list[bytes] = []
        for r in records:
            member = consortium.members.get(r.submitter)
            role = "admin" if r.is_change else "submitter"
            ok = member is not None and member.active and role in member.roles
            if ok and r.is_change:
                gov = gov or self._governance_after(height - 1, parent)
                try:
                    gov.try_entry(height, len(keep), r)  # later entries of this block see this one
                except RantaiError:
                    ok = False
            if ok:
                keep.append(r)
            else:
                drop.append(r.id)
        if drop:
            self.mempool.settle(0, drop)
            self._count("records-dropped-at-proposal")
        return keep

    def _parent(self, height: int, digest: bytes) -> Parent | None:
        """Block ``height`` with hash ``digest`` as a parent: stored, or a proposal in flight."""
        stored = self.ledger.parent_at(height)
        if stored is not None and stored.hash == digest:
            return stored
        block = self._blocks.get(digest)
        if block is not None and block.height == height:
            return Parent.of(block.header)
        return None

    # -- inbound ---------------------------------------------------------------------------
    def deliver(self, message: Any) -> None:
        """A decoded consensus message from a peer (the API checked its sender is a validator)."""
        self._post("message", message)

    async def submit(self, raws: Sequence[bytes], *, gossip: bool = True) -> list[tuple[bytes | None, Any]]:
        """Admit records: [(id, SignedRecord | error)]; admitted ones go to the mempool and (``gossip``) the primary."""
        if not self.started:
            raise NodeError("node: not running")
        height = self.storage.height
        results = await self.validator.admit(raws)
        out: list[tuple[bytes | None, Any]] = []
        now = _now_ms()
        recheck = self.storage.height != height  # a block landed while we verified: it may hold some of these
        for raw, res in zip(raws, results, strict=True):
            if isinstance(res, SignedRecord):
                if recheck and (loc := self.storage.locate(res.id)) is not None:
                    out.append((res.id, DuplicateRecord("record: already committed", id=res.id.hex(),
                                                        height=loc[0], index=loc[1])))
                    continue
                try:
                    self.mempool.add(res, now)
                except (DuplicateRecord, Overloaded) as exc:
                    out.append((res.id, exc))
                    continue
                if gossip:
                    self._gossip.append((res.id, res.raw))
                out.append((res.id, res))
            else:
                rid = sha256(raw) if isinstance(raw, bytes) else None
                out.append((rid, res))
        self._wake.set()
        return out

    def _flush_gossip(self) -> None:
        """Forward records admitted from clients to the primary; share stragglers with every validator.

        Only the primary needs a record to propose it, and every other validator receives it inside
        the PRE-PREPARE, so a record goes to the primary alone: one request per batch instead of
        one per validator. A record that ``SHARE_ALL_MS`` later is still in no proposal this node
        has seen goes to all validators (PBFT's client retransmission to all replicas): then every
        backup holds it as pending and runs its view-change timer, so a silent or censoring
        primary is replaced, and a new primary has it to propose. Being in a proposal, not being
        committed, is the test: under a backlog, records wait for commits, and sharing those
        would only double the work of an already busy network.
        """
        now = _now_ms()
        view = self.replica.view
        if view != self._forwarded_view:
            # A new view, a new primary: what this node's clients gave it and no proposal holds goes
            # to the new primary now, not after a timeout (view synchronisation, docs/consensus.md).
            self._forwarded_view = view
            primary = self.replica.primary(view)
            again = [raw for rid, (_, raw, _) in self._unshared.items() if self.mempool.is_ready(rid)]
            if again and primary != self.id:
                self._count("records-reforwarded")
                self._send_records(again, primary)
        if self._gossip:
            primary = self.replica.primary(view)
            if primary != self.id:
                self._send_records([raw for _, raw in self._gossip], primary)
            # Watched even when this node is the primary of its view: a node stuck alone in a view
            # change would otherwise hold its clients' records where no working primary sees them.
            for rid, raw in self._gossip:
                self._unshared[rid] = (now, raw, 0)
            self._gossip = []
        if self._unshared and now >= self._next_share_check:
            self._next_share_check = now + SHARE_ALL_MS // 4
            # Watched until committed (gone from the mempool). In a proposal: the primary has it,
            # and the clock restarts (a view change may yet abandon that proposal). In none for
            # SHARE_ALL_MS: every validator gets it, at most SHARE_ALL_TIMES times (a backlog
            # holds records in no proposal too, and re-sending those only adds work).
            late: list[bytes] = []
            for rid, (t, raw, shared) in list(self._unshared.items()):
                if rid not in self.mempool:
                    del self._unshared[rid]
                elif not self.mempool.is_ready(rid):
                    self._unshared[rid] = (now, raw, shared)
                elif now - t >= SHARE_ALL_MS and shared < SHARE_ALL_TIMES:
                    late.append(raw)
                    self._unshared[rid] = (now, raw, shared + 1)
            if late:
                self._count("records-shared-with-all")
                self._send_records(late, None)

    def _send_records(self, raws: Sequence[bytes], to: str | None) -> None:
        """POST records to one validator (``to``) or all, in chunks of at most GOSSIP_CHUNK_BYTES."""
        batch: list[bytes] = []
        size = 0
        for raw in [*raws, None]:
            if raw is None or (size + len(raw) > GOSSIP_CHUNK_BYTES and batch):
                if batch:
                    body = encode({"records": batch})
                    if to is None:
                        self.transport.broadcast(PEER_RECORDS, body)
                    else:
                        self.transport.send(to, PEER_RECORDS, body)
                batch, size = [], 0
            if raw is not None:
                batch.append(raw)
                size += len(raw)

    def waiter(self, record_id: bytes) -> asyncio.Future:
        """A future resolved with (height, index) once ``record_id`` is committed here."""
        fut = asyncio.get_running_loop().create_future()
        loc = self.storage.locate(record_id)
        if loc is not None:
            fut.set_result(loc)
        else:
            self._waiters.setdefault(record_id, []).append(fut)
        return fut

    def drop_waiter(self, record_id: bytes, fut: asyncio.Future) -> None:
        futs = self._waiters.get(record_id)
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._waiters[record_id]

    # -- status ----------------------------------------------------------------------------
    async def peer_heights(self) -> dict[str, int | None]:
        """Each peer's head height as it says (``None``: no answer within half a second): a hint for
        status pages and for telling a forged page token from one of a node that is ahead."""

        async def one(pid: str) -> tuple[str, int | None]:
            client = self.transport.client(pid)
            if client is None:
                return pid, None
            try:
                r = await client.get("/v1/head", headers={"accept": "application/msgpack"}, timeout=0.5)
                return pid, int(decode(r.content)["height"]) if r.status_code == 200 else None
            except Exception:  # noqa: BLE001 - any failure means: no answer
                return pid, None

        pairs = await asyncio.gather(*(one(pid) for pid in self.peer_urls))
        return dict(pairs)

    def status(self) -> dict[str, Any]:
        rs = self.replica.status()
        return {
            "node": self.id,
            "name": self.name,
            "chain_id": self.genesis.chain_id,
            "genesis_hash": self.genesis.hash.hex(),
            "height": self.storage.height,
            "view": rs["view"],
            "primary": rs["primary"],
            "mode": rs["mode"],
            "mempool": len(self.mempool),
            "in_flight": self.mempool.in_flight,
            "peers": self.transport.status(),
            "catch_up": self.catch_up,
            "fatal": None if self.fatal is None else f"{type(self.fatal).__name__}: {self.fatal}",
            "counters": {**self.counters, **{f"replica.{k}": v for k, v in rs.get("dropped", {}).items()}},
        }


def error_entry(rid: bytes | None, err: BaseException) -> dict[str, Any]:
    return {"id": rid, "status": "rejected", "error": error_body(err)}
