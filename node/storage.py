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
    b"i" + sha256(item id)[32] + u64 height + u32 index   -> b"", for /v1/items/{id}/history
    b"s" + key                           consensus state (``Persist`` entries), handed back to the replica
    b"e", b"E", b"q" ...                  EPCIS indexes (node/epcis_index.py), written in the block's batch

A committed block and its certificate are one synced batch in ``blocks``, then its index entries and
the new head one synced batch in ``data_dir``; a block is only ever read at or below the head, so
after a crash the store holds a prefix of the chain with every index complete (a block written
above the head is overwritten when that height is stored again). The work per
block depends on that block's size only, never on the chain's height.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import plyvel

from rantai.client.format.errors import RantaiError

__all__ = ["FORMAT", "Storage", "StorageError"]

FORMAT = b"rantai-node/2"
FORMAT_1 = b"rantai-node/1"  # blocks and certificates in the one database (b"b"/b"c" + u64 height): migrated on open
CHAIN_DIR = "blocks"
_U64 = struct.Struct(">Q")
_LOC = struct.Struct(">QI")

META, HEAD, RECORD, ITEM, STATE = b"m", b"h", b"r", b"i", b"s"
BLOCK, CERT = b"b", b"c"  # the kind byte after the height in ``blocks`` (and the old format's tags)


class StorageError(RantaiError):
    """The data directory cannot be opened, belongs to another chain, or does not hold what it should."""

    status_hint = 503
    rule = "storage"


def item_key(item_id: str) -> bytes:
    return hashlib.sha256(item_id.encode("utf-8")).digest()


class Storage:
    """The node's LevelDB. Writes are serialised by a lock; reads need none (LevelDB is thread-safe)."""

    def __init__(self, path: str | os.PathLike[str], chain: bytes, *, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.db = plyvel.DB(
                str(self.path), create_if_missing=create, paranoid_checks=True, bloom_filter_bits=10,
                lru_cache_size=32 * 1024 * 1024, write_buffer_size=16 * 1024 * 1024,
            )
        except plyvel.Error as exc:
            raise StorageError(f"storage: cannot open {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self.on_commit: list[Callable[[int, Any], None]] = []  # called after each block's batch (disk thread)
        fmt, stored_chain = self.db.get(META + b"format"), self.db.get(META + b"chain")
        if fmt is not None and fmt not in (FORMAT, FORMAT_1):
            self.db.close()
            raise StorageError(f"storage: {self.path} has format {fmt!r}, expected {FORMAT!r}")
        if fmt is not None and stored_chain != chain:
            self.db.close()
            raise StorageError(f"storage: {self.path} holds another chain ({stored_chain.hex()[:16]}…)")
        if fmt is None and not create:
            self.db.close()
            raise StorageError(f"storage: {self.path} is not a rantai node database")
        try:
            self.chain_db = plyvel.DB(
                str(self.path / CHAIN_DIR), create_if_missing=create or fmt == FORMAT_1, paranoid_checks=True,
                lru_cache_size=4 * 1024 * 1024, write_buffer_size=4 * 1024 * 1024,  # written in order, read rarely
            )
        except plyvel.Error as exc:
            self.db.close()
            raise StorageError(f"storage: cannot open {self.path / CHAIN_DIR}: {exc}") from exc
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

    def close(self) -> None:
        if not self.chain_db.closed:
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

    def locate(self, record_id: bytes) -> tuple[int, int] | None:
        raw = self.db.get(RECORD + record_id)
        return None if raw is None else _LOC.unpack(raw)  # type: ignore[return-value]

    def item_locations(self, item_id: str, limit: int = 10_000) -> list[tuple[int, int]]:
        prefix = ITEM + item_key(item_id)
        out = []
        for k in self.db.iterator(prefix=prefix, include_value=False):
            out.append(_LOC.unpack(k[len(prefix):]))
            if len(out) >= limit:
                break
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
        with self._lock:
            if height != self._head[0] + 1:
                raise StorageError(f"storage: block {height} does not follow head {self._head[0]}")
            h = _U64.pack(height)
            with self.chain_db.write_batch(sync=True) as cb:
                cb.put(h + BLOCK, block)
                cb.put(h + CERT, certificate)
            with self.db.write_batch(sync=True, transaction=True) as wb:
                for index, rid in enumerate(record_ids):
                    wb.put(RECORD + rid, _LOC.pack(height, index))
                for item, index in items:
                    # The key says it all; (format 1 stored the item id as the value: never read)
                    wb.put(ITEM + item_key(item) + _LOC.pack(height, index), b"")
                for key, value in extra:  # EPCIS indexes (node/epcis_index.py)
                    wb.put(key, value)
                wb.put(HEAD, h + block_hash)
            self._head = (height, block_hash)
        for fn in self.on_commit:
            fn(height, info)

    def persist(self, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Consensus state writes (None deletes), synced before returning."""
        with self._lock, self.db.write_batch(sync=True, transaction=True) as wb:
            for key, value in entries:
                if value is None:
                    wb.delete(STATE + key)
                else:
                    wb.put(STATE + key, value)

    def persisted(self) -> dict[bytes, bytes]:
        return {k[1:]: v for k, v in self.db.iterator(prefix=STATE)}
