"""Reading a stopped node's data directory for the chain auditor (``rantai-node audit --data-dir``).

The checks are the client's (``rantai.client.format.audit``): the one definition of a valid chain.
This module only supplies blocks from LevelDB, opened on a snapshot so nothing is written.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rantai.client.format.encoding import decode
from rantai.client.format.errors import NodeError, RantaiError

__all__ = ["DataDirSource"]

_U64 = struct.Struct(">Q")


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


