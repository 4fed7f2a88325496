"""The driver: one asyncio loop that runs a validator — replica, mempool, validation, ledger and peers.

Everything that changes consensus state happens on this loop, in this order, per iteration:

1. queued events (peer messages, validation verdicts, state-transfer results) -> ``Replica``;
2. a tick every ``tick_ms`` -> ``Replica.tick(now, pending)``;
3. as primary with an open slot: cut a batch when ``max_block_records`` are ready or the oldest
   ready record waited ``batch_timeout_ms``, build the block, ``Replica.propose``.

Effects run in list order. Every ``Persist`` of a list is written in one synced batch before any
effect runs (so a vote is durable before it is sent), together with the indexes and head of the
blocks its ``Commit``s deliver (one synced write per round; the blocks' own batch is synced before
this node's next CHECKPOINT: docs/storage.md); ``Send``/``Broadcast`` only enqueue; a stored block
wakes its ``?wait=commit`` callers; when a batch of messages commits blocks, the primary proposes
the next block in the same list, so its PRE-PREPARE shares that synced write; ``Validate``
goes to the validation task (in order, signatures in the thread pool); ``FetchState`` starts a
catch-up task that verifies fetched blocks with the same ``client`` code an auditor uses.
Disk writes run in a one-thread executor so the loop keeps serving HTTP while LevelDB syncs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode
from rantai.client.format.errors import DuplicateRecord, InvalidBlock, NodeError, Overloaded, RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import Governance
from rantai.client.format.keys import Signer, load_key
from rantai.client.format.records import SignedRecord
from rantai.client.format.validity import Parent
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
from rantai.consensus.epochs import Consensus
from rantai.consensus.errors import InvariantBroken
from rantai.consensus.messages import Checkpoint

from .catchup import CatchUp
from .config import NodeConfig
from .forwarding import Forwarder
from .ledger import Ledger
from .logs import Watch
from .mempool import Mempool
from .read_policy import ValidatorReadAuth
from .storage import Storage
from .storecheck import check_store
from .transport import PeerTransport
from .validation import RecordValidator, error_body

__all__ = ["Node"]

log = logging.getLogger("rantai.node")

PEER_MESSAGES = "/v1/peer/messages"
PARTIAL_IN_FLIGHT = 2
# A round's votes share the synced batch of the blocks it commits only while those hold at most this
# many records: indexing a block costs ~0.1 ms a record on the disk thread, and votes waiting behind
# a big block's indexes would slow the pipeline more than the fsync saved (~5-10 ms here).
ROUND_MERGE_RECORDS = 64


def _merges_round(blocks: Sequence[Block]) -> bool:
    """Whether a round's votes share the synced batch of the blocks it commits (ROUND_MERGE_RECORDS)."""
    return sum(len(b.records) for b in blocks) <= ROUND_MERGE_RECORDS


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
        peer_tls: ssl.SSLContext | None = None,
    ) -> None:
        # A key the genesis does not list may be a validator the consortium added later: the chain
        # says, once the store is open (``start``); until it is one, the node observes.
        self.genesis = genesis
        self.genesis_bytes = genesis_bytes if genesis_bytes is not None else genesis.to_json().encode()
        self.signer = signer
        self.id = signer.id
        known = genesis.validator_by_id.get(signer.id)
        self.name = name or (known.name if known is not None else signer.id)
        self.data_dir = Path(data_dir)
        self.tick_ms = tick_ms
        self.params = genesis.params
        self._peer_overrides = dict(peers or {})
        self.peer_urls = self._urls(genesis.validators)
        self._transport_arg = transport
        self._mempool_max = mempool_max
        self._verify_workers = verify_workers
        self._storage: Storage | None = None
        self.started = False
        self.fatal: BaseException | None = None  # an invariant broke: this validator no longer takes part
        self.admission: Any = None  # the API's admission control (node/admission.py), set by create_app
        self.on_fatal: Callable[[BaseException], None] | None = None
        self.closing: asyncio.Future | None = None  # done once the node begins to shut down (ends peer streams)
        self.metrics: Any = None  # the API's metrics (node/metrics.py), set by create_app: times the disk writes
        self.peer_tls = peer_tls  # verifies peers and presents this node's certificate (node/tls.py); None: defaults
        self.status_extra: dict[str, Callable[[], Any]] = {}  # more sections of ``status`` (e.g. "tls", from cli run)

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
        # Consensus over the validator sets the chain has scheduled (consensus/epochs.py): on
        # restart, every change already approved on the stored chain, and the hash of the block
        # before each start the store holds (the epoch the node is in starts from it).
        self._scheduled: dict[int, tuple[tuple[str, bytes], ...]] = dict(self._validator_changes())
        boundaries = {}
        for start in self._scheduled:
            parent = self.ledger.parent_at(start - 1)
            if parent is not None:
                boundaries[start - 1] = parent.hash
        self.replica = Consensus(
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
            schedule=sorted(self._scheduled.items()),
            boundaries=boundaries,
        )
        self._retired_logged = False
        self.closing = asyncio.get_running_loop().create_future()
        gov = self.ledger.governance
        self.peer_urls = {pid: url for c in gov.configs for pid, url in self._urls(c.validators).items()}
        self._configs_seen, self._version_seen = len(gov.configs), gov.configs[-1].version
        self.transport = PeerTransport(self.peer_urls, sender=self.id, transport=self._transport_arg,
                                       verify=self.peer_tls if self.peer_tls is not None else True,
                                       auth=ValidatorReadAuth(self.signer))
        self.transport.start()
        self.forwarder = Forwarder(self.id, self.mempool, self.transport, self._count)
        self._events: list[tuple[Any, ...]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._blocks: dict[bytes, Block] = {}  # digest -> parsed block (proposed or validated)
        self._deferred: dict[int, tuple[Block, Any, Any]] = {}
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._validate_q: asyncio.Queue[Validate] = asyncio.Queue()
        self._store_lock = asyncio.Lock()
        self._catch_up: asyncio.Task | None = None
        self.catching_up = CatchUp(self)
        self.counters: dict[str, int] = {}
        self.watch = Watch(self)  # the operator's events, logged once each (node/logs.py)
        if self.metrics is not None:
            self.metrics.hook_storage()
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
        if self.metrics is not None:
            fn = self.metrics.timed_disk(fn)  # rantai_disk_sync_seconds; a failed write is logged (storage-error)
        return await asyncio.get_running_loop().run_in_executor(self.disk, fn, *args)

    # -- the loop --------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
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
                    commits = [self._block_of(e.proposal) for e in effects if type(e) is Commit]
                    if commits and _merges_round(commits) and not any(b.change_entries() for b in commits):
                        # The PRE-PREPARE joins the round's synced write (``_run``). Not after big blocks
                        # (proposing before their store would only cut the next block short), nor after
                        # governance changes (stored first: they may change who proposes next).
                        effects.extend(self._propose(max(self.storage.height, commits[-1].height)))
                    await self._run(effects)
                    self.watch.after("messages")
                now = _now_ms()
                if now >= next_tick:
                    next_tick = now + self.tick_ms
                    await self._run(self.replica.tick(now, self.mempool.ready_count > 0))
                    self.watch.after("tick")
                    if self.replica.retired and not self._retired_logged:
                        self._retired_logged = True
                        log.warning("this validator (%s) was removed by governance: it no longer votes; it keeps "
                                    "serving reads until its operator stops it", self.id)
                await self._maybe_propose()
                self.forwarder.flush(_now_ms(), self.replica.view, self.replica.primary(self.replica.view))
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
            # Until woken or the next tick: a timer that sets the event (``asyncio.wait_for`` would
            # wrap the wait in a task of its own at every turn of this loop).
            timer = loop.call_later(max(0.0, (next_tick - _now_ms()) / 1000), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

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
        run = [(self._block_of(e.proposal), e.certificate, None) for e in effects if type(e) is Commit]
        merged = bool(run) and _merges_round([b for b, _, _ in run])
        if merged:
            # One synced write for the round: the votes and the committed blocks' indexes and head
            # in one batch, the blocks themselves unsynced until a CHECKPOINT (``_store_run``).
            await self._store_run(run, entries)
        elif entries:
            await self._on_disk(self.storage.persist, entries)
        i, n = 0, len(effects)
        while i < n:
            e = effects[i]
            t = type(e)
            if t is Persist:
                pass  # written above
            elif t is Commit:
                if not merged:  # big blocks: the votes went first; the block's indexes and head, one synced batch
                    await self._store_run([(self._block_of(e.proposal), e.certificate, None)], [])
            elif t is Send:
                self.transport.send(e.to, PEER_MESSAGES, wire.encode(e.message))
            elif t is Broadcast:
                if type(e.message) is Checkpoint and 0 < self.storage.unsynced_from <= e.message.height:
                    # A CHECKPOINT lets peers forget the payloads of the blocks up to it: ours
                    # must be on disk first (docs/storage.md, "One synced write per round"). (A
                    # re-sent older one, below every unsynced block, needs nothing.)
                    await self._on_disk(self.storage.sync_chain)
                self.transport.broadcast(PEER_MESSAGES, wire.encode(e.message))
            elif t is Validate:
                self._validate_q.put_nowait(e)
            elif t is FetchState:
                if self._catch_up is None or self._catch_up.done():
                    self._catch_up = asyncio.create_task(self.catching_up.run(e))
                    self.watch.catch_up_started(e.to_height, e.peers)
                    self._catch_up.add_done_callback(self.watch.catch_up_ended)
            else:
                log.warning("unknown effect %r", e)
            i += 1

    # -- proposing -------------------------------------------------------------------------
    async def _maybe_propose(self) -> None:
        effects = self._propose(self.storage.height)
        if effects:
            await self._run(effects)

    def _propose(self, committed: int) -> list[Any]:
        """Build and propose the blocks the open slots and the mempool allow; their effects, to run.

        ``committed``: the height counted as committed for the group-commit rule below — the stored
        height, or the last ``Commit`` of a handled batch whose effects have not run yet: the loop
        then proposes in the same breath, and the PRE-PREPARE's ``Persist`` joins that round's
        synced batch (``_run``) instead of costing the primary an fsync of its own.
        """
        p = self.params
        out: list[Any] = []
        for _ in range(p["window"]):
            slot = self.replica.next_slot()
            if slot is None:
                return out
            if self.mempool.release_off_chain(slot.parent):
                self._count("proposals-abandoned")
            # Group commit: a full block goes out at once, but a partial one only while fewer than
            # PARTIAL_IN_FLIGHT blocks are uncommitted. Under load, records gather while earlier
            # blocks commit, so blocks grow and the per-block cost (votes, HTTP, fsync) is shared;
            # when idle, a lone record still leaves after batch_timeout_ms.
            full = self.mempool.ready_count >= p["max_block_records"]
            if not full and slot.height - 1 - committed >= PARTIAL_IN_FLIGHT:
                return out
            if not self.mempool.should_propose(_now_ms(), p["max_block_records"], p["batch_timeout_ms"]):
                return out
            parent = self._parent(slot.height - 1, slot.parent)
            if parent is None:
                # The replica knows the parent's digest (committed by a quorum) before this node has
                # stored the block itself (catching up): no block can be built on it yet, so wait.
                self._count("proposal-waits-for-parent")
                return out
            limits = self.ledger.governance.at(slot.height).params
            records = self.mempool.cut(limits["max_block_records"], limits["max_block_bytes"] - 4096)
            records = self._admissible(records, slot.height, slot.parent)
            if not records:
                return out
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
            out.extend(self.replica.propose(proposal, _now_ms()))
        return out

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
    def _block_of(self, p: Proposal) -> Block:
        """The committed proposal's block: the one this node built or validated, else parsed from the
        payload once and kept until stored (the loop and ``_run`` both ask for it)."""
        block = self._blocks.get(p.digest)
        if block is None:
            block = self._blocks[p.digest] = Block.from_bytes(p.payload)
        return block

    async def _store_run(self, run: Sequence[tuple[Block, Any, Any]],
                         state: list[tuple[bytes, bytes | None]] | None = None) -> int:
        """Store consecutive verified blocks ``(block, certificate, index entries or None)`` in one
        write (``Ledger.apply_run``), skipping those stored already; a run that starts above the
        next height is deferred. The number of blocks of ``run`` stored.

        ``state`` (a consensus round's ``Persist`` entries; [] for none): the blocks were committed
        by consensus here, so the round is one synced batch — the entries, the indexes and the head
        — and the blocks' own batch is synced later, before this node's next CHECKPOINT
        (``Storage.commit_blocks``). None (catch-up): two synced batches, as before.
        """
        async with self._store_lock:
            height = self.storage.height
            run = [x for x in run if x[0].height > height]
            if not run or run[0][0].height > height + 1:
                if state:
                    await self._on_disk(self.storage.persist, state)
                for x in run:
                    self._deferred[x[0].height] = x
                return 0
            await self._on_disk(self.ledger.apply_run, run, state)
            for x in run:
                self._after_store(x[0])
            while (nxt := self._deferred.pop(self.storage.height + 1, None)) is not None:
                await self._on_disk(self.ledger.apply_run, [nxt])
                self._after_store(nxt[0])
            for h in [h for h in self._deferred if h <= self.storage.height]:
                del self._deferred[h]
            return len(run)

    def _urls(self, validators: Any) -> dict[str, str]:
        """Peer id -> URL for ``validators`` (this node excluded; the config's ``peers`` override)."""
        return {v.id: self._peer_overrides.get(v.id, v.url) for v in validators if v.id != self.id}

    def is_validator(self, vid: str) -> bool:
        """A validator of any consortium this node knows (the genesis, in force, or scheduled): the
        peer endpoints' gate. Consensus itself counts only the set in force at each height."""
        return any(vid in c.validator_by_id for c in self.ledger.governance.configs)

    def _after_store(self, block: Block) -> None:
        self._follow_validators()
        ids = block.record_ids()
        self.mempool.settle(block.height, ids)
        for digest in [d for d, b in self._blocks.items() if b.height <= block.height]:
            del self._blocks[digest]
        for index, rid in enumerate(ids):
            for fut in self._waiters.pop(rid, ()):
                if not fut.done():
                    fut.set_result((block.height, index))

    def _validator_changes(self) -> list[tuple[int, tuple[tuple[str, bytes], ...]]]:
        """(first height, validator set) for every height the chain's governance changes the set."""
        gov = self.ledger.governance
        out = []
        previous: tuple[tuple[str, bytes], ...] | None = None
        for height, c in zip(gov.heights, gov.configs, strict=True):
            vals = tuple((v.id, v.public_key) for v in c.validators)
            if previous is not None and vals != previous:
                out.append((height, vals))
            previous = vals
        return out

    def _follow_validators(self) -> None:
        """After a block approved a change of validators: consensus learns the new set and its first
        height (right after the block is stored, before anything else reaches consensus), and this
        node talks to the new validators as soon as the change is known."""
        for start, vals in self._validator_changes():
            if self._scheduled.get(start) != vals:
                self._scheduled[start] = vals
                self.replica.schedule(start, vals)
                log.info("validators change at height %d: %s", start, ", ".join(v for v, _ in vals))
        configs = self.ledger.governance.configs
        if len(configs) == self._configs_seen and configs[-1].version == self._version_seen:
            return
        self._configs_seen, self._version_seen = len(configs), configs[-1].version
        for c in configs:
            for pid, url in self._urls(c.validators).items():
                if pid not in self.peer_urls:
                    self.peer_urls[pid] = url
                    self.transport.add_peer(pid, url)
                    log.info("validator %s (%s) joins the peers this node talks to", pid, url)

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
            changes = block.change_entries()
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
                    self.forwarder.admitted(res.id, res.raw)
                out.append((res.id, res))
            else:
                rid = sha256(raw) if isinstance(raw, bytes) else None
                out.append((rid, res))
        self.watch.records(out)  # counted for /metrics; refusals logged by rule, rate-limited
        self._wake.set()
        return out

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
            "catch_up": self.catching_up.state,
            "fatal": None if self.fatal is None else f"{type(self.fatal).__name__}: {self.fatal}",
            "counters": {**self.counters, **{f"replica.{k}": v for k, v in rs.get("dropped", {}).items()}},
            **{name: section() for name, section in self.status_extra.items()},
        }


def error_entry(rid: bytes | None, err: BaseException) -> dict[str, Any]:
    return {"id": rid, "status": "rejected", "error": error_body(err)}
