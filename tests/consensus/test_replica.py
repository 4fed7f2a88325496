"""Replica unit tests, one phase at a time, driven through the public API only (effects in, effects out)."""

from __future__ import annotations

import dataclasses

import pytest
from consensus_helpers import CHAIN, Cluster, block, config, msgs, of

from rantai.consensus import (
    Broadcast,
    CommitVote,
    NewView,
    Persist,
    PrePrepare,
    Prepare,
    Replica,
    Validate,
    ViewChange,
    compute_reproposals,
    verify_certificate,
)
from rantai.consensus.crypto import Verifier
from rantai.consensus.messages import CheckpointCert, PreparedCert, vote_body


def test_primary_slot_and_preprepare_persisted_before_broadcast() -> None:
    cfg, ss = config()
    r = Replica(cfg, ss[0], {}, (0, CHAIN))
    slot = r.next_slot()
    assert slot is not None and (slot.view, slot.height, slot.parent) == (0, 1, CHAIN)
    assert Replica(cfg, ss[1], {}, (0, CHAIN)).next_slot() is None  # backups never get a slot
    eff = r.propose(block(1, CHAIN), 0)
    kinds = [type(e) for e in eff]
    assert kinds.index(Persist) < kinds.index(Broadcast)
    assert r.next_slot().height == 2  # pipelining: next height right away
    with pytest.raises(ValueError):
        r.propose(block(5, CHAIN), 0)


def test_window_bounds_pipelining() -> None:
    c = Cluster(window=3)
    for i in range(3):
        assert c.propose(b"%d" % i) is not None
    assert c.replicas[0].next_slot() is None  # 3 in flight, window full


def test_backup_validates_then_prepares_with_persist_first() -> None:
    cfg, ss = config()
    p, b = Replica(cfg, ss[0], {}, (0, CHAIN)), Replica(cfg, ss[1], {}, (0, CHAIN))
    pp = msgs(p.propose(block(1, CHAIN), 0), PrePrepare)[0]
    eff = b.handle(pp, 0)
    assert of(eff, Validate) and not msgs(eff, Prepare)  # no PREPARE before the node says ok
    eff = b.validated(0, 1, pp.digest, True, 0)
    kinds = [type(e) for e in eff]
    assert msgs(eff, Prepare) and kinds.index(Persist) < kinds.index(Broadcast)
    assert b.handle(pp, 0) == [] and b.status()["dropped"]["duplicate"] == 1


def test_invalid_block_is_not_prepared_and_starts_view_change_timer() -> None:
    cfg, ss = config(view_change_timeout_ms=100)
    p, b = Replica(cfg, ss[0], {}, (0, CHAIN)), Replica(cfg, ss[1], {}, (0, CHAIN))
    pp = msgs(p.propose(block(1, CHAIN), 0), PrePrepare)[0]
    b.handle(pp, 0)
    assert not msgs(b.validated(0, 1, pp.digest, False, 0), Prepare)
    b.tick(0, False)
    eff = b.tick(200, False)  # nothing pending at the node, but a garbage proposal was seen
    assert msgs(eff, ViewChange) and b.status()["mode"] == "view-change"


def test_normal_case_commits_with_valid_certificate() -> None:
    c = Cluster()
    props = [c.propose(b"%d" % i) for i in range(5)]
    c.pump()
    verifiers = {s.id: Verifier(s.public_key) for s in c.signers}
    for i in range(4):
        got = [e.proposal for e in c.commits[i]]
        assert got == props
        for e in c.commits[i]:
            verify_certificate(e.certificate, CHAIN, verifiers, height=e.proposal.height, block_hash=e.proposal.digest)


def test_prepare_without_preprepare_does_not_prepare() -> None:
    cfg, ss = config()
    r = Replica(cfg, ss[1], {}, (0, CHAIN))
    d = block(1, CHAIN).digest
    for s in ss[2:]:
        eff = r.handle(Prepare(0, 1, d, s.id, s.sign("prepare", CHAIN, vote_body(0, 1, d))), 0)
        assert not msgs(eff, CommitVote)


