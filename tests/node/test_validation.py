"""Validation: each admission rule refuses with its own error; verified ids are not verified twice."""

from __future__ import annotations

import asyncio

import pytest

from rantai.client.format.blocks import Block
from rantai.client.format.errors import (
    DuplicateRecord,
    InvalidBlock,
    InvalidEncoding,
    InvalidSignature,
    RecordTooLarge,
    RoleDenied,
    UnknownMember,
    WrongChain,
)
from rantai.client.format.governance import Governance
from rantai.client.format.records import SignedRecord, sign_event
from rantai.client.format.validity import Parent
from rantai.node.mempool import Mempool
from rantai.node.storage import Storage
from rantai.node.validation import RecordValidator, error_body, status_of

from .conftest import event, make_net


@pytest.fixture
def env(tmp_path, net):
    st = Storage(tmp_path / "db", net.genesis.hash)
    mp = Mempool()
    gov = Governance(net.genesis)  # no ledger here: the genesis is in force at every height
    v = RecordValidator(net.genesis, st, mp, governance=lambda: gov)
    yield net, st, mp, v
    v.close()
    st.close()


def _admit(v, raws):
    return asyncio.run(v.admit(raws))


def test_admission_rules(env):
    net, st, mp, v = env
    good = net.record()
    other_chain = make_net(params={"window": 4}).record()
    from rantai.client.format.records import SignedRecord
    bad_sig = SignedRecord.from_fields({**net.record().fields, "signature": bytes(64)}).raw
    bad_event = sign_event(net.acme, net.genesis, {**event(), "action": "JUMP"})
    results = _admit(v, [
        good.raw,
        b"\x81\xa1a",  # truncated msgpack
        other_chain.raw,
        net.record(net.stranger).raw,
        net.record(net.auditor).raw,
        bad_sig,
        bad_event.raw,
        b"x" * (net.genesis.params["max_record_bytes"] + 1),
        good.raw,
    ])
    kinds = [type(r) for r in results]
    assert results[0].id == good.id
    assert issubclass(kinds[1], InvalidEncoding)
    assert kinds[2:6] == [WrongChain, UnknownMember, RoleDenied, InvalidSignature]
    assert error_body(results[6])["error"] == "schema" and status_of(results[6]) == 400
    assert kinds[7] is RecordTooLarge and status_of(results[7]) == 413
    assert kinds[8] is DuplicateRecord and status_of(results[8]) == 409
    assert [status_of(r) for r in results[2:6]] == [400, 401, 403, 401]
    mp.add(good, 0)
    assert isinstance(_admit(v, [good.raw])[0], DuplicateRecord)


def test_proposal_checks_and_cache(env):
    net, st, mp, v = env
    rs = [net.record() for _ in range(3)]
    _admit(v, [r.raw for r in rs])
    block = Block.build(chain=net.genesis.hash, height=1, prev_hash=net.genesis.hash, view=0,
                        proposer=net.validators[0].id, timestamp=1, records=rs)
    calls = []
    orig = v._verify
    v._verify = lambda consortium, recs: calls.append(len(recs)) or orig(consortium, recs)
    genesis = Parent.genesis(net.genesis)
    got = asyncio.run(v.check_block(block.raw, 1, block.hash, genesis, now_ms=1))
    assert got.hash == block.hash and calls == []  # every record was verified at admission
    with pytest.raises(InvalidBlock, match="header says height 1"):
        asyncio.run(v.check_block(block.raw, 2, block.hash, Parent(1, net.genesis.hash, 0)))  # wrong height
    with pytest.raises(InvalidBlock, match="digest"):
        asyncio.run(v.check_block(block.raw, 1, b"\x00" * 32, genesis))  # wrong digest
    with pytest.raises(InvalidBlock, match="ahead of this validator's clock") as err:
        asyncio.run(v.check_block(block.raw, 1, block.hash, genesis, now_ms=1 - 15_001))  # a clock too far ahead
    assert err.value.rule == "timestamp"
    # a record already in an uncommitted ancestor is refused
    mp.track(block.hash, 1, net.genesis.hash, tuple(r.id for r in rs))
    b2 = Block.build(chain=net.genesis.hash, height=2, prev_hash=block.hash, view=0,
                     proposer=net.validators[0].id, timestamp=1, records=rs[:1])
    with pytest.raises(InvalidBlock, match="already in block 1") as err:
        asyncio.run(v.check_block(b2.raw, 2, b2.hash, Parent.of(block.header), ancestors=mp.ancestor_ids(block.hash)))
    assert err.value.rule == "duplicate record"
    # an unverified bad signature inside a block is caught
    from rantai.client.format.records import SignedRecord
    badrec = SignedRecord.from_fields({**net.record().fields, "signature": bytes(64)})
    b3 = Block.build(chain=net.genesis.hash, height=1, prev_hash=net.genesis.hash, view=0,
                     proposer=net.validators[0].id, timestamp=1, records=[badrec])
    with pytest.raises(InvalidBlock) as err:
        asyncio.run(v.check_block(b3.raw, 1, b3.hash, genesis))
    assert err.value.rule == "signature does not verify" and err.value.details["index"] == 0


