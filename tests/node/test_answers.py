"""``PackedReceipts`` (node/answers.py): a ``?wait=commit`` answer in msgpack is byte for byte what
``encode`` makes of the same answer, whatever its entries, and the per-block parts it keeps are the
block's own."""

from __future__ import annotations

import random

from rantai.client.format.encoding import decode, encode
from rantai.node.answers import PackedReceipts


def _receipt(height: int, index: int, rng: random.Random) -> dict:
    header = {"chain": rng.randbytes(32), "height": height, "prev_hash": rng.randbytes(32),
              "proposer": "a" * 16, "records_root": rng.randbytes(32), "timestamp": 1_700_000_000_000 + height,
              "version": 1, "view": rng.choice([0, 3, 300])}
    certificate = {"height": height, "signatures": [[f"v{k}" * 8, rng.randbytes(64)] for k in range(3)],
                   "view": header["view"]}
    return {"certificate": certificate, "header": header, "index": index,
            "path": [rng.randbytes(32) for _ in range(rng.randrange(0, 12))],
            "record": rng.randbytes(rng.choice([20, 600, 70_000]))}


def test_packed_answers_are_the_canonical_encoding():
    rng = random.Random(16)
    packer = PackedReceipts(size=3)
    for trial in range(300):
        n = rng.choice([1, 1, 2, 5, 17, 40])
        entries, receipts, full = [], {}, []
        for i in range(n):
            rid = rng.randbytes(32)
            kind = rng.choice(["committed", "committed", "duplicate", "rejected", "accepted"])
            if kind == "rejected":
                entry = {"error": {"error": "signature does not verify", "message": "x" * rng.randrange(40),
                                   "index": i}, "id": rid, "status": "rejected"}
                entries.append(entry)
                full.append(entry)
            elif kind == "accepted":  # not seen committed in time: no receipt
                entries.append({"id": rid, "status": "accepted"})
                full.append(entries[-1])
            else:
                height = rng.choice([1, 2, 3, 127, 128, 65_536, 2**33])
                obj = _receipt(height, rng.choice([0, 1, 15, 16, 127, 128, 300, 70_000]), random.Random(height))
                entry = {"height": height, "id": rid, "status": kind}
                entries.append(entry)
                receipts[i] = (height, obj)
                full.append({**entry, "receipt": obj})
        got = packer.answer(entries, receipts)
        assert got == encode({"results": full}), trial
        assert decode(got) == {"results": full}
    assert len(packer._heads) <= 3  # bounded


def test_a_blocks_parts_are_packed_once_and_kept_per_height():
    rng = random.Random(1)
    packer = PackedReceipts()
    a, b = _receipt(5, 0, random.Random(5)), _receipt(6, 0, random.Random(6))
    first = packer.receipt(5, a)
    assert first == encode(a) and packer.receipt(6, b) == encode(b)
    second = {**a, "index": 1, "path": [rng.randbytes(32)], "record": b"r"}
    assert packer.receipt(5, second) == encode(second)  # the same block's head, another record's tail


def test_the_records_routes_query_parameters_are_starlettes():
    """The records route reads its parameters from a per-string cache (node/app.py ``_query``): the
    same values Starlette's ``query_params`` gives, repeated names, blanks and escapes included."""
    from starlette.requests import Request

    from rantai.node.app import _query

    for qs in [b"", b"wait=commit", b"wait=commit&timeout_ms=5", b"timeout_ms=1&timeout_ms=2&wait=", b"wait",
               b"wait=com%6Dit&x=a+b&y=%ZZ", "caf\u00e9=1".encode()]:
        request = Request({"type": "http", "query_string": qs, "headers": [], "method": "POST", "path": "/"})
        assert dict(_query(request)) == dict(request.query_params), qs
