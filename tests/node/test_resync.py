"""A wiped validator resyncs from its peers (the catch-up of node/driver.py) to the
others' head, reports it in /v1/status, and its data directory then audits clean. No timing: the
speed is measured by tests/node/measure_resync.py and reported in docs/performance.md."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from rantai.client.format.encoding import decode

from .procs import Api, make_devnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_wiped_validator_resyncs_to_the_head_and_audits_clean(tmp_path):
    net = make_devnet(tmp_path)
    api = Api(net)
    try:
        for k in range(45):
            status, res = api.submit(k % 4, api.records(3))
            assert status == 200 and {e["status"] for e in res} == {"committed"}
        top = api.height(0)
        wait_until("v3 caught up", lambda: api.height(3) >= top, describe=api.snapshot)
        assert net.stop_node(3) == 0
        data = net.configs()[3].data_dir
        shutil.rmtree(data)
        net.start_node(3)
        net.wait_ready(indices=[3], timeout=60)
        status, res = api.submit(0, api.records(2))  # the others' messages tell v3 how far behind it is
        assert status == 200
        top = api.height(0)
        wait_until("v3 resynced", lambda: api.height(3) >= top, describe=api.snapshot)
        st = api.status(3)
        assert st["counters"].get("catch-up-blocks", 0) >= top - 1
        assert st["counters"].get("catch-up-records", 0) >= 3 * 45
        # status describes the last catch-up run (the resync may take more than one: each aims at the
        # height the others were known to have when it began)
        c = st["catch_up"]
        assert c["target"] >= 1 and c["from"] <= c["height"] and "records_per_s" in c
        # it serves what it fetched: the same blocks as the others (certificates may hold other vote sets)
        ours, theirs = api.blocks(3, 1, top), api.blocks(0, 1, top)
        assert [decode(x)["block"] for x in ours] == [decode(x)["block"] for x in theirs]
        assert net.stop_node(3) == 0
        done = subprocess.run([sys.executable, "-m", "rantai.node.cli", "audit", "--data-dir", str(data),
                               "--genesis", str(net.genesis_path), "--workers", "0"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        api.close()
        net.stop()
