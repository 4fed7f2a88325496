"""Reading the block stream (``GET /v1/blocks?from=&to=``): one definition for catch-up and the auditor.

The stream is a concatenation of canonical msgpack maps ``{"block": bytes, "certificate": map}``,
one per height in order (docs/api.md). Bytes arrive in arbitrary pieces; ``BlockStreamReader``
finds each item's end with msgpack's streaming unpacker, then decodes that item's own bytes with
the strict decoder, so a non-canonical item is refused exactly as a non-canonical record would be
(a lenient parse followed by a re-encode would accept it).
"""

from __future__ import annotations

from typing import Any

import msgpack

from .encoding import MAX_SIZE, decode
from .errors import InvalidBlock, InvalidEncoding

__all__ = ["BlockStreamReader"]


class BlockStreamReader:
    """Feed bytes as they arrive; get back the complete ``(block bytes, certificate object)`` items."""

    def __init__(self, max_item_bytes: int = MAX_SIZE) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max_item_bytes)
        self._buffer = bytearray()
        self._base = 0  # stream offset of _buffer[0]
        self._start = 0  # stream offset where the next item begins

    def feed(self, data: bytes) -> list[tuple[bytes, Any]]:
        """The items completed by ``data``; raises ``InvalidBlock`` at the first malformed one."""
        self._unpacker.feed(data)
        self._buffer += data
        out: list[tuple[bytes, Any]] = []
        while True:
            try:
                self._unpacker.skip()
            except msgpack.OutOfData:
                break
            except (ValueError, msgpack.UnpackException) as exc:
                raise InvalidBlock(f"block stream: not msgpack ({type(exc).__name__})", rule="encoding") from exc
            end = self._unpacker.tell()
            raw = bytes(self._buffer[self._start - self._base:end - self._base])
            self._start = end
            try:
                item = decode(raw)
            except InvalidEncoding as exc:
                raise InvalidBlock(f"block stream: {exc}", rule="encoding") from exc
            if type(item) is not dict or set(item) != {"block", "certificate"} or type(item["block"]) is not bytes:
                raise InvalidBlock("block stream: each item is a map of block (bytes) and certificate",
                                   rule="block shape")
            out.append((item["block"], item["certificate"]))
        if self._start - self._base > 1 << 20:  # drop consumed bytes now and then, not per item
            del self._buffer[:self._start - self._base]
            self._base = self._start
        return out

    @property
    def pending(self) -> int:
        """Bytes received after the last complete item (a stream that ends with some is torn)."""
        return self._base + len(self._buffer) - self._start
