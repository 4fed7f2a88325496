"""The key ceremony's pure part (client/format/ceremony.py): join requests and the genesis made of them.

Goal: a request is exactly what its key signed, and a genesis is assembled only from requests that
prove their keys, with no name, key or URL twice; each organisation's check finds any entry that
differs from what it asked for. Method: seeded keys, requests round-tripped through JSON, one field
changed at a time; every refusal is asserted by its rule name, not by its wording.
"""

from __future__ import annotations

import json

import pytest
from helpers_client import seeded as seeded_signer

from rantai.client.format import ceremony
from rantai.client.format.ceremony import (
    JOIN_CHAIN,
    CeremonyError,
    GenesisMismatch,
    InvalidJoinRequest,
    assemble,
    check_genesis,
    member_request,
    parse_request,
    request_from_json,
    validator_request,
)
from rantai.client.format.encoding import encode
from rantai.client.format.errors import InvalidGenesis
from rantai.client.format.genesis import Genesis
from rantai.consensus.crypto import sha256, signing_bytes

T = "2026-03-01T08:00:00Z"


def validators(n: int = 4) -> list[ceremony.JoinRequest]:
    return [validator_request(seeded_signer(f"ceremony-v{i}"), organisation=f"Org {i}", name=f"v{i}",
                              url=f"https://v{i}.example:7100", created_at=T) for i in range(n)]


def kopi(roles: tuple[str, ...] = ("submitter", "admin")) -> ceremony.JoinRequest:
    return member_request(seeded_signer("ceremony-kopi"), organisation="Kopi Co", name="kopi-co", roles=roles,
                          created_at=T)


def gayo() -> ceremony.JoinRequest:
    return member_request(seeded_signer("ceremony-gayo"), organisation="Koperasi Kopi Gayo", name="gayo-coop",
                          roles=["submitter"], created_at=T)


def refused(rule: str, fn, *args, **kw) -> str:
    with pytest.raises(InvalidJoinRequest) as info:
        fn(*args, **kw)
    assert info.value.rule == rule, (info.value.rule, info.value.message)
    return info.value.message


def test_join_chain_is_the_documented_constant():
    assert JOIN_CHAIN == sha256(b"rantai join request")
    assert JOIN_CHAIN.hex() == "f478fd4416504962e2ab061ef45435e8738ea9fa22580c59e8d288983cc02332"  # docs/format.md


def test_requests_round_trip_through_json_and_sign_the_documented_bytes():
    for req in [*validators(), kopi(), gayo()]:
        again = request_from_json(req.to_json())
        assert again == req
        # the proof is over signing_bytes("join", JOIN_CHAIN, canonical(the object without proof))
        obj = json.loads(req.to_json())
        proof = bytes.fromhex(obj.pop("proof"))
        assert signing_bytes("join", JOIN_CHAIN, encode(obj)) == req.signed_bytes()
        assert req.verify() is None and len(proof) == 64
    # key order and whitespace of the JSON file do not matter: the canonical encoding sorts the keys
    obj = kopi().to_obj()
    assert request_from_json(json.dumps(dict(reversed(list(obj.items()))))) == kopi()
    assert kopi().roles == ("admin", "submitter")  # stored sorted: one role set, one encoding


@pytest.mark.parametrize("field,value", [
    ("name", "kopi-co2"), ("organisation", "Kopi Co Ltd"), ("roles", ["submitter", "admin", "auditor"]),
    ("roles", ["submitter"]), ("created_at", "2026-03-01T08:00:01Z"),
    ("public_key", seeded_signer("someone-else").public_key.hex()),
])
def test_a_changed_field_breaks_the_proof(field, value):
    obj = kopi().to_obj()
    obj[field] = value
    refused("join proof", parse_request, obj)


def test_a_changed_validator_url_breaks_the_proof():
    obj = validators()[0].to_obj()
    obj["url"] = "https://evil.example:7100"
    assert "proof of possession does not verify" in refused("join proof", parse_request, obj)


def test_a_proof_by_another_key_is_refused():
    req = kopi()
    other = seeded_signer("ceremony-other")
    obj = req.to_obj()
    obj["proof"] = other.sign("join", JOIN_CHAIN, encode(req.body())).hex()
    refused("join proof", parse_request, obj)
    # the same key signing for a chain (not the join constant) or another kind does not verify either
    obj["proof"] = seeded_signer("ceremony-kopi").sign("possession", JOIN_CHAIN, encode(req.body())).hex()
    refused("join proof", parse_request, obj)
    obj["proof"] = seeded_signer("ceremony-kopi").sign("join", b"\0" * 32, encode(req.body())).hex()
    refused("join proof", parse_request, obj)


