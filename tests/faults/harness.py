"""A devnet whose validator links all go through the fault proxy, client load with a ledger of
acknowledged records, fault steps (kills, partitions) and the checks every scenario ends with.

    with FaultNet(tmp_path, seed=7) as fn:
        fn.load.start(threads=3)
        fn.kill_step()                      # kill -9 (or SIGTERM) a random validator, maybe the primary
        fn.partition_step("isolate-primary")
        summary = fn.finish()               # heal, converge, compare chains, audit, check the ledger

The checks (``finish``): every node runs and reaches one height; the blocks at every height are the
same bytes on every node (a difference is a fork); ``rantai.client.audit.audit`` passes on each node;
every record a client was told ``committed`` is on every node's chain (else it is lost). Waits are
long and nothing is timed: a slow loaded machine makes a run slower, not red.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import msgpack
import tomli_w

from rantai.client.audit import audit, open_source
from rantai.client.devnet import Devnet
from rantai.client.format.encoding import decode, encode
from rantai.client.format.records import sign_event
from rantai.client.http import SignedReads

from .proxy import LinkProxy

try:  # under pytest, tests/ is on sys.path (tests/conftest.py); as `python -m tests.faults.run`, it is a package
    from ports import free_base_port
except ImportError:  # pragma: no cover
    from tests.ports import free_base_port

MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}
PARTITIONS = ("isolate-backup", "isolate-primary", "split-2-2", "delay", "resets", "flapping")
_serial = itertools.count()


def event() -> dict:
    return {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": [f"urn:epc:id:sgtin:0614141.107346.{next(_serial)}"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }


def say(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class StepFailed(AssertionError):
    pass


@dataclass
class Ledger:
    """What clients were told: ``acked`` holds every record id answered ``committed``."""

    acked: dict[bytes, int] = field(default_factory=dict)  # record id -> node index that answered
    submitted: int = 0
    unconfirmed: int = 0  # answered ``accepted`` (not yet seen committed): may or may not commit
    errors: int = 0  # no answer (node down, refused, timed out)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, node: int, results: list[dict]) -> None:
        with self.lock:
            for e in results:
                if e.get("status") == "committed":
                    self.acked[bytes(e["id"])] = node
                else:
                    self.unconfirmed += 1


class FaultNet:
    def __init__(self, dir: Path, *, seed: int = 0, n: int = 4, params: dict[str, int] | None = None,
                 log_level: str = "warning", proxy: bool = True) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        defaults = {"checkpoint_interval": 8, "window": 8, "view_change_timeout_ms": 1000, "batch_timeout_ms": 5}
        self.net = Devnet(Path(dir) / "devnet", validators=n, base_port=free_base_port(n),
                          params={**defaults, **(params or {})}, log_level=log_level)
        self.net.init()
        self.n = n
        self.proxy = LinkProxy(seed)
        configs = self.net.configs()
        self.ids = [c.id for c in configs]
        self.urls = [c.url for c in configs]
        ports = [urlparse(c.url).port for c in configs]
        for i in range(n):
            peers = [{"id": self.ids[j], "url": f"http://127.0.0.1:{self.proxy.add_link(i, j, ports[j])}"}
                     for j in range(n) if j != i]
            if not proxy:  # the same run without the proxy (to tell its artifacts from the node's bugs)
                continue
            path = self.net.config_path(i)
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            doc["peers"] = peers
            path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        self.genesis = self.net.genesis
        self.acme = self.net.member_key("acme")
        self.http = httpx.Client(timeout=60.0, auth=SignedReads(self.acme))  # reads are signed (docs/api.md)
        self.ledger = Ledger()
        self.load = Load(self)
        self.down: set[int] = set()
        self.counts: dict[str, Any] = {"kills": 0, "kill_kinds": {}, "partitions": 0, "partition_kinds": {}}
        self.crashes: list[dict[str, Any]] = []  # validators that exited without being killed
        self.stalls: list[str] = []  # steps after which the network did not make progress in time
        self.net.start()
        self.net.wait_ready(timeout=120)

    # -- small calls -----------------------------------------------------------------------------
    def live(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.down]

    def status(self, i: int) -> dict:
        return self.http.get(self.urls[i] + "/v1/status", timeout=5.0).json()

    def height(self, i: int) -> int:
        return decode(self.http.get(self.urls[i] + "/v1/head", headers=MP, timeout=5.0).content)["height"]

    def snapshot(self) -> list:
        out = []
        for i in range(self.n):
            try:
                s = self.status(i)
                out.append((i, s["height"], s["view"], s["mode"], s["mempool"],
                            [(p["id"][:8], p["reachable"], p["queued"], p["sent"], p["dropped"]) for p in s["peers"]]))
            except Exception:
                out.append((i, "down" if i in self.down else "no answer"))
        return out

    def primary(self) -> int | None:
        """The primary as the live nodes see it (the most common answer), or None."""
        seen: dict[str, int] = {}
        for i in self.live():
            try:
                pid = self.status(i)["primary"]
                seen[pid] = seen.get(pid, 0) + 1
            except (httpx.HTTPError, KeyError, ValueError):
                pass
        if not seen:
            return None
        return self.ids.index(max(seen, key=lambda k: seen[k]))

    def submit(self, i: int, n: int = 1, timeout_ms: int = 5000) -> list[dict]:
        """Submit ``n`` fresh records through node ``i`` and wait for commit; the answer goes to the ledger."""
        raws = [sign_event(self.acme, self.genesis, event()).raw for _ in range(n)]
        with self.ledger.lock:
            self.ledger.submitted += n
        r = self.http.post(f"{self.urls[i]}/v1/records?wait=commit&timeout_ms={timeout_ms}",
                           content=encode({"records": raws}), headers=MP, timeout=timeout_ms / 1000 + 30)
        results = decode(r.content).get("results", []) if r.content else []
        self.ledger.note(i, results)
        return results

    def wait(self, what: str, fn, timeout: float = 180.0, every: float = 0.25) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if fn():
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out ({timeout:.0f} s) waiting for {what}; state: {self.snapshot()}; "
                                 f"proxy: {json.dumps(self.proxy.stats())}")
            time.sleep(every)

    def probe(self, timeout: float = 180.0) -> None:
        """The network makes progress: a fresh record commits through some live node."""
        def once() -> bool:
            i = self.rng.choice(self.live())
            return any(e.get("status") == "committed" for e in self.submit(i, 1, timeout_ms=10_000))
        try:
            self.wait("a record to commit (liveness after the fault)", once, timeout=timeout, every=0.5)
        finally:
            self.crashed()

    # -- faults ------------------------------------------------------------------------------------
    def kill_step(self, *, down_s: tuple[float, float] = (0.5, 3.0), term: bool = True, kind: str | None = None) -> str:
        """Kill one validator (at most one is down at a time, f = 1), keep it down a moment, restart it.

        Kinds: ``kill9`` (random node), ``kill9-primary``, and ``term-primary`` (SIGTERM, the
        restart-into-stuck-view sequence of tests/node/test_rejoin.py: records go in elsewhere while
        it is down, and after the restart one is submitted through it and must commit).
        """
        kind = kind or self.rng.choice(["kill9", "kill9", "kill9-primary"] + (["term-primary"] if term else []))
        victim = self.primary() if kind != "kill9" else None
        if victim is None:
            victim = self.rng.choice(self.live())
        say(f"kill step: {kind} v{victim}")
        if kind == "term-primary":
            self.net.stop_node(victim)
        else:
            self.net.kill(victim, signal.SIGKILL)
        self.down.add(victim)
        time.sleep(self.rng.uniform(*down_s))
        if kind == "term-primary":  # the others move on without it
            others = self.live()
            self.wait("a record to commit through the others", lambda: any(
                e.get("status") == "committed" for e in self.submit(self.rng.choice(others), 1, 10_000)))
        self.net.start_node(victim)
        self.net.wait_ready(indices=[victim], timeout=120)
        self.down.discard(victim)
        if kind == "term-primary":
            self.wait(f"a record to commit through the restarted v{victim}", lambda: any(
                e.get("status") == "committed" for e in self.submit(victim, 1, 10_000)))
        top = max(self.height(i) for i in self.live() if i != victim)
        self.wait(f"v{victim} to catch up to {top}", lambda: self.height(victim) >= top)
        self.counts["kills"] += 1
        self.counts["kill_kinds"][kind] = self.counts["kill_kinds"].get(kind, 0) + 1
        return kind

    def partition_step(self, kind: str | None = None, *, duration_s: tuple[float, float] = (2.0, 6.0)) -> str:
        """One period of a network fault through the proxy, then heal and check progress."""
        kind = kind or self.rng.choice(PARTITIONS)
        length = self.rng.uniform(*duration_s)
        nodes = list(range(self.n))
        if kind == "isolate-backup":
            p = self.primary()
            victim = self.rng.choice([i for i in nodes if i != p])
            self.proxy.partition([victim], [i for i in nodes if i != victim])
            what = f"v{victim} isolated"
        elif kind == "isolate-primary":
            victim = self.primary()
            victim = self.rng.choice(nodes) if victim is None else victim
            self.proxy.partition([victim], [i for i in nodes if i != victim])
            what = f"primary v{victim} isolated"
        elif kind == "split-2-2":
            self.rng.shuffle(nodes)
            self.proxy.partition(nodes[:2], nodes[2:])
            what = f"{sorted(nodes[:2])} | {sorted(nodes[2:])}"
        elif kind == "delay":
            d, j = self.rng.choice([(0.05, 0.1), (0.2, 0.3), (0.0, 0.5)])
            self.proxy.set_mode(None, "delay", delay_s=d, jitter_s=j)
            what = f"every link delayed {d * 1000:.0f} ms + up to {j * 1000:.0f} ms"
        elif kind == "resets":
            self.proxy.set_mode(None, "reset", loss=0.3, lifetime_s=0.5)
            what = "30% of connections refused, the rest reset after 0.5 s on average"
        elif kind == "flapping":
            victim = self.rng.choice(nodes)
            what = f"v{victim} flapping"
        else:
            raise ValueError(kind)
        say(f"partition step: {kind} ({what}) for {length:.1f} s")
        deadline = time.monotonic() + length
        while kind == "flapping" and time.monotonic() < deadline:
            self.proxy.partition([victim], [i for i in nodes if i != victim])
            time.sleep(self.rng.uniform(0.2, 1.0))
            self.proxy.heal()
            time.sleep(self.rng.uniform(0.2, 1.0))
        time.sleep(max(0.0, deadline - time.monotonic()))
        self.proxy.heal()
        self.probe()
        self.counts["partitions"] += 1
        self.counts["partition_kinds"][kind] = self.counts["partition_kinds"].get(kind, 0) + 1
        return kind

    def crashed(self) -> list[int]:
        """Validators that exited on their own (not killed by a step); each is noted once, with its log's tail."""
        out = []
        for i in range(self.n):
            if i not in self.down and not self.net.running(i) and self.net.procs.get(i) is not None:
                log = (self.net.dir / "logs" / f"v{i}.log").read_text(errors="replace").splitlines()
                why = next((ln for ln in reversed(log) if "stopped" in ln or "CRITICAL" in ln), "")
                self.crashes.append({"node": i, "code": self.net.procs[i].returncode, "why": why[-300:]})
                say(f"v{i} exited on its own (code {self.net.procs[i].returncode}): {why[-300:]}")
                out.append(i)
        return out

    def recover(self, reason: str) -> None:
        """After a stalled step: note it, heal, restart every stopped validator, and wait for progress."""
        self.stalls.append(reason[:2000])
        self.proxy.heal()
        self.crashed()
        for i in range(self.n):
            self.net.start_node(i)
        self.net.wait_ready(timeout=120)
        self.down.clear()
        self.probe(timeout=300)

    # -- the end -----------------------------------------------------------------------------------
    def blocks(self, i: int, start: int, stop: int) -> list[bytes]:
        out: list[bytes] = []
        while start <= stop:
            r = self.http.get(self.urls[i] + "/v1/blocks", params={"from": start, "to": min(stop, start + 499)})
            items = list(msgpack.Unpacker(__import__("io").BytesIO(r.content), raw=False))
            if not items:
                break
            out += [bytes(x["block"]) for x in items]
            start += len(items)
        return out

    def finish(self) -> dict[str, Any]:
        """Stop the load, heal, bring every node back, converge; compare chains, audit, check the ledger."""
        self.load.stop()
        self.proxy.heal()
        self.crashed()
        for i in range(self.n):  # the killed ones and any that exited on their own
            self.net.start_node(i)
        self.net.wait_ready(timeout=120)
        self.down.clear()
        self.probe()
        self.wait("every node at one height", lambda: len({self.height(i) for i in range(self.n)}) == 1)
        h = self.height(0)
        chains = [self.blocks(i, 1, h) for i in range(self.n)]
        forks = sum(1 for k in range(min(len(c) for c in chains)) if len({c[k] for c in chains}) > 1)
        short = [i for i, c in enumerate(chains) if len(c) != h]
        audits = []
        for i in range(self.n):
            rep = audit(self.genesis, open_source(self.urls[i], key=self.acme), workers=0)  # signed reads
            audits.append({"node": i, "ok": rep.ok, "height": rep.height, "records": rep.records,
                           "failures": [str(f) for f in rep.failures[:5]]})
        lost: dict[int, int] = {}
        for i, chain in enumerate(chains):
            ids = {sha256(bytes(r)).digest() for raw in chain for r in decode(raw)["records"]}
            lost[i] = sum(1 for rid in self.ledger.acked if rid not in ids)
        return {
            "seed": self.seed,
            "kills": self.counts["kills"],
            "kill_kinds": self.counts["kill_kinds"],
            "partition_periods": self.counts["partitions"],
            "partition_kinds": self.counts["partition_kinds"],
            "height": h,
            "records_submitted": self.ledger.submitted,
            "records_acknowledged": len(self.ledger.acked),
            "answers_not_committed": self.ledger.unconfirmed,
            "client_errors": self.ledger.errors,
            "lost": max(lost.values()) if lost else 0,
            "lost_per_node": lost,
            "forks": forks,
            "short_chains": short,
            "crashes": self.crashes,
            "stalls": self.stalls,
            "audits_ok": all(a["ok"] for a in audits),
            "audits": audits,
        }

    def close(self) -> None:
        self.load.stop()
        try:
            self.net.stop()
        finally:
            self.proxy.close()
            self.http.close()

    def __enter__(self) -> "FaultNet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Load:
    """Client threads submitting small batches through random live nodes, each answer to the ledger."""

    def __init__(self, fn: FaultNet) -> None:
        self.fn = fn
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def start(self, threads: int = 3, pause_s: float = 0.05) -> None:
        for k in range(threads):
            t = threading.Thread(target=self._run, args=(random.Random(self.fn.seed * 100 + k), pause_s),
                                 name=f"load-{k}", daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, rng: random.Random, pause_s: float) -> None:
        fn = self.fn
        with httpx.Client(timeout=60.0) as http:
            while not self.stopping.is_set():
                live = fn.live()
                if not live:
                    time.sleep(0.1)
                    continue
                i = rng.choice(live)
                raws = [sign_event(fn.acme, fn.genesis, event()).raw for _ in range(rng.randint(1, 3))]
                with fn.ledger.lock:
                    fn.ledger.submitted += len(raws)
                try:
                    r = http.post(f"{fn.urls[i]}/v1/records?wait=commit&timeout_ms=5000",
                                  content=encode({"records": raws}), headers=MP, timeout=40.0)
                    fn.ledger.note(i, decode(r.content).get("results", []) if r.content else [])
                except (httpx.HTTPError, ValueError):
                    with fn.ledger.lock:
                        fn.ledger.errors += 1
                    time.sleep(0.2)
                time.sleep(pause_s)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        self.threads = []
