"""Resync speed (docs/performance.md, "Resync"): build a chain on a devnet, wipe one validator, time its catch-up.

    python tests/node/measure_resync.py [--records 20000] [--batch 256 --clients 8] [--dir /tmp/resync] [--keep]
                                        [--py-spy out.txt]

Not a test (nothing asserts on speed): it prints JSON with the chain's size and the wiped node's
resync time, records/s and blocks/s. The chain is built once and kept in ``--dir`` with ``--keep``,
so "before" and "after" runs of different code can resync the very same chain (run the older code with
``PYTHONPATH`` pointing at a tree of its ``rantai/{consensus,client,node}``). ``--batch`` and ``--clients``
shape the blocks: 256 x 8 gives ~550-record blocks, 2 x 4 a chain of thousands of small blocks, where the
per-block costs (synced writes, certificate checks) count. ``--py-spy`` records the wiped node's stacks
(all threads, CPU only) in py-spy's collapsed format while it catches up. The JSON also has the CPU
time of the wiped node and its worker processes (from its start), which contention inflates far less
than it slows the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ports import free_base_port  # noqa: E402

from rantai.client.bench import session_cpu, shipment_event  # noqa: E402
from rantai.client.devnet import Devnet  # noqa: E402
from rantai.client.format.encoding import encode  # noqa: E402
from rantai.client.format.records import sign_event  # noqa: E402
from rantai.client.http import SignedReads  # noqa: E402

MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}
WIPED = 3


def height(url: str) -> int:
    # /v1/status is open under every read policy (the devnet's reads are for members), and old code has it too.
    return int(httpx.get(url + "/v1/status", timeout=5.0).json()["height"])


def build(net: Devnet, n: int, batch: int, clients: int) -> None:
    signer, genesis = net.member_key("acme"), net.genesis
    raws = [sign_event(signer, genesis, shipment_event(i, 300)).raw for i in range(n)]
    batches = [raws[i:i + batch] for i in range(0, n, batch)]
    urls = net.urls

    def post(k: int) -> None:
        with httpx.Client(timeout=120.0) as c:
            r = c.post(urls[k % 3] + "/v1/records?wait=commit&timeout_ms=60000",
                       content=encode({"records": batches[k]}), headers=MP)
            assert r.status_code in (200, 202), r.text[:200]

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(batches))))



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--dir", default="/tmp/rantai-resync")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the devnet directory")
    ap.add_argument("--batch", type=int, default=256, help="records per submission when building the chain")
    ap.add_argument("--clients", type=int, default=8, help="concurrent submitters when building the chain")
    ap.add_argument("--py-spy", dest="py_spy", help="record the wiped node's stacks (py-spy, collapsed) here")
    args = ap.parse_args()
    root = Path(args.dir)
    fresh = not (root / "genesis.json").exists()
    net = Devnet(root, validators=4, base_port=free_base_port(4), members=("acme",)) if fresh else None
    if net is None:  # reuse: the ports are in the configs already
        import tomllib
        port = tomllib.loads((root / "v0.toml").read_text())["listen"]["port"]
        net = Devnet(root, validators=4, base_port=port, members=("acme",))
    net.start()
    net.wait_ready(timeout=60)
    urls = net.urls
    try:
        if fresh:
            t = time.monotonic()
            build(net, args.records, args.batch, args.clients)
            print(f"built {args.records} records in {time.monotonic() - t:.1f} s", file=sys.stderr)
        deadline = time.monotonic() + 120
        while len({height(u) for u in urls}) != 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        top = height(urls[0])
        with httpx.Client(timeout=30.0, auth=SignedReads(net.member_key("acme"))) as c:  # reads are signed
            records = 0
            for h in range(1, top + 1):
                records += c.get(urls[0] + f"/v1/blocks/{h}").json()["header"]["record_count"]
        net.stop_node(WIPED)
        shutil.rmtree(net.configs()[WIPED].data_dir)
        stop_trickle = threading.Event()

        def trickle() -> None:  # a record now and then: the others' messages tell the wiped node how far behind it is
            signer, genesis = net.member_key("acme"), net.genesis
            i = 10_000_000
            with httpx.Client(timeout=10.0) as c:
                while not stop_trickle.wait(1.0):
                    i += 1
                    try:
                        c.post(urls[0] + "/v1/records", content=encode(
                            {"records": [sign_event(signer, genesis, shipment_event(i, 300)).raw]}), headers=MP)
                    except httpx.HTTPError:
                        pass

        t0 = time.monotonic()
        proc = net.start_node(WIPED)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "--threads",
                                    "--subprocesses",
                                    "--format", "raw", "--rate", "250", "-o", args.py_spy, "-p", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        th = threading.Thread(target=trickle, daemon=True)
        th.start()
        first = None
        samples = []
        cpu: dict[int, float] = {}
        while True:
            session_cpu(proc.pid, cpu)
            try:
                h = height(urls[WIPED])
            except httpx.HTTPError:
                h = 0
            now = time.monotonic()
            if h > 0 and first is None:
                first = now
            samples.append((round(now - t0, 2), h))
            if h >= top:
                break
            if now - t0 > 1800:
                raise SystemExit(f"no resync after 1800 s (height {h} of {top})")
            time.sleep(0.1)
        t1 = time.monotonic()
        stop_trickle.set()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        status = httpx.get(urls[WIPED] + "/v1/status", timeout=5.0).json()
        out = {
            "records": records, "blocks": top, "seconds_from_start": round(t1 - t0, 2),
            "seconds_from_first_block": round(t1 - (first or t0), 2),
            "records_per_s": round(records / (t1 - (first or t0)), 1),
            "blocks_per_s": round(top / (t1 - (first or t0)), 1),
            "records_per_s_incl_start": round(records / (t1 - t0), 1),
            # CPU of the wiped node and its worker processes from its start (start-up included), per record:
            # steadier than the rates on a shared machine
            "cpu_s": round(sum(cpu.values()), 2), "cpu_s_node": round(cpu.get(proc.pid, 0.0), 2),
            "cpu_us_per_record": round(sum(cpu.values()) / max(records, 1) * 1e6, 1),
            "load_avg": os.getloadavg()[0],
            "catch_up": status.get("catch_up"),
        }
        print(json.dumps(out, indent=2))
    finally:
        net.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