def test_a_record_verified_at_admission_is_rechecked_against_the_consortium_of_its_block(env):
    """A backup caches signature checks by record id; membership can change after admission, so a
    block holding a record of a member removed by then is refused (a faulty primary could propose one)."""
    from rantai.client.format.consortium import Consortium

    net, st, mp, v = env
    r = net.record()
    assert isinstance(_admit(v, [r.raw])[0], SignedRecord) and r.id in v.verified
    g = net.genesis
    without = Consortium(chain=g.hash, chain_id=g.chain_id, validators=g.validators, members={},
                         params=g.params, approvals=None, retired=frozenset(g.members))

    class Removed:  # the governance state once the member's removal is in force
        height = 0

        def at(self, height):
            return without

    v.governance = Removed  # called like the ledger's getter: Removed() is the state
    block = Block.build(chain=g.hash, height=1, prev_hash=g.hash, view=0, proposer=net.validators[0].id,
                        timestamp=1, records=[r])
    with pytest.raises(InvalidBlock) as err:
        asyncio.run(v.check_block(block.raw, 1, block.hash, Parent.genesis(g)))
    assert err.value.rule == "member removed" and err.value.details["index"] == 0


def test_small_requests_and_proposals_are_checked_on_the_loop_big_ones_in_the_pool(env, monkeypatch):
    """With verify threads (workers=2 here), a request of at most INLINE_MAX records and a proposal of at
    most INLINE_BLOCK_BYTES are checked on the event loop: the hand-off to a thread costs more than the
    check. Bigger ones still go to the pool; the verdicts are the same either way."""
    from rantai.node import validation

    net, st, mp, v = env
    handed: list[int] = []
    orig = v.pool.submit

    def submit(fn, *args):
        handed.append(len(args[-1]) if isinstance(args[-1], (list, tuple)) else -1)
        return orig(fn, *args)

    monkeypatch.setattr(v.pool, "submit", submit)
    rs = [net.record() for _ in range(2 * validation.INLINE_MAX + 1)]
    small = _admit(v, [r.raw for r in rs[:validation.INLINE_MAX]])
    assert [type(x) for x in small] == [SignedRecord] * validation.INLINE_MAX and handed == []
    big = _admit(v, [r.raw for r in rs[validation.INLINE_MAX:]])
    assert [type(x) for x in big] == [SignedRecord] * (validation.INLINE_MAX + 1) and handed  # in the pool
    handed.clear()
    fresh = [net.record() for _ in range(3)]  # not admitted here: verified inside the proposal
    block = Block.build(chain=net.genesis.hash, height=1, prev_hash=net.genesis.hash, view=0,
                        proposer=net.validators[0].id, timestamp=1, records=fresh)
    assert len(block.raw) <= validation.INLINE_BLOCK_BYTES
    genesis = Parent.genesis(net.genesis)
    assert asyncio.run(v.check_block(block.raw, 1, block.hash, genesis, now_ms=1)).hash == block.hash
    assert handed == []
    monkeypatch.setattr(validation, "INLINE_BLOCK_BYTES", len(block.raw) - 1)
    assert asyncio.run(v.check_block(block.raw, 1, block.hash, genesis, now_ms=1)).hash == block.hash
    assert handed == [-1]  # parsed in the pool (its records were verified the first time)