def test_unknown_or_repeated_roles_are_refused():
    refused("unknown role", member_request, seeded_signer("x"), organisation="X", name="x", roles=["boss"],
            created_at=T)
    refused("unknown role", member_request, seeded_signer("x"), organisation="X", name="x", roles=[], created_at=T)
    obj = kopi().to_obj()
    obj["roles"] = ["admin", "owner"]
    assert "owner" in refused("unknown role", parse_request, obj)
    obj["roles"] = ["admin", "admin"]
    refused("unknown role", parse_request, obj)


@pytest.mark.parametrize("change,rule", [
    ({"format": "rantai-join/2"}, "join shape"),
    ({"type": "auditor"}, "join shape"),
    ({"url": "https://x.example"}, "join shape"),       # a member has no url
    ({"extra": 1}, "join shape"),
    ({"name": "Kopi Co"}, "join field"),
    ({"name": 7}, "join field"),
    ({"organisation": ""}, "join field"),
    ({"organisation": " Kopi"}, "join field"),
    ({"organisation": "Kopi\nCo"}, "join field"),
    ({"public_key": "AB" * 32}, "join field"),          # upper-case hex: one key, one spelling
    ({"public_key": "ab" * 31}, "join field"),
    ({"created_at": "2026-03-01 08:00:00"}, "join field"),
    ({"created_at": "2026-02-30T08:00:00Z"}, "join field"),
    ({"proof": "00" * 63}, "join field"),
])
def test_shape_and_field_rules(change, rule):
    obj = {**kopi().to_obj(), **change}
    refused(rule, parse_request, obj)


def test_missing_fields_and_bad_json_are_refused():
    obj = kopi().to_obj()
    del obj["proof"]
    refused("join shape", parse_request, obj)
    obj = kopi().to_obj()
    del obj["roles"]
    assert "missing ['roles']" in refused("join shape", parse_request, obj)
    refused("join shape", request_from_json, "[1, 2]")
    refused("join shape", request_from_json, "{not json")
    text = kopi().to_json().replace('"name": "kopi-co"', '"name": "kopi-co", "name": "kopi-co"')
    assert "appears twice" in refused("join shape", request_from_json, text)


@pytest.mark.parametrize("url", ["ftp://v.example", "https://", "https://v.example/", "https://v.example?x=1",
                                 "https://v.example:99999", "https://v example"])
def test_validator_urls(url):
    refused("join field", validator_request, seeded_signer("v"), organisation="V", name="v", url=url, created_at=T)


def test_assemble_gives_the_same_genesis_whatever_the_order():
    reqs = [*validators(), kopi(), gayo()]
    g1 = assemble("kopi-chain", reqs, created_at=T)
    g2 = assemble("kopi-chain", list(reversed(reqs)), created_at=T)
    assert g1.hash == g2.hash and g1.to_json() == g2.to_json()
    assert Genesis.from_json(g1.to_json()).hash == g1.hash
    assert [v.name for v in g1.validators] == ["v0", "v1", "v2", "v3"]
    assert g1.validators[2].url == "https://v2.example:7100"
    m = g1.member_by_name("kopi-co")
    assert m is not None and m.organisation == "Kopi Co" and m.roles == {"admin", "submitter"}
    assert g1.doc["governance"] == {"approvals": "majority"}
    assert assemble("kopi-chain", reqs, approvals=1, created_at=T).approvals == 1


def assemble_refused(rule: str, reqs, **kw) -> str:
    with pytest.raises(CeremonyError) as info:
        assemble("kopi-chain", reqs, created_at=T, **kw)
    assert info.value.rule == rule, (info.value.rule, info.value.message)
    return info.value.message


