"""Query and capture (commit) cost per record of the EPCIS index, for docs/performance.md.

    python tests/epcis_api/measure_query.py [--events 20000] [--block 200] [--no-queries] [--repeat 3]

Run it with each checkout's interpreter in the same sitting (e.g. main's .venv and this branch's) to
compare before/after: it uses only APIs both have (Storage, Ledger.apply, block_entries, EventQuery.parse,
run_query).
Two datasets of signed events, each committed in blocks by ``Ledger.apply`` on one thread: ``shipping``
(the bench's record: one SGTIN, bizStep, disposition, readPoint) and ``rich`` (the differential test's
generator: quantities, parties, sensors, ILMD, extensions). Prints µs per committed record (index and
block write included), the Python CPU per record of building the block's index entries (``block_entries``,
and from index 4 on the item keys' grouping; ``time.process_time``, the least of ``--repeat`` builds of each
block; event digests and decoded events at hand, as a validator has them from validation), the keys and
bytes per record the index database holds (by key tag: ``q`` postings, ``i`` items, ``e`` hash IDs ...),
and µs per returned event for a few queries.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for the generator and the keys

from epcis_api.helpers import make_net  # noqa: E402
from epcis_api.test_query_differential import make_event  # noqa: E402
from rantai.client.bench import shipment_event  # noqa: E402
from rantai.client.format.blocks import Block  # noqa: E402
from rantai.client.format.records import sign_event  # noqa: E402
from rantai.consensus.certificate import CommitCertificate  # noqa: E402
from rantai.node import epcis_query as qx  # noqa: E402
from rantai.node.epcis_index import record_digest  # noqa: E402
from rantai.node.ledger import Ledger, block_entries  # noqa: E402
from rantai.node.storage import Storage  # noqa: E402

try:
    from rantai.node.storage import item_entries  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # before index 4: one item key per (item, record), written as it is
    item_entries = None

QUERIES = {
    "all events": [("perPage", "1000")],
    "eventType=ObjectEvent": [("eventType", "ObjectEvent"), ("perPage", "1000")],
    "EQ_bizStep=shipping & GE_eventTime": [("EQ_bizStep", "shipping"), ("GE_eventTime", "2023-01-01T00:00:00Z"),
                                           ("perPage", "1000")],
    "MATCH_epc class pattern": [("MATCH_epc", "urn:epc:idpat:sgtin:0614141.107346.*"), ("perPage", "1000")],
}


def run(kind: str, n: int, block: int, queries: bool = True, repeat: int = 3) -> None:
    net = make_net()
    rng = random.Random(3)
    events = [shipment_event(k, 300) if kind == "shipping" else make_event(rng, k) for k in range(n)]
    records = [sign_event(net.acme, net.genesis, e) for e in events]
    with tempfile.TemporaryDirectory() as d:
        st = Storage(Path(d) / "db", net.genesis.hash)
        ledger = Ledger(net.genesis, st)
        prev, rows, t_apply, t_build = net.genesis.hash, [], 0.0, 0.0
        for h, k in enumerate(range(0, n, block), start=1):
            chunk = records[k:k + block]
            b = Block.build(chain=net.genesis.hash, height=h, prev_hash=prev, view=0, proposer=net.validators[0].id,
                            timestamp=1_700_000_000_000 + h * 1000, records=chunk)
            for r in b.records:  # what validation leaves at hand: the decoded event and its digest
                record_digest(r)
            best = float("inf")
            for _ in range(repeat):  # the least of a few: a shared machine only ever adds
                c0 = time.process_time()
                entries = block_entries(st.db, h, b.header.timestamp, b.records)
                if item_entries is not None:  # index 4 groups the item history keys per block at commit
                    item_entries(h, entries[0])
                best = min(best, time.process_time() - c0)
            t_build += best
            t0 = time.perf_counter()
            ledger.apply(b, CommitCertificate(h, 0, b.hash, (("a" * 16, b"s" * 64),)), entries)
            t_apply += time.perf_counter() - t0
            prev = b.hash
            rows += [(h, i) for i in range(len(chunk))]
        keys: dict[str, list[int]] = {}
        for key, value in st.db.iterator():
            if key[:1] not in (b"m", b"h", b"s"):
                got = keys.setdefault(chr(key[0]), [0, 0])
                got[0] += 1
                got[1] += len(key) + len(value)
        total = [sum(v[0] for v in keys.values()), sum(v[1] for v in keys.values())]
        by_tag = ", ".join(f"{t} {c / n:.2f}/{b / n:.0f}" for t, (c, b) in sorted(keys.items()))
        print(f"[{kind}] {n} events in blocks of {block}: build the index entries "
              f"{t_build / n * 1e6:.1f} µs CPU/record, commit {t_apply / n * 1e6:.0f} µs/record (block + indexes), "
              f"index keys/bytes per record "
              f"{total[0] / n:.2f}/{total[1] / n:.0f} (by tag: {by_tag})")
        if not queries:
            st.close()
            return

        def load(h: int, i: int):
            r = ledger.receipt_at(h, i)
            return None if r is None else (r.record.event, r.header.timestamp * 1000, r)

        for name, params in QUERIES.items():
            q = qx.EventQuery.parse(params)
            got, start, t0 = 0, (0, 0), time.perf_counter()
            while True:
                found, resume, _ = qx.run_query(st.db, q, start=start, max_height=10**9, load=load)
                got += len(found)
                if resume is None:
                    break
                start = resume
            dt = time.perf_counter() - t0
            per = f"{dt / got * 1e6:.0f} µs/event" if got else "-"
            print(f"[{kind}]   {name}: {got} events, {dt * 1000:.0f} ms, {per}")
        st.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--no-queries", action="store_true", help="only the index's build cost, keys and bytes")
    ap.add_argument("--repeat", type=int, default=3, help="build each block's entries this often, keep the least")
    a = ap.parse_args()
    for kind in ("shipping", "rich"):
        run(kind, a.events, a.block, queries=not a.no_queries, repeat=a.repeat)


if __name__ == "__main__":
    main()
