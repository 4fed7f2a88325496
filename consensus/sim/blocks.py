"""The simulator's toy block codec, shared by the cluster (which builds and validates blocks) and the
checkers (which read the requests a committed block carries)."""

from __future__ import annotations

from typing import Any

import msgpack

from ..crypto import sha256
from ..effects import Proposal

__all__ = ["decode_block", "make_block"]


def make_block(height: int, parent: bytes, view: int, proposer: str, timestamp: int,
               requests: list[list[Any]]) -> Proposal:
    payload = msgpack.packb([height, parent, view, proposer, timestamp, requests], use_bin_type=True)
    return Proposal(height, parent, sha256(payload), payload)


def decode_block(payload: bytes) -> tuple[int, bytes, int, str, int, list[list[Any]]] | None:
    try:
        h, parent, view, proposer, ts, reqs = msgpack.unpackb(payload, raw=False)
        return h, parent, view, proposer, ts, [list(r) for r in reqs]
    except Exception:
        return None
