"""Scripted schedules (rantai.consensus.sim.scenarios): each must hold every invariant and converge."""

from __future__ import annotations

import pytest

from rantai.consensus.sim.scenarios import SCENARIOS, Cluster, run_scenario


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    """The scenario passes: invariants, liveness (one view, normal mode) and its expected final view."""
    res = run_scenario(name)
    assert res.ok, [str(v) for v in res.violations]


def test_lone_replica_rejoins_within_a_bound() -> None:
    """Issue 15: a replica alone in a higher view is back in the others' view within ~2 timeouts of the
    first request it sees, and the others never left view 0."""
    c: Cluster = SCENARIOS["lone-replica-in-higher-view"]()
    seen: dict[str, int] = {}

    def probe(t: int) -> None:
        if c.view(3) == (0, "normal") and "back" not in seen:
            seen["back"] = t

    for t in range(3500, 8000, 20):
        c.at(t, probe)
    res = c.run()
    assert res.ok, [str(v) for v in res.violations]
    assert seen["back"] - 3500 <= 2 * 300 + 500, seen  # heal at 3500; timeout 300 ms, retransmit 100 ms
    assert all(n.replica is not None and n.replica.status()["view_fence"] <= 1 for n in c.nodes)
