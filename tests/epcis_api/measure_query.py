"""Query and capture (commit) cost per record of the EPCIS index, for docs/performance.md.

    python tests/epcis_api/measure_query.py [--events 20000] [--block 200]

Run it with each checkout's interpreter in the same sitting (e.g. main's .venv and this branch's) to
compare before/after: it uses only APIs both have (Storage, Ledger.apply, EventQuery.parse, run_query).
Two datasets of signed events, each committed in blocks by ``Ledger.apply`` on one thread: ``shipping``
(the bench's record: one SGTIN, bizStep, disposition, readPoint) and ``rich`` (the differential test's
generator: quantities, parties, sensors, ILMD, extensions). Prints µs per committed record (index and
block write included), index keys and bytes per record, and µs per returned event for a few queries.
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
from rantai.node.ledger import Ledger  # noqa: E402
from rantai.node.storage import Storage  # noqa: E402

QUERIES = {
    "all events": [("perPage", "1000")],
    "eventType=ObjectEvent": [("eventType", "ObjectEvent"), ("perPage", "1000")],
    "EQ_bizStep=shipping & GE_eventTime": [("EQ_bizStep", "shipping"), ("GE_eventTime", "2023-01-01T00:00:00Z"),
                                           ("perPage", "1000")],
    "MATCH_epc class pattern": [("MATCH_epc", "urn:epc:idpat:sgtin:0614141.107346.*"), ("perPage", "1000")],
}


def run(kind: str, n: int, block: int) -> None:
    net = make_net()
    rng = random.Random(3)
    events = [shipment_event(k, 300) if kind == "shipping" else make_event(rng, k) for k in range(n)]
    records = [sign_event(net.acme, net.genesis, e) for e in events]
    with tempfile.TemporaryDirectory() as d:
        st = Storage(Path(d) / "db", net.genesis.hash)
        ledger = Ledger(net.genesis, st)
        prev, rows, t_apply = net.genesis.hash, [], 0.0
        for h, k in enumerate(range(0, n, block), start=1):
            chunk = records[k:k + block]
            b = Block.build(chain=net.genesis.hash, height=h, prev_hash=prev, view=0, proposer=net.validators[0].id,
                            timestamp=1_700_000_000_000 + h * 1000, records=chunk)
            t0 = time.perf_counter()
            ledger.apply(b, CommitCertificate(h, 0, b.hash, (("a" * 16, b"s" * 64),)))
            t_apply += time.perf_counter() - t0
            prev = b.hash
            rows += [(h, i) for i in range(len(chunk))]
        keys = sum(1 for _ in st.db.iterator(prefix=b"q", include_value=False))
        size = sum(len(k) + len(v) for k, v in st.db.iterator(prefix=b"q"))
        print(f"[{kind}] {n} events: commit {t_apply / n * 1e6:.0f} µs/record (block + indexes), "
              f"{keys / n:.1f} query postings/record, {size / n:.0f} posting bytes/record")

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
    a = ap.parse_args()
    for kind in ("shipping", "rich"):
        run(kind, a.events, a.block)


if __name__ == "__main__":
    main()
