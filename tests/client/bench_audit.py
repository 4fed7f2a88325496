"""Audit speed on a synthetic chain: ``python tests/client/bench_audit.py [RECORDS] [PER_BLOCK]``.

Builds a chain in memory with the format modules (4 validators, realistic ObjectEvents from
several members), then audits it from a MemorySource and from a LevelDB directory laid out like
node/storage.py, with the worker pool and in-process, and prints records/s for each. Signing
the chain takes a while (Ed25519 signing is cheaper than verifying, but not free); the chain is
built once per run. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from helpers_client import Net, object_event  # noqa: E402

from rantai.client.format.audit import Auditor, MemorySource  # noqa: E402
from rantai.client.format.encoding import encode  # noqa: E402
from rantai.node.audit import DataDirSource  # noqa: E402


def build(records: int, per_block: int) -> Net:
    net = Net()
    who = ["acme", "beta"]
    n = 0
    while n < records:
        k = min(per_block, records - n)
        net.commit([net.sign(object_event(n + j), who[(n + j) % 2]) for j in range(k)])
        n += k
    return net


def write_leveldb(net: Net, path: str) -> None:
    import plyvel

    u64 = struct.Struct(">Q")
    db = plyvel.DB(path, create_if_missing=True)
    with db.write_batch() as wb:
        for b, c in zip(net.blocks, net.certs, strict=True):
            wb.put(b"b" + u64.pack(b.height), b.raw)
            wb.put(b"c" + u64.pack(b.height), encode(c.to_obj()))
        wb.put(b"h", u64.pack(net.height) + net.blocks[-1].hash)
    db.close()


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    per_block = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    t = time.perf_counter()
    net = build(records, per_block)
    print(f"built {records} records in {net.height} blocks in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    items = [(b.raw, c.to_obj()) for b, c in zip(net.blocks, net.certs, strict=True)]
    results = {}
    cpu_us = {}

    def measure(label: str, workers: int | None, source_fn) -> None:
        # Wall-clock rate, plus CPU time of this process and of the (then finished) workers:
        # the CPU figure does not depend on what else the machine is running.
        c0, k0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        with Auditor(net.genesis, workers=workers) as auditor:
            src = source_fn()
            rep = auditor.run(src)
            src.close()
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        main_cpu = time.process_time() - c0
        child_cpu = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
        assert rep.ok, rep.failures[:3]
        results[label] = round(rep.rate)
        cpu_us[label] = {"main": round(main_cpu / records * 1e6, 1), "workers": round(child_cpu / records * 1e6, 1)}

    measure("memory workers=0", 0, lambda: MemorySource(items))
    measure(f"memory workers={os.cpu_count()}", None, lambda: MemorySource(items))
    with tempfile.TemporaryDirectory() as d:
        write_leveldb(net, d + "/db")
        measure(f"leveldb workers={os.cpu_count()}", None, lambda: DataDirSource(d + "/db"))
    print(json.dumps({"records": records, "per_block": per_block, "cpus": os.cpu_count(),
                      "load_average": os.getloadavg(),
                      "records_per_second": results, "cpu_us_per_record": cpu_us}, indent=2))


if __name__ == "__main__":
    main()
