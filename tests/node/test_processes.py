"""Real validator processes on 127.0.0.1 (rantai-node run, via node.devnet.Devnet): commits from any
node, identical chains, kill -9 of one / two validators, catch-up, crash safety under load, and a
view change when the primary dies. Waits are bounded; nothing asserts on timing."""

from __future__ import annotations

import threading

import pytest

from rantai.client.format.audit import MemorySource
from rantai.client.format.encoding import decode
from rantai.node.storage import Storage

from .procs import Api, make_devnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def audit(api: Api, blocks: list[bytes]) -> None:
    """Check a chain with the auditor's rules (every one a validator applies)."""
    from rantai.client.format.audit import Auditor

    items = [(decode(item)["block"], decode(item)["certificate"]) for item in blocks]
    with Auditor(api.genesis, workers=0) as auditor:
        report = auditor.run(MemorySource(items))
    assert report.ok, report.summary()


def same_chains(api: Api, nodes: list[int]) -> int:
    h = min(api.height(i) for i in nodes)
    items = [api.blocks(i, 1, h) for i in nodes]
    for chain in items:  # certificates may hold different 2f+1 vote sets; each must verify
        audit(api, chain)
    blocks = [[decode(x)["block"] for x in chain] for chain in items]
    assert all(len(b) == h for b in blocks)
    assert all(b == blocks[0] for b in blocks), "chains differ"
    return h


def test_devnet_commits_from_any_node_one_then_two_down(tmp_path):
    # Goal: records submitted to any node commit and all hold one chain; with one validator killed
    # the rest commit; with two killed nothing commits and no fork appears; when they come back,
    # commits resume and the restarted nodes catch up (past several checkpoints) to identical blocks.
    net = make_devnet(tmp_path)
    api = Api(net)
    try:
        for i in range(4):
            status, res = api.submit(i, api.records(3))
            assert status == 200 and {e["status"] for e in res} == {"committed"}
        wait_until("equal heights", lambda: len({api.height(i) for i in range(4)}) == 1, describe=api.snapshot)
        same_chains(api, [0, 1, 2, 3])

        net.kill(3)  # kill -9
        missed = []
        for k in range(14):  # many blocks: v3 falls several checkpoints behind
            batch = api.records(2)
            status, res = api.submit(1 + k % 2, batch)
            assert status == 200 and {e["status"] for e in res} == {"committed"}
            missed += batch
        wait_until("equal heights", lambda: len({api.height(i) for i in range(3)}) == 1, describe=api.snapshot)
        h_one_down = api.height(1)

        net.kill(2)
        stuck = api.records(2)
        status, res = api.submit(1, stuck, timeout_ms=1500)
        assert status == 202 and {e["status"] for e in res} == {"accepted"}
        assert api.height(0) == api.height(1) == h_one_down  # nothing commits without a quorum

        net.start_node(2)
        net.start_node(3)
        net.wait_ready(indices=[2, 3])
        wait_until("the stuck records commit", lambda: all(api.has_record(0, r.id) for r in stuck),
                   describe=api.snapshot)
        status, res = api.submit(3, api.records(2))
        assert status == 200 and {e["status"] for e in res} == {"committed"}
        top = api.height(0)
        wait_until("all caught up", lambda: all(api.height(i) >= top for i in range(4)), describe=api.snapshot)
        same_chains(api, [0, 1, 2, 3])
        # the caught-up node built its indexes from the fetched blocks: it serves receipts and history
        assert all(api.has_record(3, r.id) for r in missed)
        epc = missed[0].event["epcList"][0]
        hist = api.http.get(api.urls[3] + f"/v1/items/{epc}/history").json()
        assert [x["record_id"] for x in hist["receipts"]] == [missed[0].id.hex()]
    finally:
        api.close()
        net.stop()


def test_kill_mid_load_loses_no_acknowledged_record_and_primary_failover(tmp_path):
    # Goal: (1) a backup killed with kill -9 while clients wait for commits loses none of the records
    # it acknowledged, and its LevelDB reopens; (2) when the primary dies, a view change happens and
    # commits continue.
    net = make_devnet(tmp_path)
    api = Api(net)
    acked: list[bytes] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                status, res = api.submit(1, api.records(5), timeout_ms=5000)
            except Exception:
                continue  # the node died under us: those records were never acknowledged
            acked.extend(e["id"] for e in res if e["status"] == "committed")

    try:
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        wait_until("some commits acknowledged", lambda: len(acked) >= 30, describe=api.snapshot)
        net.kill(1)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert acked
        # the killed node's store opens cleanly and holds every acknowledged record
        cfg = net.configs()[1]
        st = Storage(cfg.data_dir, api.genesis.hash)
        try:
            missing = [rid for rid in acked if st.locate(rid) is None]
        finally:
            st.close()
        assert not missing, f"{len(missing)} acknowledged records lost"
        net.start_node(1)
        net.wait_ready(indices=[1])
        assert all(api.has_record(1, rid) for rid in acked)

        # the primary of view 0 dies: a view change, then commits again
        primary = api.status(0)["primary"]
        index = [v.id for v in api.genesis.validators].index(primary)
        net.kill(index)
        alive = [i for i in range(4) if i != index]
        status, res = api.submit(alive[0], api.records(3), timeout_ms=60000)
        assert status == 200 and {e["status"] for e in res} == {"committed"}
        assert api.status(alive[1])["view"] >= 1
        wait_until("equal heights", lambda: len({api.height(i) for i in alive}) == 1, describe=api.snapshot)
        same_chains(api, alive)
    finally:
        stop.set()
        api.close()
        net.stop()
