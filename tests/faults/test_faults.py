"""The fault-injection suite's bounded cases (the long run is `make faults`).

``test_a_few_kills_and_a_partition_under_load_lose_nothing`` is in `make test`: under client load, a
kill -9 of a backup, a SIGTERM of the primary with the restart-into-stuck-view sequence (records
elsewhere while it is down, then one through it after its restart), a kill -9 of the primary and an
isolated primary through the proxy. ``test_kills_and_partitions_under_load_lose_nothing`` (marker
``faults``, `make faults-short`) does 5 random kills and 3 periods. Both end with the checks: one
chain on every node, the auditor passes on each, no acknowledged record lost. Waits are generous
and nothing is timed.

Not repeated here: the restart-into-stuck-view case is tests/node/test_rejoin.py (the long run's kill
steps of kind ``term-primary`` replay it under load through the proxy); every kind of disk damage is
tests/node/test_store_damage.py.
"""

from __future__ import annotations

import json
import os

import pytest

from .harness import FaultNet, say

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _seed() -> int:
    seed = int(os.environ.get("RANTAI_FAULTS_SEED", "0")) or int.from_bytes(os.urandom(2), "big")
    say(f"seed {seed} (RANTAI_FAULTS_SEED={seed} replays the choices)")
    return seed


def _check(summary: dict) -> None:
    say(json.dumps(summary))
    assert summary["records_acknowledged"] > 0, summary
    assert summary["forks"] == 0 and not summary["short_chains"], summary
    assert summary["audits_ok"], summary["audits"]
    assert summary["lost"] == 0, summary
    assert not summary["crashes"], summary["crashes"]


def test_a_few_kills_and_a_partition_under_load_lose_nothing(tmp_path):
    with FaultNet(tmp_path, seed=_seed()) as fn:
        fn.load.start(threads=2)
        for kind in ("kill9", "term-primary", "kill9-primary"):
            fn.kill_step(kind=kind, down_s=(0.5, 1.5))
        fn.partition_step("isolate-primary", duration_s=(1.5, 2.5))
        summary = fn.finish()
    assert summary["kills"] == 3 and summary["partition_periods"] == 1
    _check(summary)


@pytest.mark.faults
def test_kills_and_partitions_under_load_lose_nothing(tmp_path):
    with FaultNet(tmp_path, seed=_seed()) as fn:
        fn.load.start(threads=2)
        kinds = ["isolate-backup", "isolate-primary", "split-2-2"]
        steps = ["kill"] * 5 + kinds
        fn.rng.shuffle(steps)
        for step in steps:
            if step == "kill":
                fn.kill_step()
            else:
                fn.partition_step(step, duration_s=(1.5, 3.0))
        summary = fn.finish()
    assert summary["kills"] == 5 and summary["partition_periods"] == 3
    _check(summary)
