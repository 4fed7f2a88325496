"""Deliberately broken replicas ("test the tests"): each must be caught by the simulator.

Each mutant is a context manager that monkeypatches one rule of ``Replica``; ``first_failure``
runs seeds until the simulator reports a violation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rantai.consensus import replica as R
from rantai.consensus.messages import CommitVote
from rantai.consensus.sim import run_seed
from rantai.consensus.sim.scenarios import run_scenario


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def duplicate_signer_counted_twice() -> contextlib.AbstractContextManager[None]:
    """A re-delivered COMMIT counts again toward the quorum (the certificate then carries it twice)."""
    orig = R.Replica._on_commit

    def on_commit(self: R.Replica, m: CommitVote, out: list, now_ms: int) -> None:
        H = self.log.get(m.height)
        votes = H.commits.get((m.view, m.digest)) if H is not None else None
        if votes is not None and m.sender in votes and m.height > self.committed_h:
            votes[f"{m.sender}#{len(votes)}"] = m.sig  # the bug: arrivals, not distinct signers
            self._try_deliver(out, now_ms)
            return
        orig(self, m, out, now_ms)

    return patched(R.Replica, "_on_commit", on_commit)


def prepare_without_validation() -> contextlib.AbstractContextManager[None]:
    """The node's verdict is ignored: backups prepare blocks with forged records."""
    orig = R.Replica.validated

    def validated(self: R.Replica, view: int, height: int, digest: bytes, ok: bool, now_ms: int) -> list:
        return orig(self, view, height, digest, True, now_ms)

    return patched(R.Replica, "validated", validated)


def commit_quorum_off_by_one() -> contextlib.AbstractContextManager[None]:
    """2f COMMITs taken for a quorum."""
    orig = R.Replica.__init__

    def init(self: R.Replica, *a: Any, **kw: Any) -> None:
        orig(self, *a, **kw)
        self.q -= 1

    return patched(R.Replica, "__init__", init)


def commit_when_parent_only_prepared() -> contextlib.AbstractContextManager[None]:
    """The bug the simulator found in development: COMMIT(v, h) sent when (v, h-1) is merely prepared,
    so a commit quorum at h no longer locks h-1, and a NEW-VIEW may re-propose a different h-1."""
    orig = R.Replica._maybe_send_commit

    def maybe_send_commit(self: R.Replica, h: int, out: list) -> None:
        prev = self.log.get(h - 1)
        H = self.log.get(h)
        fake = None
        if prev is not None and prev.my_commit is None and prev.prepared is not None and \
                prev.prepared.view == self.view and H is not None and H.prepared is not None:
            fake = CommitVote(self.view, h - 1, prev.prepared.digest, self.me, b"")
            prev.my_commit = fake
        try:
            orig(self, h, out)
        finally:
            if fake is not None and prev.my_commit is fake:
                prev.my_commit = None

    return patched(R.Replica, "_maybe_send_commit", maybe_send_commit)


def new_view_lowest_view() -> contextlib.AbstractContextManager[None]:
    """NEW-VIEW picks the lowest-view prepared certificate instead of the highest."""
    def compute(vcs: tuple) -> tuple:
        stable = max((vc.stable for vc in vcs), key=lambda c: (c.height, c.digest))
        chosen: dict = {}
        for vc in vcs:
            for p in vc.prepared:
                if p.height > stable.height and (p.height not in chosen or p.view < chosen[p.height].view):
                    chosen[p.height] = p
        out, h, parent = [], stable.height + 1, stable.digest
        while (p := chosen.get(h)) is not None and p.parent == parent:
            out.append(p)
            parent, h = p.digest, h + 1
        return stable, out

    return patched(R, "compute_reproposals", compute)


def forget_votes_on_restart() -> contextlib.AbstractContextManager[None]:
    """Votes are persisted but not read back: a restarted replica may vote again, differently."""
    orig = R.Replica._restore

    def restore(self: R.Replica, persisted: Any) -> None:
        orig(self, {k: v for k, v in persisted.items() if not k.startswith((b"v/", b"pc/"))})

    return patched(R.Replica, "_restore", restore)


def no_view_sync() -> contextlib.AbstractContextManager[None]:
    """The pre-fix replica of issue 15: no view synchronisation, a replica alone in another view stays there."""
    stack = contextlib.ExitStack()
    stack.enter_context(patched(R.Replica, "_sync_view", lambda self, out, now_ms: None))
    stack.enter_context(patched(R.Replica, "_hint_view", lambda self, sender, view, out, now_ms: None))
    return stack


