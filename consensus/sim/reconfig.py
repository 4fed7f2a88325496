"""Reconfiguration in the simulator: validators added, removed and re-keyed while the usual faults run.

A change is a request like any other (id ``cfg<k>``), submitted to the mempools at a seeded time; the
block that commits it approves it. Every node, on storing that block (by ``Commit`` or by state
transfer), resolves the change against the validator set its own chain says is current and calls
``Consensus.schedule(H + window + 1, validators)``, exactly as the node does with governance. The
resolution is deterministic in the chain, so every node agrees:

* ``add``: the next host that never was a validator joins (at the end of the rotation); it has been
  running since the start as an observer and catches up by state transfer (``FetchState``);
* ``remove``: a member leaves (often a byzantine one: the consortium votes out a misbehaving
  validator), never below n = 4 and never leaving more than f byzantine members;
* ``rekey``: an honest member's next key replaces its key in place (its node holds both).

A removed byzantine host becomes a **zombie**: it keeps signing PREPAREs and COMMITs with its old key
(echoing what it hears), which only a replica that counts a removed validator's vote would take.

Checkers on top of ``checkers``: each committed block's certificate must verify against the set in
force at its height (from the honest chain), and liveness is required of the hosts of the set in force
after the highest committed block: joiners included, retired hosts excused.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from functools import partial
from typing import Any

from .. import wire
from ..certificate import CommitCertificate, max_faulty, verify_certificate
from ..crypto import Signer, Verifier, sha256
from ..effects import FetchState, Proposal
from ..epochs import Consensus, first_view
from ..messages import CommitVote, Prepare, vote_body
from .blocks import decode_block
from .checkers import Checker
from .cluster import ALL_FAULTS, CachingVerifier, Node, Result, Simulation

__all__ = ["OPS", "ReconfigSimulation", "run_reconfig_seed"]

OPS = ("add", "remove", "rekey")
KEYS_PER_HOST = 4  # the original key and up to 3 re-keys
SPARE_HOSTS = 2
Validators = tuple[tuple[str, bytes], ...]


def _key(host: int, gen: int) -> Signer:
    seed = b"sim-key-%d" % host if gen == 0 else b"sim-key-%d-rekey-%d" % (host, gen)
    return Signer.from_seed(hashlib.sha256(seed).digest())


class SetHistory:
    """The validator sets a chain has scheduled, replayed block by block (every node keeps its own)."""

    def __init__(self, sim: "ReconfigSimulation") -> None:
        self.sim = sim
        self.starts: list[tuple[int, Validators]] = [(1, sim.config.validators)]
        self.ever: set[int] = {sim.host_of[v] for v, _ in sim.config.validators}
        self.used: set[str] = {v for v, _ in sim.config.validators}

    def at(self, height: int) -> Validators:
        cur = self.starts[0][1]
        for start, vs in self.starts:
            if start <= height:
                cur = vs
        return cur

    def apply_block(self, prop: Proposal) -> list[tuple[int, Validators]]:
        """The changes block ``prop`` approves, resolved: ``[(start, validators)]`` to schedule."""
        blk = decode_block(prop.payload)
        out: list[tuple[int, Validators]] = []
        if blk is None:
            return out
        start = prop.height + self.sim.config.window + 1
        for rid, _flag in blk[5]:
            change = self.sim.changes.get(rid)
            if change is None:
                continue
            new = self.resolve(self.starts[-1][1], *change)
            if self.starts[-1][0] == start:
                self.starts[-1] = (start, new)
            else:
                self.starts.append((start, new))
            out.append((start, new))
        return out

    def resolve(self, cur: Validators, op: str, x: int) -> Validators:
        sim = self.sim
        hosts = [sim.host_of[v] for v, _ in cur]
        byz = [h for h in hosts if sim.nodes[h].byzantine is not None]
        n = len(cur)
        spare = [h for h in range(len(sim.nodes)) if h not in self.ever]
        if op == "remove" and n - 1 < 4:
            op = "add"  # never below n = 4: grow first
        if op == "add" and not spare:
            op = "remove" if n - 1 >= 4 else "rekey"
        if op == "add":
            h = spare[0]
            self.ever.add(h)
            k = _key(h, 0)
            self.used.add(k.id)
            return (*cur, (k.id, k.public_key))
        if op == "remove":
            if byz and x % 2 == 0:
                victim = byz[0]  # the consortium votes out a misbehaving validator
            else:
                victim = hosts[x % n]
                if len(byz) - (victim in byz) > max_faulty(n - 1):
                    victim = byz[0]
            return tuple(e for e, h in zip(cur, hosts, strict=True) if h != victim)
        honest = [i for i, h in enumerate(hosts) if sim.nodes[h].byzantine is None]
        i = honest[x % len(honest)]
        h = hosts[i]
        fresh = [k for k in (_key(h, g) for g in range(KEYS_PER_HOST)) if k.id not in self.used]
        if not fresh:
            return cur
        self.used.add(fresh[0].id)
        return tuple((fresh[0].id, fresh[0].public_key) if j == i else e for j, e in enumerate(cur))


class ReconfigNode(Node):
    """A host: every key it may ever sign with, its chain's set history, a ``Consensus`` driver."""

    def __init__(self, sim: Simulation, index: int, signer: Signer) -> None:
        super().__init__(sim, index, signer)
        self.keys = [_key(index, g) for g in range(KEYS_PER_HOST)]
        self.history: SetHistory | None = None
        self.zombie_signed: set[tuple[str, int, int, bytes]] = set()

    @property
    def rsim(self) -> "ReconfigSimulation":
        assert isinstance(self.sim, ReconfigSimulation)
        return self.sim

    def start(self) -> None:
        sim = self.rsim
        self.history = SetHistory(sim)
        for prop, _cert in self.blocks:
            self.history.apply_block(prop)
        boundaries = {s - 1: self.blocks[s - 2][0].digest for s, _ in self.history.starts[1:]
                      if 2 <= s <= len(self.blocks) + 1}
        self.replica = Consensus(sim.config, self.keys, dict(self.persisted), self.committed(),
                                 schedule=self.history.starts[1:], boundaries=boundaries,
                                 verifier=partial(CachingVerifier, cache=sim.cache))
        self.up = True
        self.incarnation += 1
        sim.checker.on_restart(self)

    def store(self, prop: Proposal, cert: CommitCertificate) -> None:
        super().store(prop, cert)
        sim = self.rsim
        sim.learn(prop)
        assert self.history is not None
        for start, validators in self.history.apply_block(prop):
            if isinstance(self.replica, Consensus):
                self.replica.schedule(start, validators)

    def fetch(self, e: FetchState, inc: int, t: int) -> None:
        """State transfer, as the node does it: certificates checked against the set in force at each
        height (from our own chain), and each epoch boundary reported on the way."""
        if not self.up or inc != self.incarnation or self.replica is None:
            return
        sim = self.rsim
        peers = [sim.by_id[p] for p in e.peers if p in sim.by_id and sim.reachable(sim.by_id[p], self)]
        h = len(self.blocks) + 1
        while h <= e.to_height and self.up and self.replica is not None:
            src = next((p for p in peers if len(p.blocks) >= h), None)
            if src is None:
                break
            prop, cert = src.blocks[h - 1]
            assert self.history is not None
            vs = {v: CachingVerifier(pk, sim.cache) for v, pk in self.history.at(h)}
            try:
                verify_certificate(cert, sim.chain, vs, height=h, block_hash=prop.digest)
            except Exception:
                break
            if prop.parent != self.committed()[1] or sha256(prop.payload) != prop.digest:
                break
            sim.checker.on_commit(self, prop, cert, via="fetch")
            self.store(prop, cert)
            if any(s == h + 1 for s, _ in self.history.starts[1:]):
                self.run(self.replica.state_transferred(h, prop.digest, self.now(t)), t)
            h += 1
        if self.up and self.replica is not None:
            height, digest = self.committed()
            self.run(self.replica.state_transferred(height, digest, self.now(t)), t)
        sim.after_step(t)

    def zombie(self, m: Any, t: int) -> None:
        """A removed byzantine validator keeps voting: it signs what it hears with its last key."""
        r = self.replica
        if not isinstance(r, Consensus) or not r.retired or type(m) not in (Prepare, CommitVote):
            return
        mine = [k for k in self.keys if any(k.id in e.ids for e in r.epochs)]
        if not mine:
            return
        key = mine[-1]
        tag = (type(m).__name__, m.view, m.height, m.digest)
        if tag in self.zombie_signed or len(self.zombie_signed) > 2000:
            return
        self.zombie_signed.add(tag)
        sim = self.rsim
        if type(m) is Prepare:
            out: Any = Prepare(m.view, m.height, m.digest, key.id,
                               key.sign(Prepare.KIND, sim.chain, vote_body(m.view, m.height, m.digest)))
        else:
            probe = CommitVote(m.view, m.height, m.digest, key.id, b"")
            out = CommitVote(m.view, m.height, m.digest, key.id, key.sign(CommitVote.KIND, sim.chain, probe.body()))
        for peer in sim.nodes:
            if peer is not self:
                sim._transmit(self, peer, out, t)


