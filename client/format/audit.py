"""The full-chain auditor: re-verify a whole chain from height 1 with nothing but the genesis file.

Every rule a validator applies is applied here, by the same code (``validity``): for every height h,
the block decodes canonically with exact types, is block h of this chain, links to block h-1, its
counts, root and size limits hold, its proposer is the primary of its view, its timestamp does not
go back; its certificate is for this block, in a view not below the header's, with 2f+1 sorted,
distinct, valid validator signatures; every record is canonical, within its size, signed for this
chain by a member with the submitter role (and, with ``schema=True``, its event passes the EPCIS
rules); no record id and no event hash ID appears twice in the whole chain; no height is missing;
and the head the source reports is the block it served. Any failure names the height, the record
(id and index) and the rule (``validity.RULES``).

Sources are supplied by the caller (``BlockSource``): the client streams ``GET /v1/blocks`` from a
node (``rantai.client.audit.NodeSource``), the node reads a stopped node's data directory
(``rantai.node.audit.DataDirSource``), tests hold blocks in memory (``MemorySource``). This module does
no network or disk I/O of its own. ``compare`` walks several sources in lockstep and reports the first
height where they disagree.

Speed: the sequential work (block rules, hash links, the id index) stays in this process; record
and certificate signatures and event hash IDs — nearly all of the cost — are checked by a process
pool in batches of about ``batch_records`` records. Processes rather than threads: libsodium
releases the GIL while it verifies, but decoding each record around it does not.

Memory: what the chain already holds (``validity.ChainMemory``) is kept as sorted runs of 44-byte
entries (a record id or event digest, height, index) rather than Python sets (about 90 bytes an
entry); repeats are found by merging the runs at the end, so the two ``duplicate`` rules across
blocks are reported after the walk, with both positions.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from rantai.consensus.crypto import sha256

from .blocks import Block, BlockHeader
from .consortium import Consortium
from .encoding import decode
from .epcis.event_hash import uniqueness_digest
from .errors import InvalidBlock, RantaiError
from .genesis import Genesis
from .governance import Governance
from .records import SignedRecord
from .validity import Parent, certificate_of, check_block, check_certificate, check_head, check_record, rule_of

__all__ = [
    "AuditFailure",
    "AuditReport",
    "Auditor",
    "BlockSource",
    "CompareReport",
    "MemorySource",
    "compare",
    "parse_block",
]

ProgressFn = Callable[[int, int, int], None]  # (height done, height total, records done)


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFailure:
    height: int
    rule: str
    message: str
    record: str | None = None  # record id (hex)
    index: int | None = None  # the record's position in its block

    def __str__(self) -> str:
        where = f"height {self.height}"
        if self.index is not None:
            where += f", record {self.index}"
        if self.record:
            where += f" ({self.record[:16]}…)"
        return f"{where}: {self.rule}: {self.message}"

    def to_obj(self) -> dict[str, Any]:
        return {"height": self.height, "rule": self.rule, "message": self.message, "record": self.record,
                "index": self.index}


@dataclass
class AuditReport:
    source: str
    chain_id: str
    genesis_hash: str
    head: int  # the height the source reported (or the requested end)
    height: int = 0  # last height read
    head_hash: str = ""  # hash of the last block read
    blocks: int = 0
    records: int = 0
    seconds: float = 0.0
    workers: int = 0
    failures: list[AuditFailure] = field(default_factory=list)
    truncated: bool = False  # stopped early: too many failures

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The report in plain lines (the operator's CLI; the client's CLI draws a table instead)."""
        lines = [f"source: {self.source}", f"chain: {self.chain_id} ({self.genesis_hash[:16]}…)",
                 f"heights 1..{self.height} of {self.head}: {self.blocks} blocks, {self.records} records",
                 f"last block hash: {self.head_hash or '-'}",
                 f"time: {self.seconds:.2f} s, {self.rate:,.0f} records/s, {self.workers or 1} process(es)"]
        if self.ok:
            lines.append("OK: every rule holds")
        else:
            lines.append(f"FAILED: {len(self.failures)} failure(s)" + (" (stopped early)" if self.truncated else ""))
            lines += [f"  {f}" for f in self.failures[:20]]
        return "\n".join(lines)

    def to_obj(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "chain_id": self.chain_id, "genesis_hash": self.genesis_hash,
                "head": self.head, "height": self.height, "head_hash": self.head_hash, "blocks": self.blocks,
                "records": self.records, "seconds": round(self.seconds, 3), "records_per_second": round(self.rate, 1),
                "workers": self.workers, "truncated": self.truncated, "failures": [f.to_obj() for f in self.failures]}


