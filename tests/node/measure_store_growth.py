"""What grows with the chain's height in a validator's store: CPU per record per window of height.

    .venv/bin/python tests/node/measure_store_growth.py --records 1000000 --window 100000 --dir /tmp/growth

Not a test (no timing is ever asserted): a measuring harness, run by hand. It builds a chain of the bench's
shipping events (300 canonical bytes, one EPC each; signed in worker processes, outside the measured time)
in blocks of ``--per-block`` records and, for each block, does in this process what a validator does against
its store, timing each part with this thread's CPU clock:

* ``lookups``: the point lookups of keys that are almost always absent, per record: the duplicate-record
  check (``Storage.locate``) and the no-event-twice guard (``lookup_hash`` of the event's digest), each as
  often as a backup does them (admission and the block check: twice each);
* ``entries``: ``ledger.block_entries`` (item, EPCIS postings; includes the guard's own lookup);
* ``commit``: ``Storage.commit_blocks`` (one synced write per block, as a round does), with the consensus
  state a replica persists in that batch: its prepared certificate carrying the block's payload, deleted
  once a checkpoint is stable (``--checkpoint``);
* ``background``: the CPU of the process's other threads: LevelDB's compaction thread.

Per window it prints µs per record of each, the wall time of the commits (a LevelDB write stall shows as
wall far above CPU), the files per LevelDB level of the index database, RSS, and at the end the disk
bytes per canonical record byte. Compare early and late windows of one run: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rantai.client.bench import shipment_event
from rantai.client.format.blocks import Block
from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import Signer
from rantai.client.format.records import SignedRecord, sign_event
from rantai.consensus.certificate import CommitCertificate
from rantai.node.epcis_index import lookup_hash, record_digest
from rantai.node.ledger import Ledger, block_entries
from rantai.node.storage import INDEX_OPTIONS, Storage

_SEED = b"\x65" * 32
_TICK = os.sysconf("SC_CLK_TCK")


def _genesis() -> Genesis:
    validators = [Signer.from_seed(bytes([i + 1]) * 32) for i in range(4)]
    acme = Signer.from_seed(_SEED)
    return Genesis.build("growth-chain", [(v.public_key, f"v{i}", f"http://127.0.0.1:{7100 + i}")
                                          for i, v in enumerate(validators)],
                         [(acme.public_key, "acme", "acme", ["submitter"])])


def _sign(args: tuple[bytes, int, int, int]) -> list[bytes]:
    chain, start, count, payload = args
    signer = Signer.from_seed(_SEED)
    return [sign_event(signer, chain, shipment_event(start + i, payload)).raw for i in range(count)]


def _thread_cpu() -> dict[int, float]:
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _rss_mb() -> dict[str, float]:
    """RSS in MB, and its anonymous and file-backed parts (LevelDB reads its tables through mmap)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        for name in ("VmRSS", "RssAnon", "RssFile"):
            if line.startswith(name + ":"):
                out[name] = round(int(line.split()[1]) / 1024, 1)
    return out


def _levels(db: Any) -> list[int]:
    """Files per level of a LevelDB (its ``leveldb.num-files-at-level<N>`` properties)."""
    return [int(db.get_property(f"leveldb.num-files-at-level{n}".encode()) or 0) for n in range(7)]


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _consensus_state(height: int, payload: bytes, interval: int) -> list[tuple[bytes, bytes | None]]:
    """What a replica persists in the round's batch: its prepared certificate with the block's payload
    (``pc/h``, consensus/replica.py), deleted when a checkpoint becomes stable (every ``interval`` blocks,
    one interval behind)."""
    state: list[tuple[bytes, bytes | None]] = [(b"pc/" + height.to_bytes(8, "big"), payload)]
    if interval and height % interval == 0:
        state.extend((b"pc/" + h.to_bytes(8, "big"), None) for h in range(max(1, height - 2 * interval + 1),
                                                                        height - interval + 1))
    return state


