"""The pieces of `rantai gov` that need no node: every op's flags build a change the ledger accepts
the shape of, a new key needs its holder's proof, refusals read "rule: message", and member specs
of `init-network` parse as documented."""

from __future__ import annotations

import pytest

from rantai.client.format.errors import InvalidRecord
from rantai.client.format.governance import OPS, POSSESSION_KIND, check_change, possession_body
from rantai.client.format.keys import generate, save_key
from rantai.client.governance_cli import CLI_OPS, build_change, describe_change, differences, refusal
from rantai.client.http import RemoteError
from rantai.consensus.crypto import Verifier
from rantai.node.bootstrap import parse_member

CHAIN = bytes(range(32))


def test_every_op_has_a_command_and_builds_a_well_formed_change(tmp_path):
    new = generate()
    save_key(new, tmp_path / "new.pem")
    flags = {"name": "cafe", "org": "Kafe", "roles": "submitter,auditor", "member": "acme", "validator": "v1",
             "url": "http://127.0.0.1:7109", "key_file": str(tmp_path / "new.pem"), "approvals": "majority",
             "params": ("max_block_records=1000",), "read_policy": "parties", "company_prefixes": ("0614141",)}
    assert set(CLI_OPS.values()) == set(OPS) - {"approve"}
    for op in CLI_OPS:
        change = build_change(op, flags, CHAIN)
        check_change(change)
        assert change["op"] == CLI_OPS[op] and describe_change(change)
        if "proof" in change:  # made from the key file: it verifies as the new key's possession proof
            name = change.get("name") or change.get("member") or change.get("validator")
            assert Verifier(new.public_key).verify(change["proof"], POSSESSION_KIND, CHAIN,
                                                   possession_body(CHAIN, name, new.public_key))


def test_a_public_key_needs_its_holders_proof():
    with pytest.raises(InvalidRecord, match="proof of possession is missing.*rantai gov prove"):
        build_change("add-member", {"name": "cafe", "org": "Kafe", "roles": "submitter", "public_key": "ab" * 32},
                     CHAIN)
    with pytest.raises(InvalidRecord, match="exactly one of --public-key"):
        build_change("rotate-key", {"member": "acme"}, CHAIN)
    with pytest.raises(InvalidRecord, match="^change shape: window cannot change"):
        build_change("set-params", {"params": ("window=3",)}, CHAIN)
    with pytest.raises(InvalidRecord, match="^change shape: approvals is not a valid approvals"):
        build_change("set-governance", {"approvals": "most"}, CHAIN)


def test_refusals_read_rule_then_message():
    assert str(refusal(RemoteError("approved twice", "change: tani already approved proposal ab"))) == \
        "approved twice: tani already approved proposal ab"
    assert str(refusal(RemoteError("not an admin", "record: member acme lacks the 'admin' role"))) == \
        "not an admin: member acme lacks the 'admin' role"
    assert refusal(RemoteError("change refused", "x")).rule == "change refused"


def test_differences_name_what_differs():
    mine = {"members": [{"name": "a", "roles": ["admin"]}], "version": 1, "head": 5}
    theirs = {"members": [{"name": "a", "roles": ["submitter"]}], "version": 1, "head": 9}
    assert differences(theirs, mine) == ["members (a)"]
    assert differences(mine, mine) == []


def test_member_specs():
    assert parse_member("acme") == ("acme", "acme", ["submitter", "auditor"])
    assert parse_member("acme=Acme Ltd") == ("acme", "Acme Ltd", ["submitter", "auditor"])
    assert parse_member("acme=Acme:submitter+admin") == ("acme", "Acme", ["submitter", "admin"])
    assert parse_member("acme:admin") == ("acme", "acme", ["admin"])
    with pytest.raises(ValueError):
        parse_member("acme=Acme:")
