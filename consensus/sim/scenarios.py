"""Scripted runs (TigerBeetle's ``Cluster`` test context): schedules too rare for the random sweep.

A ``Cluster`` is a ``Simulation`` with a quiet network and no random load, driven by a script of
crashes, restarts, isolations, client submissions and message filters. ``run()`` then heals
everything and applies the simulator's usual invariants and liveness check (same height, every
request committed, every honest replica in the same view in normal mode) within ``bound_ms``.

``SCENARIOS`` maps a name to a function building one; each is a regression for a schedule that
once broke (or would break) the replica, and the mutant tests use them to catch injected bugs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..messages import PrePrepare, Prepare, preprepare_body
from .blocks import decode_block, make_block
from .checkers import Violation
from .cluster import Node, Result, Simulation

__all__ = ["SCENARIOS", "Cluster", "run_scenario"]


class Cluster:
    """A scripted simulation: call the verbs with times (virtual ms), then ``run()``."""

    def __init__(self, nodes: int = 4, *, seed: int = 1, end_ms: int = 8000, bound_ms: int = 10000,
                 **config: Any) -> None:
        cfg = {"checkpoint_interval": 8, "window": 4, "view_change_timeout_ms": 300,
               "view_change_timeout_max_ms": 4000, "retransmit_ms": 100, "state_transfer_delay_ms": 200,
               "state_transfer_timeout_ms": 1000, **config}
        self.sim = Simulation(seed, nodes, ("latency", "client"), requests=0, load_ms=0, safety_ms=end_ms,
                              liveness_bound_ms=bound_ms, config=cfg)
        self.sim.latency = (1, 5)
        self.sim.batch = 4
        self.nodes = self.sim.nodes
        self.filters: list[Callable[[Node, Node, Any], bool]] = []
        self.sim.net_filter = self._filter
        self.seq = 0
        self.final_view: int | None = None  # every replica must end in this view (nobody was forced on)

    def _filter(self, src: Node, dst: Node, m: Any) -> bool:
        return all(f(src, dst, m) for f in self.filters)

    def at(self, t: int, fn: Callable[[int], None]) -> None:
        self.sim.schedule(t, fn)

    def submit(self, t: int, count: int = 1, via: int | None = None) -> None:
        """``count`` client requests at ``t``: to every replica, or only through replica ``via``."""
        node = None if via is None else self.nodes[via]
        rids = [f"c{self.seq + k}" for k in range(count)]
        self.seq += count

        def go(tt: int) -> None:
            for rid in rids:
                self.sim.submit(rid, tt, node)

        self.at(t, go)

    def crash(self, t: int, i: int) -> None:
        self.at(t, lambda tt: self.sim.crash_node_for_good(self.nodes[i]))

    def restart(self, t: int, i: int) -> None:
        """Restart from persisted entries and stored blocks: every volatile bit of state is lost."""
        self.at(t, lambda tt: self.sim.restart_node(self.nodes[i], tt))

    def isolate(self, t: int, i: int, until: int) -> None:
        me = frozenset({self.nodes[i].id})
        rest = frozenset(n.id for n in self.nodes) - me
        self.at(t, lambda tt: setattr(self.sim, "partition", (rest, me)))
        self.at(until, lambda tt: setattr(self.sim, "partition", None))

    def drop(self, start: int, stop: int, pred: Callable[[Node, Node, Any], bool]) -> None:
        """Lose every message ``pred`` matches while ``start <= now < stop``."""
        sim = self.sim
        self.filters.append(lambda s, d, m: not (start <= sim.now_ms < stop and pred(s, d, m)))

    def view(self, i: int) -> tuple[int, str] | None:
        r = self.nodes[i].replica
        return None if r is None else (r.view, r.mode)

    def run(self) -> Result:
        res = self.sim.run()
        views = [self.view(i) for i in range(len(self.nodes))]
        if res.ok and self.final_view is not None and any(v != (self.final_view, "normal") for v in views):
            res.violations.append(Violation("view-sync", f"views {views}, expected all in {self.final_view}: "
                                            "a view change was forced on the cluster", self.sim.now_ms))
        return res


# ------------------------------------------------------------------------------------------ scenarios

def restarted_primary_rejoins() -> Cluster:
    """Issue 15 as reported: stop the primary of view 0, submit through another validator (the rest
    move to view 1 once it shares the record), restart the stopped one with its persisted state only,
    submit through it. Before view synchronisation it sat alone in view 2 in view-change mode."""
    c = Cluster(end_ms=10000)
    c.submit(200, 6)
    c.crash(1500, 0)
    c.submit(1600, 1, via=1)
    c.restart(7000, 0)
    c.submit(7000, 1, via=0)  # before it hears of view 1: it proposes the record itself, in view 0
    c.final_view = 1
    return c


def lone_replica_in_higher_view() -> Cluster:
    """A replica cut off under load times out alone into view 1 and stays in view change; the others
    carry on in view 0 and must not be forced into a view change to take it back."""
    c = Cluster()
    c.submit(100, 4)
    c.isolate(500, 3, until=3500)
    c.submit(1000, 4)
    c.submit(5000, 2, via=3)
    c.final_view = 0
    return c


def lone_replica_restarts_in_higher_view() -> Cluster:
    """As above, and it restarts while alone in its view change (persisted: view 1, in view change)."""
    c = Cluster()
    c.submit(100, 4)
    c.isolate(500, 2, until=3500)
    c.submit(1000, 4)
    c.crash(3000, 2)
    c.restart(3600, 2)
    c.submit(5000, 2, via=2)
    c.final_view = 0
    return c


def replica_misses_the_new_view() -> Cluster:
    """A replica joins a view change but no VIEW-CHANGE or NEW-VIEW of the others reaches it: it waits
    in view-change mode for the view the others already work in."""
    c = Cluster(end_ms=9000)
    c.submit(100, 4)
    c.crash(1000, 0)
    c.drop(900, 5000, lambda s, d, m: d.index == 3 and type(m).__name__ in ("ViewChange", "NewView"))
    c.submit(1200, 4, via=1)
    c.restart(2500, 0)
    c.submit(5500, 2, via=3)
    return c


def conflicting_prepared_certificates() -> Cluster:
    """Two prepared certificates of different views and digests for one height, the newer one
    committed by a single replica: a NEW-VIEW must re-propose the higher-view one (Castro-Liskov's
    rule). Built by hand: in view 0 only replica 3 prepares digest d0 at height 1; in view 1
    (primary 1) a fresh d1 is prepared by 0, 1, 2 and delivered by 0 alone; the view change to
    view 2 then hears from 1, 2 (certificates of view 1) and 3 (view 0)."""
    c = Cluster(bound_ms=15000)
    c.submit(100, 2)

    def kind(m: Any) -> str:
        return type(m).__name__

    def view0(s: Node, d: Node, m: Any) -> bool:
        # 1 and 2 PREPARE d0 but only 3 hears them: 3 alone is prepared; nobody COMMITs
        return getattr(m, "view", None) == 0 and (s.index == 3 or kind(m) == "CommitVote"
                                                   or kind(m) == "Prepare" and d.index != 3)

    def view1(s: Node, d: Node, m: Any) -> bool:
        # 3 takes no part in view 1; COMMITs reach only 0, which delivers d1 alone
        if getattr(m, "view", None) != 1:
            return False
        return d.index == 3 or s.index == 3 or kind(m) == "CommitVote" and d.index != 0

    c.drop(0, 6000, view0)
    c.drop(0, 6000, view1)
    # 0 (which delivered) is silent in the change to view 2: NEW-VIEW(2) rests on 1, 2 (view 1) and 3 (view 0)
    c.drop(0, 6000, lambda s, d, m: s.index == 0 and getattr(m, "view", 0) >= 2)
    return c


def vote_then_restart_then_equivocation() -> Cluster:
    """A byzantine primary shows backup 1 a block, 1 PREPAREs it and crashes right after the vote is
    persisted, restarts, and is shown a second block for the same (view, height): it must refuse
    (its persisted vote), or it has signed two digests for one (view, height)."""
    c = Cluster(end_ms=6000, bound_ms=15000, view_change_timeout_ms=2000)  # all within view 0
    sim = c.sim
    n0, n1 = c.nodes[0], c.nodes[1]
    n0.byzantine = "equivocates-after-restart"  # scripted below; the checker holds node 0 to nothing
    sim.byzantine[n0.id] = n0.byzantine
    state: dict[str, Any] = {}

    def equivocate(t: int) -> None:
        pp = state["pp"]
        blk = decode_block(pp.payload)
        assert blk is not None
        alt = make_block(pp.height, pp.parent, pp.view, n0.id, blk[4] + 1, blk[5])
        body = preprepare_body(pp.view, pp.height, alt.digest, alt.parent)
        sig = n0.signer.sign(PrePrepare.KIND, sim.chain, body)
        sim.deliver_now(n0, n1, PrePrepare(pp.view, pp.height, alt.parent, alt.digest, alt.payload, n0.id, sig), t)
        state["done"] = True

    def script(s: Node, d: Node, m: Any) -> bool:
        if state.get("done"):
            return True
        if type(m) is PrePrepare and s is n0 and m.height == 1:
            state.setdefault("pp", m)
            return d is n1 and "crashed" not in state  # only 1 sees block 1, and only before its crash
        if type(m) is Prepare and s is n1 and m.height == 1 and "crashed" not in state:
            state["crashed"] = True  # the vote is persisted (it precedes the PREPARE): crash before it leaves
            sim.crash_node_for_good(n1)
            sim.schedule(sim.now_ms + 50, lambda tt: sim.restart_node(n1, tt))
            sim.schedule(sim.now_ms + 300, equivocate)
            return False
        return True

    c.filters.append(script)
    c.submit(100, 2)
    return c


SCENARIOS: dict[str, Callable[[], Cluster]] = {
    "restarted-primary-rejoins": restarted_primary_rejoins,
    "lone-replica-in-higher-view": lone_replica_in_higher_view,
    "lone-replica-restarts-in-higher-view": lone_replica_restarts_in_higher_view,
    "replica-misses-the-new-view": replica_misses_the_new_view,
    "conflicting-prepared-certificates": conflicting_prepared_certificates,
    "vote-then-restart-then-equivocation": vote_then_restart_then_equivocation,
}


def run_scenario(name: str) -> Result:
    return SCENARIOS[name]().run()