def test_bad_signature_unknown_sender_wrong_primary_are_dropped() -> None:
    cfg, ss = config()
    p, b = Replica(cfg, ss[0], {}, (0, CHAIN)), Replica(cfg, ss[1], {}, (0, CHAIN))
    pp = msgs(p.propose(block(1, CHAIN), 0), PrePrepare)[0]
    assert b.handle(dataclasses.replace(pp, sig=bytes(64)), 0) == []
    assert b.handle(dataclasses.replace(pp, sender="ffffffffffffffff"), 0) == []
    fake = ss[2]
    body = PrePrepare(0, 1, CHAIN, pp.digest, pp.payload, fake.id, b"").body()
    forged = PrePrepare(0, 1, CHAIN, pp.digest, pp.payload, fake.id, fake.sign("preprepare", CHAIN, body))
    assert b.handle(forged, 0) == []
    st = b.status()["dropped"]
    assert st["bad-signature"] == 1 and st["unknown-sender"] == 1 and st["not-primary"] == 1


def test_equivocating_primary_second_preprepare_ignored() -> None:
    cfg, ss = config()
    p, b = Replica(cfg, ss[0], {}, (0, CHAIN)), Replica(cfg, ss[1], {}, (0, CHAIN))
    pp = msgs(p.propose(block(1, CHAIN), 0), PrePrepare)[0]
    alt = block(1, CHAIN, b"other")
    alt_pp = PrePrepare(0, 1, CHAIN, alt.digest, alt.payload, ss[0].id,
                        ss[0].sign("preprepare", CHAIN, PrePrepare(0, 1, CHAIN, alt.digest, b"", "", b"").body()))
    b.handle(pp, 0)
    assert b.handle(alt_pp, 0) == [] and b.status()["dropped"]["equivocation"] == 1


def test_parent_rule_rejects_fork_in_pipeline() -> None:
    cfg, ss = config()
    p, b = Replica(cfg, ss[0], {}, (0, CHAIN)), Replica(cfg, ss[1], {}, (0, CHAIN))
    pp1 = msgs(p.propose(block(1, CHAIN), 0), PrePrepare)[0]
    bad = block(2, b"\x07" * 32)
    bad_pp = PrePrepare(0, 2, bad.parent, bad.digest, bad.payload, ss[0].id,
                        ss[0].sign("preprepare", CHAIN, PrePrepare(0, 2, bad.parent, bad.digest, b"", "", b"").body()))
    b.handle(bad_pp, 0)  # arrives first: waits for its parent
    eff = b.handle(pp1, 0)
    assert [e.height for e in of(eff, Validate)] == [1] and b.status()["dropped"]["bad-parent"] == 1


def test_double_voter_cannot_make_quorum_alone() -> None:
    c = Cluster()
    c.down = {3}
    p = c.propose()
    byz = c.signers[2]
    d2 = block(1, CHAIN, b"x").digest
    c.queue.append((1, Prepare(0, 1, d2, byz.id, byz.sign("prepare", CHAIN, vote_body(0, 1, d2)))))
    c.pump()
    assert [e.proposal for e in c.commits[1]] == [p]


def test_view_change_and_new_view_after_primary_stops() -> None:
    c = Cluster(view_change_timeout_ms=100)
    c.propose(b"a")
    c.pump()
    c.down = {0}  # primary of view 0 dies
    c.tick(1, pending=True)
    c.tick(150, pending=True)
    c.pump()
    for i in (1, 2, 3):
        st = c.replicas[i].status()
        assert (st["view"], st["mode"]) == (1, "normal")
    p = c.propose(b"b")
    assert p is not None and p.height == 2
    c.pump()
    assert all(len(c.commits[i]) == 2 for i in (1, 2, 3))


