"""Reconfiguration: the end-height barrier in ``Replica`` and the epoch wrapper ``Consensus``
(validator sets changing at a height boundary), driven by hand through the public API."""

from __future__ import annotations

from typing import Any

import pytest
from consensus_helpers import CHAIN, block, config, msgs, of, signers

from rantai.consensus import (
    Broadcast,
    Commit,
    CommitVote,
    Consensus,
    FetchState,
    Persist,
    PrePrepare,
    Prepare,
    Replica,
    Send,
    Validate,
    ViewChange,
    verify_certificate,
)
from rantai.consensus.crypto import Verifier
from rantai.consensus.epochs import epoch_key, first_view
from rantai.consensus.messages import CheckpointCert


def _set(ss: list[Any]) -> tuple[tuple[str, bytes], ...]:
    return tuple((s.id, s.public_key) for s in ss)


# ---------------------------------------------------------------------------------------- the barrier

def test_replica_never_proposes_or_accepts_at_or_above_its_end() -> None:
    cfg, ss = config(window=4)
    p, b = Replica(cfg, ss[0], {}, (0, CHAIN)), Replica(cfg, ss[1], {}, (0, CHAIN))
    p.set_end(3)
    b.set_end(3)
    pps = []
    for h in (1, 2):
        slot = p.next_slot()
        assert slot is not None and slot.height == h
        prop = block(h, slot.parent)
        pps += msgs(p.propose(prop, 0), PrePrepare)
    assert p.next_slot() is None  # height 3 belongs to the next validator set
    other = Replica(cfg, ss[0], {}, (0, CHAIN))  # same key, no barrier: what a stale primary would send
    for h in (1, 2, 3):
        prop = block(h, other.next_slot().parent)  # type: ignore[union-attr]
        last = msgs(other.propose(prop, 0), PrePrepare)[0]
    assert last.height == 3
    assert b.handle(last, 0) == [] and b.status()["dropped"]["out-of-window"] == 1


def test_replica_base_is_its_unsigned_stable_checkpoint() -> None:
    cfg, ss = config()
    base = (10, b"\x07" * 32)
    r = Replica(cfg, ss[1], {}, base, base=base, first_view=first_view(1))
    assert r.stable == CheckpointCert(10, base[1], ()) and r.view == 1 << 32
    slot_owner = r.primary(r.view)
    q = Replica(cfg, next(s for s in ss if s.id == slot_owner), {}, base, base=base, first_view=first_view(1))
    slot = q.next_slot()
    assert slot is not None and (slot.height, slot.parent) == (11, base[1])
    # a VIEW-CHANGE carrying the base verifies; one carrying a lower or a different unsigned checkpoint does not
    vc = msgs(q.tick(0, True) + q.tick(10**6, True), ViewChange)[0]
    assert vc.stable.height == 10 and r._valid_view_change(vc)
    r2 = Replica(cfg, ss[1], {}, base, base=(10, b"\x08" * 32), first_view=first_view(1))
    assert not r2._valid_view_change(vc)


# ---------------------------------------------------------------------------------------- a cluster of epochs

