"""Catch-up: a validator that is behind fetches blocks from its peers and stores them after checking
each one by the rules an auditor applies (``rantai.client.format.validity``: the block rules with this
node's index as the chain's memory, every record's rules and signature, the commit certificate against
the validators in force at its height). A peer that lies is refused at the first broken rule; the next
peer is asked.

It is a pipeline of three stages, so that fetching, verifying and writing overlap:

* fetch: ``GET /v1/blocks`` from one peer, 1,000 blocks a request, back to back, into a buffer of
  at most ``BUFFER_BYTES`` (the stream is read no further while it is full);
* verify: blocks are parsed (outer map only) and sent in tasks of about ``TASK_RECORDS`` records to
  worker processes (``verify_blocks``: the certificate and every record, by ``validity``; and the
  block's index entries, which are then not computed on the node's loop or disk thread); the block
  rules (``validity.check_block``: heights, hash links, roots, proposers, no record or event twice,
  governance) run here, in height order, as each task's answer comes back. Starting the workers costs
  about a second of CPU, more than verifying a short catch-up: tasks are verified in this process's
  threads until ``POOL_AFTER_BYTES`` of blocks were fetched, and the pool starts then, in the background;
* write: what has been verified while the previous write synced is stored as one run
  (``Ledger.apply_run``: two synced LevelDB batches for the whole run, not two per block). A run ends
  at a block with governance changes and before a new validator set's first height, so consensus
  and the validators this node talks to learn of them as they would block by block.

Worker processes, not threads: libsodium releases the GIL while it verifies, but decoding records,
hashing events and building index entries around it do not (the auditor, client/format/audit.py,
works the same way). They come from a ``forkserver``: forking the running node (its threads, its
LevelDB) would be unsafe.

Progress is in the log every few seconds, in ``GET /v1/status`` (``catch_up``), in ``/metrics`` and in
the counters ``catch-up-blocks`` and ``catch-up-records``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from rantai.client.format.audit import parse_block
from rantai.client.format.blocks import Block, BlockHeader
from rantai.client.format.consortium import Consortium
from rantai.client.format.errors import InvalidBlock, InvalidCertificate, NodeError, RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import Governance
from rantai.client.format.records import SignedRecord
from rantai.client.format.stream import BlockStreamReader
from rantai.client.format.validity import Parent, certificate_of, check_block, check_certificate, check_record, rule_of
from rantai.consensus import wire
from rantai.consensus.certificate import CommitCertificate
from rantai.consensus.crypto import sha256
from rantai.consensus.effects import FetchState

from .epcis_index import lookup_hash, record_digest
from .ledger import NO_INDEX, BlockEntries, block_entries
from .storage import Storage

if TYPE_CHECKING:
    from .driver import Node

__all__ = ["CATCH_UP_BATCH", "CatchUp", "verify_blocks"]

log = logging.getLogger("rantai.node")

CATCH_UP_BATCH = 1000  # blocks per GET /v1/blocks (the API's limit)
CATCH_UP_LOG_S = 3.0  # catch-up progress in the log this often
TASK_BYTES = 512 * 1024  # block bytes per verification task (~1,000 records of a shipping chain)
POOL_AFTER_BYTES = 2 << 20  # block bytes fetched (~3,000 records) before worker processes are started
MAX_WORKERS = 4
# The peer client has no read timeout (its streams answer only when they end); a peer that stops
# sending blocks for this long (hung, or a network that swallows packets) fails the fetch.
FETCH_TIMEOUT = httpx.Timeout(10.0, connect=2.0, read=30.0)
BUFFER_BYTES = 64 << 20  # fetched and not yet verified: the fetch pauses above this
# A write run is what verified while the last one synced, up to these limits.
WRITE_MAX_BLOCKS = 2000
WRITE_MAX_RECORDS = 16_384

# What a worker answers for one block: (None, event digests, index entries), or (failure, None, None)
# with the failure as (kind, message, rule, record index): exceptions with details do not pickle back.
Failure = tuple[str, str, str, "int | None"]
Checked = tuple["Failure | None", "list[bytes | None] | None", "BlockEntries | None"]
# A unit of work: (height, header, certificate object, record bytes, the consortium in force if not the genesis).
Task = list[tuple[int, BlockHeader, Any, list[bytes], "Consortium | None"]]


# -- the worker processes' part ----------------------------------------------------------------------

def verify_blocks(genesis: Genesis, task: Task) -> list[Checked]:
    """Each block's certificate and records by the rules of ``validity`` (records first, as a
    validator checks a proposal), then its event digests and index entries (``block_entries``)."""
    out: list[Checked] = []
    for height, header, cert_obj, raws, consortium in task:
        g = consortium or genesis
        records: list[SignedRecord] = []
        failure: Failure | None = None
        for i, raw in enumerate(raws):
            try:
                record = SignedRecord.from_bytes(raw)
                check_record(record, g)
            except (RantaiError, ValueError) as exc:
                failure = ("record", f"block {height}: record {i} ({sha256(raw).hex()}): {exc}",
                           rule_of(exc, "record field"), i)
                break
            records.append(record)
        if failure is None:
            try:
                check_certificate(certificate_of(cert_obj, height), g, header)
            except RantaiError as exc:
                failure = ("certificate", str(exc), rule_of(exc, "certificate shape"), None)
        if failure is not None:
            out.append((failure, None, None))
            continue
        digests: list[bytes | None] = [None if r.is_change else record_digest(r) for r in records]
        out.append((None, digests, block_entries(NO_INDEX, height, header.timestamp, records)))
    return out


_GENESIS: Genesis | None = None


def _init_worker(genesis_doc: dict[str, Any]) -> None:
    global _GENESIS
    _GENESIS = Genesis(genesis_doc)


def _verify_in_worker(task: Task) -> list[Checked]:
    if _GENESIS is None:
        raise RuntimeError("catch-up worker not initialised")
    return verify_blocks(_GENESIS, task)


def _failure(f: Failure, height: int) -> RantaiError:
    kind, message, rule, index = f
    if kind == "certificate":
        return InvalidCertificate(message, rule=rule, height=height)
    return InvalidBlock(message, rule=rule, height=height, index=index)


# -- this process's part -----------------------------------------------------------------------------

class _Memory:
    """``validity.ChainMemory``: this node's index, and the blocks verified but not yet stored."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.ids: dict[bytes, int] = {}
        self.events: dict[bytes, int] = {}
        # The height of the block being checked: what the store holds at or above it is that block itself
        # (consensus may store it while catch-up verifies it), not the chain below it.
        self.below = 1

    def record_height(self, record_id: bytes) -> int | None:
        loc = self.storage.locate(record_id)
        if loc is not None and loc[0] < self.below:
            return loc[0]
        return self.ids.get(record_id)

    def event_height(self, digest: bytes) -> int | None:
        hit = lookup_hash(self.storage.db, digest)
        if hit is not None and hit[1] < self.below:
            return hit[1]
        return self.events.get(digest)

    def add(self, block: Block, digests: list[bytes | None]) -> None:
        h = block.height
        for r in block.records:
            self.ids[r.id] = h
        for d in digests:
            if d is not None:
                self.events[d] = h

    def forget(self, block: Block, digests: list[bytes | None]) -> None:
        """The block is stored: the index answers for it now."""
        for r in block.records:
            self.ids.pop(r.id, None)
        for d in digests:
            if d is not None:
                self.events.pop(d, None)


