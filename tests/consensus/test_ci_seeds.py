"""The CI sweep: 300 seeds (200 at n=4, 100 at n=7), all faults, across 2 worker processes.

Budget: < 3 minutes on a 2-core machine (measured about 50 s when idle; see docs/consensus.md).
A failure prints the exact replay command.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

from rantai.consensus.sim import run_seed

SWEEP = [(s, 4) for s in range(200)] + [(s, 7) for s in range(100)]


def _one(job: tuple[int, int]) -> tuple[int, int, list[str]]:
    seed, nodes = job
    res = run_seed(seed, nodes)
    return seed, nodes, [str(v) for v in res.violations]


def test_ci_seed_sweep() -> None:
    # n=7 seeds are ~3x slower: interleave them so both workers finish together
    jobs = sorted(SWEEP, key=lambda j: (j[0] % 100, j[1]))
    workers = min(2, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_one, jobs, chunksize=4))
    failures = [f"seed {s} n={n}: {v[0]}\n  replay: python -m rantai.consensus.sim --seed {s} --nodes {n} --faults all"
                for s, n, v in results if v]
    assert len(results) == 300
    assert not failures, "\n".join(failures)