class ReconfigChecker(Checker):
    def verifiers_at(self, height: int) -> Mapping[str, Verifier]:
        sim = self.sim
        assert isinstance(sim, ReconfigSimulation)
        return sim.verifiers_for(sim.truth.at(height))

    def converged(self) -> bool:
        sim = self.sim
        assert isinstance(sim, ReconfigSimulation)
        top = max((len(n.blocks) for n in sim.honest()), default=0)
        hosts = {sim.host_of[v] for v, _ in sim.truth.at(top + 1)}
        need = [n for n in sim.honest() if n.index in hosts]
        if not all(n.up for n in need):
            return False
        heights = {len(n.blocks) for n in need}
        return len(heights) == 1 and all(sim.valid_requests <= n.committed_requests() for n in need)


class ReconfigSimulation(Simulation):
    """``Simulation`` plus spare hosts, re-key keys, and a seeded schedule of validator-set changes."""

    node_class = ReconfigNode
    checker_class = ReconfigChecker

    def __init__(self, seed: int, nodes: int = 4, faults: tuple[str, ...] = ALL_FAULTS, *,
                 ops: tuple[str, ...] = OPS, changes: int | None = None, **kw: Any) -> None:
        self.host_of: dict[str, int] = {}
        for h in range(nodes + SPARE_HOSTS):  # (hosts not started are never chosen: see spares below)
            for g in range(KEYS_PER_HOST):
                self.host_of[_key(h, g).id] = h
        self.changes: dict[str, tuple[str, int]] = {}
        self.learned = 0
        self.applied = 0  # changes approved on the chain
        # the change schedule is drawn first, from its own stream, so that the base run's draws stay as they were
        rng = random.Random(seed * 1_000_003 + 17)
        count = changes if changes is not None else rng.randint(1, 3)
        self.planned = [(rng.randint(200, kw.get("safety_ms", 8000) - 2500), rng.choice(ops), rng.randrange(1000))
                        for _ in range(count)]
        spares = min(SPARE_HOSTS, sum(1 for _, op, _ in self.planned if op != "rekey"))
        super().__init__(seed, nodes, faults, **kw)
        for i in range(nodes, nodes + spares):
            self.nodes.append(ReconfigNode(self, i, _key(i, 0)))
        for host in self.nodes:
            if isinstance(host, ReconfigNode):
                for k in host.keys:
                    self.by_id[k.id] = host
        self.truth = SetHistory(self)
        self._vcache: dict[Validators, dict[str, Verifier]] = {}

    def verifiers_for(self, validators: Validators) -> dict[str, Verifier]:
        got = self._vcache.get(validators)
        if got is None:
            got = self._vcache[validators] = {v: CachingVerifier(pk, self.cache) for v, pk in validators}
        return got

    def learn(self, prop: Proposal) -> None:
        """The first store of each height (in height order, by agreement) updates the true set history."""
        if prop.height == self.learned + 1:
            self.learned += 1
            self.applied += len(self.truth.apply_block(prop))

    def plan(self) -> None:
        super().plan()
        for k, (at, op, x) in enumerate(self.planned):
            rid = f"cfg{k}"
            self.changes[rid] = (op, x)
            self.schedule(at, partial(self.submit, rid))
            for j in range(1, self.config.window + 3):  # enough later blocks for the new set to start
                self.schedule(at + 150 * j, partial(self.submit, f"{rid}-after{j}"))

    def deliver(self, src: Node, dst: Node, data: bytes, t: int) -> None:
        super().deliver(src, dst, data, t)
        if dst.byzantine is not None and dst.up and isinstance(dst, ReconfigNode) and self.reachable(src, dst):
            dst.zombie(wire.decode(data), t)

    def run(self) -> Result:
        res = super().run()
        res.view_max = max((n.replica.view - first_view(n.replica.epoch) for n in self.nodes
                            if isinstance(n.replica, Consensus)), default=0)
        res.heights = {n.id: len(n.blocks) for n in self.nodes}
        res.reconfigs = self.applied
        return res


def run_reconfig_seed(seed: int, nodes: int = 4, faults: tuple[str, ...] = ALL_FAULTS, **kw: Any) -> Result:
    sim = ReconfigSimulation(seed, nodes, faults, **kw)
    sim.replay_pool = []
    return sim.run()