def test_assemble_refuses_duplicates_and_unusable_consortia():
    vs = validators(5)
    # the same name from two keys
    twin = member_request(seeded_signer("twin"), organisation="Twin", name="kopi-co", roles=["submitter"],
                          created_at=T)
    assert "'kopi-co'" in assemble_refused("duplicate name", [*vs, kopi(), twin])
    # a validator and a member may not share a name either
    clash = member_request(seeded_signer("clash"), organisation="Clash", name="v1", roles=["auditor"], created_at=T)
    assemble_refused("duplicate name", [*vs, kopi(), clash])
    # the same key under two names (the same request twice is caught as a duplicate name first)
    same_key = member_request(seeded_signer("ceremony-kopi"), organisation="Kopi Co", name="kopi-two",
                              roles=["auditor"], created_at=T)
    assert "same public key" in assemble_refused("duplicate key", [*vs, kopi(), same_key])
    v_key = validator_request(seeded_signer("ceremony-v0"), organisation="Org 0", name="v0-bis",
                              url="https://v9.example:7100", created_at=T)
    assemble_refused("duplicate key", [*vs, kopi(), v_key])
    same_url = validator_request(seeded_signer("v-url"), organisation="Org 9", name="v9",
                                 url="https://v0.example:7100", created_at=T)
    assemble_refused("duplicate url", [*vs, kopi(), same_url])
    assemble_refused("too few validators", [*validators(3), kopi()])
    assemble_refused("no admin", [*vs, gayo()])
    assemble_refused("no admin", [*vs, kopi(), gayo()], approvals=2)  # one admin cannot reach 2
    for bad in ({"chain_id": "Not A Chain Id"}, {"params": {"no_such_param": 1}}):
        with pytest.raises(InvalidGenesis) as info:
            assemble(**{"chain_id": "kopi-chain", "requests": [*vs, kopi()], "created_at": T, **bad})
        assert info.value.rule == "genesis"


def test_assemble_checks_every_proof_again():
    forged = ceremony.JoinRequest(**{**kopi().__dict__, "roles": ("admin", "auditor", "submitter")})
    with pytest.raises(InvalidJoinRequest) as info:
        assemble("kopi-chain", [*validators(), forged], created_at=T)
    assert info.value.rule == "join proof"


def test_each_organisation_finds_its_entries_or_the_difference():
    reqs = [*validators(), kopi(), gayo()]
    g = assemble("kopi-chain", reqs, created_at=T)
    lines = check_genesis(g, [reqs[1], kopi(), seeded_signer("ceremony-gayo").public_key])
    assert lines[0].startswith("ok: validator v1") and lines[1].startswith("ok: member kopi-co")
    assert lines[2].startswith("ok: member gayo-coop")

    def mismatch(rule: str, genesis: Genesis, expected) -> str:
        with pytest.raises(GenesisMismatch) as info:
            check_genesis(genesis, expected)
        assert info.value.rule == rule, (info.value.rule, info.value.message)
        return info.value.message

    # a coordinator who grants roles nobody asked for, moves a URL or renames an organisation is caught
    doc = json.loads(g.to_json())
    for m in doc["members"]:
        if m["name"] == "kopi-co":
            m["roles"] = ["submitter"]
    assert "roles" in mismatch("entry differs", Genesis(doc), [kopi()])
    doc = json.loads(g.to_json())
    doc["validators"][2]["url"] = "https://mitm.example:7100"
    assert "url" in mismatch("entry differs", Genesis(doc), [reqs[2]])
    doc = json.loads(g.to_json())
    doc["members"] = [m for m in doc["members"] if m["name"] != "gayo-coop"]
    mismatch("entry missing", Genesis(doc), [gayo()])
    mismatch("entry missing", Genesis(doc), [seeded_signer("ceremony-gayo").public_key])
    # an entry with the right name but another key: the organisation's own key is not there
    impostor = member_request(seeded_signer("impostor"), organisation="Kopi Co", name="kopi-co",
                              roles=["submitter", "admin"], created_at=T)
    g2 = assemble("kopi-chain", [*validators(), impostor], created_at=T)
    assert "with key" in mismatch("entry missing", g2, [kopi()])
    # a validator's request is not satisfied by a member entry of the same key
    as_member = member_request(seeded_signer("ceremony-v0"), organisation="Org 0", name="v0", roles=["auditor"],
                               created_at=T)
    mismatch("entry missing", g, [as_member])


def test_summary_names_everything_compared_out_of_band():
    g = assemble("kopi-chain", [*validators(), kopi(), gayo()], approvals=1, params={"window": 4}, created_at=T)
    text = "\n".join(ceremony.summary(g))
    assert g.hash.hex() in text and "kopi-chain" in text and "window=4" in text
    assert "tolerates f=1" in text and "changes need 1 of 1 admins" in text
    for name in ("v0", "v3", "kopi-co", "gayo-coop", "Koperasi Kopi Gayo"):
        assert name in text