class Epochs:
    """A switchboard over ``Consensus`` instances: the universe of hosts hears every broadcast; a
    committed block at ``change_at`` schedules ``new_set`` from ``change_at + window + 1``."""

    def __init__(self, hosts: list[list[Any]], genesis: list[Any], window: int = 2, **kw: Any) -> None:
        self.cfg, _ = config(4, window=window, **kw)
        import dataclasses

        self.cfg = dataclasses.replace(self.cfg, validators=_set(genesis))
        self.hosts = hosts
        self.nodes = [Consensus(self.cfg, keys, {}, (0, CHAIN)) for keys in hosts]
        self.persisted: list[dict[bytes, bytes]] = [{} for _ in hosts]
        self.blocks: list[list[tuple[Any, Any]]] = [[] for _ in hosts]
        self.changes: dict[int, tuple[tuple[str, bytes], ...]] = {}
        self.queue: list[tuple[int, Any]] = []
        self.now = 0
        self.sent: list[list[Any]] = [[] for _ in hosts]

    def host_of(self, vid: str) -> int:
        return next(i for i, keys in enumerate(self.hosts) if vid in {k.id for k in keys})

    def start_of(self, h: int) -> int:
        return h + self.cfg.window + 1

    def store(self, i: int, prop: Any, cert: Any) -> None:
        self.blocks[i].append((prop, cert))
        new = self.changes.get(prop.height)
        if new is not None:
            self.nodes[i].schedule(self.start_of(prop.height), new)

    def apply(self, i: int, effects: list[Any]) -> None:
        for e in effects:
            if type(e) is Persist:
                for k, v in e.entries:
                    if v is None:
                        self.persisted[i].pop(k, None)
                    else:
                        self.persisted[i][k] = v
            elif type(e) is Broadcast:
                self.sent[i].append(e.message)
                self.queue.extend((j, e.message) for j in range(len(self.nodes)) if j != i)
            elif type(e) is Send:
                self.queue.append((self.host_of(e.to), e.message))
            elif type(e) is Commit:
                self.store(i, e.proposal, e.certificate)
            elif type(e) is Validate:
                self.apply(i, self.nodes[i].validated(e.view, e.height, e.proposal.digest, True, self.now))
            elif type(e) is FetchState:
                self.fetch(i, e)

    def fetch(self, i: int, e: FetchState) -> None:
        src = max(range(len(self.nodes)), key=lambda j: len(self.blocks[j]))
        starts = {self.start_of(h) for h in self.changes}
        while len(self.blocks[i]) < min(e.to_height, len(self.blocks[src])):
            prop, cert = self.blocks[src][len(self.blocks[i])]
            self.store(i, prop, cert)
            if prop.height + 1 in starts:  # the boundary report the node owes the wrapper
                self.apply(i, self.nodes[i].state_transferred(prop.height, prop.digest, self.now))
        if self.blocks[i]:
            prop = self.blocks[i][-1][0]
            self.apply(i, self.nodes[i].state_transferred(prop.height, prop.digest, self.now))

    def pump(self) -> None:
        while self.queue:
            j, m = self.queue.pop(0)
            self.apply(j, self.nodes[j].handle(m, self.now))

    def tick(self, ms: int, pending: bool = False) -> None:
        self.now += ms
        for i, c in enumerate(self.nodes):
            self.apply(i, c.tick(self.now, pending))

    def step(self) -> bool:
        for i, c in enumerate(self.nodes):
            slot = c.next_slot()
            if slot is not None:
                self.apply(i, c.propose(block(slot.height, slot.parent), self.now))
                self.pump()
                return True
        return False

    def run_to(self, height: int, rounds: int = 400) -> None:
        for _ in range(rounds):
            if min(len(self.blocks[i]) for i in self.members_at(height)) >= height:
                return
            if not self.step():
                self.tick(200)
            else:
                self.tick(20)
            self.pump()
        raise AssertionError(f"stuck: {[len(b) for b in self.blocks]}")

    def set_at(self, height: int) -> tuple[tuple[str, bytes], ...]:
        cur = self.cfg.validators
        for h in sorted(self.changes):
            if self.start_of(h) <= height:
                cur = self.changes[h]
        return cur

    def members_at(self, height: int) -> list[int]:
        return [self.host_of(v) for v, _ in self.set_at(height)]

    def check_certificates(self, i: int) -> None:
        for prop, cert in self.blocks[i]:
            vs = {v: Verifier(pk) for v, pk in self.set_at(prop.height)}
            verify_certificate(cert, CHAIN, vs, height=prop.height, block_hash=prop.digest)


def test_add_remove_and_rekey_take_effect_exactly_at_the_boundary() -> None:
    ss = signers(7)
    # hosts 0-3 start as validators; host 1 also holds key 5 (its re-key); host 4 joins with key 4
    hosts = [[ss[0]], [ss[1], ss[5]], [ss[2]], [ss[3]], [ss[4]]]
    c = Epochs(hosts, ss[:4], window=2)
    add = _set(ss[:5])  # + key 4 (n = 5, quorum 4)
    rekey = _set([ss[0], ss[5], ss[2], ss[3], ss[4]])  # host 1: key 1 -> key 5, in place
    remove = _set([ss[0], ss[5], ss[2], ss[4]])  # host 3 leaves
    c.changes = {2: add, 6: rekey, 9: remove}
    c.run_to(16)
    assert [len(b) for b in c.blocks][:3] == [16, 16, 16] and len(c.blocks[4]) == 16
    assert len(c.blocks[3]) == 11  # removed: it stops at the last height of its last epoch
    for i in (0, 1, 2, 3, 4):
        c.check_certificates(i)  # each block certified by the set in force at its height
    starts = [c.start_of(h) for h in sorted(c.changes)]
    assert starts == [5, 9, 12]
    for prop, cert in c.blocks[0]:
        epoch = sum(1 for s in starts if s <= prop.height)
        assert first_view(epoch) <= cert.view < first_view(epoch + 1)
    st = c.nodes[3].status()
    assert st["retired"] is True and st["member"] is False and st["epoch"] == 3
    assert c.nodes[0].status()["epoch"] == 3 and c.nodes[0].status()["retired"] is False
    # the joiner caught up by state transfer as an observer before it could vote
    assert c.nodes[4].status()["member"]
    # finished epochs' persisted entries are gone; the current one's are prefixed
    for key in c.persisted[0]:
        assert key.startswith(b"e/" + (3).to_bytes(8, "big")), key
    # a retired host sends nothing once retired
    before = len(c.sent[3])
    c.tick(5000, pending=True)
    c.pump()
    assert len(c.sent[3]) == before