# A block parsed for the pipeline: (header, record bytes, block of ids, certificate object).
Parsed = tuple[BlockHeader, list[bytes], Block, Any]
# A verified block on its way to the store: (block, certificate, index entries, event digests).
Verified = tuple[Block, CommitCertificate, BlockEntries, list[bytes | None]]


class CatchUp:
    """The catch-up of one node (``run`` is started by the driver on the replica's ``FetchState``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.state: dict[str, Any] = {"running": False, "from": 0, "height": 0, "target": 0, "blocks": 0,
                                      "records": 0, "records_per_s": 0.0, "blocks_per_s": 0.0, "fetched": 0,
                                      "verified": 0, "workers": 0}
        self.t0 = self.logged = time.monotonic()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_start: asyncio.Future[ProcessPoolExecutor | None] | None = None
        self._workers = 0
        self._fetched_bytes = 0
        self._buffered = 0
        self._room = asyncio.Event()

    async def run(self, fs: FetchState) -> None:
        """Fetch blocks from peers, verify each like an auditor (chain link, records, certificate), store."""
        storage = self.node.storage
        peers = [p for p in fs.peers if p in self.node.peer_urls] or list(self.node.peer_urls)
        target = fs.to_height
        height = storage.height
        self.state = {"running": True, "from": height, "height": height, "target": target, "blocks": 0,
                      "records": 0, "records_per_s": 0.0, "blocks_per_s": 0.0, "fetched": height,
                      "verified": height, "workers": self._workers if self._pool is not None else 0}
        self.t0 = self.logged = time.monotonic()
        turn = failures = 0
        self._fetched_bytes = 0
        try:
            while storage.height < target and failures < 3 * len(peers):
                peer = peers[turn % len(peers)]
                before = storage.height
                try:
                    await self.fetch_from(peer, before + 1, target)
                except BrokenExecutor as exc:  # a worker process died (killed, out of memory): verify here
                    log.warning("catch-up: the worker processes failed (%s); verifying in this process", exc)
                    self._close_pool()
                    self.state["workers"] = 0
                except (httpx.HTTPError, OSError, RantaiError, ValueError, AttributeError) as exc:
                    # AttributeError: httpcore/anyio on a connection reset at once (getpeername on None);
                    # whatever a peer's connection does, this round fails and the next peer is asked.
                    log.warning("catch-up from %s failed: %s", peer, exc or type(exc).__name__)
                    self.node._count("catch-up-failures")
                    turn += int(storage.height > before)  # (no progress: the next peer in any case, below)
                if storage.height == before:  # nothing from this peer (it failed, or has no more): the next
                    failures += 1
                    turn += 1
                    await asyncio.sleep(0.05)
        finally:
            self._close_pool()
            self.state["running"] = False
            self.progress(force=True)
            height, digest = storage.head()
            self.node._post("transferred", height, digest)

    def progress(self, force: bool = False) -> None:
        """Catch-up progress in ``status()["catch_up"]``, and in the log every few seconds."""
        c = self.state
        now = time.monotonic()
        c["height"] = self.node.storage.height
        c["records_per_s"] = round(c["records"] / max(now - self.t0, 1e-6), 1)
        c["blocks_per_s"] = round(c["blocks"] / max(now - self.t0, 1e-6), 1)
        if force or now - self.logged >= CATCH_UP_LOG_S:
            self.logged = now
            log.info("catch-up: height %d of %d (fetched %d, verified %d), %d records in %d blocks, %.0f records/s, "
                     "%d worker process(es)%s", c["height"], c["target"], c["fetched"], c["verified"], c["records"],
                     c["blocks"], c["records_per_s"], c["workers"], "" if c["running"] else " (done)")

    # -- worker processes ------------------------------------------------------------------------
    def _maybe_start_pool(self) -> None:
        """Start the worker processes in the background once this catch-up has fetched enough to be
        worth them (``POOL_AFTER_BYTES``); tasks go to them as soon as they are up."""
        if self._pool is not None or self._pool_start is not None or self._fetched_bytes < POOL_AFTER_BYTES:
            return
        n = min(os.cpu_count() or 1, MAX_WORKERS)
        if n < 2:
            return  # one core: a worker would only take turns with this process
        genesis_doc = self.node.genesis.doc

        def start() -> ProcessPoolExecutor | None:
            try:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload([__name__])
                pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(genesis_doc,))
                list(pool.map(_verify_in_worker, [[]] * n))  # start them now, not on the first task
                return pool
            except (OSError, RuntimeError) as exc:  # no processes to be had: verify here
                log.warning("catch-up: no worker processes (%s); verifying in this process", exc)
                return None

        def started(fut: asyncio.Future[ProcessPoolExecutor | None]) -> None:
            pool = None if fut.cancelled() or fut.exception() is not None else fut.result()
            if pool is None:
                return
            if self._pool_start is fut:
                self._pool = pool
                self._workers = self.state["workers"] = n
            else:  # the catch-up ended meanwhile
                pool.shutdown(wait=False, cancel_futures=True)

        self._pool_start = asyncio.get_running_loop().run_in_executor(None, start)
        self._pool_start.add_done_callback(started)

    def _close_pool(self) -> None:
        self._pool_start = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # -- the pipeline ----------------------------------------------------------------------------
    async def fetch_from(self, peer: str, start: int, target: int) -> int:
        """Heights start..target from ``peer``: fetch, verify and write concurrently; the number of
        blocks stored. What verified before a failure is stored; then the failure is raised."""
        before = self.node.storage.height
        fetched: asyncio.Queue[tuple[bytes, Any] | None] = asyncio.Queue()
        verified: asyncio.Queue[Verified | None] = asyncio.Queue()
        self._buffered = 0
        self._room.set()
        memory = _Memory(self.node.storage)
        fetch = asyncio.create_task(self._fetch(peer, start, target, fetched), name="rantai-catch-up-fetch")
        verify = asyncio.create_task(self._verify(start, fetched, verified, memory), name="rantai-catch-up-verify")
        try:
            await self._write(verified, memory)
        finally:
            for t in (fetch, verify):
                t.cancel()
            results = await asyncio.gather(fetch, verify, return_exceptions=True)
        for r in reversed(results):  # the verifier's refusal says more than the fetch's end
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r
        return self.node.storage.height - before

    async def _fetch(self, peer: str, start: int, target: int, out: asyncio.Queue[tuple[bytes, Any] | None]) -> None:
        try:
            client = self.node.transport.client(peer)
            if client is None:
                raise NodeError(f"catch-up: no client for peer {peer}")
            nxt = start
            while nxt <= target:
                got = 0
                reader = BlockStreamReader(wire.MAX_MESSAGE_BYTES)
                stop = min(target, nxt + CATCH_UP_BATCH - 1)
                async with client.stream("GET", "/v1/blocks", params={"from": nxt, "to": stop},
                                         headers={"accept": "application/msgpack"}, timeout=FETCH_TIMEOUT) as r:
                    if r.status_code != 200:
                        raise NodeError(f"catch-up: {peer} answered HTTP {r.status_code}")
                    async for chunk in r.aiter_bytes():
                        for item in reader.feed(chunk):
                            while self._buffered > BUFFER_BYTES:
                                self._room.clear()
                                await self._room.wait()
                            self._buffered += len(item[0])
                            out.put_nowait(item)
                            got += 1
                if got == 0:
                    return  # the peer has nothing more
                nxt += got
                self.state["fetched"] = nxt - 1
        finally:
            out.put_nowait(None)

    async def _verify(self, start: int, inq: asyncio.Queue[tuple[bytes, Any] | None],
                      outq: asyncio.Queue[Verified | None], memory: _Memory) -> None:
        """Parse and send tasks to the workers (``_submit``); check the block rules of each answer in
        order (here); hand what passed to the writer."""
        limit = 2 * max(self.state["workers"], 1)
        slots = asyncio.Semaphore(limit)
        tasks: asyncio.Queue[tuple[list[Parsed], Any, asyncio.Event]] = asyncio.Queue()
        gov = self.node.ledger.governance.fork()
        sub = asyncio.create_task(self._submit(start, inq, tasks, slots, gov), name="rantai-catch-up-submit")
        loop = asyncio.get_running_loop()
        try:
            stored = self.node.ledger.parent_at(start - 1)
            if stored is None:
                raise NodeError(f"catch-up: block {start - 1} is not stored")
            parent: Parent = stored
            while True:
                parsed, fut, finished = await tasks.get()
                if isinstance(fut, BaseException):
                    raise fut  # the submitter's failure, after everything sent before it
                if fut is None:
                    return
                results = await fut
                good, exc, parent = await loop.run_in_executor(
                    self.node.validator.pool, self._check, parsed, results, parent, gov, memory)
                for v in good:
                    outq.put_nowait(v)
                if good:
                    self.state["verified"] = good[-1][0].height
                finished.set()
                slots.release()
                if exc is not None:
                    raise exc
        finally:
            sub.cancel()
            await asyncio.gather(sub, return_exceptions=True)
            outq.put_nowait(None)

    async def _submit(self, start: int, inq: asyncio.Queue[tuple[bytes, Any] | None],
                      tasks: asyncio.Queue[tuple[list[Parsed], Any, asyncio.Event]], slots: asyncio.Semaphore,
                      gov: Governance) -> None:
        """Take what was fetched, parse it, and send it to be verified in tasks of ~TASK_BYTES; a task
        ends after a block with governance changes, and the next waits until that block's changes
        are applied (the consortium of later heights may depend on them)."""
        loop = asyncio.get_running_loop()
        height = start
        done = asyncio.Event()
        done.set()
        try:
            while True:
                item = await inq.get()
                if item is None:
                    break
                batch = [item]
                size = len(item[0])
                ended = False
                while size < TASK_BYTES and not inq.empty():
                    nxt = inq.get_nowait()
                    if nxt is None:
                        ended = True
                        break
                    batch.append(nxt)
                    size += len(nxt[0])
                self._buffered -= size
                self._room.set()
                self._fetched_bytes += size
                self._maybe_start_pool()
                parsed, exc = await loop.run_in_executor(self.node.validator.pool, _parse, batch, height)
                height += len(parsed)
                task: list[Parsed] = []
                for p in parsed:
                    task.append(p)
                    if p[2].change_entries():
                        finished = await self._send(task, tasks, slots, gov)
                        task = []
                        await finished.wait()
                if task:
                    await self._send(task, tasks, slots, gov)
                if exc is not None:
                    raise exc
                if ended:
                    break
            tasks.put_nowait(([], None, done))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the verifier, which raises it in order
            tasks.put_nowait(([], exc, done))

    async def _send(self, task: list[Parsed], tasks: asyncio.Queue[tuple[list[Parsed], Any, asyncio.Event]],
                    slots: asyncio.Semaphore, gov: Governance) -> asyncio.Event:
        await slots.acquire()
        g = self.node.genesis
        work: Task = []
        for header, raws, _, cert_obj in task:
            consortium = gov.at(header.height)
            work.append((header.height, header, cert_obj, raws, None if consortium is g else consortium))
        loop = asyncio.get_running_loop()
        if self._pool is not None:
            fut: Any = asyncio.wrap_future(self._pool.submit(_verify_in_worker, work))
        else:
            fut = loop.run_in_executor(self.node.validator.pool, verify_blocks, g, work)
        finished = asyncio.Event()
        tasks.put_nowait((task, fut, finished))
        return finished

    def _check(self, parsed: list[Parsed], results: list[Checked], parent: Parent, gov: Governance,
               memory: _Memory) -> tuple[list[Verified], RantaiError | None, Parent]:
        """The block rules, in height order, of blocks whose records and certificate the workers
        checked (a thread of the node's verify pool). (blocks that passed, the first refusal, parent)."""
        good: list[Verified] = []
        for (header, _, block, cert_obj), (failure, digests, entries) in zip(parsed, results, strict=True):
            height = header.height
            memory.below = height
            try:
                check_block(block, gov.at(height), parent, memory=memory, digests=digests, governance=gov)
                if failure is not None:
                    raise _failure(failure, height)
                assert digests is not None and entries is not None  # noqa: S101 - no failure: both computed
                cert = certificate_of(cert_obj, height)
            except RantaiError as exc:
                return good, exc, parent
            memory.add(block, digests)
            good.append((block, cert, entries, digests))
            parent = Parent.of(header)
        return good, None, parent

    async def _write(self, inq: asyncio.Queue[Verified | None], memory: _Memory) -> None:
        """Store what verified: everything ready at once, as one run (``Node._store_run``)."""
        node = self.node
        while True:
            item = await inq.get()
            if item is None:
                return
            run = [item]
            records = len(item[0].records)
            end = False
            while (not self._cut(run[-1][0]) and len(run) < WRITE_MAX_BLOCKS and records < WRITE_MAX_RECORDS
                   and not inq.empty()):
                nxt = inq.get_nowait()
                if nxt is None:
                    end = True
                    break
                run.append(nxt)
                records += len(nxt[0].records)
            stored = await node._store_run([(b, c, e) for b, c, e, _ in run])
            last = run[-1][0]
            if stored and last.height + 1 in node._scheduled:
                # The block before a new validator set's first height: consensus starts that epoch from
                # it, so it hears of it now, not at the end of the catch-up (docs/consensus.md).
                node._post("transferred", last.height, last.hash)
            for b, _, _, digests in run:
                memory.forget(b, digests)
            node.counters["catch-up-blocks"] = node.counters.get("catch-up-blocks", 0) + stored
            node.counters["catch-up-records"] = node.counters.get("catch-up-records", 0) + records
            self.state["blocks"] += stored
            self.state["records"] += records
            self.progress()
            if end:
                return

    def _cut(self, block: Block) -> bool:
        """A write run ends here: after governance changes, or before a new validator set's first height."""
        return bool(block.change_entries()) or block.height + 1 in self.node._scheduled


def _parse(batch: list[tuple[bytes, Any]], height: int) -> tuple[list[Parsed], RantaiError | None]:
    """Blocks' outer maps (``audit.parse_block``), from ``height`` on; stops at the first that does not parse."""
    out: list[Parsed] = []
    for raw, cert_obj in batch:
        try:
            header, raws, block = parse_block(raw, height)
        except RantaiError as exc:
            return out, exc
        out.append((header, raws, block, cert_obj))
        height += 1
    return out, None