# -- sources ---------------------------------------------------------------------------------------


class BlockSource(Protocol):
    """Where the auditor reads blocks. A source may also have ``served_head`` (its ``/v1/head`` answer,
    or ``{"height", "block_hash"}`` from a store), which the auditor checks against what it streamed;
    ``chain_hash`` (the genesis hash a store says it holds); and ``stream_error`` (a malformed item
    that ended the stream, reported as the next height's broken rule)."""

    name: str

    def head_height(self) -> int: ...

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, bytes | None, Any]]:
        """(height, block bytes, certificate object) for start..end in order; None where missing."""
        ...

    def close(self) -> None: ...


class MemorySource:
    """Blocks and certificate objects held in memory (tests and benchmarks)."""

    def __init__(self, items: Sequence[tuple[bytes, Any]], name: str = "memory") -> None:
        self.items = list(items)
        self.name = name

    def head_height(self) -> int:
        return len(self.items)

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, bytes | None, Any]]:
        for h in range(start, min(end, len(self.items)) + 1):
            raw, cert = self.items[h - 1]
            yield h, raw, cert

    def close(self) -> None:
        pass


# -- per-record and per-certificate checks (run in the worker processes) ---------------------------

_GENESIS: Genesis | None = None
_SCHEMA = False

# A failure as it travels back from a worker: (height, rule, message, record id hex, index).
FailureTuple = tuple[int, str, str, "str | None", "int | None"]
# A unit of work: (height, header, certificate object, record bytes, the consortium in force if not the genesis).
Task = list[tuple[int, BlockHeader, Any, list[bytes], "Consortium | None"]]


def _init_worker(genesis_doc: dict[str, Any], schema: bool) -> None:
    global _GENESIS, _SCHEMA
    _GENESIS = Genesis(genesis_doc)
    _SCHEMA = schema


def _check_record(g: Consortium, raw: bytes, height: int, index: int) -> tuple[FailureTuple | None, bytes | None]:
    """(None, event digest) when the record is valid in ``g``; else (failure, digest if known)."""
    try:
        rec = SignedRecord.from_bytes(raw)
    except RantaiError as exc:
        return (height, rule_of(exc, "record field"), str(exc), sha256(raw).hex(), index), None
    digest = None
    if not rec.is_change:
        try:
            digest = uniqueness_digest(rec.event)
        except Exception:  # noqa: BLE001 - an event that cannot be hashed is reported by the schema rule
            pass
    try:
        check_record(rec, g, schema=_SCHEMA)
    except RantaiError as exc:
        return (height, rule_of(exc, "record field"), str(exc), rec.id.hex(), index), digest
    return None, digest


def _check_task(task: Task) -> tuple[list[FailureTuple], list[tuple[int, int, bytes]]]:
    """Certificates, record rules and event digests of a batch of blocks: (failures, (height, index, digest))."""
    if _GENESIS is None:
        raise RuntimeError("audit worker not initialised")
    failures: list[FailureTuple] = []
    digests: list[tuple[int, int, bytes]] = []
    for height, header, cert_obj, raws, consortium in task:
        g = consortium or _GENESIS
        try:
            check_certificate(certificate_of(cert_obj, height), g, header)
        except RantaiError as exc:
            failures.append((height, rule_of(exc, "certificate shape"), str(exc), None, None))
        for i, raw in enumerate(raws):
            failure, digest = _check_record(g, raw, height, i)
            if failure is not None:
                failures.append(failure)
            if digest is not None:
                digests.append((height, i, digest))
    return failures, digests


