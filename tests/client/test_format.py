"""The ledger format: canonical bytes, signed records, blocks, certificates and receipts.

Goal: every byte that is signed, hashed or proved has one form, and any change to it is caught.
Method: one table drives encode and decode both ways (h11's SIMPLE_CASES); tamper tests flip
every byte of each signed artefact; hypothesis fuzzes the decoder.
"""

from __future__ import annotations

import json
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rantai.client.format import merkle
from rantai.client.format.blocks import Block, BlockHeader
from rantai.client.format.encoding import decode, encode
from rantai.client.format.errors import (
    InvalidBlock,
    InvalidCertificate,
    InvalidEncoding,
    InvalidGenesis,
    InvalidKey,
    InvalidRecord,
    InvalidSignature,
    RantaiError,
    RoleDenied,
    UnknownMember,
    VerificationError,
    WrongChain,
)
from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import generate, load_key, save_key
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import SignedRecord, sign_event
from rantai.client.format.validity import Parent, check_block, check_certificate
from rantai.consensus.certificate import COMMIT_KIND, CommitCertificate, commit_body
from rantai.consensus.crypto import sha256

EVENT = {
    "type": "ObjectEvent",
    "eventTime": "2026-03-01T08:00:00.000+07:00",
    "eventTimeZoneOffset": "+07:00",
    "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
    "action": "OBSERVE",
    "bizStep": "shipping",
    "disposition": "in_transit",
    "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
}

# (value, canonical bytes): drives both directions.
CASES = [
    (0, "00"),
    (127, "7f"),
    (128, "cc80"),
    (-1, "ff"),
    (-33, "d0df"),
    (2**32, "cf0000000100000000"),
    (1.5, "cb3ff8000000000000"),
    (None, "c0"),
    (True, "c3"),
    ("", "a0"),
    ("é", "a2c3a9"),
    (b"", "c400"),
    (b"\x01", "c40101"),
    ([], "90"),
    ({"b": 1, "a": 2}, "82a16102a16201"),
    ({"aa": 1, "b": 2}, "82a2616101a16202"),  # sorted by UTF-8 bytes, not length
    ({"z": {"y": [1, "x"]}}, "81a17a81a1799201a178"),
]


@pytest.mark.parametrize("value,hexed", CASES)
def test_canonical_table(value, hexed):
    assert encode(value).hex() == hexed
    decoded = decode(bytes.fromhex(hexed))
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize(
    "raw,why",
    [
        (msgpack.packb({"b": 1, "a": 2}), "unsorted keys"),
        (bytes.fromhex("82a16101a16102"), "duplicate key"),
        (bytes.fromhex("cc05"), "long form of a short int"),
        (bytes.fromhex("ca3fc00000"), "float32"),
        (bytes.fromhex("0102"), "trailing bytes"),
        (bytes.fromhex("92"), "truncated"),
        (bytes.fromhex("c1"), "reserved byte"),
        (bytes.fromhex("d40101"), "ext type"),
        (bytes.fromhex("a2fffe"), "invalid UTF-8"),
        (bytes.fromhex("8101a0"), "non-string key"),
        (b"", "empty"),
        (b"\x91" * 40 + b"\x00", "too deep"),
        (bytes.fromhex("cb7ff8000000000000"), "NaN"),
    ],
)
def test_non_canonical_rejected(raw, why):
    with pytest.raises(InvalidEncoding):
        decode(raw)


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: 2}, {"a": object()}, 2**64, set()])
def test_unencodable_values(bad):
    with pytest.raises(InvalidEncoding):
        encode(bad)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_fuzz_only_invalid_encoding(data):
    try:
        value = decode(data)
    except InvalidEncoding:
        return
    assert encode(value) == data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_round_trip(value):
    raw = encode(value)
    assert decode(raw) == value or value != value  # -0.0 and friends compare equal anyway
    assert encode(decode(raw)) == raw


# -- keys --------------------------------------------------------------------------------


def test_key_files(tmp_path):
    signer = generate()
    path = save_key(signer, tmp_path / "k.pem")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_key(path).id == signer.id
    enc = save_key(signer, tmp_path / "e.pem", passphrase="kopi luwak")
    assert load_key(enc, passphrase="kopi luwak").public_key == signer.public_key
    with pytest.raises(InvalidKey, match="passphrase"):
        load_key(enc)
    with pytest.raises(InvalidKey):
        load_key(enc, passphrase="wrong")
    with pytest.raises(InvalidKey, match="already exists"):
        save_key(signer, path)
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(InvalidKey):
        load_key(tmp_path / "junk.pem")


# -- genesis -----------------------------------------------------------------------------


def test_genesis_round_trip_and_hash(net):
    again = Genesis.from_json(net.genesis.to_json())
    assert again.hash == net.genesis.hash
    assert net.genesis.f == 1 and net.genesis.quorum == 3


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.update(chain_id="Bad Id"), "chain_id"),
        (lambda d: d["validators"][0].update(id="0" * 16), "derived from its public key"),
        (lambda d: d["members"][0].update(roles=["emperor"]), "roles"),
        (lambda d: d["params"].update(window=-1), "positive integer"),
        (lambda d: d["params"].update(speed=1), "unknown parameter"),
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d["members"].append(dict(d["members"][0])), "twice"),
    ],
)
def test_genesis_rules(net, mutate, match):
    doc = json.loads(net.genesis.to_json())
    mutate(doc)
    with pytest.raises(InvalidGenesis, match=match):
        Genesis(doc)


# -- records -----------------------------------------------------------------------------


def test_record_sign_verify(net):
    rec = sign_event(net.members["gayo-coop"], net.genesis, EVENT)
    again = SignedRecord.from_bytes(rec.raw)
    assert again.id == rec.id == sha256(rec.raw)
    again.verify(net.genesis)