def test_messages_of_another_epoch_or_from_non_members_are_dropped() -> None:
    ss = signers(6)
    hosts = [[s] for s in ss[:5]]
    c = Epochs(hosts, ss[:4], window=2)
    c.changes = {1: _set(ss[:5])}
    c.run_to(6)
    n0 = c.nodes[0]
    assert n0.status()["epoch"] == 1 and n0.view == 1 << 32
    # a PREPARE signed in epoch 0's view range at an epoch-1 height: dropped, whatever its signature
    from rantai.consensus.messages import vote_body

    d = b"\x01" * 32
    def dropped(why: str) -> int:
        return int(n0.status()["dropped"].get(why, 0))

    k0, k1 = dropped("other-epoch"), dropped("not-a-member")
    old = Prepare(0, 7, d, ss[2].id, ss[2].sign(Prepare.KIND, CHAIN, vote_body(0, 7, d)))
    assert n0.handle(old, c.now) == [] and dropped("other-epoch") == k0 + 1
    # a stranger (key 5) is not a member
    stranger = Prepare(1 << 32, 7, d, ss[5].id, ss[5].sign(Prepare.KIND, CHAIN, vote_body(1 << 32, 7, d)))
    assert n0.handle(stranger, c.now) == [] and dropped("not-a-member") == k1 + 1
    # an epoch-1 height below the epoch start is dropped too
    low = CommitVote(1 << 32, 3, d, ss[2].id, b"\x00" * 64)
    assert n0.handle(low, c.now) == [] and dropped("other-epoch") == k0 + 2


def test_restart_across_a_boundary_keeps_votes_under_the_epoch_prefix() -> None:
    ss = signers(5)
    hosts = [[s] for s in ss]
    c = Epochs(hosts, ss[:4], window=2)
    c.changes = {2: _set(ss[:5])}
    c.run_to(8)
    i = 2
    blocks = c.blocks[i]
    boundaries = {4: blocks[3][0].digest}
    schedule = [(5, c.changes[2])]
    assert any(k.startswith(b"e/") for k in c.persisted[i])
    again = Consensus(c.cfg, hosts[i], dict(c.persisted[i]), (len(blocks), blocks[-1][0].digest),
                      schedule=schedule, boundaries=boundaries)
    assert again.status()["epoch"] == 1 and again.replica is not None
    votes = {k for k in again.replica.votes}
    assert votes  # the epoch-1 votes were read back from the prefixed keys
    c.nodes[i] = again
    c.run_to(12)
    c.check_certificates(i)
    # without the boundary digest a restart in the new epoch refuses to guess it
    with pytest.raises(ValueError, match="base of epoch"):
        Consensus(c.cfg, hosts[i], {}, (len(blocks), blocks[-1][0].digest), schedule=schedule)


def test_schedule_refuses_a_start_inside_the_window_or_out_of_order() -> None:
    cfg, ss = config(window=4)
    c = Consensus(cfg, ss[0], {}, (0, CHAIN))
    slot = c.next_slot()
    assert slot is not None
    c.propose(block(1, slot.parent), 0)
    slot = c.next_slot()
    c.propose(block(2, slot.parent), 0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="too late"):
        c.schedule(2, _set(ss))
    c.schedule(6, _set(ss))
    with pytest.raises(ValueError, match="height order"):
        c.schedule(5, _set(ss))
    assert c.replica is not None and c.replica.end_height == 6
    assert epoch_key(0, b"view") == b"view" and epoch_key(2, b"view") == b"e/" + (2).to_bytes(8, "big") + b"view"
    assert of([], Commit) == []


def test_a_stuck_replica_probes_its_epoch_for_what_follows_its_tip() -> None:
    cfg, ss = config()
    c = Consensus(cfg, ss[1], {}, (0, CHAIN))
    every = 2 * cfg.state_transfer_timeout_ms
    assert not of(c.tick(0, False) + c.tick(every + 1, False), FetchState)  # idle: nothing to ask
    fetch = of(c.tick(3 * every, True), FetchState)
    assert fetch and (fetch[0].from_height, fetch[0].to_height) == (1, cfg.log_max)
    assert set(fetch[0].peers) == {s.id for s in ss} - {ss[1].id}
    assert not of(c.tick(3 * every + 10, True), FetchState)  # at most once per interval