# -- the sequential part -------------------------------------------------------------------------


class _Id:
    """An EPCIS record as the block rules see it in this process: its id and size (parsed in the workers)."""

    __slots__ = ("id", "raw")
    is_change = False

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.id = sha256(raw)


# A canonical signed entry's first keys are "chain" (and its 32 bytes) then "change" or "event": a
# governance change is recognised from its bytes without decoding every record in this process.
_CHANGE_AT = len(b"\x87\xa5chain\xc4\x20") + 32
_CHANGE_KEY = b"\xa6change"


def _entry(raw: bytes) -> Any:
    """A governance change fully parsed (the main process replays them in order); any other record as an id."""
    if raw[_CHANGE_AT:_CHANGE_AT + len(_CHANGE_KEY)] == _CHANGE_KEY:
        try:
            return SignedRecord.from_bytes(raw)
        except RantaiError:
            pass  # malformed: the workers report it
    return _Id(raw)


def parse_block(raw: bytes, height: int) -> tuple[BlockHeader, list[bytes], Block]:
    """Decode a block's outer map only: header, record byte strings, and a Block of ids for the block rules."""
    try:
        obj = decode(raw)
    except RantaiError as exc:
        raise InvalidBlock(f"block {height}: {exc}", rule="encoding", height=height) from exc
    if type(obj) is not dict or set(obj) != {"header", "records"} or type(obj["records"]) is not list:
        raise InvalidBlock(f"block {height}: a map of header and records expected", rule="block shape", height=height)
    header = BlockHeader.from_obj(obj["header"])
    raws = obj["records"]
    for i, r in enumerate(raws):
        if type(r) is not bytes:
            raise InvalidBlock(f"block {height}: record {i} is not a byte string", rule="block shape", height=height)
    block = Block(header, tuple(_entry(r) for r in raws), raw, header.hash)
    return header, raws, block


_ENTRY = struct.Struct(">QI")  # height, index: after the 32-byte key


class _IdIndex:
    """32-byte keys with their (height, index), in sorted runs of 44-byte entries; repeats found by merging."""

    RUN = 1 << 18
    SIZE = 32 + _ENTRY.size

    def __init__(self) -> None:
        self._cur = bytearray()
        self._n = 0
        self._runs: list[bytes] = []

    def add(self, keys: Iterable[bytes], height: int) -> None:
        for i, k in enumerate(keys):
            self.add_one(k, height, i)

    def add_one(self, key: bytes, height: int, index: int) -> None:
        self._cur += key
        self._cur += _ENTRY.pack(height, index)
        self._n += 1
        if self._n >= self.RUN:
            self._seal()

    def _seal(self) -> None:
        if self._n:
            cur, n = bytes(self._cur), self.SIZE
            self._runs.append(b"".join(sorted(cur[k:k + n] for k in range(0, len(cur), n))))
            self._cur = bytearray()
            self._n = 0

    @classmethod
    def _entries(cls, run: bytes) -> Iterator[bytes]:
        n = cls.SIZE
        return (run[k:k + n] for k in range(0, len(run), n))

    def repeats(self, limit: int = 100) -> list[tuple[bytes, tuple[int, int], tuple[int, int]]]:
        """(key, first position, later position) for keys seen more than once, in key order."""
        self._seal()
        runs = [self._entries(run) for run in self._runs]
        merged: Iterable[bytes] = runs[0] if len(runs) == 1 else heapq.merge(*runs)
        out: list[tuple[bytes, tuple[int, int], tuple[int, int]]] = []
        prev = b""
        for entry in merged:
            if entry[:32] == prev[:32]:
                out.append((entry[:32], _ENTRY.unpack(prev[32:]), _ENTRY.unpack(entry[32:])))
                if len(out) >= limit:
                    break
            prev = entry
        return out

    def duplicates(self, limit: int = 100) -> list[tuple[bytes, int, int]]:
        """(key, first height, later height) for keys seen more than once."""
        return [(k, a[0], b[0]) for k, a, b in self.repeats(limit)]


