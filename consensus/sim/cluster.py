"""A deterministic cluster simulator (in the spirit of TigerBeetle's VOPR): one seed, one run.

Everything that is not the ``Replica`` is simulated here: virtual time (ms), a lossy, reordering,
partitionable network, node storage that survives crashes (blocks + persisted entries), a toy block
codec and validator, clients submitting requests, and byzantine replicas that run the honest code
with their outgoing traffic rewritten (equivocation, double votes, forgeries, floods, silence,
invalid records). ``random.Random(seed)`` is the only source of randomness.

A run has two phases. Safety: faults everywhere, invariants checked after every step (see
``checkers``). Liveness: the network heals, crashed replicas restart, then every valid submitted
request must be committed by every honest replica within ``liveness_bound_ms``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .. import wire
from ..certificate import CommitCertificate, max_faulty, verify_certificate
from ..config import ReplicaConfig
from ..crypto import Signer, Verifier, sha256
from ..effects import Broadcast, Commit, FetchState, Persist, Proposal, Send, Validate
from ..epochs import Consensus
from ..messages import CommitVote, PrePrepare, Prepare, ViewChange, preprepare_body, vote_body
from ..replica import Replica
from .blocks import decode_block, make_block
from .checkers import Checker, Violation

__all__ = ["ALL_FAULTS", "BYZANTINE", "SCHEDULES", "CachingVerifier", "Node", "Result", "Simulation", "run_seed"]

BYZANTINE = ("equivocate", "double-vote", "forge", "flood", "silent", "invalid")
NETWORK = ("latency", "drop", "dup", "partition", "crash", "skew")
# "client": each request reaches one validator, which forwards it to the primary of its own view and
# shares it with all after SHARE_ALL_MS (as node/driver.py does), so a replica in the wrong view holds
# work the others do not see. "isolate": one replica at a time is cut off long enough to time out alone
# into a higher view, then rejoins (alone in a view change, or restarted with lost volatile state).
SCHEDULES = ("client", "isolate")
ALL_FAULTS = NETWORK + BYZANTINE + SCHEDULES
SHARE_ALL_MS = 3000


class CachingVerifier(Verifier):
    """A ``Verifier`` whose answers are memoised per run: n replicas check the same signature n times."""

    __slots__ = ("cache",)

    def __init__(self, public_key: bytes, cache: dict[tuple[bytes, bytes], bool]) -> None:
        super().__init__(public_key)
        self.cache = cache

    def verify(self, signature: bytes, kind: str, chain: bytes, body: bytes) -> bool:
        key = (signature, self.public_key + kind.encode() + body)
        hit = self.cache.get(key)
        if hit is None:
            hit = self.cache[key] = super().verify(signature, kind, chain, body)
        return hit


def _later(fn: Callable[..., None], *args: Any) -> Callable[[int], None]:
    """A scheduled call of ``fn(*args, time)`` (a typed stand-in for a lambda with default arguments)."""
    def call(t: int) -> None:
        fn(*args, t)
    return call


@dataclass
class Result:
    seed: int
    nodes: int
    faults: tuple[str, ...]
    violations: list[Violation] = field(default_factory=list)
    heights: dict[str, int] = field(default_factory=dict)
    view_max: int = 0
    commits: int = 0
    messages: int = 0
    steps: int = 0
    byzantine: dict[str, str] = field(default_factory=dict)
    time_ms: int = 0
    reconfigs: int = 0  # validator-set changes approved (reconfig.py)

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay(self) -> str:
        faults = "all" if set(self.faults) == set(ALL_FAULTS) else ",".join(self.faults) or "none"
        return f"python -m rantai.consensus.sim --seed {self.seed} --nodes {self.nodes} --faults {faults}"


class Node:
    """The simulated node around one replica: storage that survives crashes, a mempool, a driver."""

    def __init__(self, sim: "Simulation", index: int, signer: Signer) -> None:
        self.sim = sim
        self.index = index
        self.signer = signer
        self.id = signer.id
        self.persisted: dict[bytes, bytes] = {}
        self.blocks: list[tuple[Proposal, CommitCertificate]] = []
        self.committed_digests: set[bytes] = {sim.chain}
        self.mempool: dict[str, bool] = {}  # request id -> validity flag
        self.inflight: dict[bytes, tuple[bytes, list[str]]] = {}  # digest -> (parent, request ids)
        self.replica: Replica | Consensus | None = None  # Consensus: reconfiguration runs (reconfig.py)
        self.up = False
        self.incarnation = 0
        self.byzantine: str | None = None
        self.skew_offset = 0
        self.skew_rate = 1.0
        self.seen_view = 0  # the view records were last forwarded for (the client path, see route)
        self.forwarded_ms = 0

    # -------------------------------------------------------------------------------- lifecycle
    def committed(self) -> tuple[int, bytes]:
        return (len(self.blocks), self.blocks[-1][0].digest) if self.blocks else (0, self.sim.chain)

    def start(self) -> None:
        self.replica = Replica(self.sim.config, self.signer, dict(self.persisted), self.committed(),
                               verifiers=self.sim.verifiers)
        self.up = True
        self.incarnation += 1
        self.sim.checker.on_restart(self)

    def crash(self) -> None:
        self.up = False
        self.replica = None
        self.mempool.clear()
        self.inflight.clear()

    def now(self, t: int) -> int:
        return int(t * self.skew_rate) + self.skew_offset

    def committed_requests(self) -> set[str]:
        return self.sim.committed_requests.setdefault(self.id, set())

    # -------------------------------------------------------------------------------- driver
    def run(self, effects: list[Any], t: int) -> None:
        sim = self.sim
        for i, e in enumerate(effects):
            if not self.up:
                return
            te = type(e)
            if te is Persist:
                for k, v in e.entries:
                    if v is None:
                        self.persisted.pop(k, None)
                    else:
                        self.persisted[k] = v
                # a crash right after the sync, before the votes it protects leave
                if sim.crash_between and self.byzantine is None and sim.rng.random() < sim.p_crash_after_persist \
                        and i + 1 < len(effects):
                    sim.crash_node(self, t)
                    return
            elif te is Broadcast:
                sim.checker.on_send(self, e.message)
                for peer in sim.nodes:
                    if peer is not self:
                        sim.send(self, peer, e.message, t)
            elif te is Send:
                sim.checker.on_send(self, e.message)
                sim.send(self, sim.by_id[e.to], e.message, t)
            elif te is Commit:
                self.on_commit(e, t)
            elif te is Validate:
                blk = decode_block(e.proposal.payload)
                if blk is not None:  # the node remembers every proposal it is asked about (ancestry)
                    self.inflight[e.proposal.digest] = (e.proposal.parent, [r[0] for r in blk[5] if r])
                delay = sim.rng.randint(0, 5)
                inc = self.incarnation
                sim.schedule(t + delay, partial(self.answer_validate, e, inc))
            elif te is FetchState:
                sim.fetches += 1
                delay = sim.rng.randint(10, 60)
                inc = self.incarnation
                sim.schedule(t + delay, partial(self.fetch, e, inc))
            else:
                raise TypeError(f"unknown effect {e!r}")

    def on_commit(self, e: Commit, t: int) -> None:
        self.sim.checker.on_commit(self, e.proposal, e.certificate, via="commit")
        self.store(e.proposal, e.certificate)

    def store(self, prop: Proposal, cert: CommitCertificate) -> None:
        self.blocks.append((prop, cert))
        self.committed_digests.add(prop.digest)
        blk = decode_block(prop.payload)
        done = self.committed_requests()
        if blk is not None:
            for rid, _flag in blk[5]:
                done.add(rid)
                self.mempool.pop(rid, None)
        self.inflight.pop(prop.digest, None)

    def answer_validate(self, e: Validate, inc: int, t: int) -> None:
        if not self.up or inc != self.incarnation or self.replica is None:
            return
        ok = self.check_block(e.proposal)
        self.run(self.replica.validated(e.view, e.height, e.proposal.digest, ok, self.now(t)), t)
        self.sim.after_step(t)

    def check_block(self, prop: Proposal) -> bool:
        """The toy validator: header matches, every request submitted and valid, none already
        committed or in an ancestor in flight, no duplicates in the block."""
        blk = decode_block(prop.payload)
        if blk is None or sha256(prop.payload) != prop.digest:
            return False
        h, parent, _view, _proposer, _ts, reqs = blk
        if h != prop.height or parent != prop.parent or not reqs:
            return False
        seen = set(self.committed_requests())
        d, hops = parent, 0
        while d not in self.committed_digests:
            if d not in self.inflight or hops > 64:
                return False  # unknown ancestry: fail closed
            p, rids = self.inflight[d]
            seen.update(rids)
            d, hops = p, hops + 1
        for rid, flag in reqs:
            if not flag or rid not in self.sim.valid_requests or rid in seen:
                return False
            seen.add(rid)
        return True

    def fetch(self, e: FetchState, inc: int, t: int) -> None:
        """State transfer: copy certified blocks from peers' stores, verifying certificate and link."""
        if not self.up or inc != self.incarnation or self.replica is None:
            return
        sim = self.sim
        peers = [sim.by_id[p] for p in e.peers if sim.reachable(sim.by_id[p], self)]
        h = len(self.blocks) + 1
        while h <= e.to_height:
            src = next((p for p in peers if len(p.blocks) >= h), None)
            if src is None:
                break
            prop, cert = src.blocks[h - 1]
            try:
                verify_certificate(cert, sim.chain, sim.verifiers, height=h, block_hash=prop.digest)
            except Exception:
                break
            if prop.parent != self.committed()[1] or sha256(prop.payload) != prop.digest:
                break
            sim.checker.on_commit(self, prop, cert, via="fetch")
            self.store(prop, cert)
            h += 1
        height, digest = self.committed()
        # Told even when nothing arrived: the replica re-issues its fetch later (the node does the same).
        self.run(self.replica.state_transferred(height, digest, self.now(t)), t)
        sim.after_step(t)

    # -------------------------------------------------------------------------------- primary batching
    def maybe_propose(self, t: int) -> None:
        r = self.replica
        if r is None:
            return
        for _ in range(2):
            slot = r.next_slot()
            if slot is None:
                return
            if self.byzantine == "silent":
                return
            # requests neither committed nor in an ancestor of the slot
            busy = set(self.committed_requests())
            d, hops = slot.parent, 0
            while d in self.inflight and hops < 64:
                p, rids = self.inflight[d]
                busy.update(rids)
                d, hops = p, hops + 1
            reqs: list[list[Any]] = [[rid, flag] for rid, flag in self.mempool.items()
                                     if rid not in busy][: self.sim.batch]
            if self.byzantine == "invalid" and self.sim.rng.random() < 0.5:
                reqs.append([f"forged-{self.sim.rng.randrange(10**6)}", True])
            if not reqs:
                return
            prop = make_block(slot.height, slot.parent, slot.view, self.id, self.now(t), reqs)
            self.inflight[prop.digest] = (prop.parent, [q[0] for q in reqs])
            self.run(r.propose(prop, self.now(t)), t)


