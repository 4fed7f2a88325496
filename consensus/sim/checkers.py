"""Invariants, checked apart from the code under test (TigerBeetle's state_checker idea).

* agreement: no two honest replicas commit different blocks at one height;
* validity: every committed request was submitted, is valid, and appears once in the chain;
* certificates: every committed block carries 2f+1 valid commit signatures (``verify_certificate``);
* order: Commit effects come strictly in height order, each height once, each extending the tip;
* prefix: an honest replica's committed chain never shrinks (also across restarts);
* no honest double vote: an honest replica never signs two digests for one (kind, view, height),
  tracked across restarts from what actually left the node;
* liveness: after healing, all honest replicas commit every valid request and converge: the same
  height, and the same view in normal mode (a replica alone in another view is stuck, even when it
  keeps up by state transfer: it forwards clients' requests to the wrong primary and cannot vote).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..certificate import CommitCertificate, verify_certificate
from ..crypto import Verifier
from ..effects import Proposal
from ..epochs import Consensus
from ..messages import CommitVote, PrePrepare, Prepare
from ..replica import Replica
from .blocks import decode_block

__all__ = ["Checker", "Violation"]


# What the checker reads of the simulation (``cluster.Node`` and ``cluster.Simulation`` provide it):
# described here rather than imported, so that cluster -> checkers is the only import between them.
class Node(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def up(self) -> bool: ...
    @property
    def byzantine(self) -> str | None: ...
    @property
    def replica(self) -> Replica | Consensus | None: ...
    @property
    def blocks(self) -> Sequence[tuple[Proposal, CommitCertificate]]: ...
    def committed(self) -> tuple[int, bytes]: ...
    def committed_requests(self) -> set[str]: ...


class Simulation(Protocol):
    @property
    def now_ms(self) -> int: ...
    @property
    def chain(self) -> bytes: ...
    @property
    def verifiers(self) -> Mapping[str, Verifier]: ...
    @property
    def valid_requests(self) -> set[str]: ...
    @property
    def nodes(self) -> Sequence[Node]: ...
    def honest(self) -> Sequence[Node]: ...


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    time_ms: int

    def __str__(self) -> str:
        return f"[{self.invariant}] at {self.time_ms} ms: {self.detail}"


class Checker:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.violations: list[Violation] = []
        self.chain_digests: dict[int, bytes] = {}  # height -> the one committed digest
        self.signed: dict[tuple[str, str, int, int], bytes] = {}  # (replica, kind, view, height) -> digest
        self.high: dict[str, int] = {}  # replica -> highest committed height ever seen

    def fail(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail, self.sim.now_ms))

    def on_send(self, node: Node, m: Any) -> None:
        if node.byzantine is not None:
            return
        t = type(m)
        if t is Prepare or t is CommitVote or t is PrePrepare:
            kind = t.__name__
            key = (node.id, kind, m.view, m.height)
            prev = self.signed.get(key)
            if prev is None:
                self.signed[key] = m.digest
            elif prev != m.digest:
                self.fail("no-double-vote", f"{node.id} signed two {kind}s at view {m.view} height {m.height}")

    def on_commit(self, node: Node, prop: Proposal, cert: CommitCertificate, via: str) -> None:
        if node.byzantine is not None:
            return
        sim = self.sim
        h = len(node.blocks) + 1
        if prop.height != h or cert.height != h:
            self.fail("order", f"{node.id} committed height {prop.height} ({via}) with tip {h - 1}")
            return
        if prop.parent != node.committed()[1]:
            self.fail("order", f"{node.id} block {h} does not extend its chain ({via})")
        try:
            verify_certificate(cert, sim.chain, self.verifiers_at(h), height=h, block_hash=prop.digest)
        except Exception as exc:
            self.fail("certificate", f"{node.id} height {h}: {exc}")
        prev = self.chain_digests.get(h)
        if prev is None:
            self.chain_digests[h] = prop.digest
        elif prev != prop.digest:
            self.fail("agreement", f"{node.id} committed a different block at height {h}")
        blk = decode_block(prop.payload)
        if blk is None:
            self.fail("validity", f"height {h}: undecodable block")
            return
        done = node.committed_requests()
        for rid, flag in blk[5]:
            if not flag or rid not in sim.valid_requests:
                self.fail("validity", f"height {h}: request {rid} was never validly submitted")
            if rid in done:
                self.fail("validity", f"height {h}: request {rid} committed twice at {node.id}")
        self.high[node.id] = max(self.high.get(node.id, 0), h)

    def verifiers_at(self, height: int) -> Mapping[str, Verifier]:
        """The validator set that must have certified block ``height`` (reconfig.py: the one in force there)."""
        return self.sim.verifiers

    def on_restart(self, node: Node) -> None:
        if node.byzantine is None and len(node.blocks) < self.high.get(node.id, 0):
            self.fail("prefix", f"{node.id} restarted with a shorter chain")

    def check_step(self) -> None:
        # cheap per-step invariants; the heavy ones run at each commit
        for node in self.sim.nodes:
            if node.byzantine is None and node.replica is not None:
                if node.replica.committed_h != len(node.blocks):
                    self.fail("prefix",
                              f"{node.id}: replica at {node.replica.committed_h}, store at {len(node.blocks)}")

    def converged(self) -> bool:
        honest = self.sim.honest()
        if not all(n.up for n in honest):
            return False
        need = self.sim.valid_requests
        heights = {len(n.blocks) for n in honest}
        if len(heights) != 1 or not all(need <= n.committed_requests() for n in honest):
            return False
        views = {(n.replica.view, n.replica.mode) for n in honest if n.replica is not None}
        return len(views) == 1 and next(iter(views))[1] == "normal"

    def describe(self) -> str:
        parts = []
        for n in self.sim.nodes:
            r = n.replica
            st = r.status() if r is not None else {}
            missing = len(self.sim.valid_requests - n.committed_requests())
            parts.append(f"{n.id[:6]}{'(byz:' + n.byzantine + ')' if n.byzantine else ''} h={len(n.blocks)} "
                         f"v={st.get('view')} {st.get('mode')} missing={missing}")
        return "; ".join(parts)