class Auditor:
    """Holds the worker pool; ``run`` audits one source. ``workers=0`` checks everything in-process."""

    def __init__(self, genesis: Genesis, *, workers: int | None = None, schema: bool = False,
                 batch_records: int = 2048, max_failures: int = 50) -> None:
        self.genesis = genesis
        self.schema = schema
        self.batch_records = batch_records
        self.max_failures = max_failures
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(genesis.doc, schema))
            # start the processes now, before the caller starts threads (progress bars, HTTP)
            list(self._pool.map(_check_task, [[]] * self.workers))
        else:
            self.workers = 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Auditor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, task: Task) -> Future[tuple[list[FailureTuple], list[tuple[int, int, bytes]]]]:
        if self._pool is not None:
            return self._pool.submit(_check_task, task)
        global _GENESIS, _SCHEMA
        if _GENESIS is not self.genesis:
            _GENESIS, _SCHEMA = self.genesis, self.schema
        fut: Future[tuple[list[FailureTuple], list[tuple[int, int, bytes]]]] = Future()
        fut.set_result(_check_task(task))
        return fut

    def run(self, source: BlockSource, *, end: int | None = None, progress: ProgressFn | None = None) -> AuditReport:
        g = self.genesis
        t0 = time.perf_counter()
        head = source.head_height() if end is None else end
        report = AuditReport(source.name, g.chain_id, g.hash.hex(), head, workers=self.workers)
        failures: list[AuditFailure] = []
        ids, events = _IdIndex(), _IdIndex()
        inflight: deque[Future[tuple[list[FailureTuple], list[tuple[int, int, bytes]]]]] = deque()
        task: Task = []
        task_size = 0
        parent: Parent | None = Parent.genesis(g)
        governance = Governance(g)
        expected = 1
        served = getattr(source, "served_head", None)
        served_hash: bytes | None = None  # the hash of the block streamed at the served head's height
        chain = getattr(source, "chain_hash", None)
        if chain is not None and chain != g.hash:
            failures.append(AuditFailure(0, "wrong chain", f"{source.name} holds chain {chain.hex()[:16]}…, "
                                                           f"not {g.chain_id} ({g.hash.hex()[:16]}…)"))

        def collect(wait: bool) -> None:
            while inflight and (wait or inflight[0].done()):
                bad, digests = inflight.popleft().result()
                failures.extend(AuditFailure(*f) for f in bad)
                for height, index, digest in digests:
                    events.add_one(digest, height, index)

        def flush() -> None:
            nonlocal task, task_size
            if task:
                inflight.append(self._submit(task))
                task, task_size = [], 0
            if len(inflight) > 2 * max(1, self.workers):
                inflight[0].result()
            collect(False)

        for height, raw, cert_obj in source.blocks(1, head):
            if len(failures) >= self.max_failures:
                report.truncated = True
                break
            if height != expected:
                if height > expected:
                    failures.append(AuditFailure(expected, "missing block",
                                                 f"heights {expected}..{height - 1} are missing"))
                else:
                    failures.append(AuditFailure(height, "height", f"block {height} served again after {expected - 1}"))
                    continue
                parent = None
            expected = height + 1
            report.height = height
            report.blocks += 1
            if raw is None:
                failures.append(AuditFailure(height, "missing block", f"block {height} is missing"))
                parent = None
                continue
            try:
                header, raws, block = parse_block(raw, height)
            except RantaiError as exc:
                failures.append(AuditFailure(height, rule_of(exc, "block shape"), str(exc)))
                parent = None
                continue
            consortium = governance.at(height)
            try:
                # After a missing or unreadable block, the next one is checked against what it claims.
                _check_changes_signed(block, consortium)
                check_block(block, consortium, parent or Parent(height - 1, header.prev_hash, header.timestamp),
                            governance=governance)
            except RantaiError as exc:
                failures.append(AuditFailure(height, rule_of(exc, "block shape"), str(exc),
                                             index=getattr(exc, "details", {}).get("index")))
                governance.height = max(governance.height, height)
            parent = Parent.of(header)
            if served is not None and height == served.get("height"):
                served_hash = block.hash
            report.head_hash = block.hash.hex()
            report.records += len(raws)
            ids.add(block.record_ids(), height)
            task.append((height, header, cert_obj, raws, None if consortium is g else consortium))
            task_size += len(raws) + 8
            if task_size >= self.batch_records:
                flush()
            if progress is not None:
                progress(height, head, report.records)
        flush()
        collect(True)
        stream_error = getattr(source, "stream_error", None)
        if stream_error is not None:
            failures.append(AuditFailure(report.height + 1, rule_of(stream_error, "block shape"), str(stream_error)))
        elif report.height < head and not report.truncated:
            failures.append(AuditFailure(report.height + 1, "missing block",
                                         f"the source ends at height {report.height}, but reported head {head}"))
        if served is not None and not report.truncated:
            failures.extend(_check_served_head(governance.at(max(1, report.height)), served, served_hash))
        for rid, (h1, _), (h2, i2) in ids.repeats():
            if h1 != h2:  # a repeat inside one block is the block rule's, already reported
                failures.append(AuditFailure(h2, "duplicate record", f"record {rid.hex()} is already in block {h1}",
                                             rid.hex(), i2))
        for digest, (h1, i1), (h2, i2) in events.repeats():
            failures.append(AuditFailure(h2, "duplicate event", f"event ni:///sha-256;{digest.hex()} is already "
                                                                f"in block {h1} (record {i1})", None, i2))
        failures.sort(key=lambda f: (f.height, -1 if f.index is None else f.index))
        report.failures = failures
        report.seconds = time.perf_counter() - t0
        return report


