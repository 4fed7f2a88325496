"""Every seed that ever failed, kept as a regression (replay any with the command in the comment).

Seeds are tied to the simulator's code: a seed that failed then may exercise a different schedule
now, so each stays here as a cheap extra run rather than a proof of the same schedule. Format:
(seed, nodes, faults, what failed and what fixed it).
"""

from __future__ import annotations

import pytest

from rantai.consensus.sim import ALL_FAULTS, run_seed

REGRESSIONS = [
    # commit of h+1 while h was only pre-prepared/prepared lost the lock on h under view change:
    # InvariantBroken "certified block does not extend our chain" -> COMMITs in height order per view
    (142, 4, "all", "lock lost across view change (pipelining)"),
    (183, 4, "all", "lock lost across view change (pipelining)"),
    (187, 4, "all", "lock lost across view change (pipelining)"),
    (190, 4, "all", "lock lost across view change (pipelining)"),
    # per-sender vote cap counted across views: after a few views no quorum could form (view churn)
    (19, 4, "all", "vote cap across views"),
    (22, 4, "all", "vote cap across views"),
    (61, 4, "all", "vote cap across views"),
    (81, 4, "all", "vote cap across views"),
    (93, 4, "all", "vote cap across views"),
    (104, 4, "all", "vote cap across views"),
    (133, 4, "all", "vote cap across views"),
    (136, 4, "all", "vote cap across views"),
    (151, 4, "all", "vote cap across views"),
    (162, 4, "all", "vote cap across views"),
    (170, 4, "all", "vote cap across views"),
    (175, 4, "all", "vote cap across views"),
    (176, 4, "all", "vote cap across views"),
    # toy validator saw an unknown ancestry after restart (request committed twice) -> fail closed,
    # replica re-issues Validate for restored proposals
    (73, 4, "all", "validity after restart"),
    # a lone view-changer never caught up when others were idle -> CHECKPOINT heartbeat at the tip
    (49, 4, "all", "idle laggard never fetched"),
    (60, 4, "all", "idle laggard never fetched"),
    (63, 4, "all", "idle laggard never fetched"),
    (150, 4, "all", "idle laggard never fetched"),
    (194, 4, "all", "idle laggard never fetched"),
    (1367, 4, "all", "restored replicas did not heartbeat their stable height"),
    # the primary re-proposed below its stable checkpoint after GC + restart: double PRE-PREPARE
    (1682, 4, "all", "double pre-prepare after checkpoint GC + restart"),
    # view synchronisation: a replica back below its fence was primary of the view the others changed
    # to and may not send its NEW-VIEW; nobody had a quorum to time out -> skip to the next view
    (1330, 4, "all", "fenced primary stalled a view change"),
]


@pytest.mark.parametrize("seed,nodes,faults,why", REGRESSIONS, ids=[f"{s}-n{n}" for s, n, _, _ in REGRESSIONS])
def test_seed(seed: int, nodes: int, faults: str, why: str) -> None:
    res = run_seed(seed, nodes, ALL_FAULTS if faults == "all" else tuple(faults.split(",")))
    assert res.ok, f"{why}: {[str(v) for v in res.violations]}\n  replay: {res.replay()}"