def _bounded(pool: Any, jobs: list[tuple[bytes, int, int, int]], ahead: int = 8) -> Any:
    """The signed blocks in order, at most ``ahead`` signed before they are used (flat memory)."""
    pending: list[Any] = []
    for job in jobs:
        pending.append(pool.apply_async(_sign, (job,)))
        if len(pending) > ahead:
            yield pending.pop(0).get()
    for res in pending:
        yield res.get()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--window", type=int, default=50_000)
    ap.add_argument("--per-block", type=int, default=570)
    ap.add_argument("--payload", type=int, default=300)
    ap.add_argument("--signers", type=int, default=1, help="signing processes [1]")
    ap.add_argument("--dir", default="/tmp/store-growth")
    ap.add_argument("--checkpoint", type=int, default=16,
                    help="checkpoint interval: each block's payload is persisted as consensus state and deleted "
                         "this many blocks later, as a replica does (0: no consensus state) [16]")
    ap.add_argument("--cache-blocks", type=int, default=0, help="the ledger's block cache [Ledger's default]")
    ap.add_argument("--json", help="write the windows as JSON here")
    ap.add_argument("--option", action="append", default=[],
                    help="NAME=VALUE: a plyvel option of the index database (e.g. compression=none)")
    args = ap.parse_args(argv)
    for opt in args.option:
        name, value = opt.split("=", 1)
        INDEX_OPTIONS[name] = None if value == "none" else int(value) if value.isdigit() else value
    print(json.dumps({"index_options": INDEX_OPTIONS}), flush=True)
    where = Path(args.dir)
    shutil.rmtree(where, ignore_errors=True)
    genesis = _genesis()
    storage = Storage(where, genesis.hash)
    ledger = Ledger(genesis, storage, **({"cache_blocks": args.cache_blocks} if args.cache_blocks else {}))
    proposer = Signer.from_seed(b"\x01" * 32).id
    me = threading.get_native_id()
    jobs = [(genesis.hash, s, min(args.per_block, args.records - s), args.payload)
            for s in range(0, args.records, args.per_block)]
    windows: list[dict[str, Any]] = []
    acc = {"lookups": 0.0, "entries": 0.0, "commit": 0.0, "commit_wall": 0.0}
    n_win, canonical, prev_hash, height = 0, 0, genesis.hash, 0
    cpu0 = _thread_cpu()
    bg0 = sum(v for k, v in cpu0.items() if k != me)
    t_win = time.perf_counter()
    with mp.get_context("fork").Pool(args.signers) as pool:
        for raws in _bounded(pool, jobs):
            records = [SignedRecord.from_bytes(r) for r in raws]
            canonical += sum(len(r) for r in raws)
            c = time.thread_time()
            for _ in range(2):  # admission, then the block check
                for r in records:
                    storage.locate(r.id)
                    lookup_hash(storage.db, record_digest(r))
            acc["lookups"] += time.thread_time() - c
            height += 1
            block = Block.build(chain=genesis.hash, height=height, prev_hash=prev_hash, view=0, proposer=proposer,
                                timestamp=1_800_000_000_000 + height, records=records)
            prev_hash = block.hash
            cert = CommitCertificate(height, 0, block.hash, ())
            c = time.thread_time()
            entries = block_entries(storage.db, height, block.header.timestamp, block.records)
            acc["entries"] += time.thread_time() - c
            c, w = time.thread_time(), time.perf_counter()
            ledger.apply_run([(block, cert, entries)], _consensus_state(height, block.raw, args.checkpoint))
            acc["commit"] += time.thread_time() - c
            acc["commit_wall"] += time.perf_counter() - w
            ledger.receipt_obj_at(height, 0)  # the ?wait=commit answers read the block through the ledger's cache
            n_win += len(records)
            if n_win >= args.window or height == len(jobs):
                cpu = _thread_cpu()
                bg = sum(v for k, v in cpu.items() if k != me)
                row = {"to_record": sum(j[2] for j in jobs[:height]), "height": height}
                row.update({f"{k}_us": round(1e6 * v / n_win, 1) for k, v in acc.items()})
                row["background_us"] = round(1e6 * (bg - bg0) / n_win, 1)
                row["total_cpu_us"] = round(row["lookups_us"] + row["entries_us"] + row["commit_us"]
                                            + row["background_us"], 1)
                row["wall_s"] = round(time.perf_counter() - t_win, 1)
                row["levels"] = _levels(storage.db)
                row["rss_mb"] = _rss_mb()
                row["leveldb_mem_mb"] = round(int(storage.db.get_property(b"leveldb.approximate-memory-usage") or 0)
                                              / 2**20, 1)
                windows.append(row)
                print(json.dumps(row), flush=True)
                acc = dict.fromkeys(acc, 0.0)
                n_win, bg0, t_win = 0, bg, time.perf_counter()
    storage.close()
    disk = _dir_bytes(where)
    summary = {"records": args.records, "canonical_bytes": canonical, "disk_bytes": disk,
               "disk_ratio": round(disk / canonical, 3),
               "index_bytes": disk - _dir_bytes(where / "blocks")}
    print(json.dumps(summary), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"windows": windows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