def _check_changes_signed(block: Block, consortium: Consortium) -> None:
    """Governance changes are replayed in this process, so their signatures are checked here first
    (the workers check them again with every other record; a forged change must not be applied)."""
    for i, r in enumerate(block.records):
        if r.is_change:
            try:
                check_record(r, consortium)
            except RantaiError as exc:
                raise InvalidBlock(f"block {block.height}: record {i}: {exc}", rule=rule_of(exc, "change shape"),
                                   height=block.height, index=i) from exc


def _check_served_head(g: Consortium, served: Mapping[str, Any], streamed: bytes | None) -> list[AuditFailure]:
    """The head the source reported must be consistent, and be the block it served at that height."""
    height = served.get("height")
    height = height if type(height) is int else 0
    try:
        if "header" in served:
            check_head(served, g)
    except RantaiError as exc:
        return [AuditFailure(height, rule_of(exc, "head"), f"served head: {exc}")]
    if height and streamed is not None and served.get("block_hash") != streamed:
        return [AuditFailure(height, "head", f"the head names block hash {_hex(served.get('block_hash'))[:16]}…, "
                                             f"but the block served at height {height} has {streamed.hex()[:16]}…")]
    return []


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


# -- comparing nodes -------------------------------------------------------------------------------


@dataclass
class CompareReport:
    sources: list[str]
    heads: list[int]
    common: int  # heights 1..common were compared
    compared: int = 0
    divergence: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.divergence is None and not self.errors

    def summary(self) -> str:
        lines = ["compared: " + ", ".join(f"{s} (head {h})" for s, h in zip(self.sources, self.heads, strict=True))]
        lines += [f"cannot read: {e}" for e in self.errors]
        if self.divergence:
            d = self.divergence
            lines.append(f"DIVERGENCE at height {d['height']}:")
            for e in d["entries"]:
                lines.append(f"  {e['source']}: block hash {(e['block_hash'] or '-')[:16]}, "
                             f"bytes {(e['bytes_sha256'] or '-')[:16]}: {e['verdict']}")
        elif not self.errors:
            lines.append(f"OK: all agree on heights 1..{self.common}")
        return "\n".join(lines)

    def to_obj(self) -> dict[str, Any]:
        return {"ok": self.ok, "sources": self.sources, "heads": self.heads, "common": self.common,
                "compared": self.compared, "divergence": self.divergence, "errors": self.errors}


