"""The full-chain auditor: re-verify a whole chain from height 1 with nothing but the genesis file.

Checked, for every height h from 1 (block 1's ``prev_hash`` is the genesis hash):

- the block decodes canonically, its header is for this chain and says height h (rule ``height``);
- ``prev_hash`` is the hash of block h-1 (``hash link``); ``record_count`` and ``records_root`` match
  its records (``record count``, ``records root``; ``blocks.check_block``);
- its commit certificate carries ≥ 2f+1 valid signatures of distinct genesis validators over
  (h, view, block hash) (``certificate``);
- every record decodes canonically, is signed for this chain by a genesis member holding the
  ``submitter`` role, and its signature verifies (the record's own rules: ``unknown member``,
  ``role denied``, ``signature does not verify``…); with ``schema=True`` its EPCIS event too;
- no record id appears twice anywhere in the chain (``duplicate record``).

Any failure names the height, the record (id and index) and the rule.

Sources: ``NodeSource`` streams ``GET /v1/blocks?from=&to=`` from a node; ``DataDirSource`` reads a
stopped node's LevelDB directory (layout in ``node/storage.py``) without writing to it. ``compare``
walks several sources in lockstep and reports the first height where they disagree.

Speed: the sequential work (hash links, Merkle roots, the id index) stays in this process;
record and certificate signatures — nearly all of the cost — are checked by a process pool in
batches of about ``batch_records`` records. Processes rather than threads: libsodium releases
the GIL while it verifies, but decoding each record around it does not, and that Python share is
large enough that threads would leave a core idle.

Memory: record ids go into sorted runs of 40 bytes per record (id and height) rather than a
Python set (about 90 bytes per id); duplicates are found by merging the runs at the end.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgpack

from rantai.consensus.crypto import sha256

from .blocks import Block, BlockHeader, check_block
from .certificates import certificate_from_obj, verify_certificate
from .encoding import decode
from .errors import InvalidBlock, NodeError, RantaiError
from .genesis import Genesis
from .records import SignedRecord

__all__ = [
    "AuditFailure",
    "AuditReport",
    "Auditor",
    "BlockSource",
    "CompareReport",
    "DataDirSource",
    "MemorySource",
    "NodeSource",
    "audit",
    "compare",
    "open_source",
]

_U64 = struct.Struct(">Q")
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

    def to_obj(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "chain_id": self.chain_id, "genesis_hash": self.genesis_hash,
                "head": self.head, "height": self.height, "head_hash": self.head_hash, "blocks": self.blocks,
                "records": self.records, "seconds": round(self.seconds, 3), "records_per_second": round(self.rate, 1),
                "workers": self.workers, "truncated": self.truncated, "failures": [f.to_obj() for f in self.failures]}


# -- sources ---------------------------------------------------------------------------------------


class BlockSource(Protocol):
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


class NodeSource:
    """Streams blocks from a node: ``GET /v1/blocks?from=A&to=B`` (≤ 1000 per request), msgpack items."""

    def __init__(self, url: str, *, timeout: float = 60.0, chunk: int = 1000,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = url.rstrip("/")
        self.chunk = chunk
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), transport=transport,
                                  headers={"accept": "application/msgpack"})

    def _fail(self, message: str) -> NodeError:
        return NodeError(f"node {self.name}: {message}", node=self.name)

    def head_height(self) -> int:
        try:
            resp = self._http.get(f"{self.name}/v1/head")
        except httpx.HTTPError as exc:
            raise self._fail(f"unreachable ({type(exc).__name__}: {exc})") from exc
        if resp.status_code != 200:
            raise self._fail(f"GET /v1/head answered HTTP {resp.status_code}")
        try:
            obj = decode(resp.content)
        except RantaiError as exc:
            raise self._fail(f"GET /v1/head: {exc}") from exc
        if not isinstance(obj, dict) or type(obj.get("height")) is not int:
            raise self._fail("GET /v1/head: no height")
        return obj["height"]

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, bytes | None, Any]]:
        h = start
        while h <= end:
            to = min(end, h + self.chunk - 1)
            got = 0
            try:
                with self._http.stream("GET", f"{self.name}/v1/blocks", params={"from": h, "to": to}) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        raise self._fail(f"GET /v1/blocks?from={h}&to={to} answered HTTP {resp.status_code}")
                    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=256 * 1024 * 1024)
                    for data in resp.iter_bytes():
                        unpacker.feed(data)
                        for item in unpacker:
                            if not isinstance(item, dict) or not isinstance(item.get("block"), bytes):
                                raise self._fail(f"block stream item at height {h} is not {{block, certificate}}")
                            yield h, item["block"], item.get("certificate")
                            h += 1
                            got += 1
            except httpx.HTTPError as exc:
                raise self._fail(f"block stream broke at height {h} ({type(exc).__name__}: {exc})") from exc
            except msgpack.UnpackException as exc:
                raise self._fail(f"block stream at height {h} is not msgpack ({exc})") from exc
            if got == 0:
                return  # the node has nothing from h on: the auditor reports the missing heights

    def close(self) -> None:
        self._http.close()


class DataDirSource:
    """A node's LevelDB data directory, opened without writing to it.

    LevelDB writes on open (a new log, manifest and LOCK), so the directory is not opened in
    place: its immutable table files are hard-linked (copied across file systems) and the small
    mutable ones (log, MANIFEST, CURRENT) copied into a temporary directory, which is opened
    instead and removed on ``close``. Use it on a stopped node or a copy of its directory.
    Layout (docs/storage.md): format ``rantai-node/2`` keeps the chain in the ``blocks``
    subdirectory, ``u64 height ‖ b"b"`` -> block bytes and ``u64 height ‖ b"c"`` -> canonical
    certificate; format ``rantai-node/1`` kept them in the main database as ``b"b" + u64 height``
    and ``b"c" + u64 height``. Both are read. ``b"h"`` -> u64 height ‖ block hash is the head.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import plyvel

        self.path = Path(path)
        self.name = str(self.path)
        if not (self.path / "CURRENT").is_file():
            raise NodeError(f"data dir {self.path}: not a LevelDB directory (no CURRENT file)")
        self._tmp = Path(tempfile.mkdtemp(prefix="rantai-audit-"))
        self._chain: Any = None
        try:
            self._db = plyvel.DB(str(_snapshot(self.path, self._tmp / "db")), create_if_missing=False)
            if self._db.get(b"mformat") != b"rantai-node/1" and (self.path / "blocks" / "CURRENT").is_file():
                self._chain = plyvel.DB(str(_snapshot(self.path / "blocks", self._tmp / "blocks")),
                                        create_if_missing=False)
        except plyvel.Error as exc:
            self.close()
            raise NodeError(f"data dir {self.path}: cannot open ({exc})") from exc

    @property
    def chain_hash(self) -> bytes | None:
        """The genesis hash the store was created for (``m`` ``chain``), if recorded."""
        return self._db.get(b"mchain")

    def head_height(self) -> int:
        raw = self._db.get(b"h")
        if raw is not None and len(raw) >= 8:
            return _U64.unpack(raw[:8])[0]
        last = 0
        if self._chain is not None:
            for k in self._chain.iterator(include_value=False, reverse=True):
                return _U64.unpack(k[:8])[0]
        for k in self._db.iterator(prefix=b"b", include_value=False, reverse=True):
            last = _U64.unpack(k[1:9])[0]
            break
        return last

    def _pairs(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes | None]]:
        """(height, block bytes, certificate bytes or None) in height order, whichever the format."""
        if self._chain is not None:
            pending: tuple[int, bytes] | None = None
            for key, value in self._chain.iterator(start=_U64.pack(start), stop=_U64.pack(end + 1)):
                if len(key) != 9:
                    continue
                h, kind = _U64.unpack(key[:8])[0], key[8:]
                if pending is not None and (kind != b"c" or pending[0] != h):
                    yield pending[0], pending[1], None
                    pending = None
                if kind == b"b":
                    pending = (h, value)
                elif pending is not None:
                    yield h, pending[1], value
                    pending = None
            if pending is not None:
                yield pending[0], pending[1], None
            return
        for key, raw in self._db.iterator(start=b"b" + _U64.pack(start), stop=b"b" + _U64.pack(end + 1)):
            if len(key) == 9:
                yield _U64.unpack(key[1:])[0], raw, self._db.get(b"c" + key[1:])

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, bytes | None, Any]]:
        for h, raw, cert_raw in self._pairs(start, end):
            cert: Any = None
            if cert_raw is not None:
                try:
                    cert = decode(cert_raw)
                except RantaiError:
                    cert = {"undecodable": True}
            yield h, raw, cert

    def close(self) -> None:
        for db in (getattr(self, "_chain", None), getattr(self, "_db", None)):
            if db is not None and not db.closed:
                db.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _snapshot(src: Path, dst: Path) -> Path:
    """A copy of the LevelDB directory ``src`` that may be opened (and so written) freely: table
    files hard-linked (immutable), the rest copied."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if not f.is_file() or f.name == "LOCK":
            continue
        if f.suffix in (".ldb", ".sst"):
            try:
                os.link(f, dst / f.name)
                continue
            except OSError:
                pass
        shutil.copy2(f, dst / f.name)
    return dst


def open_source(spec: str, *, transport: httpx.BaseTransport | None = None) -> BlockSource:
    """A URL is a node, anything else a data directory."""
    if spec.startswith(("http://", "https://")):
        return NodeSource(spec, transport=transport)
    return DataDirSource(spec)


# -- per-record and per-certificate checks (run in the worker processes) ---------------------------

_GENESIS: Genesis | None = None
_SCHEMA = False


def _init_worker(genesis_doc: dict[str, Any], schema: bool) -> None:
    global _GENESIS, _SCHEMA
    _GENESIS = Genesis(genesis_doc)
    _SCHEMA = schema


def _check_record(g: Genesis, raw: bytes, height: int, index: int) -> tuple | None:
    """None when the record is valid on ``g``; else (height, rule, message, record id, index).

    The very rules (and code) a node applies when it admits a record: ``SignedRecord.verify``.
    """
    try:
        rec = SignedRecord.from_bytes(raw)
    except (RantaiError, ValueError) as exc:
        return (height, getattr(exc, "rule", "record"), str(exc), sha256(raw).hex(), index)
    try:
        rec.verify(g, schema=_SCHEMA)
    except (RantaiError, ValueError) as exc:
        return (height, getattr(exc, "rule", "record"), str(exc), rec.id.hex(), index)
    return None


def _check_task(task: list[tuple[int, bytes, Any, list[bytes]]]) -> list[tuple]:
    """Certificates and record signatures of a batch of blocks; returns failure tuples."""
    g = _GENESIS
    assert g is not None, "worker not initialised"
    out: list[tuple] = []
    for height, block_hash, cert_obj, raws in task:
        if cert_obj is None:
            out.append((height, "certificate", f"block {height}: no commit certificate", None, None))
        else:
            try:
                verify_certificate(certificate_from_obj(cert_obj), g, height=height, block_hash=block_hash)
            except RantaiError as exc:
                out.append((height, "certificate", str(exc), None, None))
        for i, raw in enumerate(raws):
            failure = _check_record(g, raw, height, i)
            if failure is not None:
                out.append(failure)
    return out


# -- the sequential part -------------------------------------------------------------------------


class _Id:
    __slots__ = ("id",)

    def __init__(self, id: bytes) -> None:
        self.id = id


_BLOCK_RULES = (
    ("another chain", "wrong chain"),
    ("header says height", "height"),
    ("prev_hash", "hash link"),
    ("record_count", "record count"),
    ("same record appears twice", "duplicate record"),
    ("records_root", "records root"),
)


def _block_rule(message: str) -> str:
    for needle, rule in _BLOCK_RULES:
        if needle in message:
            return rule
    return "invalid block"


def parse_block(raw: bytes, height: int) -> tuple[BlockHeader, list[bytes], Block]:
    """Decode a block's outer map only: header, record byte strings, and a Block of ids for check_block."""
    try:
        obj = decode(raw)
    except RantaiError as exc:
        raise InvalidBlock(f"block {height}: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != {"header", "records"} or not isinstance(obj["records"], list):
        raise InvalidBlock(f"block {height}: a map of header and records expected")
    header = BlockHeader.from_obj(obj["header"])
    raws = obj["records"]
    for i, r in enumerate(raws):
        if not isinstance(r, bytes):
            raise InvalidBlock(f"block {height}: record {i} is not a byte string")
    block = Block(header, tuple(_Id(sha256(r)) for r in raws), raw, header.hash)  # type: ignore[arg-type]
    return header, raws, block


def _entries(run: bytes) -> Iterator[bytes]:
    return (run[k:k + 40] for k in range(0, len(run), 40))


class _IdIndex:
    """Every record id with its height, in sorted runs of 40-byte entries; duplicates found by merging."""

    RUN = 1 << 18

    def __init__(self) -> None:
        self._cur = bytearray()
        self._n = 0
        self._runs: list[bytes] = []

    def add(self, ids: Iterable[bytes], height: int) -> None:
        hb = _U64.pack(height)
        cur = self._cur
        for i in ids:
            cur += i
            cur += hb
            self._n += 1
        if self._n >= self.RUN:
            self._seal()

    def _seal(self) -> None:
        if self._n:
            cur = bytes(self._cur)
            self._runs.append(b"".join(sorted(cur[k:k + 40] for k in range(0, len(cur), 40))))
            self._cur = bytearray()
            self._n = 0

    def duplicates(self, limit: int = 100) -> list[tuple[bytes, int, int]]:
        self._seal()
        runs = [_entries(run) for run in self._runs]
        merged = runs[0] if len(runs) == 1 else heapq.merge(*runs)
        out: list[tuple[bytes, int, int]] = []
        prev = b""
        for entry in merged:
            if entry[:32] == prev[:32]:
                out.append((entry[:32], _U64.unpack(prev[32:])[0], _U64.unpack(entry[32:])[0]))
                if len(out) >= limit:
                    break
            prev = entry
        return out


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

    def _submit(self, task: list) -> Future:
        if self._pool is not None:
            return self._pool.submit(_check_task, task)
        global _GENESIS, _SCHEMA
        if _GENESIS is not self.genesis:
            _GENESIS, _SCHEMA = self.genesis, self.schema
        fut: Future = Future()
        fut.set_result(_check_task(task))
        return fut

    def run(self, source: BlockSource, *, end: int | None = None, progress: ProgressFn | None = None) -> AuditReport:
        g = self.genesis
        t0 = time.perf_counter()
        head = source.head_height() if end is None else end
        report = AuditReport(source.name, g.chain_id, g.hash.hex(), head, workers=self.workers)
        failures: list[AuditFailure] = []
        index = _IdIndex()
        inflight: deque[Future] = deque()
        task: list = []
        task_size = 0
        prev_hash: bytes | None = g.hash
        expected = 1
        chain = getattr(source, "chain_hash", None)
        if chain is not None and chain != g.hash:
            failures.append(AuditFailure(0, "wrong chain", f"{source.name} holds chain {chain.hex()[:16]}…, "
                                                           f"not {g.chain_id} ({g.hash.hex()[:16]}…)"))

        def collect(block: bool) -> None:
            while inflight and (block or inflight[0].done()):
                for f in inflight.popleft().result():
                    failures.append(AuditFailure(*f))

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
                prev_hash = None
            expected = height + 1
            report.height = height
            report.blocks += 1
            if raw is None:
                failures.append(AuditFailure(height, "missing block", f"block {height} is missing"))
                prev_hash = None
                continue
            try:
                header, raws, block = parse_block(raw, height)
            except RantaiError as exc:
                failures.append(AuditFailure(height, getattr(exc, "rule", "invalid block"), str(exc)))
                prev_hash = None
                continue
            try:
                check_block(block, chain=g.hash, height=height,
                            prev_hash=prev_hash if prev_hash is not None else header.prev_hash)
            except InvalidBlock as exc:
                failures.append(AuditFailure(height, _block_rule(str(exc)), str(exc)))
            prev_hash = block.hash
            report.head_hash = block.hash.hex()
            report.records += len(raws)
            index.add(block.record_ids(), height)
            task.append((height, block.hash, cert_obj, raws))
            task_size += len(raws) + 8
            if task_size >= self.batch_records:
                flush()
            if progress is not None:
                progress(height, head, report.records)
        flush()
        collect(True)
        if report.height < head and not report.truncated:
            failures.append(AuditFailure(report.height + 1, "missing block",
                                         f"the source ends at height {report.height}, but reported head {head}"))
        for rid, h1, h2 in index.duplicates():
            if h1 != h2:  # a duplicate inside one block is already reported by check_block
                failures.append(AuditFailure(h2, "duplicate record",
                                             f"record {rid.hex()} is already in block {h1}", rid.hex()))
        failures.sort(key=lambda f: (f.height, -1 if f.index is None else f.index))
        report.failures = failures
        report.seconds = time.perf_counter() - t0
        return report


def audit(genesis: Genesis, source: BlockSource | str, *, end: int | None = None, workers: int | None = None,
          schema: bool = False, progress: ProgressFn | None = None) -> AuditReport:
    """Audit ``source`` (a ``BlockSource``, a node URL or a data directory) against ``genesis``."""
    src = open_source(source) if isinstance(source, str) else source
    try:
        with Auditor(genesis, workers=workers, schema=schema) as auditor:
            return auditor.run(src, end=end, progress=progress)
    finally:
        if isinstance(source, str):
            src.close()


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

    def to_obj(self) -> dict[str, Any]:
        return {"ok": self.ok, "sources": self.sources, "heads": self.heads, "common": self.common,
                "compared": self.compared, "divergence": self.divergence, "errors": self.errors}


def _verdict(genesis: Genesis, height: int, prev_hash: bytes | None, raw: bytes | None, cert_obj: Any) -> str:
    """'valid', or the first rule this one block breaks (the full check, in-process)."""
    if raw is None:
        return "missing"
    try:
        header, raws, block = parse_block(raw, height)
        check_block(block, chain=genesis.hash, height=height, prev_hash=prev_hash or header.prev_hash)
    except RantaiError as exc:
        return str(exc)
    global _GENESIS, _SCHEMA
    if _GENESIS is not genesis:
        _GENESIS, _SCHEMA = genesis, False
    bad = _check_task([(height, block.hash, cert_obj, raws)])
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
    prev_hash: bytes | None = genesis.hash
    for height in range(1, common + 1):
        items = []
        for s, it in zip(sources, iters):
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
            for s, (raw, cert), d in zip(sources, items, digests):
                block_hash = None
                if raw is not None:
                    try:
                        block_hash = parse_block(raw, height)[0].hash.hex()
                    except RantaiError:
                        pass
                entries.append({"source": s.name, "bytes_sha256": d.hex() if d else None, "block_hash": block_hash,
                                "verdict": _verdict(genesis, height, prev_hash, raw, cert)})
            report.divergence = {"height": height, "entries": entries}
            return report
        raw0 = items[0][0]
        try:
            prev_hash = parse_block(raw0, height)[0].hash if raw0 is not None else None
        except RantaiError:
            prev_hash = None
        report.compared = height
        if progress is not None:
            progress(height, common, 0)
    return report