def test_record_every_byte_flip_fails(net):
    rec = sign_event(net.members["gayo-coop"], net.genesis, EVENT)
    for i in range(len(rec.raw)):
        raw = bytearray(rec.raw)
        raw[i] ^= 0x01
        with pytest.raises(RantaiError):
            SignedRecord.from_bytes(bytes(raw)).verify(net.genesis)


def test_record_rules(net):
    g = net.genesis
    auditor = net.members["auditor"]
    with pytest.raises(RoleDenied):
        sign_event(auditor, g, EVENT).verify(g)
    with pytest.raises(UnknownMember):
        sign_event(net.validators[0], g, EVENT).verify(g)
    with pytest.raises(WrongChain):
        sign_event(net.members["gayo-coop"], sha256(b"other chain"), EVENT).verify(g)
    # A signature over the same bytes but made for another kind of message never verifies.
    rec = sign_event(net.members["gayo-coop"], g, EVENT)
    forged = dict(rec.fields)
    forged["signature"] = net.members["gayo-coop"].sign(COMMIT_KIND, g.hash, rec.unsigned_bytes())
    with pytest.raises(InvalidSignature):
        SignedRecord.from_fields(forged).verify(g)
    with pytest.raises(InvalidRecord, match="fields"):
        SignedRecord.from_bytes(encode({"version": 1}))


# -- blocks, certificates, receipts ------------------------------------------------------


def make_block(net, height=1, prev=None, n=5):
    member = net.members["gayo-coop"]
    recs = [sign_event(member, net.genesis, {**EVENT, "eventTime": f"2026-03-01T08:00:0{i}.000+07:00"})
            for i in range(n)]
    block = Block.build(
        chain=net.genesis.hash,
        height=height,
        prev_hash=prev or net.genesis.hash,
        view=0,
        proposer=net.validators[0].id,
        timestamp=1_767_000_000_000,
        records=recs,
    )
    body = commit_body(height, 0, block.hash)
    votes = tuple(sorted((v.id, v.sign(COMMIT_KIND, net.genesis.hash, body)) for v in net.validators[:3]))
    return block, CommitCertificate(height, 0, block.hash, votes)


def test_block_round_trip_and_check(net):
    block, cert = make_block(net)
    again = Block.from_bytes(block.raw)
    assert again.hash == block.hash and again.record_ids() == block.record_ids()
    check_block(again, net.genesis, Parent.genesis(net.genesis))
    check_certificate(cert, net.genesis, again.header)
    with pytest.raises(InvalidBlock, match="prev_hash"):
        check_block(again, net.genesis, Parent(0, b"\x00" * 32, 0))


def test_header_every_byte_flip_changes_hash(net):
    block, cert = make_block(net)
    raw = block.header.encode()
    for i in range(len(raw)):
        b = bytearray(raw)
        b[i] ^= 0x01
        try:
            h = BlockHeader.from_obj(decode(bytes(b)))
        except RantaiError:
            continue
        with pytest.raises(InvalidCertificate):
            check_certificate(cert, net.genesis, h)


def test_certificate_rules(net):
    block, cert = make_block(net)
    two = CommitCertificate(cert.height, cert.view, cert.block_hash, cert.votes[:2])
    with pytest.raises(InvalidCertificate, match="3 needed"):
        check_certificate(two, net.genesis, block.header)
    dup = CommitCertificate(cert.height, cert.view, cert.block_hash, cert.votes[:2] + cert.votes[:1])
    with pytest.raises(InvalidCertificate, match="twice"):
        check_certificate(dup, net.genesis, block.header)
    for i in range(3):
        vid, sig = cert.votes[i]
        for j in range(len(sig)):
            bad = bytearray(sig)
            bad[j] ^= 0x80
            votes = list(cert.votes)
            votes[i] = (vid, bytes(bad))
            with pytest.raises(InvalidCertificate):
                check_certificate(CommitCertificate(1, 0, block.hash, tuple(votes)), net.genesis, block.header)
    # Signed for another view: the statement differs, so it never verifies.
    with pytest.raises(InvalidCertificate):
        check_certificate(CommitCertificate(1, 1, block.hash, cert.votes), net.genesis, block.header)


def make_receipt(net, block, cert, index):
    ids = block.record_ids()
    return Receipt(block.records[index], index, tuple(merkle.inclusion_proof(ids, index)), block.header, cert)


def test_receipt_verifies_and_round_trips(net):
    block, cert = make_block(net)
    for i in range(len(block.records)):
        r = make_receipt(net, block, cert, i)
        r.verify(net.genesis)
        Receipt.from_obj(decode(encode(r.to_obj()))).verify(net.genesis)
        Receipt.from_json(r.to_json()).verify(net.genesis)


def test_receipt_every_byte_flip_fails(net):
    block, cert = make_block(net, n=3)
    raw = encode(make_receipt(net, block, cert, 1).to_obj())
    for i in range(len(raw)):
        b = bytearray(raw)
        b[i] ^= 0x01
        with pytest.raises(RantaiError):
            Receipt.from_obj(decode(bytes(b))).verify(net.genesis)


def test_receipt_json_tamper(net):
    block, cert = make_block(net)
    doc = json.loads(make_receipt(net, block, cert, 2).to_json())
    doc["event"]["bizStep"] = "receiving"
    with pytest.raises(VerificationError, match="readable event"):
        Receipt.from_json(json.dumps(doc))
    other = Genesis.build("rantai-other", [(v.public_key, "v", "http://127.0.0.1:1") for v in net.validators], [])
    with pytest.raises(RantaiError):
        make_receipt(net, block, cert, 2).verify(other)
