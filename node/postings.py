"""A posting value: the record indices of one block that share an indexed value (docs/storage.md).

The EPCIS query index (node/epcis_index.py) and the item history index (node/storage.py) write one key per
(value, block) ending in the block's u64 height, whose value lists the block's records: so a value's keys
grow with the height and LevelDB appends them, where one random key per (value, record) was rewritten at
every compaction level. Indices are ascending big-endian u16, or u32 after a ``ff ff`` mark when the block
holds 65,535 records or more (a u16 list never holds 0xffff); a time posting appends each record's time in
µs (u64) in the same order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

__all__ = ["group", "pack_indices", "unpack_indices"]

_WIDE = b"\xff\xff"


def pack_indices(indices: Sequence[int], times: Sequence[int] = ()) -> bytes:
    """Ascending record indices of one block (and, for a time posting, their times in µs) as a value."""
    n = len(indices)
    head = struct.pack(f">{n}H", *indices) if indices[-1] < 0xFFFF else _WIDE + struct.pack(f">{n}I", *indices)
    return head + struct.pack(f">{n}Q", *times) if times else head


def unpack_indices(value: bytes, timed: bool = False) -> tuple[Sequence[int], Sequence[int]]:
    """(indices, times in µs or ()) of a posting value; ``timed`` for a time posting."""
    if value[:2] == _WIDE:
        width, code, body = 4, "I", value[2:]
    else:
        width, code, body = 2, "H", value
    n = len(body) // (width + 8) if timed else len(body) // width
    ix = struct.unpack_from(f">{n}{code}", body)
    return ix, (struct.unpack_from(f">{n}Q", body, n * width) if timed else ())


def group(pairs: Iterable[tuple[bytes, int]]) -> dict[bytes, list[int]]:
    """(key, record index) pairs of one block -> key: its ascending indices without repeats."""
    out: dict[bytes, list[int]] = {}
    unordered = False
    for key, index in pairs:
        got = out.get(key)
        if got is None:
            out[key] = [index]
        elif got[-1] < index:
            got.append(index)
        elif got[-1] > index:
            got.append(index)
            unordered = True
    if unordered:
        return {k: sorted(set(v)) for k, v in out.items()}
    return out
