"""One validator's live-path capacity: a committed chain's records fed, as client submissions, to this node's
own admission, block check and store, in one process with no consensus and no other validator around.

    python -m rantai.node.capacity --source DATA_DIR --genesis GENESIS --into NEW_DIR [--workers 2] [--json]

Why: on a devnet four validators and the load generator share the machine's cores, so what one validator
can do with a host of its own is not visible there (``rantai bench --shape validator`` runs this beside
a resync). Each block of the source chain, in order: its records are admitted as a client's batch would
be (``RecordValidator.admit``: size, canonical decoding, duplicates, membership, signature with
``--workers`` verify threads, EPCIS rules, event hash ID) and added to the mempool; the block is then
checked as a backup checks a proposal (``RecordValidator.check_block``: the block rules, its records
found in the mempool as verified) with its commit certificate (``validity.check_certificate``, the 2f+1
signatures a replica verifies as votes), and stored with its indexes (``Ledger.apply_run`` on a fresh
LevelDB, one synced write a block, on a disk thread overlapping the next block's admission, as the node
does). What it leaves out: HTTP, consensus messages and their signatures apart from the certificate's,
and forwarding records to the primary.

Prints records/s and the process's CPU time (all its threads, LevelDB's included) per record, overall and per
``--window`` records of height (``windows``: what grows with the chain shows there).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rantai.client.format.encoding import decode
from rantai.client.format.errors import RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.records import SignedRecord
from rantai.client.format.validity import Parent, certificate_of, check_certificate

from .ledger import Ledger
from .mempool import Mempool
from .storage import Storage
from .validation import RecordValidator

__all__ = ["replay"]


def _settle(mempool: Mempool, height: int, ids: tuple[bytes, ...], _stored: object) -> None:
    mempool.settle(height, ids)  # stored: its records leave the mempool, as at a commit


def _window(records: int, cpu: float, seconds: float) -> dict[str, Any]:
    return {"records": records, "cpu_us_per_record": round(1e6 * cpu / records, 1) if records else None,
            "records_per_s": round(records / seconds, 1) if seconds else None}


async def replay(genesis: Genesis, source: Storage, into: Storage, workers: int,
                 window: int = 100_000) -> dict[str, Any]:
    ledger = Ledger(genesis, into)
    mempool = Mempool(max_records=1 << 20, max_bytes=1 << 31)
    validator = RecordValidator(genesis, into, mempool, lambda: ledger.governance, workers=workers)
    disk = ThreadPoolExecutor(1, thread_name_prefix="rantai-disk")
    loop = asyncio.get_running_loop()
    top = source.height
    records = 0
    storing: asyncio.Future[None] | None = None
    parent = Parent.genesis(genesis)
    cpu0, t0 = time.process_time(), time.perf_counter()
    windows: list[dict[str, Any]] = []  # CPU per record per ``window`` records of height: what grows
    mark = (0, cpu0, t0)
    try:
        for height, raw, cert_raw in source.blocks(1, top):
            raws = decode(raw)["records"]
            admitted = await validator.admit(raws)
            now = int(time.time() * 1000)
            for i, res in enumerate(admitted):
                if not isinstance(res, SignedRecord):
                    raise SystemExit(f"block {height} record {i}: refused at admission: {res}")
                mempool.add(res, now)
            if storing is not None:
                await storing  # the block rules read the stored chain below (duplicates)
            block = await validator.check_block(raw, height, None, parent)
            certificate = certificate_of(decode(cert_raw), height)
            check_certificate(certificate, ledger.governance.at(height), block.header)
            storing = loop.run_in_executor(disk, ledger.apply_run, [(block, certificate, None)])
            storing.add_done_callback(functools.partial(_settle, mempool, height, tuple(block.record_ids())))
            parent = Parent.of(block.header)
            records += len(raws)
            if records - mark[0] >= window:
                cpu_now, t_now = time.process_time(), time.perf_counter()
                windows.append(_window(records - mark[0], cpu_now - mark[1], t_now - mark[2]))
                mark = (records, cpu_now, t_now)
        if storing is not None:
            await storing
        if records > mark[0]:
            windows.append(_window(records - mark[0], time.process_time() - mark[1], time.perf_counter() - mark[2]))
    finally:
        disk.shutdown(wait=True)
        validator.close()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {**_window(records, cpu, seconds), "blocks": top, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "cores_used": round(cpu / seconds, 2) if seconds else None, "verify_workers": workers,
            "windows": windows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m rantai.node.capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="a stopped validator's data directory (the chain to replay)")
    ap.add_argument("--genesis", required=True, help="the chain's genesis.json")
    ap.add_argument("--into", required=True, help="a new, empty data directory to store the chain into")
    ap.add_argument("--workers", type=int, default=2, help="verify threads (verify_workers) [2]")
    ap.add_argument("--window", type=int, default=100_000,
                    help="report CPU per record per this many records of height [100000]")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args(argv)
    genesis = Genesis.load(Path(args.genesis))
    if Path(args.into).exists() and any(Path(args.into).iterdir()):
        raise SystemExit(f"{args.into}: not empty (the replay stores into a new directory)")
    source = Storage(args.source, genesis.hash, create=False)
    into = Storage(args.into, genesis.hash)
    try:
        result = asyncio.run(replay(genesis, source, into, args.workers, args.window))
    except RantaiError as exc:
        raise SystemExit(f"replay refused: {exc}") from None
    finally:
        source.close()
        into.close()
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
