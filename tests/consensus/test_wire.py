"""wire: every message round-trips; anything malformed raises ProtocolViolation (never another error)."""

from __future__ import annotations

import random

import msgpack
import pytest

from rantai.consensus import (
    Checkpoint,
    CheckpointCert,
    CommitVote,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    ProtocolViolation,
    ViewChange,
    wire,
)

ID = "0123456789abcdef"
D = bytes(range(32))
S = bytes(64)


def samples() -> list:
    pp = PrePrepare(3, 7, D, D[::-1], b"payload", ID, S)
    cert = PreparedCert(2, 7, D, D, S, ((ID, S), ("fedcba9876543210", S)))
    vc = ViewChange(4, CheckpointCert(4, D, ((ID, S),)), (cert,), ID, S, (b"blk",))
    return [
        pp,
        Prepare(1, 2, D, ID, S),
        CommitVote(1, 2, D, ID, S),
        Checkpoint(16, D, ID, S),
        vc,
        ViewChange(4, CheckpointCert(0, D, ()), (), ID, S, ()),
        NewView(4, (vc.stripped(),), (pp,), ID, S),
    ]


@pytest.mark.parametrize("m", samples(), ids=lambda m: type(m).__name__)
def test_round_trip(m) -> None:
    assert wire.decode(wire.encode(m)) == m


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\xc1", msgpack.packb([]), msgpack.packb([99, 1]), msgpack.packb({"a": 1}),
    msgpack.packb([2, 1, 2, D, ID]),  # arity
    msgpack.packb([2, -1, 2, D, ID, S]),  # negative view
    msgpack.packb([2, 1, 2, D[:31], ID, S]),  # short digest
    msgpack.packb([2, 1, 2, D, "NOT-HEX-ID-00000", S]),  # bad id
    msgpack.packb([2, 1, 2, D, ID, S[:63]]),  # short signature
    msgpack.packb([2, 1.0, 2, D, ID, S]),  # float view
    msgpack.packb([2, True, 2, D, ID, S]),  # bool is not an int here
    wire.encode(Prepare(1, 2, D, ID, S)) + b"\x00",  # trailing bytes
], ids=lambda d: d[:12].hex())
def test_malformed(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        wire.decode(data)


def test_fuzz_mutations_raise_only_protocol_violation() -> None:
    rng = random.Random(7)
    blobs = [wire.encode(m) for m in samples()]
    for _ in range(3000):
        b = bytearray(rng.choice(blobs))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.4 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op < 0.7 and b:
                del b[rng.randrange(len(b)):]
            else:
                b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        try:
            wire.decode(bytes(b))
        except ProtocolViolation:
            pass


def test_payload_limit() -> None:
    big = PrePrepare(0, 1, D, D, b"x" * (wire.MAX_PAYLOAD_BYTES + 1), ID, S)
    with pytest.raises(ProtocolViolation):
        wire.decode(wire.encode(big))
