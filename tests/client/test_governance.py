"""Governance replayed in memory: proposals, approvals, the threshold, the delay before a change is in
force, and every refusal with its rule — through check_block (what validators and the auditor call).

Method: a consortium with three admins (majority: 2 approvals) and four validators; blocks are built
and checked one by one with ``validity.check_block`` on a ``Governance`` state, as a validator does.
"""

from __future__ import annotations

import pytest
from helpers_client import object_event, seeded

from rantai.client.format.blocks import Block
from rantai.client.format.errors import InvalidBlock, InvalidRecord
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import POSSESSION_KIND, Governance, possession_body
from rantai.client.format.records import sign_change, sign_event
from rantai.client.format.validity import Parent, check_block, check_record

ADMINS = ("tani", "kopi", "pasar")


@pytest.fixture
def world():
    validators = [seeded(f"gv-{i}") for i in range(5)]
    people = {n: seeded(f"gm-{n}") for n in (*ADMINS, "acme")}
    genesis = Genesis.build(
        "gov-test",
        [(v.public_key, f"v{i}", f"http://v{i}.test") for i, v in enumerate(validators[:4])],
        [(people[n].public_key, n, n.title(), ["admin", "submitter"]) for n in ADMINS]
        + [(people["acme"].public_key, "acme", "Acme", ["submitter"])],
    )
    return genesis, validators, people


class Chain:
    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.gov = Governance(genesis)
        self.parent = Parent.genesis(genesis)

    def add(self, records) -> None:
        h = self.parent.height + 1
        c = self.gov.at(h)
        block = Block.build(chain=self.genesis.hash, height=h, prev_hash=self.parent.hash, view=0,
                            proposer=c.validators[0].id, timestamp=self.parent.timestamp + 1, records=records)
        for r in records:
            check_record(r, c)
        trial = self.gov.fork()
        check_block(block, c, self.parent, governance=trial)
        self.gov = trial
        self.parent = Parent.of(block.header)

    def empty(self, n: int) -> None:
        for _ in range(n):
            self.add([])


def add_member(genesis, admin, newcomer, name="cafe"):
    change = {"op": "add_member", "name": name, "organisation": "Kafe Senja", "public_key": newcomer.public_key,
              "roles": ["submitter"], "proof": newcomer.sign(POSSESSION_KIND, genesis.hash,
                                                            possession_body(genesis.hash, name, newcomer.public_key))}
    return sign_change(admin, genesis, change)


def test_a_member_joins_after_two_of_three_admins_and_the_delay(world):
    genesis, _, people = world
    chain = Chain(genesis)
    cafe = seeded("cafe")
    proposal = add_member(genesis, people["tani"], cafe)
    chain.add([proposal])
    (p,) = chain.gov.proposals.values()
    assert p.approved_at is None and chain.gov.needed(p) == "needs 2 of 3 admins, has 1: tani"
    sale = sign_event(cafe, genesis, object_event(1))
    with pytest.raises(InvalidRecord, match="unknown member"):
        check_record(sale, chain.gov.at(chain.parent.height + 1))
    chain.add([sign_change(people["kopi"], genesis, {"op": "approve", "proposal": proposal.id})])
    p = chain.gov.proposals[proposal.id]  # each block is checked on a fork, which then becomes the state
    assert p.approved_at == 2 and p.effective == 2 + genesis.params["window"] + 1
    # Not yet in force: still refused until the effective height.
    with pytest.raises(InvalidRecord, match="unknown member"):
        check_record(sale, chain.gov.at(p.effective - 1))
    check_record(sale, chain.gov.at(p.effective))
    chain.empty(p.effective - 1 - chain.parent.height)
    chain.add([sale])


@pytest.mark.parametrize("case,rule", [
    ("non-admin proposes", "not an admin"),
    ("approve twice", "approved twice"),
    ("unknown proposal", "unknown proposal"),
    ("approve after approved", "proposal closed"),
    ("leave three validators", "change refused"),
    ("lock out governance", "change refused"),
    ("bad proof of possession", "change refused"),
    ("unknown op", "change shape"),
])
def test_refusals_name_their_rule(world, case, rule):
    genesis, validators, people = world
    chain = Chain(genesis)
    tani, kopi, pasar = (people[n] for n in ADMINS)
    if case == "non-admin proposes":
        entries = [add_member(genesis, people["acme"], seeded("x"))]
    elif case == "approve twice":
        prop = add_member(genesis, tani, seeded("x"))
        chain.add([prop])
        entries = [sign_change(tani, genesis, {"op": "approve", "proposal": prop.id})]
    elif case == "unknown proposal":
        entries = [sign_change(tani, genesis, {"op": "approve", "proposal": b"\x01" * 32})]
    elif case == "approve after approved":
        prop = add_member(genesis, tani, seeded("x"))
        chain.add([prop, sign_change(kopi, genesis, {"op": "approve", "proposal": prop.id})])
        entries = [sign_change(pasar, genesis, {"op": "approve", "proposal": prop.id})]
    elif case == "leave three validators":
        entries = [sign_change(tani, genesis, {"op": "remove_validator", "validator": "v3"})]
    elif case == "lock out governance":
        entries = [sign_change(tani, genesis, {"op": "set_governance", "approvals": 4})]
    elif case == "bad proof of possession":
        change = {"op": "add_validator", "name": "v4", "public_key": validators[4].public_key, "url": "http://v4.test",
                  "proof": bytes(64)}
        entries = [sign_change(tani, genesis, change)]
    else:
        entries = [sign_change(tani, genesis, {"op": "make_me_king"})]
    with pytest.raises((InvalidBlock, InvalidRecord)) as err:
        chain.add(entries)
    assert err.value.rule == rule, err.value


def test_validators_change_at_the_boundary_and_removed_members_stay_valid_before(world):
    genesis, validators, people = world
    chain = Chain(genesis)
    tani, kopi = people["tani"], people["kopi"]
    v4 = validators[4]
    add = {"op": "add_validator", "name": "v4", "public_key": v4.public_key, "url": "http://v4.test",
           "proof": v4.sign(POSSESSION_KIND, genesis.hash, possession_body(genesis.hash, "v4", v4.public_key))}
    p1 = sign_change(tani, genesis, add)
    p2 = sign_change(tani, genesis, {"op": "remove_member", "member": "acme"})
    old = sign_event(people["acme"], genesis, object_event(7))
    chain.add([p1, p2, old])
    chain.add([sign_change(kopi, genesis, {"op": "approve", "proposal": p1.id}),
               sign_change(kopi, genesis, {"op": "approve", "proposal": p2.id})])
    effective = 2 + genesis.params["window"] + 1
    assert len(chain.gov.at(effective - 1).validators) == 4 and len(chain.gov.at(effective).validators) == 5
    assert "acme" not in {m.name for m in chain.gov.at(effective).members.values()}
    check_record(old, chain.gov.at(1))  # signed while a member: valid at its height forever
    with pytest.raises(InvalidRecord, match="removed or rotated away") as err:
        check_record(sign_event(people["acme"], genesis, object_event(8)), chain.gov.at(effective))
    assert err.value.rule == "member removed" and err.value.status_hint == 403
