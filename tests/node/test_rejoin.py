"""A restarted validator rejoins the others' view and its clients' records commit (issue 15's report).

The sequence that used to leave the restarted primary alone in a higher view, holding a record no
other validator saw: stop the primary of view 0 (SIGTERM), submit through another validator (the
others move to view 1), restart the stopped one from its data directory, submit through it. With view
synchronisation (consensus) and re-forwarding on a view change (node), the record commits; the bound
is the issue's (10 s from the submission, the node's own wait), not a speed measurement.
"""

from __future__ import annotations

import pytest

from .procs import Api, make_devnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_restarted_primary_rejoins_and_its_record_commits(tmp_path):
    net = make_devnet(tmp_path)
    api = Api(net)
    try:
        status, res = api.submit(1, api.records(2))
        assert status == 200 and {e["status"] for e in res} == {"committed"}
        primary = api.status(1)["primary"]
        p = next(i for i, c in enumerate(net.configs()) if c.id == primary)
        assert net.stop_node(p) == 0  # SIGTERM: a clean stop of the primary of the current view
        other = (p + 1) % 4
        status, res = api.submit(other, api.records(1))  # the others change view to commit it
        assert status == 200 and res[0]["status"] == "committed", res
        net.start_node(p)
        net.wait_ready(indices=[p], timeout=60)
        status, res = api.submit(p, api.records(1), timeout_ms=10_000)
        assert status == 200 and res[0]["status"] == "committed", (res, api.snapshot())
        # and it ends in the others' view, in normal mode, at their height
        wait_until("the restarted validator in the others' view", lambda: len(
            {(api.status(i)["view"], api.status(i)["mode"]) for i in range(4)}) == 1, timeout=60,
            describe=api.snapshot)
    finally:
        api.close()
        net.stop()
