"""The simulator: targeted scenarios, each byzantine behaviour, determinism, the CLI, and the
"test the tests" mutants. The CI seed sweep lives in test_ci_seeds.py, regressions in test_seeds.py."""

from __future__ import annotations

import pytest
from mutants import CATCHERS, MUTANTS, caught_by

from rantai.consensus.sim import BYZANTINE, Result, Simulation, run_seed
from rantai.consensus.sim.__main__ import main

QUIET = ("latency",)


def _run(sim: Simulation):
    res = sim.run()
    assert res.ok, [str(v) for v in res.violations]
    return res


def test_deterministic_replay() -> None:
    a, b = run_seed(11), run_seed(11)
    def fingerprint(r: Result) -> tuple[object, ...]:
        return (r.heights, r.messages, r.steps, r.view_max, r.faults)

    assert fingerprint(a) == fingerprint(b)


def test_kill_primary_leads_to_new_view_and_more_commits() -> None:
    sim = Simulation(3, 4, QUIET, config={"view_change_timeout_ms": 300}, requests=40, load_ms=6000)
    primary = sim.nodes[0]
    seen: dict[str, int] = {}

    def kill(t: int) -> None:
        seen.update({n.id: len(n.blocks) for n in sim.nodes})
        primary.crash()  # no restart until the liveness phase

    sim.schedule(1500, kill)
    res = _run(sim)
    assert res.view_max >= 1
    after = [len(n.blocks) for n in sim.nodes[1:]]
    assert min(after) > max(seen.values())


@pytest.mark.parametrize("load_ms", [9000, 3000], ids=["under-load", "load-stopped"])
def test_lagging_replica_three_checkpoints_behind_catches_up(load_ms: int) -> None:
    sim = Simulation(5, 4, QUIET, config={"checkpoint_interval": 4, "window": 4}, requests=60, load_ms=load_ms)
    sim.batch = 1
    lag = sim.nodes[3]
    others = frozenset(n.id for n in sim.nodes[:3])
    sim.schedule(0, lambda t: setattr(sim, "partition", (others, frozenset({lag.id}))))
    gap: dict[str, int] = {}

    def heal(t: int) -> None:
        gap["others"] = min(len(n.blocks) for n in sim.nodes[:3])
        gap["lag"] = len(lag.blocks)
        sim.partition = None

    sim.schedule(6000, heal)
    _run(sim)
    assert gap["others"] - gap["lag"] >= 3 * 4  # at least 3 checkpoints behind
    assert sim.fetches > 0 and len(lag.blocks) == len(sim.nodes[0].blocks)


def test_two_of_four_down_then_back_resumes() -> None:
    sim = Simulation(8, 4, QUIET, config={"view_change_timeout_ms": 300}, requests=40, load_ms=6000)
    a, b = sim.nodes[1], sim.nodes[2]
    marks: dict[str, int] = {}
    sim.schedule(1000, lambda t: (a.crash(), b.crash()))
    sim.schedule(4000, lambda t: marks.setdefault("down", max(len(n.blocks) for n in sim.nodes)))
    sim.schedule(4000, lambda t: (sim.restart_node(a, t), sim.restart_node(b, t)))
    _run(sim)
    assert max(len(n.blocks) for n in sim.nodes) > marks["down"]


@pytest.mark.parametrize("behaviour", BYZANTINE)
@pytest.mark.parametrize("nodes", [4, 7])
def test_each_byzantine_behaviour(behaviour: str, nodes: int) -> None:
    views = 0
    for seed in range(6 if nodes == 4 else 3):
        res = run_seed(seed, nodes, ("latency", "drop", behaviour))
        assert res.ok, (seed, [str(v) for v in res.violations])
        assert res.byzantine and set(res.byzantine.values()) == {behaviour}
        views = max(views, res.view_max)
    if behaviour in ("silent", "invalid"):
        assert views >= 1  # a silent or garbage-proposing primary is voted out


def test_cli_reports_and_replays(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "2", "--nodes", "4", "--faults", "latency,drop"]) == 0
    assert "2 seeds" in capsys.readouterr().out
    assert main(["--seed", "4", "--nodes", "4", "--faults", "all"]) == 0
    assert "seed 4:" in capsys.readouterr().out


# -- test the tests: every injected bug is caught by the sweep seeds or a scenario CI runs (see docs)
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_injected_bug_is_caught(name: str) -> None:
    """Each mutant in mutants.py fails its catcher; a surviving mutant fails CI."""
    assert caught_by(name) is not None, f"mutant {name} survived {CATCHERS[name]}"


def test_every_mutant_has_a_catcher() -> None:
    """A new mutant without a catcher would silently not be run."""
    assert set(CATCHERS) == set(MUTANTS)
