"""``rantai bench``: throughput, latency and the verify ceiling of a fresh local network, measured in one run.

Why in one run: this machine is shared and noisy, so absolute figures drift between sittings;
ratios measured side by side (throughput against the same run's verify ceiling) do not.

Two load shapes, both driven by the lean HTTP/1.1 client (client/leanhttp.py), whose own CPU is
reported beside the validators' (``load_generator``):
- ``batched`` (default): ``--clients`` coroutines each submit batches of ``--batch`` pre-signed
  records with ``?wait=commit``, round-robin over the validators, until ``--records`` are
  committed; the per-record latency is its batch's submit→commit time.
- ``closed-loop``: the shape of the peer benchmarks in ``../shared/peers`` — ``--clients``
  processes each keep ``--inflight`` single-record submissions outstanding, waiting for each
  commit, for 50,000 records or 20 s; prints their one-line JSON.

And ``validator``: one validator's capacity to check and store a chain, with the machine to
itself, for sizing a host (``run_validator_bench``: a resync, and the live path's admission, block
check and store in ``python -m rantai.node.capacity``).

``--abuse N`` runs an abuser beside either shape, in a process of its own, from another source
address (127.0.0.2, so per-address limits tell it from the honest clients): N records whose
signatures do not verify (``--abuse-as stranger``: a key that is no member; ``member``: a member's
id with a wrong signature, which costs a verification unless refused first), sent over and over
until the honest load is done, as one body (``--abuse-shape one-body``) or as 20 concurrent
requests (``concurrent``). What matters is the honest latency beside it (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import collections
import json
import multiprocessing as mp
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgpack

from rantai.consensus.crypto import Signer, Verifier

from .devnet import Devnet
from .format.encoding import decode, encode
from .format.genesis import Genesis
from .format.records import sign_event
from .leanhttp import LeanConnection, LeanHTTPError, loop_name
from .leanhttp import run as lean_run

__all__ = ["BenchConfig", "run_bench"]

MSGPACK = "application/msgpack"
# How every client of the run verifies the nodes: True (plain HTTP), or the devnet CA's context with
# --tls; set before the load processes fork, so they inherit it.
VERIFY: Any = True


# -- what is measured ------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def shipment_event(serial: int, payload: int) -> dict[str, Any]:
    """A shipping ObjectEvent padded (with a namespaced extension) to ``payload`` canonical bytes."""
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-28T16:00:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": [f"urn:epc:id:sgtin:0614141.107346.{serial}"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }
    base = len(encode(event))
    pad = payload - base - len(encode({"rantai:note": ""})) + 1
    if pad > 0:
        event["rantai:note"] = "x" * pad
    return event


def verify_ceiling(seconds: float = 3.0, threads: int | None = None) -> dict[str, float]:
    """Ed25519 verifications per second on every core, with the library the node uses."""
    threads = threads or os.cpu_count() or 1
    signer = Signer.from_seed(b"\x07" * 32)
    verifier = Verifier(signer.public_key)
    chain = b"\x01" * 32
    body = b"r" * 600
    sig = signer.sign("record", chain, body)

    def work(deadline: float) -> int:
        n = 0
        while time.perf_counter() < deadline:
            for _ in range(50):
                verifier.verify(sig, "record", chain, body)
            n += 50
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        counts = list(pool.map(work, [start + seconds] * threads))
    elapsed = time.perf_counter() - start
    return {"threads": threads, "verifies_per_s": sum(counts) / elapsed}


def _sign_chunk(args: tuple[bytes, bytes, int, int, int]) -> list[bytes]:
    seed, chain, start, count, payload = args
    signer = Signer.from_seed(seed)
    return [sign_event(signer, chain, shipment_event(start + i, payload)).raw for i in range(count)]


def presign(member_seeds: Sequence[bytes], chain: bytes, count: int, payload: int,
            processes: int) -> tuple[list[bytes], float]:
    """Sign ``count`` records round-robin over members; returns them and the signing rate (records/s)."""
    chunk = 2000
    jobs = [(member_seeds[(i // chunk) % len(member_seeds)], chain, i, min(chunk, count - i), payload)
            for i in range(0, count, chunk)]
    start = time.perf_counter()
    with mp.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_sign_chunk, jobs)
    elapsed = time.perf_counter() - start
    records = [r for part in parts for r in part]
    return records, count / elapsed if elapsed else 0.0


# -- process figures (read from /proc: Linux) ------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the network -----------------------------------------------------------------------------


class BenchNet:
    """A fresh devnet for one bench run, with its members' seeds known so records can be pre-signed in workers."""

    def __init__(self, root: Path, validators: int, base_port: int, members: int, profile: bool,
                 tls: bool = False, reuse: bool = False) -> None:
        if root.exists() and not reuse:
            shutil.rmtree(root)
        self.members = [f"member-{i}" for i in range(members)]
        self.devnet = Devnet(root, validators=validators, base_port=base_port, members=self.members,
                             params={"max_block_records": 2048}, tls=tls)
        self.profile_path = root / "v0.prof" if profile else None

    def start(self) -> None:
        env_profile = os.environ.pop("RANTAI_PROFILE", None)
        self.devnet.init()
        if self.profile_path is not None:
            os.environ["RANTAI_PROFILE"] = str(self.profile_path)
            self.devnet.start([0])
            os.environ.pop("RANTAI_PROFILE")
            self.devnet.start(range(1, self.devnet.validators))
        else:
            self.devnet.start()
        if env_profile is not None:
            os.environ["RANTAI_PROFILE"] = env_profile
        self.devnet.wait_ready(timeout=60)

    def member_seeds(self) -> list[bytes]:
        from cryptography.hazmat.primitives import serialization

        out = []
        for name in self.members:
            key = self.devnet.member_key(name).private_key
            out.append(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption()))
        return out

    def pids(self) -> list[int]:
        return [p.pid for p in self.devnet.procs.values()]

    def view(self, url: str) -> int | None:
        try:
            r = httpx.get(url + "/v1/status", headers={"accept": MSGPACK}, timeout=10, verify=VERIFY)
            return int(decode(r.content)["view"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            return None

    def head(self, url: str) -> int:
        """The node's height, from ``/v1/status`` (never signed: the bench's own reads carry no key)."""
        r = httpx.get(url + "/v1/status", headers={"accept": MSGPACK}, timeout=10, verify=VERIFY)
        return int(decode(r.content)["height"])


# -- batched load ----------------------------------------------------------------------------


def _ssl_context() -> ssl.SSLContext | None:
    return VERIFY if isinstance(VERIFY, ssl.SSLContext) else None


async def batched_load(urls: Sequence[str], records: Sequence[bytes], clients: int, batch: int,
                       on_progress=None) -> dict[str, Any]:
    batches = [records[i:i + batch] for i in range(0, len(records), batch)]
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(list(b))
    latencies: list[float] = []
    timeline: list[tuple[float, int]] = []  # (commit time, records)
    errors: list[str] = []
    target = "/v1/records?wait=commit&timeout_ms=60000"
    start = time.perf_counter()

    async def client(ci: int) -> None:
        # One keep-alive connection to each validator per client, used one request at a time.
        conns = [LeanConnection(u, ssl_context=_ssl_context()) for u in urls]
        turn = ci
        try:
            while True:
                try:
                    b = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = encode({"records": b})
                while True:
                    node = conns[turn % len(conns)]
                    turn += 1
                    t0 = time.perf_counter()
                    try:
                        r = await node.request("POST", target, body)
                    except (OSError, LeanHTTPError) as exc:
                        errors.append(f"{type(exc).__name__}")
                        await asyncio.sleep(0.2)
                        continue
                    if r.status == 429:
                        await asyncio.sleep(0.05)
                        continue
                    # Plain msgpack: the load generator is not what is measured, so it skips strict checks.
                    results = msgpack.unpackb(r.content).get("results", []) if r.status in (200, 202) else []
                    done = sum(1 for x in results if x.get("status") in ("committed", "duplicate"))
                    if done < len(b):
                        # Resubmit what did not commit in time: ids are idempotent.
                        if r.status not in (200, 202):
                            errors.append(f"HTTP {r.status}")
                        pending = {x.get("id") for x in results if x.get("status") not in ("committed", "duplicate")}
                        if results and not pending:
                            break
                        # strict=False: after an HTTP error results is empty, and the whole batch goes again
                        b = [rec for rec, x in zip(b, results, strict=False)
                             if x.get("status") not in ("committed", "duplicate")] or b
                        body = encode({"records": b})
                        if done:
                            t1 = time.perf_counter()
                            latencies.extend([t1 - t0] * done)
                            timeline.append((t1 - start, done))
                        continue
                    t1 = time.perf_counter()
                    latencies.extend([t1 - t0] * done)
                    timeline.append((t1 - start, done))
                    if on_progress:
                        on_progress(done)
                    break
        finally:
            for c in conns:
                c.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"elapsed": elapsed, "latencies": latencies, "timeline": timeline, "errors": errors}


def windows(timeline: list[tuple[float, int]], size: int) -> list[float]:
    """Records/s over consecutive windows of ``size`` committed records (to see cost growing with height)."""
    out, count, t_prev = [], 0, 0.0
    for t, n in sorted(timeline):
        count += n
        if count >= size:
            out.append(count / max(t - t_prev, 1e-9))
            count, t_prev = 0, t
    return out


# -- closed-loop load (the peers' shape) -----------------------------------------------------


def _closed_loop_worker(idx: int, urls: list[str], records: list[bytes], inflight: int, max_seconds: float,
                        start_evt: Any, ready_q: Any, result_q: Any) -> None:
    lat: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    state = {"next": 0, "done": 0}
    cpu = {"start": 0.0, "end": 0.0}

    async def main() -> tuple[float, float]:
        url = urls[idx % len(urls)]
        # One keep-alive connection per outstanding request, each used one request at a time.
        conns = [LeanConnection(url, ssl_context=_ssl_context(), timeout=60) for _ in range(inflight)]
        try:
            ready_q.put(idx)
            while not start_evt.is_set():
                await asyncio.sleep(0.001)
            cpu["start"] = time.process_time()
            t_start = time.time()
            deadline = t_start + max_seconds

            async def loop(conn: LeanConnection) -> None:
                while time.time() < deadline and state["next"] < len(records):
                    rec = records[state["next"]]
                    state["next"] += 1
                    t0 = time.perf_counter()
                    try:
                        r = await conn.request("POST", "/v1/records?wait=commit", encode({"records": [rec]}))
                    except (OSError, LeanHTTPError) as exc:
                        errors[type(exc).__name__] += 1
                        await asyncio.sleep(0.05)
                        continue
                    if r.status == 200 and time.time() <= deadline:
                        lat.append(time.perf_counter() - t0)
                        state["done"] += 1
                    elif r.status != 200:
                        errors[f"HTTP {r.status}"] += 1

            await asyncio.gather(*(loop(c) for c in conns))
            cpu["end"] = time.process_time()
            return t_start, time.time()
        finally:
            for c in conns:
                c.close()

    t_start, t_end = lean_run(main())
    result_q.put((idx, state["done"], t_start, t_end, lat, cpu["end"] - cpu["start"], dict(errors)))


def closed_loop(urls: list[str], records: list[bytes], clients: int, inflight: int,
                max_seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    start_evt, ready_q, result_q = ctx.Event(), ctx.Queue(), ctx.Queue()
    per = len(records) // clients
    procs = [ctx.Process(target=_closed_loop_worker,
                         args=(i, urls, records[i * per:(i + 1) * per], inflight, max_seconds, start_evt, ready_q,
                               result_q))
             for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready_q.get(timeout=60)
    start_evt.set()
    results = [result_q.get(timeout=max_seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    ops = sum(r[1] for r in results)
    t0 = min(r[2] for r in results)
    t1 = max(r[3] for r in results)
    lat = sorted(x for r in results for x in r[4])
    errors: collections.Counter[str] = collections.Counter()
    for r in results:
        errors.update(r[6])
    return {"ops": ops, "seconds": t1 - t0, "latencies": lat, "client_cpu_s": sum(r[5] for r in results),
            "errors": dict(errors)}


# -- abuse (admission control, docs/performance.md) ------------------------------------------

ABUSE_ADDRESS = "127.0.0.2"  # Linux routes all of 127/8 to loopback: a second client address on one machine
ABUSE_CONCURRENT = 20
ABUSE_PAYLOAD = 236  # canonical event bytes: a ~445-byte record, 40,000 of them 17.8 MB as in issue 15


def abuse_records(genesis_hash: bytes, member_id: str, count: int, payload: int, as_: str) -> list[bytes]:
    """``count`` records that fail their signature check, none of them signed (it would cost the abuser)."""
    from .format.records import RECORD_VERSION, SignedRecord

    stranger = Signer.from_seed(b"\x66" * 32).id
    submitter = stranger if as_ == "stranger" else member_id
    rng = os.urandom
    out = []
    for i in range(count):
        fields = {"version": RECORD_VERSION, "chain": genesis_hash, "submitter": submitter, "nonce": rng(16),
                  "submitted_at": int(time.time() * 1000), "event": shipment_event(10_000_000 + i, payload),
                  "signature": rng(64)}
        out.append(SignedRecord.from_fields(fields).raw)
    return out


def _abuse_worker(urls: list[str], records: list[bytes], shape: str, stop_evt: Any, result_q: Any) -> None:
    bodies = ([encode({"records": records})] if shape == "one-body" else
              [encode({"records": records[k::ABUSE_CONCURRENT]}) for k in range(ABUSE_CONCURRENT)])
    statuses: collections.Counter[str] = collections.Counter()
    sent = {"bytes": 0}

    async def main() -> None:
        transport = httpx.AsyncHTTPTransport(local_address=ABUSE_ADDRESS, verify=VERIFY)
        async with httpx.AsyncClient(transport=transport, timeout=60,
                                     limits=httpx.Limits(max_connections=ABUSE_CONCURRENT)) as http:
            async def one(k: int, body: bytes) -> None:
                turn = k
                while not stop_evt.is_set():
                    url = urls[turn % len(urls)]
                    turn += 1
                    try:
                        r = await http.post(url + "/v1/records", content=body, headers={"content-type": MSGPACK})
                        statuses[str(r.status_code)] += 1
                    except httpx.HTTPError as exc:
                        statuses[type(exc).__name__] += 1
                        await asyncio.sleep(0.01)
                    sent["bytes"] += len(body)

            await asyncio.gather(*(one(k, b) for k, b in enumerate(bodies)))

    asyncio.run(main())
    result_q.put({"requests": sum(statuses.values()), "statuses": dict(statuses),
                  "mb_sent": round(sent["bytes"] / 1e6, 1), "body_mb": round(sum(len(b) for b in bodies) / 1e6, 2)})


class Abuser:
    """The abuser process: started before the honest load, stopped after it."""

    def __init__(self, urls: list[str], records: list[bytes], shape: str) -> None:
        ctx = mp.get_context("fork")
        self.stop_evt, self.result_q = ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_abuse_worker, args=(urls, records, shape, self.stop_evt, self.result_q))

    def start(self) -> None:
        self.proc.start()

    def stop(self) -> dict[str, Any]:
        self.stop_evt.set()
        try:
            return self.result_q.get(timeout=120)
        finally:
            self.proc.join(timeout=30)


# -- the run ---------------------------------------------------------------------------------


class BenchConfig:
    def __init__(self, *, validators: int = 4, records: int = 200_000, clients: int = 8, batch: int = 256,
                 shape: str = "batched", inflight: int = 16, payload: int = 300, max_seconds: float = 20.0,
                 dir: str = ".rantai/bench", base_port: int = 7300, profile: bool = False, members: int = 4,
                 audit: bool = True, abuse: int = 0, abuse_shape: str = "concurrent", abuse_as: str = "member",
                 tls: bool = False, log=print) -> None:
        self.validators, self.records, self.clients, self.batch = validators, records, clients, batch
        self.shape, self.inflight, self.payload, self.max_seconds = shape, inflight, payload, max_seconds
        self.dir, self.base_port, self.profile, self.members, self.audit = Path(dir), base_port, profile, members, audit
        self.abuse, self.abuse_shape, self.abuse_as = abuse, abuse_shape, abuse_as
        self.tls = tls
        self.log = log


def _audit_rate(net: BenchNet, log, node: int = 1) -> dict[str, Any] | None:
    """Audit the chain the run produced, from a stopped node's LevelDB, with ``rantai-node audit``.

    The same auditor as ``rantai audit``; the node's command reads the data directory. The rate is
    the auditor's own (records over its checking time), so process start-up is not charged to it.
    """
    data = net.devnet.configs()[node].data_dir
    done = subprocess.run([sys.executable, "-m", "rantai.node.cli", "audit", "--data-dir", str(data),
                           "--genesis", str(net.devnet.genesis_path), "--json"], capture_output=True, text=True)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        log(f"audit failed to run ({done.returncode}): {done.stderr.strip()[-500:]}")
        return None
    return {"records": report["records"], "blocks": report["blocks"], "seconds": report["seconds"],
            "records_per_s": report["records_per_second"], "ok": report["ok"]}


def load_generator_figures(cpu_s: float, processes: int, committed: int, elapsed: float) -> dict[str, Any]:
    """The load generator's own CPU (user + system of its processes while the load ran), beside the validators'."""
    return {"processes": processes, "http": f"leanhttp (asyncio protocol, httptools, {loop_name()})",
            "cpu_s": round(cpu_s, 2),
            "cpu_ms_per_record": round(1000 * cpu_s / committed, 3) if committed else None,
            "cores": round(cpu_s / elapsed, 2) if elapsed else None}


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    log = cfg.log
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
    log(f"verify ceiling: measuring Ed25519 verifications/s on {machine['cpus']} cores …")
    ceiling = verify_ceiling()
    per_validator = ceiling["verifies_per_s"] / cfg.validators
    global VERIFY
    net = BenchNet(cfg.dir, cfg.validators, cfg.base_port, cfg.members, cfg.profile, tls=cfg.tls)
    count = cfg.records if cfg.shape == "batched" else min(cfg.records, 50_000)
    result: dict[str, Any] = {"shape": cfg.shape, "validators": cfg.validators, "tls": cfg.tls, "machine": machine,
                              "verify_ceiling": {"verifies_per_s_all_cores": round(ceiling["verifies_per_s"]),
                                                 "records_per_s": round(per_validator)}}
    try:
        net.start()
        VERIFY = net.devnet.verify
        genesis: Genesis = net.devnet.genesis
        log(f"pre-signing {count} records from {cfg.members} members …")
        records, sign_rate = presign(net.member_seeds(), genesis.hash, count, cfg.payload,
                                     processes=os.cpu_count() or 1)
        result["signing"] = {"records_per_s_all_cores": round(sign_rate)}
        canonical = sum(len(r) for r in records)
        urls = net.devnet.urls
        abuser = None
        if cfg.abuse:
            member_id = Signer.from_seed(net.member_seeds()[0]).id
            bad = abuse_records(genesis.hash, member_id, cfg.abuse, ABUSE_PAYLOAD, cfg.abuse_as)
            log(f"abuse: {cfg.abuse} records that do not verify ({cfg.abuse_as}), {cfg.abuse_shape}, "
                f"from {ABUSE_ADDRESS} …")
            abuser = Abuser(urls, bad, cfg.abuse_shape)
            abuser.start()
            time.sleep(1.0)  # the abuse is under way before the honest load starts
        cpu0 = {pid: cpu_seconds(pid) for pid in net.pids()}
        if cfg.shape == "closed-loop":
            log(f"closed loop: {cfg.clients} clients x {cfg.inflight} in flight, {count} records "
                f"or {cfg.max_seconds:.0f} s …")
            run = closed_loop(urls, records, cfg.clients, cfg.inflight, cfg.max_seconds)
            committed, elapsed, lat = run["ops"], run["seconds"], run["latencies"]
            client_cpu, client_procs = run["client_cpu_s"], cfg.clients
            result["client_errors"] = run["errors"]
        else:
            log(f"batched: {cfg.clients} clients, batches of {cfg.batch}, {count} records …")
            cpu_before = time.process_time()  # the load runs in this process (the signing pool is gone)
            run = lean_run(batched_load(urls, records, cfg.clients, cfg.batch))
            client_cpu, client_procs = time.process_time() - cpu_before, 1
            committed, elapsed, lat = len(run["latencies"]), run["elapsed"], run["latencies"]
            result["throughput_per_100k"] = [round(x) for x in windows(run["timeline"], 100_000)]
            result["transport_errors"] = len(run["errors"])  # each retried; what they were:
            result["transport_error_kinds"] = dict(collections.Counter(run["errors"]))
        if abuser is not None:
            result["abuse"] = {"records": cfg.abuse, "shape": cfg.abuse_shape, "as": cfg.abuse_as,
                               "address": ABUSE_ADDRESS, **abuser.stop()}
        cpu = sum(cpu_seconds(pid) - cpu0[pid] for pid in net.pids())
        height = net.head(urls[0])
        rss = [rss_bytes(pid) for pid in net.pids()]
        views = [net.view(u) for u in urls]  # views started = view changes (each moves to a higher view)
        throughput = committed / elapsed if elapsed else 0.0
        result.update({
            "records_committed": committed,
            "seconds": round(elapsed, 2),
            "records_per_s": round(throughput, 1),
            "throughput_over_ceiling": round(throughput / per_validator, 3) if per_validator else None,
            "latency_ms": {k: round(1000 * v, 1) if v is not None else None
                           for k, v in (("p50", percentile(lat, 50)), ("p95", percentile(lat, 95)),
                                        ("p99", percentile(lat, 99)))},
            "blocks": height,
            "records_per_block": round(committed / height, 1) if height else None,
            "node_cpu_ms_per_record": round(1000 * cpu / committed, 3) if committed else None,
            "load_generator": load_generator_figures(client_cpu, client_procs, committed, elapsed),
            "rss_mb_per_node": [round(r / 2**20, 1) for r in rss],
            "view_per_node": views,
        })
        net.devnet.stop()
        data_bytes = [dir_bytes(c.data_dir) for c in net.devnet.configs()]
        result["disk"] = {
            "bytes_per_node": data_bytes,
            "canonical_record_bytes": canonical * committed // max(count, 1),
            "ratio": (round(statistics.median(data_bytes) / (canonical * committed / max(count, 1)), 2)
                      if committed else None),
        }
        if cfg.audit and committed:
            log("auditing the resulting chain from a stopped node's LevelDB …")
            result["audit"] = _audit_rate(net, log)
        if cfg.profile and net.profile_path is not None:
            result["profile"] = str(net.profile_path)
    finally:
        net.devnet.stop()
    return result


# -- one validator's capacity (the validator shape) -------------------------------------------

CHAIN_MARK = "bench-chain.json"  # in --dir: the chain a validator-shape run built, reused by the next


def session_cpu(sid: int, seen: dict[int, float]) -> None:
    """CPU seconds (user + system) of each process in session ``sid`` (a validator and its catch-up worker
    processes: the devnet starts each validator in a session of its own), the highest value seen per pid
    kept in ``seen`` (workers exit when the catch-up ends)."""
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # stat field 6: the session id
            seen[int(d.name)] = max(seen.get(int(d.name), 0.0), (int(fields[11]) + int(fields[12])) / tick)


async def _count_records(url: str, signer: Signer, top: int) -> int:
    """Records in blocks 1..``top``, from the blocks themselves (reads are signed: the devnet's are for members)."""
    from .format.blocks import Block

    conn = LeanConnection(url, ssl_context=_ssl_context(), signer=signer)
    try:
        n = 0
        for h in range(1, top + 1):
            r = await conn.request("GET", f"/v1/blocks/{h}")
            if r.status != 200:
                raise RuntimeError(f"GET /v1/blocks/{h}: HTTP {r.status} {r.content[:200]!r}")
            n += Block.from_bytes(msgpack.unpackb(r.content)["block"]).header.record_count
        return n
    finally:
        conn.close()


def _status(url: str) -> dict[str, Any]:
    r = httpx.get(url + "/v1/status", headers={"accept": MSGPACK}, timeout=10, verify=VERIFY)
    r.raise_for_status()
    out: dict[str, Any] = decode(r.content)
    return out


def _trickle(net: BenchNet, stop: Any) -> None:
    """One record a second at v0 while the wiped validator catches up: the others' consensus messages are
    what tell it how far behind it is (a still chain would leave it waiting)."""
    signer, chain = Signer.from_seed(net.member_seeds()[0]), net.devnet.genesis.hash
    i = 20_000_000
    with httpx.Client(timeout=10.0, verify=VERIFY) as c:
        while not stop.wait(1.0):
            i += 1
            try:
                c.post(net.devnet.urls[0] + "/v1/records", headers={"content-type": MSGPACK},
                       content=encode({"records": [sign_event(signer, chain, shipment_event(i, 300)).raw]}))
            except httpx.HTTPError:
                pass


def run_validator_bench(cfg: BenchConfig) -> dict[str, Any]:
    """One validator's capacity to check and store a chain, measured as a resync (docs/performance.md).

    A chain of ``cfg.records`` records is built on a fresh devnet (or the one a previous run left in
    ``cfg.dir`` is reused), all validators stopped, the last one's data directory deleted, and that
    validator started again: it fetches the chain from the others and checks every block as an
    auditor does (the certificate, every record's rules and signature, the block rules, in worker
    processes, one per core up to 4) and stores it (node/catchup.py). What is measured is that
    validator alone: its records/s, and the CPU of it and its worker processes per record; the serving
    validators' CPU is reported beside it, not in it.
    """
    import threading

    log = cfg.log
    global VERIFY
    mark = cfg.dir / CHAIN_MARK
    reuse = mark.exists()
    net = BenchNet(cfg.dir, cfg.validators, cfg.base_port, cfg.members, False, tls=cfg.tls, reuse=reuse)
    result: dict[str, Any] = {"shape": "validator", "validators": cfg.validators, "tls": cfg.tls,
                              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    try:
        net.start()
        VERIFY = net.devnet.verify
        urls = net.devnet.urls
        if reuse:
            log(f"reusing the chain in {cfg.dir} ({mark.read_text().strip()})")
        else:
            log(f"building a chain of {cfg.records} records (batched, {cfg.clients} x {cfg.batch}) …")
            records, _ = presign(net.member_seeds(), net.devnet.genesis.hash, cfg.records, cfg.payload,
                                 processes=os.cpu_count() or 1)
            built = lean_run(batched_load(urls, records, cfg.clients, cfg.batch))
            if len(built["latencies"]) != cfg.records:
                raise RuntimeError(f"only {len(built['latencies'])} of {cfg.records} records committed")
        deadline = time.monotonic() + 120
        while len({net.head(u) for u in urls}) != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the validators do not agree on a height after 120 s")
            time.sleep(0.5)
        top = net.head(urls[0])
        total = lean_run(_count_records(urls[0], Signer.from_seed(net.member_seeds()[0]), top))
        mark.write_text(json.dumps({"records": total, "blocks": top}) + "\n")
        wiped = len(urls) - 1
        log(f"chain: {total} records in {top} blocks; wiping v{wiped} and timing its resync …")
        net.devnet.stop_node(wiped)
        shutil.rmtree(net.devnet.configs()[wiped].data_dir)
        others = {i: net.devnet.procs[i].pid for i in range(wiped)}
        others0 = {i: cpu_seconds(pid) for i, pid in others.items()}
        stop = threading.Event()
        trickle = threading.Thread(target=_trickle, args=(net, stop), daemon=True)
        t0 = time.monotonic()
        proc = net.devnet.start_node(wiped)
        trickle.start()
        cpu: dict[int, float] = {}
        first = None
        ready_cpu: float | None = None  # the CPU of start-up (imports, opening the store), until it first answers
        t_ready = t0
        catch_up: dict[str, Any] = {}
        while True:
            session_cpu(proc.pid, cpu)
            try:
                st = _status(urls[wiped])
            except httpx.HTTPError:
                st = {"height": 0}
            now = time.monotonic()
            if ready_cpu is None and "catch_up" in st:
                ready_cpu, t_ready = sum(cpu.values()), now
            h = int(st["height"])
            if h > 0 and first is None:
                first = now
            if "catch_up" in st and st["catch_up"].get("records", 0) >= catch_up.get("records", 0):
                catch_up = st["catch_up"]  # the chain's catch-up, not a later one of a few trickled blocks
            if h >= top:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"v{wiped} exited ({proc.returncode}); see {cfg.dir}/logs/v{wiped}.log")
            if now - t0 > 1800:
                raise RuntimeError(f"no resync after 1800 s (height {h} of {top})")
            time.sleep(0.1)
        t1 = time.monotonic()
        session_cpu(proc.pid, cpu)
        stop.set()
        trickle.join(timeout=15)
        others_cpu = sum(cpu_seconds(pid) - others0[i] for i, pid in others.items())
        span = t1 - (first or t0)
        cpu_s = sum(cpu.values())
        work = cpu_s - (ready_cpu or 0.0)
        per_record = work / total if total else None
        cores = os.cpu_count() or 1
        result.update({"records": total, "blocks": top, "records_per_block": round(total / top, 1) if top else None})
        result["resync"] = {
            "method": "a wiped validator fetches, checks (worker processes) and stores the chain",
            "seconds_from_first_block": round(span, 2), "seconds_from_start": round(t1 - t0, 2),
            "records_per_s": round(total / span, 1) if span else None,
            "records_per_s_incl_start": round(total / (t1 - t0), 1),
            # CPU (user + system) of the validator and its worker processes, from its start; the start-up's
            # share (until it first answered /v1/status) is not charged to the records
            "cpu_s": round(cpu_s, 2), "cpu_s_start_up": round(ready_cpu or 0.0, 2),
            "cpu_s_node_process": round(cpu.get(proc.pid, 0.0), 2),
            "processes": len(cpu),  # the node, and its catch-up's forkserver, workers and resource tracker
            "cpu_us_per_record": round(1e6 * per_record, 1) if per_record else None,
            "cores_used": round(work / (t1 - t_ready), 2) if t1 > t_ready else None,
            # a bound computed from the CPU per record, not a measured rate: what this work would reach with
            # every core of this machine to itself (no other validator, no load generator)
            "records_per_s_if_all_cores": round(cores / per_record) if per_record else None,
            "serving_validators_cpu_s": round(others_cpu, 2),
            "catch_up": catch_up,
            "load_avg": [round(x, 2) for x in os.getloadavg()],
        }
        net.devnet.stop()
        if cfg.audit:
            log(f"auditing v{wiped}'s resynced store …")
            result["audit"] = _audit_rate(net, log, node=wiped)
        log("live path: the chain's records through one validator's admission, block check and store …")
        result["live_path"] = _live_path(net, cfg.dir / "live-path-store", log)
    finally:
        net.devnet.stop()
    return result


def _live_path(net: BenchNet, into: Path, log) -> dict[str, Any] | None:
    """``python -m rantai.node.capacity`` on a stopped validator's store (the node's code, in a process of
    its own: the client does not import the node): the chain's records admitted as client submissions,
    each block checked as a proposal and stored, with one verify thread per core."""
    shutil.rmtree(into, ignore_errors=True)
    cores = os.cpu_count() or 1
    try:
        done = subprocess.run([sys.executable, "-m", "rantai.node.capacity", "--source",
                               str(net.devnet.configs()[0].data_dir), "--genesis", str(net.devnet.genesis_path),
                               "--into", str(into), "--workers", str(cores), "--json"], capture_output=True, text=True)
    finally:
        shutil.rmtree(into, ignore_errors=True)
    try:
        out: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        log(f"live path failed to run ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
        return None
    per_record = out["cpu_us_per_record"]
    out["records_per_s_if_all_cores"] = round(cores * 1e6 / per_record) if per_record else None
    out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return out


def peers_line(result: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    """The one-line JSON the peer benchmarks print, for ``run_all.sh`` side by side."""
    return {
        "system": "rantai (PBFT, Ed25519-signed EPCIS records, LevelDB fsync)",
        "nodes": cfg.validators,
        "payload_bytes": cfg.payload,
        "ops": result["records_committed"],
        "seconds": result["seconds"],
        "ops_per_s": result["records_per_s"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "notes": f"{cfg.clients}x{cfg.inflight} closed loop, each op one signed record acknowledged after commit "
                 f"(2f+1 commit certificate; head synced on the acknowledging node, the block durable at f+1 honest "
                 f"validators: docs/storage.md)",
    }


# -- the command -----------------------------------------------------------------------------

import click  # noqa: E402  (kept beside the command it serves)


@click.command("bench")
@click.option("--validators", default=4, show_default=True, help="validators in the fresh local network")
@click.option("--records", default=200_000, show_default=True, help="records to commit (closed-loop: at most 50,000)")
@click.option("--clients", default=None, type=int, help="concurrent clients [batched: 8, closed-loop: 4]")
@click.option("--batch", default=256, show_default=True, help="records per request (batched shape)")
@click.option("--shape", type=click.Choice(["batched", "closed-loop", "validator", "record-cost"]), default="batched",
              show_default=True, help="batched or closed-loop load on a 4-validator devnet; validator: one "
              "validator's capacity to check and store a chain (--records of it), timed as a resync; record-cost: "
              "no network, µs of CPU per record per validation stage (client/bench_record_cost.py)")
@click.option("--inflight", default=16, show_default=True,
              help="outstanding single-record requests per client (closed-loop)")
@click.option("--payload", default=300, show_default=True, help="canonical bytes of each EPCIS event")
@click.option("--seconds", "max_seconds", default=20.0, show_default=True, help="closed-loop time limit")
@click.option("--dir", "dir_", default=".rantai/bench", show_default=True,
              help="where the throw-away network lives (the validator shape reuses the chain a previous run "
              "of it left there: delete the directory to build anew)")
@click.option("--base-port", default=7300, show_default=True)
@click.option("--profile", is_flag=True, help="profile validator v0 (cProfile) and report the file")
@click.option("--no-audit", is_flag=True, help="skip auditing the resulting chain")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write the full result here")
@click.option("--abuse", default=0, show_default=True,
              help="also run an abuser sending this many records that do not verify, from 127.0.0.2")
@click.option("--abuse-shape", type=click.Choice(["concurrent", "one-body"]), default="concurrent", show_default=True,
              help="the abuser's records as 20 concurrent requests, or as one body")
@click.option("--abuse-as", type=click.Choice(["member", "stranger"]), default="member", show_default=True,
              help="the submitter the abuser's records claim: a member's id, or a key that is no member")
@click.option("--tls", is_flag=True, help="HTTPS everywhere (clients and peers, mTLS between validators), "
              "with a throw-away CA: to measure what TLS costs against a run without")
def bench_command(validators, records, clients, batch, shape, inflight, payload, max_seconds, dir_, base_port,
                  profile, no_audit, json_path, abuse, abuse_shape, abuse_as, tls) -> None:
    """Measure committed records/s, submit→commit latency and the verify ceiling, in one run.

    Starts a fresh local network, pre-signs records, loads it, and prints JSON (the load generator's
    own CPU beside the validators'). With --shape closed-loop the last line is the one-line JSON of
    ../shared/peers benchmarks. --shape validator times one validator re-checking and storing a chain.
    """
    # -- record-cost (issue 16, client/bench_record_cost.py): no network, --records of each kind
    if shape == "record-cost":
        from .bench_record_cost import record_cost

        click.echo(json.dumps(record_cost(min(records, 5000)), indent=2))
        return
    # --
    clients = clients or (4 if shape == "closed-loop" else 8)
    cfg = BenchConfig(validators=validators, records=records, clients=clients, batch=batch, shape=shape,
                      inflight=inflight, payload=payload, max_seconds=max_seconds, dir=dir_, base_port=base_port,
                      profile=profile, audit=not no_audit, abuse=abuse, abuse_shape=abuse_shape, abuse_as=abuse_as,
                      tls=tls, log=lambda m: click.echo(m, err=True))
    if shape == "validator":
        result = run_validator_bench(cfg)
    else:
        result = run_bench(cfg)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    click.echo(json.dumps(result, indent=2))
    if shape == "closed-loop":
        click.echo(json.dumps(peers_line(result, cfg)))