MUTANTS = {
    "duplicate-signer-counted-twice": (duplicate_signer_counted_twice, ("latency", "dup", "drop")),
    "prepare-without-validation": (prepare_without_validation, ("latency", "invalid")),
    "commit-quorum-off-by-one": (commit_quorum_off_by_one, ()),
    "commit-when-parent-only-prepared": (commit_when_parent_only_prepared, None),
    "new-view-lowest-view": (new_view_lowest_view, None),
    "forget-votes-on-restart": (forget_votes_on_restart, ("latency", "drop", "crash", "equivocate")),
    "no-view-sync": (no_view_sync, None),
}

# What must catch each mutant in CI: ("seeds", first, stop) of the random sweep with the mutant's
# faults, or ("scenario", name) of rantai.consensus.sim.scenarios. Ranges are as measured (docs).
CATCHERS: dict[str, tuple[Any, ...]] = {
    "duplicate-signer-counted-twice": ("seeds", 0, 5),
    "prepare-without-validation": ("seeds", 0, 10),
    "commit-quorum-off-by-one": ("seeds", 0, 5),
    "commit-when-parent-only-prepared": ("seeds", 240, 300),
    "new-view-lowest-view": ("scenario", "conflicting-prepared-certificates"),
    "forget-votes-on-restart": ("scenario", "vote-then-restart-then-equivocation"),
    "no-view-sync": ("scenario", "lone-replica-in-higher-view"),
}


def caught_by(name: str) -> str | None:
    """Run the mutant's catcher; what caught it (a seed or a scenario and the violation), or None."""
    kind, *args = CATCHERS[name]
    if kind == "seeds":
        seed = first_failure(name, range(args[0], args[1]))
        return None if seed is None else f"seed {seed}"
    make, _ = MUTANTS[name]
    with make():
        res = run_scenario(args[0])
    return None if res.ok else f"scenario {args[0]}: {res.violations[0]}"


def first_failure(name: str, seeds: range, nodes: int = 4) -> int | None:
    make, faults = MUTANTS[name]
    kw = {} if faults is None else {"faults": faults}
    with make():
        for seed in seeds:
            if not run_seed(seed, nodes, **kw).ok:
                return seed
    return None


# -- reconfiguration (consensus/epochs.py): caught by the reconfiguration simulator (sim/reconfig.py)

def epoch_switch_one_height_early() -> contextlib.AbstractContextManager[None]:
    """The new validator set takes over at A - 1 instead of A = H + window + 1 (an off-by-one in the
    boundary): block A - 1 is certified by the wrong set."""
    from rantai.consensus import epochs as E

    def first_height(self: E.Consensus, epoch: int) -> int:
        start = self.epochs[epoch].start
        return start - 1 if epoch > 0 else start

    return patched(E.Consensus, "_first_height", first_height)


def removed_validator_vote_counted() -> contextlib.AbstractContextManager[None]:
    """After the boundary the previous set's members still count: a removed validator's votes are
    taken (its key still verifies), so certificates carry signers that are not validators any more."""
    from rantai.consensus import epochs as E

    orig = E.Consensus._verifiers

    def verifiers(self: E.Consensus, epoch: int) -> dict:
        both = dict(orig(self, epoch - 1)) if epoch > 0 else {}
        both.update(orig(self, epoch))
        return both

    return patched(E.Consensus, "_verifiers", verifiers)


def no_end_barrier() -> contextlib.AbstractContextManager[None]:
    """The old set does not stop at its end height: it keeps proposing and voting past the boundary."""
    def set_end(self: R.Replica, end_height: int) -> None:
        return None

    return patched(R.Replica, "set_end", set_end)


# name -> (mutant, faults, simulator keywords); nodes = 5 so that a member can be removed at once
RECONFIG_MUTANTS = {
    "epoch-switch-one-height-early": (epoch_switch_one_height_early, ("latency",), {}),
    "removed-validator-vote-counted": (removed_validator_vote_counted, ("latency", "silent"), {"ops": ("remove",)}),
    "no-end-barrier": (no_end_barrier, ("latency",), {}),
}


def first_reconfig_failure(name: str, seeds: range, nodes: int = 5) -> int | None:
    from rantai.consensus.sim.reconfig import run_reconfig_seed

    make, faults, kw = RECONFIG_MUTANTS[name]
    with make():
        for seed in seeds:
            if not run_reconfig_seed(seed, nodes, faults, **kw).ok:
                return seed
    return None