class Simulation:
    """One seeded run. ``run()`` returns a ``Result``; ``checker`` raises nothing, it records."""

    node_class: type[Node] = Node  # reconfig.py substitutes its own node and checker
    checker_class: type[Checker] = Checker

    def __init__(self, seed: int, nodes: int = 4, faults: tuple[str, ...] = ALL_FAULTS, *,
                 load_ms: int = 4000, safety_ms: int = 8000, liveness_bound_ms: int = 60000,
                 replica_hook: Callable[["Simulation"], None] | None = None,
                 config: dict[str, Any] | None = None, requests: int | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.faults_requested = faults
        # with "all", each seed draws its own mix so that some runs are quiet and some are nasty
        if set(faults) == set(ALL_FAULTS):
            self.faults = tuple(x for x in ALL_FAULTS if rng.random() < 0.6)
        else:
            self.faults = tuple(faults)
        fs = set(self.faults)
        self.chain = sha256(b"rantai-sim-genesis" + seed.to_bytes(8, "big"))
        signers = [Signer.from_seed(hashlib.sha256(b"sim-key-%d" % i).digest()) for i in range(nodes)]
        validators = tuple((s.id, s.public_key) for s in signers)
        self.config = ReplicaConfig(
            self.chain, validators, checkpoint_interval=rng.choice([4, 8]), window=rng.choice([2, 4, 8]),
            view_change_timeout_ms=rng.choice([300, 500, 800]), view_change_timeout_max_ms=4000,
            retransmit_ms=rng.choice([100, 200, 300]), state_transfer_delay_ms=rng.choice([200, 500]),
            state_transfer_timeout_ms=1000)
        if config:
            import dataclasses

            self.config = dataclasses.replace(self.config, **{"log_max": 0, **config})
        self.cache: dict[tuple[bytes, bytes], bool] = {}
        self.verifiers = {s.id: CachingVerifier(s.public_key, self.cache) for s in signers}
        self.nodes = [self.node_class(self, i, s) for i, s in enumerate(signers)]
        self.by_id = {n.id: n for n in self.nodes}
        self.f = max_faulty(nodes)
        self.batch = rng.choice([1, 3, 8])
        self.queue: list[tuple[int, int, Callable[[int], None]]] = []
        self.seq = 0
        self.now_ms = 0
        self.load_ms, self.safety_ms, self.liveness_bound_ms = load_ms, safety_ms, liveness_bound_ms
        self.valid_requests: set[str] = set()
        self.committed_requests: dict[str, set[str]] = {}
        self.healed = False
        self.partition: tuple[frozenset[str], frozenset[str]] | None = None
        self.p_drop = rng.choice([0.01, 0.05, 0.15]) if "drop" in fs else 0.0
        self.p_dup = rng.choice([0.02, 0.1]) if "dup" in fs else 0.0
        self.latency = (rng.choice([1, 5]), rng.choice([5, 30, 120])) if "latency" in fs else (1, 3)
        self.crash_between = "crash" in fs
        self.p_crash_after_persist = 0.002
        self.messages = 0
        self.steps = 0
        byz_kinds = [b for b in BYZANTINE if b in fs]
        self.byzantine: dict[str, str] = {}
        if byz_kinds and self.f > 0:
            count = rng.randint(1, self.f)
            for node in rng.sample(self.nodes, count):
                node.byzantine = rng.choice(byz_kinds)
                self.byzantine[node.id] = node.byzantine
        if "skew" in fs:
            for node in self.nodes:
                node.skew_offset = rng.randint(-5000, 5000)
                node.skew_rate = 1.0 + rng.uniform(-0.05, 0.05)
        self.checker = self.checker_class(self)
        self.n_requests = requests
        self.fetches = 0
        # a scenario's hand on the network: (src, dst, message) -> deliver it? (None: deliver everything)
        self.net_filter: Callable[[Node, Node, Any], bool] | None = None
        if replica_hook is not None:
            replica_hook(self)

    # -------------------------------------------------------------------------------- scheduling
    def schedule(self, t: int, fn: Callable[[int], None]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, fn))

    def honest(self) -> list[Node]:
        return [n for n in self.nodes if n.byzantine is None]

    def reachable(self, a: Node, b: Node) -> bool:
        if not (a.up and b.up):
            return False
        if self.partition is None:
            return True
        left, _ = self.partition
        return (a.id in left) == (b.id in left)

    def send(self, src: Node, dst: Node, message: Any, t: int) -> None:
        if src.byzantine is not None and src.byzantine in ("equivocate", "double-vote", "forge", "flood"):
            for m2, to in self.byzantine_rewrite(src, dst, message):
                self._transmit(src, to, m2, t)
            return
        self._transmit(src, dst, message, t)

    def _transmit(self, src: Node, dst: Node, message: Any, t: int) -> None:
        if self.net_filter is not None and not self.net_filter(src, dst, message):
            return
        data = wire.encode(message)
        self.messages += 1
        if not self.healed:
            if self.p_drop and self.rng.random() < self.p_drop:
                return
            copies = 2 if self.p_dup and self.rng.random() < self.p_dup else 1
        else:
            copies = 1
        lo, hi = self.latency
        for _ in range(copies):
            delay = self.rng.randint(lo, hi)
            if not self.healed and self.rng.random() < 0.05:
                delay += self.rng.randint(hi, 4 * hi)  # a slow path: reordering
            self.schedule(t + delay, partial(self.deliver, src, dst, data))

    def deliver(self, src: Node, dst: Node, data: bytes, t: int) -> None:
        if not self.reachable(src, dst) or dst.replica is None:
            return
        msg = wire.decode(data)
        self.steps += 1
        dst.run(dst.replica.handle(msg, dst.now(t)), t)
        self.after_step(t)

    def after_step(self, t: int) -> None:
        self.checker.check_step()

    # -------------------------------------------------------------------------------- byzantine
    def byzantine_rewrite(self, src: Node, dst: Node, m: Any) -> list[tuple[Any, Node]]:
        kind = src.byzantine
        rng = self.rng
        s = src.signer
        out: list[tuple[Any, Node]] = [(m, dst)]
        if kind == "equivocate" and type(m) is PrePrepare and dst.index % 2 == 1:
            blk = decode_block(m.payload)
            if blk is not None:
                alt = make_block(m.height, m.parent, m.view, src.id, blk[4] + 1, blk[5][::-1] or blk[5])
                if alt.digest == m.digest:
                    alt = make_block(m.height, m.parent, m.view, src.id, blk[4] + 7, blk[5])
                sig = s.sign(PrePrepare.KIND, self.chain, preprepare_body(m.view, m.height, alt.digest, alt.parent))
                out = [(PrePrepare(m.view, m.height, alt.parent, alt.digest, alt.payload, src.id, sig), dst)]
        elif kind == "double-vote" and type(m) in (Prepare, CommitVote) and dst.index % 2 == 1:
            d2 = sha256(m.digest + b"other")
            if type(m) is Prepare:
                sig = s.sign(Prepare.KIND, self.chain, vote_body(m.view, m.height, d2))
                out.append((Prepare(m.view, m.height, d2, src.id, sig), dst))
            else:
                probe = CommitVote(m.view, m.height, d2, src.id, b"")
                sig = s.sign(CommitVote.KIND, self.chain, probe.body())
                out.append((CommitVote(m.view, m.height, d2, src.id, sig), dst))
        elif kind == "forge":
            # pretend to be someone else, flip digests under honest signatures, replay old traffic
            victim = rng.choice(self.nodes).id
            if type(m) in (Prepare, CommitVote):
                out.append((type(m)(m.view, m.height, sha256(m.digest), victim, m.sig), dst))
                out.append((type(m)(m.view, m.height, m.digest, victim, bytes(64)), dst))
            if type(m) is ViewChange and m.prepared:
                p = m.prepared[0]
                forged = type(p)(p.view, p.height, sha256(p.digest), p.parent, p.pp_sig, p.prepares)
                out.append((ViewChange(m.view, m.stable, (forged, *m.prepared[1:]), m.sender, m.sig, m.payloads), dst))
            if self.replay_pool:
                out.append((rng.choice(self.replay_pool), dst))
            if len(self.replay_pool) < 200:
                self.replay_pool.append(m)
        elif kind == "flood":
            for _ in range(rng.randint(1, 4)):
                v = max(0, getattr(m, "view", 0) + rng.choice([-3, -1, 1, 5, 1000]))
                h = max(1, getattr(m, "height", 1) + rng.choice([-10, -1, 1, 3, 10**6]))
                d = sha256(rng.randbytes(8))
                if rng.random() < 0.5:
                    msg: Any = Prepare(v, h, d, src.id, s.sign(Prepare.KIND, self.chain, vote_body(v, h, d)))
                else:
                    probe = CommitVote(v, h, d, src.id, b"")
                    msg = CommitVote(v, h, d, src.id, s.sign(CommitVote.KIND, self.chain, probe.body()))
                out.append((msg, dst))
        return out

    replay_pool: list[Any] = []

    # -------------------------------------------------------------------------------- faults
    def crash_node(self, node: Node, t: int) -> None:
        if not node.up:
            return
        node.crash()
        downtime = self.rng.randint(50, 3000)
        self.schedule(t + downtime, partial(self.restart_node, node))

    def set_partition(self, part: tuple[frozenset[str], frozenset[str]], t: int) -> None:
        self.partition = part

    def crash_later(self, node: Node, t: int) -> None:
        self.crash_node(node, t)

    def submit_later(self, rid: str, via: Node | None, t: int) -> None:
        self.submit(rid, t, via)

    def crash_node_for_good(self, node: Node) -> None:
        """Crash with no scheduled restart (a script or the liveness phase restarts it)."""
        if node.up:
            node.crash()

    def deliver_now(self, src: Node, dst: Node, message: Any, t: int) -> None:
        """Put ``message`` on the wire from ``src`` to ``dst`` past every fault and filter (a scripted forgery)."""
        data = wire.encode(message)
        self.schedule(t + 1, lambda tt: self.deliver(src, dst, data, tt))

    def restart_node(self, node: Node, t: int) -> None:
        if node.up:
            return
        node.start()
        # a restarted node re-learns pending requests from clients (they resubmit)
        for rid in sorted(self.valid_requests):
            if rid not in node.committed_requests():
                if "client" in self.faults:
                    self.route(rid, node, t)
                else:
                    node.mempool[rid] = True

    def plan(self) -> None:
        rng = self.rng
        fs = set(self.faults)
        n_req = self.n_requests if self.n_requests is not None else rng.randint(10, 60)
        for i in range(n_req):
            at = rng.randint(0, self.load_ms)
            rid = f"r{i}"
            via = rng.choice(self.nodes) if "client" in fs else None
            self.schedule(at, partial(self.submit, rid, via=via))
        for _ in range(rng.randint(0, 3) if "partition" in fs else 0):
            at = rng.randint(0, self.safety_ms)
            ids = [n.id for n in self.nodes]
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            part = (frozenset(ids[:cut]), frozenset(ids[cut:]))
            dur = rng.randint(200, 3000)
            self.schedule(at, partial(self.set_partition, part))
            self.schedule(min(at + dur, self.safety_ms), lambda tt: setattr(self, "partition", None))
        if "crash" in fs:
            for _ in range(rng.randint(1, 4)):
                node = rng.choice(self.honest() or self.nodes)
                at = rng.randint(0, self.safety_ms)
                self.schedule(at, partial(self.crash_node, node))
        if "isolate" in fs:
            # one replica alone long enough for its timer to fire, then back (sometimes via a restart,
            # which loses volatile state): it must rejoin the others' view without forcing a view change
            for _ in range(rng.randint(1, 2)):
                node = rng.choice(self.honest() or self.nodes)
                at = rng.randint(0, self.safety_ms - 1000)
                dur = rng.randint(1000, 5000)
                rest = frozenset(n.id for n in self.nodes if n is not node)
                self.schedule(at, _later(self.set_partition, (rest, frozenset({node.id}))))
                self.schedule(at + dur, lambda tt: setattr(self, "partition", None))
                if rng.random() < 0.5:
                    self.schedule(at + dur, _later(self.crash_later, node))
        for node in self.nodes:
            self.schedule(rng.randint(0, 20), partial(self.tick, node))
        self.schedule(self.safety_ms, self.heal)

    def submit(self, rid: str, t: int, via: Node | None = None) -> None:
        """A client submits ``rid``: to every validator, or (``via``) to one, which forwards it like a node."""
        self.valid_requests.add(rid)
        if via is not None:
            self.route(rid, via, t)
            return
        for node in self.nodes:
            if node.up and rid not in node.committed_requests():
                node.mempool[rid] = True

    def route(self, rid: str, via: Node, t: int) -> None:
        """node/driver.py's record path: keep it, forward it to the primary of our view, share it with
        every validator after SHARE_ALL_MS if it is still uncommitted here."""
        if not via.up or via.replica is None or rid in via.committed_requests():
            return
        via.mempool[rid] = True
        primary = self.by_id[via.replica.primary(via.replica.view)]
        self.schedule(t + self.rng.randint(*self.latency), lambda tt: self.hand(via, primary, rid))

        def share(tt: int) -> None:
            # the node stops watching a record once a proposal it validated carries it (the primary has it)
            if via.up and rid in via.mempool and not any(rid in rids for _, rids in via.inflight.values()):
                for peer in self.nodes:
                    self.hand(via, peer, rid)

        self.schedule(t + SHARE_ALL_MS, share)

    def hand(self, src: Node, dst: Node, rid: str) -> None:
        if self.reachable(src, dst) and rid not in dst.committed_requests():
            dst.mempool[rid] = True

    def tick(self, node: Node, t: int) -> None:
        if node.up and node.replica is not None and "client" in self.faults:
            view = node.replica.view
            if view != node.seen_view or t - node.forwarded_ms >= SHARE_ALL_MS:
                # the node side of view synchronisation: records held here go to the primary of our
                # (new) view, and again every SHARE_ALL_MS until committed
                node.seen_view, node.forwarded_ms = view, t
                primary = self.by_id[node.replica.primary(view)]
                for rid in sorted(node.mempool):
                    self.hand(node, primary, rid)
        if node.up and node.replica is not None:
            pending = bool(node.mempool)
            node.run(node.replica.tick(node.now(t), pending), t)
            if node.up:
                node.maybe_propose(t)
            self.after_step(t)
        self.schedule(t + 20, partial(self.tick, node))

    def heal(self, t: int) -> None:
        self.healed = True
        self.partition = None
        self.crash_between = False
        for node in self.nodes:
            if not node.up:
                self.restart_node(node, t)
        # a trickle of load after healing: an idle cluster shows a replica left in another view
        # nothing, but the first request must find every replica in the one view within the bound
        for i, at in enumerate((500, 2500, 4500)):
            via = self.rng.choice(self.nodes) if "client" in self.faults else None
            self.schedule(t + at, _later(self.submit_later, f"live{i}", via))

    # -------------------------------------------------------------------------------- run
    def run(self) -> Result:
        for node in self.nodes:
            node.start()
        self.plan()
        deadline = self.safety_ms + self.liveness_bound_ms
        next_check = self.safety_ms
        while self.queue:
            t, _, fn = heapq.heappop(self.queue)
            if t > deadline:
                break
            self.now_ms = t
            try:
                fn(t)
            except Exception as exc:  # an InvariantBroken or any bug: report it against the seed
                self.checker.fail("exception", f"{type(exc).__name__}: {exc}")
                break
            if self.checker.violations:
                break
            if t >= next_check and self.healed:
                next_check = t + 100
                if self.checker.converged():
                    break
        else:
            pass
        if not self.checker.violations and not self.checker.converged():
            self.checker.fail("liveness", f"not converged {self.liveness_bound_ms} ms after healing: "
                              + self.checker.describe())
        res = Result(self.seed, len(self.nodes), self.faults_requested, list(self.checker.violations))
        res.heights = {n.id: len(n.blocks) for n in self.nodes}
        res.view_max = max((n.replica.view for n in self.nodes if n.replica is not None), default=0)
        res.commits = max(res.heights.values())
        res.messages = self.messages
        res.steps = self.steps
        res.byzantine = dict(self.byzantine)
        res.time_ms = self.now_ms
        return res


def run_seed(seed: int, nodes: int = 4, faults: tuple[str, ...] = ALL_FAULTS, **kw: Any) -> Result:
    sim = Simulation(seed, nodes, faults, **kw)
    sim.replay_pool = []
    return sim.run()