def test_timeout_doubles_per_consecutive_view_change() -> None:
    cfg, ss = config(view_change_timeout_ms=100, view_change_timeout_max_ms=350)
    r = Replica(cfg, ss[1], {}, (0, CHAIN))
    assert r._timeout() == 100
    r.vc_attempts = 1
    assert r._timeout() == 200
    r.vc_attempts = 5
    assert r._timeout() == 350


def test_slow_commits_stretch_the_timeout_and_a_dead_primary_is_still_replaced() -> None:
    """Commits 150 ms apart under a 100 ms timeout: a network slow under load, not a faulty primary.
    The wait between commits is learnt (3x allowance), so no view change; once the primary dies,
    the backups still move on, within that allowance."""
    c = Cluster(view_change_timeout_ms=100, view_change_timeout_max_ms=2000)
    views = lambda: {r.status()["view"] for i, r in enumerate(c.replicas) if i not in c.down}  # noqa: E731

    def wait(ms: int) -> None:  # the node ticks every 10 ms
        for _ in range(ms // 10):
            c.tick(10, pending=True)
            c.pump()

    c.propose(b"warm-up")
    c.pump()
    wait(90)  # the first wait is under the timeout: it is learnt
    c.propose(b"0")
    c.pump()
    for i in range(1, 8):
        wait(150)  # a slow block: 150 ms between commits
        c.propose(b"%d" % i)
        c.pump()
        assert views() == {0}, f"view change after commit {i} with commits 150 ms apart"
    assert all(len(c.commits[i]) == 9 for i in range(4))
    c.down = {0}
    wait(300)
    assert views() == {0}  # within 3 x 150 ms of the last commit: still patient
    wait(300)
    assert min(views()) >= 1  # moved on (nobody proposes here, so later views may follow)


def _cert(ss, view, h, d, parent, prim):
    from rantai.consensus.messages import preprepare_body
    pps = ss[prim].sign("preprepare", CHAIN, preprepare_body(view, h, d, parent))
    votes = tuple(sorted((s.id, s.sign("prepare", CHAIN, vote_body(view, h, d)))
                         for i, s in enumerate(ss) if i != prim)[:2])
    return PreparedCert(view, h, d, parent, pps, votes)


def _vc(view, stable, certs, sender):
    return ViewChange(view, stable, tuple(certs), sender, b"")


def test_compute_reproposals_highest_view_and_linked_prefix() -> None:
    _, ss = config()
    g = CheckpointCert(0, CHAIN, ())
    b1, b1x = block(1, CHAIN), block(1, CHAIN, b"x")
    b2 = block(2, b1.digest)
    b3 = block(3, b"\x09" * 32)  # does not link
    vcs = (
        _vc(3, g, [_cert(ss, 0, 1, b1x.digest, CHAIN, 0)], "a"),
        _vc(3, g, [_cert(ss, 1, 1, b1.digest, CHAIN, 1), _cert(ss, 1, 2, b2.digest, b1.digest, 1),
                   _cert(ss, 1, 3, b3.digest, b3.parent, 1)], "b"),
        _vc(3, g, [], "c"),
    )
    stable, prefix = compute_reproposals(vcs)
    assert stable == g
    assert [(p.height, p.digest) for p in prefix] == [(1, b1.digest), (2, b2.digest)]  # view 1 wins; 3 breaks the link


def test_compute_reproposals_stops_at_gap_and_starts_above_highest_checkpoint() -> None:
    _, ss = config()
    b5 = block(5, b"\x05" * 32)
    s4 = CheckpointCert(4, b"\x05" * 32, ())
    b6 = block(6, b5.digest)
    vcs = (_vc(2, s4, [_cert(ss, 1, 6, b6.digest, b5.digest, 1)], "a"),
           _vc(2, CheckpointCert(0, CHAIN, ()), [], "b"))
    stable, prefix = compute_reproposals(vcs)
    assert stable.height == 4 and prefix == []  # height 5 missing: a gap, nothing after it re-proposed


def test_tampered_new_view_is_rejected() -> None:
    c = Cluster(view_change_timeout_ms=100)
    c.propose(b"a")
    c.pump()
    c.down = {0}
    c.tick(1, pending=True)
    c.tick(150, pending=True)
    nv = None
    while c.queue and nv is None:
        j, m = c.queue.pop(0)
        if type(m) is NewView:
            nv = m
        elif j not in c.down:
            c.apply(j, c.replicas[j].handle(m, c.now))
    assert nv is not None and nv.pre_prepares
    c.queue.clear()
    # drop the re-proposal list: backups recompute it from the VIEW-CHANGEs and refuse
    new_primary = c.signers[1]
    forged = NewView(nv.view, nv.view_changes, (), new_primary.id, b"")
    forged = dataclasses.replace(forged, sig=new_primary.sign("newview", CHAIN, forged.body()))
    r = c.replicas[2]
    if r.status()["mode"] == "view-change":
        assert r.handle(forged, c.now) == [] and r.status()["dropped"].get("bad-new-view", 0) >= 1


def test_restart_never_signs_two_digests_for_one_view_height() -> None:
    cfg, ss = config()
    p = Replica(cfg, ss[0], {}, (0, CHAIN))
    b_persist: dict[bytes, bytes] = {}
    b = Replica(cfg, ss[1], {}, (0, CHAIN))
    pp = msgs(p.propose(block(1, CHAIN), 0), PrePrepare)[0]
    b.handle(pp, 0)
    for e in of(b.validated(0, 1, pp.digest, True, 0), Persist):
        b_persist.update({k: v for k, v in e.entries if v is not None})
    b2 = Replica(cfg, ss[1], b_persist, (0, CHAIN))  # crash + restart
    alt = block(1, CHAIN, b"equivocation")
    alt_pp = PrePrepare(0, 1, CHAIN, alt.digest, alt.payload, ss[0].id,
                        ss[0].sign("preprepare", CHAIN, PrePrepare(0, 1, CHAIN, alt.digest, b"", "", b"").body()))
    b2.handle(alt_pp, 0)
    eff = b2.validated(0, 1, alt.digest, True, 0)
    assert not msgs(eff, Prepare) and b2.status()["dropped"]["refused-double-vote"] == 1


def test_restart_keeps_view_and_prepared_certificates() -> None:
    c = Cluster(view_change_timeout_ms=100)
    c.down = {3}
    c.propose(b"a")
    c.pump()
    c.restart(1)
    r = c.replicas[1]
    assert r.log[1].prepared is not None  # the prepared certificate survived the restart
    c.down = {0, 3}
    c.tick(1, pending=True)
    c.tick(150, pending=True)
    assert c.replicas[1].status()["view"] == 1
    c.restart(1)
    assert (c.replicas[1].status()["view"], c.replicas[1].status()["mode"]) == (1, "view-change")


def test_checkpoint_becomes_stable_and_log_is_collected() -> None:
    c = Cluster(checkpoint_interval=4, window=4)
    for i in range(8):
        c.propose(b"%d" % i)
        c.pump()
    for r in c.replicas:
        assert r.status()["stable_checkpoint"] == 8
        assert all(h > 8 for h in r.log)
        assert not any(k.startswith(b"v/") for k in c.persisted[c.replicas.index(r)])


def test_lagging_replica_fetches_state_and_rejoins() -> None:
    c = Cluster(checkpoint_interval=2, window=2, state_transfer_delay_ms=0)
    c.down = {3}
    for i in range(8):
        c.propose(b"%d" % i)
        c.pump()
    c.down = set()
    lag = c.replicas[3]
    for _ in range(3):
        c.tick(2000)
        c.pump()
    fetch = c.fetches[3]
    assert fetch and fetch[0].from_height == 1 and fetch[0].to_height >= 6
    top = c.commits[0][-1].proposal
    lag.state_transferred(top.height, top.digest, c.now)
    assert lag.status()["committed_height"] == top.height
    # it takes part again: the next block commits everywhere
    c.propose(b"next")
    c.pump()
    assert lag.status()["committed_height"] == top.height + 1
