"""Mempool: bounded, de-duplicated, FIFO; in-flight records are never cut twice and return when settled."""

from __future__ import annotations

import pytest

from rantai.client.format.errors import DuplicateRecord, Overloaded
from rantai.node.mempool import Mempool


def test_fifo_dedup_and_bound(net):
    mp = Mempool(max_records=3)
    rs = [net.record() for _ in range(4)]
    for r in rs[:3]:
        mp.add(r, now_ms=0)
    with pytest.raises(DuplicateRecord):
        mp.add(rs[0], now_ms=0)
    with pytest.raises(Overloaded) as exc:
        mp.add(rs[3], now_ms=0)
    assert exc.value.status_hint == 429
    assert [r.id for r in mp.cut(2, 10**9)] == [rs[0].id, rs[1].id]
    assert not mp.should_propose(now_ms=1, max_records=10, batch_timeout_ms=5)
    assert mp.should_propose(now_ms=5, max_records=10, batch_timeout_ms=5)
    assert mp.should_propose(now_ms=0, max_records=3, batch_timeout_ms=5)


def test_in_flight_not_cut_twice_and_released_on_settle(net):
    mp = Mempool()
    rs = [net.record() for _ in range(5)]
    for r in rs:
        mp.add(r, now_ms=0)
    first = mp.cut(2, 10**9)
    mp.track(b"d1", 1, b"g", tuple(r.id for r in first))
    second = mp.cut(10, 10**9)
    assert [r.id for r in second] == [r.id for r in rs[2:]]
    mp.track(b"d2", 2, b"d1", tuple(r.id for r in second))
    assert mp.ready_count == 0
    assert mp.ancestor_ids(b"d2") == {**{r.id: 1 for r in rs[:2]}, **{r.id: 2 for r in rs[2:]}}
    # height 1 commits another block holding rs[2] only: rs[0], rs[1] are ready again, at the front
    mp.settle(1, [rs[2].id])
    assert len(mp) == 4
    assert [r.id for r in mp.cut(10, 10**9)] == [rs[0].id, rs[1].id]
    mp.settle(2, [])
    assert [r.id for r in mp.cut(10, 10**9)] == [rs[0].id, rs[1].id, rs[3].id, rs[4].id]


def test_byte_bound_in_cut(net):
    mp = Mempool()
    rs = [net.record() for _ in range(3)]
    for r in rs:
        mp.add(r, now_ms=0)
    assert len(mp.cut(10, len(rs[0].raw) + len(rs[1].raw))) == 2
    assert len(mp.cut(10, len(rs[0].raw) + len(rs[1].raw) - 1)) == 1


def test_proposals_abandoned_by_a_view_change_release_their_records(net):
    # Goal: a block proposed in an old view that never commits must not hold its records forever
    # (the two-validators-down devnet test got stuck on exactly that). The chain the primary
    # extends stays in flight; everything else is ready again, in admission order.
    mp = Mempool()
    rs = [net.record() for _ in range(6)]
    for r in rs:
        mp.add(r, now_ms=0)
    mp.track(b"old", 5, b"tip4", (rs[0].id, rs[1].id))  # view v, height 5: abandoned
    mp.track(b"new5", 5, b"tip4", (rs[2].id,))  # view v+1, height 5
    mp.track(b"new6", 6, b"new5", (rs[3].id,))  # view v+1, height 6, extends new5
    assert mp.ready_count == 2
    assert mp.release_off_chain(b"new6") == 1
    assert [r.id for r in mp.cut(10, 10**9)] == [rs[0].id, rs[1].id, rs[4].id, rs[5].id]
    assert mp.release_off_chain(b"new6") == 0