def _verdict(genesis: Genesis, height: int, parent: Parent | None, raw: bytes | None, cert_obj: Any) -> str:
    """'valid', or the first rule this one block breaks (the full check, in-process)."""
    if raw is None:
        return "missing"
    try:
        header, raws, block = parse_block(raw, height)
        check_block(block, genesis, parent or Parent(height - 1, header.prev_hash, header.timestamp))
    except RantaiError as exc:
        return f"{rule_of(exc, 'block shape')}: {exc}"
    global _GENESIS, _SCHEMA
    if _GENESIS is not genesis:
        _GENESIS, _SCHEMA = genesis, False
    bad, _ = _check_task([(height, header, cert_obj, raws, None)])
    if bad:
        f = AuditFailure(*bad[0])
        return f"{f.rule}: {f.message}" + (f" (record {f.index})" if f.index is not None else "")
    return "valid"


def compare(genesis: Genesis, sources: Sequence[BlockSource], *, end: int | None = None,
            progress: ProgressFn | None = None) -> CompareReport:
    """Walk ``sources`` in lockstep over their common heights; stop at the first disagreement.

    Blocks are compared by the SHA-256 of their bytes (a flipped byte in a record changes it even
    when the header hash does not). At a divergence each side's block is checked on its own so the
    report says which one breaks which rule.
    """
    heads: list[int] = []
    errors: list[str] = []
    for s in sources:
        try:
            heads.append(s.head_height())
        except RantaiError as exc:
            heads.append(0)
            errors.append(str(exc))
    common = min(heads) if heads else 0
    if end is not None:
        common = min(common, end)
    report = CompareReport([s.name for s in sources], heads, common, errors=errors)
    if errors or common == 0:
        return report
    iters = [s.blocks(1, common) for s in sources]
    parent: Parent | None = Parent.genesis(genesis)
    for height in range(1, common + 1):
        items = []
        for _s, it in zip(sources, iters, strict=True):
            try:
                h, raw, cert = next(it)
            except StopIteration:
                h, raw, cert = height, None, None
            except RantaiError as exc:
                report.errors.append(str(exc))
                return report
            if h != height:
                raw, cert = None, None
            items.append((raw, cert))
        digests = [sha256(raw) if raw is not None else None for raw, _ in items]
        if len(set(digests)) > 1:
            entries = []
            for s, (raw, cert), d in zip(sources, items, digests, strict=True):
                block_hash = None
                if raw is not None:
                    try:
                        block_hash = parse_block(raw, height)[0].hash.hex()
                    except RantaiError:
                        pass
                entries.append({"source": s.name, "bytes_sha256": d.hex() if d else None, "block_hash": block_hash,
                                "verdict": _verdict(genesis, height, parent, raw, cert)})
            report.divergence = {"height": height, "entries": entries}
            return report
        raw0 = items[0][0]
        try:
            parent = Parent.of(parse_block(raw0, height)[0]) if raw0 is not None else None
        except RantaiError:
            parent = None
        report.compared = height
        if progress is not None:
            progress(height, common, 0)
    return report
