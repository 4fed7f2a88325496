"""LevelDB storage of one node: blocks and certificates, indexes and consensus state (layout: docs/storage.md).

Two LevelDB databases. ``data_dir/blocks`` holds the chain itself, keyed ``u64 height ‖ kind``
(``b`` block bytes, ``c`` canonical commit certificate), so its keys only ever grow: LevelDB then
moves its table files down the levels without rewriting them. Mixed with the index's random keys
(record ids, hashes), every byte of every block was rewritten at each compaction level, and the
compaction thread's CPU grew with the chain (0.12 -> 0.19 of a core per validator between 20 s and
140 s of a batched run). ``data_dir`` itself holds the rest; every key starts with a one-byte tag,
integers are big-endian so LevelDB's byte order is height order::

    b"m" + name                          meta: b"mformat" -> b"rantai-node/2", b"mchain" -> genesis hash
    b"h"                                 head: u64 height ‖ block hash[32]   (absent: empty chain)
    b"r" + record id[32]                 u64 height ‖ u32 index
    b"i" + sha256(item id)[32] + u64 height  -> the block's record indices naming it (node/postings.py),
                                             for /v1/items/{id}/history
    b"s" + key                           consensus state (``Persist`` entries), handed back to the replica
    b"e", b"E", b"q" ...                  EPCIS indexes (node/epcis_index.py), written in the block's batch

A committed block and its certificate are one batch in ``blocks``, then its index entries and the new
head (with the consensus round's votes) one synced batch in ``data_dir``; ``blocks`` is synced before
the node's next CHECKPOINT (docs/storage.md says why that is enough). A catch-up writes a run of
blocks in two synced batches for the whole run. A block is only ever read at or below the head, so
after a crash the store holds a prefix of the chain with every index complete (a block written
above the head is overwritten when that height is stored again). The work per
block depends on that block's size only, never on the chain's height.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import plyvel

from rantai.client.format.errors import RantaiError

from .postings import group, pack_indices, unpack_indices

__all__ = ["FORMAT", "RECOVER", "BlockWrite", "Storage", "StorageError", "StoreDamaged", "item_entries"]

FORMAT = b"rantai-node/2"
FORMAT_1 = b"rantai-node/1"  # blocks and certificates in the one database (b"b"/b"c" + u64 height): migrated on open
CHAIN_DIR = "blocks"
_U64 = struct.Struct(">Q")
_LOC = struct.Struct(">QI")

META, HEAD, RECORD, ITEM, STATE = b"m", b"h", b"r", b"i", b"s"
BLOCK, CERT = b"b", b"c"  # the kind byte after the height in ``blocks`` (and the old format's tags)

# LevelDB options of the index database (docs/performance.md says what each was measured to buy).
INDEX_OPTIONS: dict[str, Any] = {
    "bloom_filter_bits": 10, "lru_cache_size": 32 * 1024 * 1024, "write_buffer_size": 16 * 1024 * 1024,
    "compression": None,
}


class BlockWrite(NamedTuple):
    """One block as ``commit_blocks`` stores it: its bytes, certificate and index entries."""

    height: int
    block_hash: bytes
    block: bytes
    certificate: bytes
    record_ids: Iterable[bytes]
    items: Iterable[tuple[str, int]]  # (item id, record index): the item history index
    extra: Iterable[tuple[bytes, bytes]]  # EPCIS index entries (node/epcis_index.py)
    info: Any  # handed to ``on_commit`` (the block's newly hashed events)


class StorageError(RantaiError):
    """The data directory cannot be opened, belongs to another chain, or does not hold what it should."""

    status_hint = 503
    rule = "storage"


class StoreDamaged(StorageError):
    """The store is damaged beyond what the node repairs by itself; the message says what and how to recover."""


RECOVER = "move the data dir aside and restart to resync from peers"


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _is_new(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _has_leveldb_files(path: Path) -> bool:
    return path.is_dir() and any(f.suffix in (".ldb", ".sst", ".log") or f.name.startswith("MANIFEST-")
                                 for f in path.iterdir())


def item_key(item_id: str) -> bytes:
    return hashlib.sha256(item_id.encode("utf-8")).digest()


class Storage:
    """The node's LevelDB. Writes are serialised by a lock; reads need none (LevelDB is thread-safe)."""

    def __init__(self, path: str | os.PathLike[str], chain: bytes, *, create: bool = True) -> None:
        self.path = Path(path)
        # Only a missing or empty directory is a new store. LevelDB's create_if_missing would also
        # "create" over a store whose CURRENT file was lost, and the node would start on a head it
        # has no blocks for; an existing store is therefore opened with create_if_missing=False.
        new = create and _is_new(self.path)
        if new:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "CURRENT").is_file():
            if _has_leveldb_files(self.path):
                raise StoreDamaged(f"store damaged: the index database's CURRENT file is missing "
                                   f"(data_dir {self.path}); {RECOVER}")
            raise StorageError(f"storage: {self.path} is not a rantai node database")
        try:
            self.db = plyvel.DB(str(self.path), create_if_missing=new, paranoid_checks=True, **INDEX_OPTIONS)
        except plyvel.CorruptionError as exc:
            raise StoreDamaged(f"store damaged: the index database does not open ({_text(exc)}) "
                               f"(data_dir {self.path}); {RECOVER}") from exc
        except plyvel.Error as exc:
            raise StorageError(f"storage: cannot open {self.path}: {_text(exc)}") from exc
        self._lock = threading.Lock()
        self.unsynced_from = 0  # the lowest height written to ``blocks`` without a sync since ``sync_chain`` (0: none)
        self.on_commit: list[Callable[[int, Any], None]] = []  # called after each block's batch (disk thread)
        self.repaired: list[str] = []  # what opening had to repair, for the start-up check to report
        fmt, stored_chain = self.db.get(META + b"format"), self.db.get(META + b"chain")
        if fmt is not None and fmt not in (FORMAT, FORMAT_1):
            self.db.close()
            raise StorageError(f"storage: {self.path} has format {fmt!r}, expected {FORMAT!r}")
        if fmt is not None and stored_chain != chain:
            self.db.close()
            raise StorageError(f"storage: {self.path} holds another chain ({stored_chain.hex()[:16]}…)")
        if fmt is None and not new:
            self.db.close()
            raise StorageError(f"storage: {self.path} is not a rantai node database")
        try:
            self.chain_db = self._open_chain(create=new or fmt == FORMAT_1)
        except plyvel.Error as exc:
            self.db.close()
            raise StoreDamaged(f"store damaged: the block database does not open ({_text(exc)}) "
                               f"(data_dir {self.path}); {RECOVER}") from exc
        if fmt is None:
            with self.db.write_batch(sync=True) as wb:
                wb.put(META + b"format", FORMAT)
                wb.put(META + b"chain", chain)
        elif fmt == FORMAT_1:
            self._migrate_from_1()
        self.chain = chain
        self._head = self._read_head()

    def _migrate_from_1(self) -> None:
        """Move blocks and certificates into ``blocks``: copied and synced first, then deleted here with
        the format bump in one synced batch, so a crash at any point leaves a store that opens again."""
        moved: list[bytes] = []
        with self.chain_db.write_batch(sync=True) as cb:
            for tag in (BLOCK, CERT):
                for key, value in self.db.iterator(prefix=tag):
                    if len(key) == 9:
                        cb.put(key[1:] + tag, value)
                        moved.append(key)
        with self.db.write_batch(sync=True, transaction=True) as wb:
            for key in moved:
                wb.delete(key)
            wb.put(META + b"format", FORMAT)

    def _open_chain(self, *, create: bool) -> Any:
        """The block database; repaired with LevelDB's RepairDB when it does not open as it is.

        Everything in it can be fetched again from peers and is verified when it is (the start-up
        check, node/storecheck.py, finds and cuts off what RepairDB could not save), so repairing it
        in place loses nothing that was still readable. The index database is never repaired this
        way: RepairDB silently drops what it cannot read, and a hole in an index is not detectable.
        """
        where = self.path / CHAIN_DIR
        if not create and not (where / "CURRENT").is_file():
            if _has_leveldb_files(where):
                plyvel.repair_db(str(where), paranoid_checks=True)
                self.repaired.append("the block database's CURRENT file was missing: rebuilt by LevelDB's RepairDB")
            else:
                create = True  # no block database at all: every block is fetched again
                self.repaired.append("the block database was missing: created empty")
        try:
            return self._chain_db(create)
        except plyvel.Error as exc:
            if create:
                raise
            plyvel.repair_db(str(where), paranoid_checks=True)
            self.repaired.append(f"the block database did not open ({_text(exc)}): repaired by LevelDB's RepairDB")
            return self._chain_db(False)

    def _chain_db(self, create: bool) -> Any:
        return plyvel.DB(
            str(self.path / CHAIN_DIR), create_if_missing=create, paranoid_checks=True,
            lru_cache_size=4 * 1024 * 1024, write_buffer_size=4 * 1024 * 1024,  # written in order, read rarely
        )

    def repair_chain(self, why: str) -> None:
        """Run LevelDB's RepairDB on the block database (it drops table blocks whose checksum fails
        and archives unreadable files in ``blocks/lost``), then reopen it."""
        with self._lock:
            self.chain_db.close()
            plyvel.repair_db(str(self.path / CHAIN_DIR), paranoid_checks=True)
            self.chain_db = self._chain_db(False)
            self.repaired.append(f"the block database was unreadable ({why}): repaired by LevelDB's RepairDB")

    @property
    def closed(self) -> bool:
        return self.db.closed

    def close(self) -> None:
        if not self.chain_db.closed:
            self.sync_chain()
            self.chain_db.close()
        if not self.db.closed:
            self.db.close()

    # -- head and blocks -------------------------------------------------------------------
    def _read_head(self) -> tuple[int, bytes]:
        raw = self.db.get(HEAD)
        if raw is None:
            return 0, self.chain
        return _U64.unpack(raw[:8])[0], raw[8:]

    def head(self) -> tuple[int, bytes]:
        """(height, hash) of the last stored block; (0, genesis hash) when empty."""
        return self._head

    @property
    def height(self) -> int:
        return self._head[0]

    def block(self, height: int) -> bytes | None:
        if not 1 <= height <= self._head[0]:
            return None  # a block above the head may be a leftover of a crash: never served
        return self.chain_db.get(_U64.pack(height) + BLOCK)

    def certificate(self, height: int) -> bytes | None:
        if not 1 <= height <= self._head[0]:
            return None
        return self.chain_db.get(_U64.pack(height) + CERT)

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(height, block bytes, certificate bytes) for heights start..stop inclusive (at most the head), in order."""
        stop = min(stop, self._head[0])
        if stop < start:
            return
        it = self.chain_db.iterator(start=_U64.pack(start), stop=_U64.pack(stop + 1))
        block: bytes | None = None
        for key, value in it:
            if key[8:] == BLOCK:
                block = value
            elif block is not None:  # the certificate follows its block (kind b"c" > b"b")
                yield _U64.unpack(key[:8])[0], block, value
                block = None

    # -- the start-up check's reads and repair (node/storecheck.py) ---------------------------
    def scan_chain(self, stop: int) -> tuple[int, str | None]:
        """(L, problem): every height 1..L has its block and certificate in ``blocks``; ``problem``
        says why the run ends below ``stop`` (None when L == stop).

        One pass over the keys with LevelDB's checksums on, so a flipped or truncated table is
        found here, at start, and not by a peer fetching the block later. The keys are a dense
        sequence (height ‖ b, height ‖ c), so comparing each with the next one expected is the count.
        """
        expect, good = 1, 0
        want = _U64.pack(1) + BLOCK
        try:
            it = self.chain_db.iterator(stop=_U64.pack(stop + 1), include_value=False, verify_checksums=True,
                                        fill_cache=False)
            for key in it:
                if key != want:
                    what = "block" if want[8:] == BLOCK else "certificate"
                    return good, f"{what} {expect} missing"
                if want[8:] == BLOCK:
                    want = want[:8] + CERT
                else:
                    good = expect
                    expect += 1
                    want = _U64.pack(expect) + BLOCK
        except plyvel.Error as exc:
            return good, f"unreadable after block {good}: {_text(exc)}"
        if good < stop:
            return good, f"{'block' if want[8:] == BLOCK else 'certificate'} {expect} missing"
        return good, None

    def last_chain_height(self) -> int:
        """The highest height with any key in ``blocks`` (leftovers above the head included)."""
        for key in self.chain_db.iterator(reverse=True, include_value=False):
            return _U64.unpack(key[:8])[0]
        return 0

    def raw_block(self, height: int) -> tuple[bytes | None, bytes | None]:
        """Block and certificate bytes at ``height`` whatever the head says, checksums verified."""
        h = _U64.pack(height)
        return (self.chain_db.get(h + BLOCK, verify_checksums=True),
                self.chain_db.get(h + CERT, verify_checksums=True))

    def truncate(self, height: int, block_hash: bytes) -> int:
        """Lower the head to ``height`` (``block_hash`` its hash), deleting every index entry above
        it, in one synced batch; the number of entries deleted.

        The blocks above are no longer readable (that is why), so their index keys cannot be
        derived from them: the whole index is scanned and each entry's height read from its
        layout (docs/storage.md). O(index size), run only by a repair. Blocks left above the new
        head are never served and are overwritten when catch-up stores those heights again.
        """
        deleted = 0
        with self._lock:
            with self.db.write_batch(sync=True, transaction=True) as wb:
                for key, value in self.db.iterator():
                    at = _height_of(key, value)
                    if at is not None and at > height:
                        wb.delete(key)
                        deleted += 1
                if height == 0:
                    wb.delete(HEAD)
                else:
                    wb.put(HEAD, _U64.pack(height) + block_hash)
            self._head = (height, block_hash) if height else (0, self.chain)
        return deleted

    def locate(self, record_id: bytes) -> tuple[int, int] | None:
        raw = self.db.get(RECORD + record_id)
        return None if raw is None else _LOC.unpack(raw)

    def item_locations(self, item_id: str, limit: int = 10_000, start: tuple[int, int] = (0, 0),
                       max_height: int | None = None) -> list[tuple[int, int]]:
        """Up to ``limit`` (height, index) of records naming ``item_id``, in chain order, from ``start``,
        at heights <= ``max_height`` (a page of item history, node/paging.py)."""
        prefix = ITEM + item_key(item_id)
        out: list[tuple[int, int]] = []
        for k, v in self.db.iterator(start=prefix + _U64.pack(start[0]), stop=prefix + b"\xff" * _U64.size):
            height = _U64.unpack(k[len(prefix):])[0]
            if max_height is not None and height > max_height:
                break
            for index in unpack_indices(v)[0]:
                if height == start[0] and index < start[1]:
                    continue
                out.append((height, index))
                if len(out) >= limit:
                    return out
        return out

    # -- writes ----------------------------------------------------------------------------
    def commit_block(
        self,
        height: int,
        block_hash: bytes,
        block: bytes,
        certificate: bytes,
        record_ids: Iterable[bytes],
        items: Iterable[tuple[str, int]],
        extra: Iterable[tuple[bytes, bytes]] = (),
        info: Any = None,
    ) -> None:
        """Store block ``height`` (which must be head + 1): block and certificate, then indexes and head (synced)."""
        self.commit_blocks([BlockWrite(height, block_hash, block, certificate, record_ids, items, extra, info)])

    def commit_blocks(self, blocks: Sequence["BlockWrite"],
                      state: Sequence[tuple[bytes, bytes | None]] | None = None) -> None:
        """Store consecutive blocks, the first at head + 1, in two synced batches whatever their number:
        every block and certificate, then every index entry and the new head.

        A catch-up writes thousands of blocks this way with two fsyncs instead of two per block. The
        crash argument is the one-block case's: the head moves last, in the batch with the indexes,
        so a crash leaves a prefix of the chain with every index complete.

        ``state`` (a consensus round's ``Persist`` entries, node/driver.py): they join the index
        batch, and the blocks' batch is not synced; the round then costs one fsync. The blocks are
        made durable by ``sync_chain`` before this node's next CHECKPOINT leaves (docs/storage.md,
        "One synced write per round"), until when their payloads are in the consensus state.
        """
        if not blocks:
            return
        with self._lock:
            for k, w in enumerate(blocks):
                if w.height != self._head[0] + 1 + k:
                    raise StorageError(f"storage: block {w.height} does not follow head {self._head[0] + k}")
            with self.chain_db.write_batch(sync=state is None) as cb:
                for w in blocks:
                    h = _U64.pack(w.height)
                    cb.put(h + BLOCK, w.block)
                    cb.put(h + CERT, w.certificate)
            if state is not None and not self.unsynced_from:
                self.unsynced_from = blocks[0].height
            with self.db.write_batch(sync=True, transaction=True) as wb:
                if state is not None:
                    _put_state(wb, state)
                for w in blocks:
                    height = w.height
                    for index, rid in enumerate(w.record_ids):
                        wb.put(RECORD + rid, _LOC.pack(height, index))
                    for key, value in item_entries(height, w.items):
                        wb.put(key, value)
                    for key, value in w.extra:  # EPCIS indexes (node/epcis_index.py)
                        wb.put(key, value)
                last = blocks[-1]
                wb.put(HEAD, _U64.pack(last.height) + last.block_hash)
            self._head = (last.height, last.block_hash)
        for w in blocks:
            for fn in self.on_commit:
                fn(w.height, w.info)

    def persist(self, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Consensus state writes (None deletes), synced before returning."""
        with self._lock, self.db.write_batch(sync=True, transaction=True) as wb:
            _put_state(wb, entries)

    def sync_chain(self) -> None:
        """Make every block written so far durable: fsync the block database's write-ahead logs.

        Every ``*.log`` file of ``blocks`` is synced, not only the current one: LevelDB starts a new
        log when its memtable fills and does not sync the old one, whose entries stay in it until
        they reach a table file (which LevelDB syncs when it writes it). A synced LevelDB write
        would sync the current log only.
        """
        with self._lock:
            if not self.unsynced_from:
                return
            where = self.path / CHAIN_DIR
            for log_file in sorted(where.glob("*.log")):
                try:
                    fd = os.open(log_file, os.O_RDONLY)
                except FileNotFoundError:  # compacted away meanwhile: its entries are in a synced table
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.unsynced_from = 0

    def persisted(self) -> dict[bytes, bytes]:
        return {k[1:]: v for k, v in self.db.iterator(prefix=STATE)}


def _put_state(wb: Any, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Consensus state entries into a write batch (None deletes)."""
    for key, value in entries:
        if value is None:
            wb.delete(STATE + key)
        else:
            wb.put(STATE + key, value)


def item_entries(height: int, items: Iterable[tuple[str, int]]) -> list[tuple[bytes, bytes]]:
    """The item history keys of block ``height`` from its (item id, record index) pairs: one per item."""
    h = _U64.pack(height)
    return [(ITEM + k + h, pack_indices(ix)) for k, ix in group((item_key(i), n) for i, n in items).items()]


def _height_of(key: bytes, value: bytes) -> int | None:
    """The height an index entry belongs to (docs/storage.md), None for meta, head and consensus state."""
    tag = key[:1]
    if tag == RECORD:
        return _U64.unpack(value[:8])[0]
    if tag == b"e":
        return _U64.unpack(value[32:40])[0]
    if tag == b"q":  # query postings: one key per (value, block), ending in u64 height (EPCIS index 4)
        return _U64.unpack(key[-8:])[0]
    if tag == ITEM:  # one key per (item, block), ending in u64 height (EPCIS index 4)
        return _U64.unpack(key[-8:])[0]
    if tag == b"E":
        return _U64.unpack(key[-12:-4])[0]
    return None
