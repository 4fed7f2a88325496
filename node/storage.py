"""LevelDB storage of one node: blocks, certificates, indexes and consensus state (layout: docs/storage.md).

Every key starts with a one-byte tag; integers are big-endian so LevelDB's byte order is height order::

    b"m" + name                          meta: b"mformat" -> b"rantai-node/1", b"mchain" -> genesis hash
    b"h"                                 head: u64 height ‖ block hash[32]   (absent: empty chain)
    b"b" + u64 height                    block bytes (client/blocks.py)
    b"c" + u64 height                    canonical msgpack of the commit certificate
    b"r" + record id[32]                 u64 height ‖ u32 index
    b"i" + sha256(item id)[32] + u64 height + u32 index   -> item id (UTF-8), for /v1/items/{id}/history
    b"s" + key                           consensus state (``Persist`` entries), handed back to the replica
    b"e", b"E", b"q" ...                  EPCIS indexes (node/epcis_index.py), written in the block's batch

A committed block, its certificate, its index entries and the new head are one synced write batch,
so after a crash the store holds a prefix of the chain with every index complete. The work per
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

__all__ = ["FORMAT", "Storage", "StorageError"]

FORMAT = b"rantai-node/1"
_U64 = struct.Struct(">Q")
_LOC = struct.Struct(">QI")

META, HEAD, BLOCK, CERT, RECORD, ITEM, STATE = b"m", b"h", b"b", b"c", b"r", b"i", b"s"


class StorageError(RuntimeError):
    """The data directory cannot be opened or belongs to another chain."""


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
        if fmt is None:
            if not create:
                raise StorageError(f"storage: {self.path} is not a rantai node database")
            with self.db.write_batch(sync=True) as wb:
                wb.put(META + b"format", FORMAT)
                wb.put(META + b"chain", chain)
        elif fmt != FORMAT:
            self.db.close()
            raise StorageError(f"storage: {self.path} has format {fmt!r}, expected {FORMAT!r}")
        elif stored_chain != chain:
            self.db.close()
            raise StorageError(f"storage: {self.path} holds another chain ({stored_chain.hex()[:16]}…)")
        self.chain = chain
        self._head = self._read_head()

    def close(self) -> None:
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
        return self.db.get(BLOCK + _U64.pack(height))

    def certificate(self, height: int) -> bytes | None:
        return self.db.get(CERT + _U64.pack(height))

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(height, block bytes, certificate bytes) for heights start..stop inclusive, in order."""
        with self.db.snapshot() as snap:
            certs = snap.iterator(start=CERT + _U64.pack(start), stop=CERT + _U64.pack(stop + 1))
            for (bk, block), (_, cert) in zip(
                snap.iterator(start=BLOCK + _U64.pack(start), stop=BLOCK + _U64.pack(stop + 1)), certs
            ):
                yield _U64.unpack(bk[1:])[0], block, cert

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
        """Store block ``height`` (which must be head + 1) with its certificate and indexes: one synced batch."""
        with self._lock:
            if height != self._head[0] + 1:
                raise StorageError(f"storage: block {height} does not follow head {self._head[0]}")
            h = _U64.pack(height)
            with self.db.write_batch(sync=True, transaction=True) as wb:
                wb.put(BLOCK + h, block)
                wb.put(CERT + h, certificate)
                for index, rid in enumerate(record_ids):
                    wb.put(RECORD + rid, _LOC.pack(height, index))
                for item, index in items:
                    wb.put(ITEM + item_key(item) + _LOC.pack(height, index), item.encode("utf-8"))
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
