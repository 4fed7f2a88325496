"""Generate rantai's conformance vectors (tests/vectors/*.json) deterministically.

    python tests/vectors/generate.py          # rewrite the files
    python tests/vectors/generate.py --check  # exit 1 if a committed file differs

Every key comes from a seed (``Signer.from_seed(H(label))``; Ed25519 signatures are deterministic),
every timestamp and nonce is fixed, so running this twice gives the same bytes; a test
(tests/client/test_vectors.py) checks that the committed files are exactly what this script writes
and runs every case through ``rantai.client.format.validity``. README.md in this folder says what
each file holds and how a verifier in another language should run the cases.

Non-canonical byte strings are built by hand (``msgpack.packb`` with other options, or edited
bytes), never by ``encode``, which cannot produce them.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack

from rantai.client.format import merkle
from rantai.client.format.blocks import Block
from rantai.client.format.consortium import CHANGEABLE_PARAMS, Consortium
from rantai.client.format.encoding import encode
from rantai.client.format.epcis.event_hash import event_digest
from rantai.client.format.errors import RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import POSSESSION_KIND, Governance, possession_body
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import RECORD_KIND, SignedRecord, sign_change
from rantai.client.format.validity import Parent, check_block, check_record
from rantai.consensus.certificate import COMMIT_KIND, CommitCertificate, commit_body
from rantai.consensus.crypto import Signer, sha256

HERE = Path(__file__).resolve().parent
FILES = ("genesis.json", "encoding.json", "records.json", "blocks.json", "certificates.json", "receipts.json",
         "heads.json", "genesis-governance.json", "governance.json")

T0 = 1_772_326_800_000  # 2026-03-01T01:00:00Z: records' submitted_at
B0 = 1_772_326_900_000  # block timestamps
PARAMS = {"max_record_bytes": 1024, "max_block_bytes": 4096, "max_block_records": 4}


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


VALIDATORS = [Signer.from_seed(seed(f"vector validator {i}")) for i in range(4)]
ACME = Signer.from_seed(seed("vector member acme"))  # submitter
WATCHDOG = Signer.from_seed(seed("vector member watchdog"))  # auditor only
STRANGER = Signer.from_seed(seed("vector stranger"))  # not in the genesis

GENESIS = Genesis.build(
    "rantai-vectors",
    [(v.public_key, f"validator-{i}", f"http://127.0.0.1:{7100 + i}") for i, v in enumerate(VALIDATORS)],
    [(ACME.public_key, "acme", "Acme Coffee", ["submitter"]),
     (WATCHDOG.public_key, "watchdog", "Watchdog Audit", ["auditor"])],
    params=PARAMS,
    created_at="2026-01-01T00:00:00Z",
)
G = GENESIS.hash
OTHER_CHAIN = sha256(b"another chain")


def pack(value: Any, **options: Any) -> bytes:
    """msgpack with Python's insertion order and the given options: how non-canonical bytes are made."""
    return msgpack.packb(value, use_bin_type=True, **options)


# -- events and records ----------------------------------------------------------------------------


def event(i: int, epcs: int = 1) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": f"2026-03-01T08:{i // 60 % 60:02d}:{i % 60:02d}.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": [f"urn:epc:id:sgtin:0614141.107346.{1000 + i * 100 + k}" for k in range(epcs)],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }


def typed_event() -> dict[str, Any]:
    """An event whose values include the integers 0 and 100 and a float (the receipts' type cases)."""
    return {
        "@context": [{"example": "https://example.com/ns/"}],
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T09:00:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": [],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": 100, "uom": "KGM"},
                         {"epcClass": "urn:epc:class:lgtin:4012345.012345.998878", "quantity": 2.5, "uom": "KGM"}],
        "example:count": 0,
    }


def fields_of(ev: dict[str, Any], i: int, signer: Signer = ACME, chain: bytes = G) -> dict[str, Any]:
    return {"chain": chain, "event": ev, "nonce": bytes([i]) * 16, "submitted_at": T0 + i, "submitter": signer.id,
            "version": 1}


def signed_fields(fields: dict[str, Any], signer: Signer = ACME, sign_chain: bytes = G) -> dict[str, Any]:
    """``fields`` plus the signature of ``signer`` over their canonical bytes (whatever they hold)."""
    return {**fields, "signature": signer.sign(RECORD_KIND, sign_chain, encode(fields))}


def record(i: int, ev: dict[str, Any] | None = None, signer: Signer = ACME) -> SignedRecord:
    return SignedRecord.from_fields(signed_fields(fields_of(event(i) if ev is None else ev, i, signer), signer))


def with_field(i: int, **changes: Any) -> bytes:
    """A record with some fields changed, then properly signed: only the change breaks a rule."""
    return encode(signed_fields({**fields_of(event(i), i), **changes}))


def flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def case(name: str, rule: str | None, desc: str, **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "valid": rule is None}
    if rule is not None:
        out["rule"] = rule
    out["description"] = desc
    out.update(data)
    return out


# -- encoding.json ---------------------------------------------------------------------------------


def nested(depth: int) -> Any:
    """A value with ``depth + 1`` arrays inside one another: the innermost array sits at depth ``depth``."""
    v: Any = [0]
    for _ in range(depth):
        v = [v]
    return v


def encoding_cases() -> list[dict[str, Any]]:
    ok = [
        ("nil-false-true", [None, False, True]),
        ("int-fixint", [0, 127, -1, -32]),
        ("int-widths", [128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]),
        ("int-negative-widths", [-33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]),
        ("float64", [0.5, -2.5, 1e300, 0.0]),
        ("text-and-bytes", ["rantai", b"rantai", "", b""]),
        ("map-key-order", {"a": 1, "aa": 2, "b": 3, "z": 4, "é": 5}),
        ("depth-32", nested(32)),
    ]
    cases = [case(name, None, "canonical: decodes, and re-encodes to the same bytes", bytes=encode(v).hex())
             for name, v in ok]
    bad = [
        ("unsorted-keys", pack({"b": 1, "a": 2}), "map keys out of UTF-8 byte order"),
        ("unsorted-keys-utf8", pack({"é": 1, "z": 2}), "é (c3 a9) sorts after z (7a) by UTF-8 bytes"),
        ("duplicate-keys", bytes.fromhex("82a16101a16102"), "the key a twice"),
        ("long-form-uint8", bytes.fromhex("cc01"), "1 as uint8 (cc 01); the shortest form is the fixint 01"),
        ("long-form-uint64", bytes.fromhex("cf0000000000000001"), "1 as uint64"),
        ("long-form-int8-positive", bytes.fromhex("d001"), "1 as int8 (d0 01): non-negative integers use cc-cf"),
        ("long-form-int16", bytes.fromhex("d1ff80"), "-128 as int16; the shortest form is d0 80"),
        ("float32", bytes.fromhex("ca3f000000"), "0.5 as float32"),
        ("nan", bytes.fromhex("cb7ff8000000000000"), "NaN has no canonical form"),
        ("infinity", bytes.fromhex("cb7ff0000000000000"), "+infinity has no canonical form"),
        ("trailing-bytes", bytes.fromhex("0100"), "a second value after the first"),
        ("empty", b"", "no value at all"),
        ("truncated", bytes.fromhex("9201"), "an array of 2 with one element"),
        ("str8-for-short-text", bytes.fromhex("d90161"), "'a' as str8; the shortest form is a1 61"),
        ("bin16-for-short-bytes", bytes.fromhex("c5000161"), "b'a' as bin16; the shortest form is c4 01 61"),
        ("array16-for-short-array", bytes.fromhex("dc000101"), "[1] as array16"),
        ("map16-for-short-map", bytes.fromhex("de0001a16101"), "{a: 1} as map16"),
        ("ext-type", bytes.fromhex("d40100"), "ext types are not allowed"),
        ("int-map-key", bytes.fromhex("810101"), "map keys are text"),
        ("bin-map-key", bytes.fromhex("81c4016101"), "map keys are text, not byte strings"),
        ("invalid-utf8", bytes.fromhex("a1ff"), "text that is not UTF-8"),
        ("depth-33", pack(nested(33)), "an array at depth 33 (the limit is 32)"),
    ]
    cases += [case(name, "encoding", desc, bytes=b.hex()) for name, b, desc in bad]
    return cases


# -- records.json ----------------------------------------------------------------------------------


def record_cases() -> list[dict[str, Any]]:
    base = record(1)
    sf = dict(base.fields)
    raw = base.raw
    typed = record(2, typed_event())
    cases = [
        case("valid", None, "a signed ObjectEvent of member acme", record=raw.hex()),
        case("valid-typed-values", None, "an event holding the integers 0 and 100, a float and an extension field",
             record=typed.raw.hex()),
        case("valid-at-size-limit", None, "a record of exactly max_record_bytes (1024) bytes",
             record=_sized_record(PARAMS["max_record_bytes"]).raw.hex()),
    ]
    v = raw.rindex(b"\xa7version\x01")
    bad: list[tuple[str, str, str, bytes]] = [
        # version
        ("version-true", "record version", "version is true (c3), not the integer 1", with_field(3, version=True)),
        ("version-float", "record version", "version is 1.0 (float64), not the integer 1",
         with_field(3, version=1.0)),
        ("version-2", "record version", "version 2 is not supported", with_field(3, version=2)),
        ("version-text", "record version", "version is the text '1'", with_field(3, version="1")),
        # shape
        ("not-a-map", "record shape", "an array, not a map", encode([1, 2, 3])),
        ("missing-nonce", "record shape", "no nonce field",
         encode(signed_fields({k: x for k, x in fields_of(event(3), 3).items() if k != "nonce"}))),
        ("extra-field", "record shape", "an unknown field note",
         encode(signed_fields({**fields_of(event(3), 3), "note": "hi"}))),
        # fields
        ("chain-31-bytes", "record field", "chain is 31 bytes", with_field(3, chain=G[:31])),
        ("chain-as-text", "record field", "chain is the genesis hash as hex text", with_field(3, chain=G.hex())),
        ("submitter-upper-case", "record field", "submitter in upper-case hex",
         with_field(3, submitter=ACME.id.upper())),
        ("submitter-15-digits", "record field", "submitter of 15 hex digits", with_field(3, submitter=ACME.id[:15])),
        ("submitter-as-bytes", "record field", "submitter as a byte string", with_field(3, submitter=ACME.id.encode())),
        ("nonce-15-bytes", "record field", "nonce of 15 bytes", with_field(3, nonce=bytes(15))),
        ("nonce-as-text", "record field", "nonce as text", with_field(3, nonce="0" * 16)),
        ("submitted-at-negative", "record field", "submitted_at -1", with_field(3, submitted_at=-1)),
        ("submitted-at-2-63", "record field", "submitted_at 2^63 (the range is [0, 2^63))",
         with_field(3, submitted_at=2**63)),
        ("submitted-at-float", "record field", "submitted_at as a float", with_field(3, submitted_at=float(T0))),
        ("submitted-at-true", "record field", "submitted_at true", with_field(3, submitted_at=True)),
        ("event-array", "record field", "event is an array", with_field(3, event=[event(3)])),
        ("event-text", "record field", "event is JSON text", with_field(3, event=json.dumps(event(3)))),
        ("signature-63-bytes", "record field", "signature of 63 bytes",
         encode({**sf, "signature": sf["signature"][:63]})),
        ("signature-as-text", "record field", "signature as hex text",
         encode({**sf, "signature": sf["signature"].hex()})),
        # non-canonical encodings of an otherwise valid record
        ("unsorted-keys", "encoding", "the valid record's map with its keys in reverse order",
         pack(dict(reversed(list(sf.items()))))),
        ("long-form-int", "encoding", "version 1 written as uint8 (cc 01)",
         raw[:v] + b"\xa7version\xcc\x01" + raw[v + 9:]),
        ("signed-form-submitted-at", "encoding", "submitted_at written as int64 (d3); a non-negative integer is "
         "written unsigned (cf)",
         raw.replace(b"\xcf" + struct.pack(">Q", T0 + 1), b"\xd3" + struct.pack(">q", T0 + 1))),
        ("float32", "encoding", "the valid typed record with its float 2.5 written as float32",
         pack(typed.fields, use_single_float=True)),
        ("trailing-bytes", "encoding", "the valid record followed by one byte 00", raw + b"\x00"),
        ("duplicate-keys", "encoding", "the valid record with a second version entry (map of 8 entries)",
         b"\x88" + raw[1:] + b"\xa7version\x01"),
        # membership and signature
        ("wrong-chain", "wrong chain", "signed for another chain (chain and signature both for it)",
         encode(signed_fields(fields_of(event(3), 3, chain=OTHER_CHAIN), sign_chain=OTHER_CHAIN))),
        ("unknown-member", "unknown member", "signed by a key that is not a member", record(3, signer=STRANGER).raw),
        ("role-denied", "role denied", "signed by watchdog, a member without the submitter role",
         record(3, signer=WATCHDOG).raw),
        ("bad-signature", "signature does not verify", "the valid record with one bit of its signature flipped",
         encode({**sf, "signature": flip(sf["signature"], 0)})),
        ("signature-of-another-record", "signature does not verify", "the valid record with its nonce changed",
         encode({**sf, "nonce": bytes([9]) * 16})),
        ("signature-by-another-member", "signature does not verify",
         "submitter acme, signed by watchdog's key", encode(signed_fields(fields_of(event(3), 3), WATCHDOG))),
        ("signature-of-commit-kind", "signature does not verify", "acme's signature of the record as kind commit",
         encode({**fields_of(event(3), 3), "signature": ACME.sign(COMMIT_KIND, G, encode(fields_of(event(3), 3)))})),
        ("too-large", "too large", "a valid signed record of 1025 bytes (max_record_bytes is 1024)",
         _sized_record(PARAMS["max_record_bytes"] + 1).raw),
        # the event
        ("schema-no-action", "schema", "an ObjectEvent without action",
         record(3, {k: x for k, x in event(3).items() if k != "action"}).raw),
        ("schema-bad-time", "schema", "eventTime that is not a date-time",
         record(3, {**event(3), "eventTime": "yesterday"}).raw),
    ]
    cases += [case(name, rule, desc, record=b.hex()) for name, rule, desc, b in bad]
    return cases


def _sized_record(size: int, i: int = 7) -> SignedRecord:
    """A valid record of exactly ``size`` bytes: event ``i`` padded by an extension field ``example:note``."""
    ev = {"@context": [{"example": "https://example.com/ns/"}], **event(i, 10), "example:note": ""}
    pad = size - len(record(i, ev).raw)
    assert pad >= 0, pad
    r = record(i, {**ev, "example:note": "x" * pad})
    if len(r.raw) != size:  # the note's length prefix grew (str8 at 32 characters): one fewer
        r = record(i, {**ev, "example:note": "x" * (pad - (len(r.raw) - size))})
    assert len(r.raw) == size, (len(r.raw), size)
    return r


# -- blocks.json -----------------------------------------------------------------------------------


def parent_obj(height: int, hash_: bytes, timestamp: int) -> dict[str, Any]:
    return {"height": height, "hash": hash_.hex(), "timestamp": timestamp}


def build(records: list[SignedRecord], *, height: int = 1, prev: bytes = G, view: int = 0, proposer: str | None = None,
          timestamp: int = B0) -> Block:
    return Block.build(chain=G, height=height, prev_hash=prev, view=view,
                       proposer=VALIDATORS[view % 4].id if proposer is None else proposer, timestamp=timestamp,
                       records=records)


def block_bytes(header: dict[str, Any], records: list[bytes]) -> bytes:
    return encode({"header": header, "records": records})


def block_cases() -> tuple[list[dict[str, Any]], Block, list[SignedRecord]]:
    r = [record(10 + i) for i in range(6)]
    b1 = build(r[:3])
    gp = parent_obj(0, G, 0)
    p1 = parent_obj(1, b1.hash, B0)
    mem1 = {"records": {x.id.hex(): 1 for x in r[:3]}, "events": {event_digest(x.event).hex(): 1 for x in r[:3]}}
    b2 = build(r[3:5], height=2, prev=b1.hash, timestamp=B0 + 1000)
    h1 = b1.header.to_obj()

    def hdr(**changes: Any) -> dict[str, Any]:
        return {**h1, **changes}

    def raw1(**changes: Any) -> bytes:
        return block_bytes(hdr(**changes), [x.raw for x in r[:3]])

    same_event = SignedRecord.from_fields(signed_fields({**fields_of(r[0].event, 50)}))  # r[0]'s event, other nonce
    declared = {**r[0].event, "errorDeclaration": {"declarationTime": "2026-03-02T09:00:00.000+07:00",
                                                   "reason": "incorrect_data"}}
    correction = SignedRecord.from_fields(signed_fields(fields_of(declared, 51)))  # same hash ID as r[0]'s event
    correction_again = SignedRecord.from_fields(signed_fields(fields_of(declared, 52)))
    big = _sized_record(PARAMS["max_record_bytes"] + 1)
    fat = [_sized_record(1020, 20 + i) for i in range(4)]  # 4 records: the block is over 4096 bytes
    cases = [
        case("valid-first", None, "block 1: three records, proposed by validator 0 in view 0", block=b1.raw.hex(),
             parent=gp),
        case("valid-second", None, "block 2 on block 1, with the chain memory of block 1", block=b2.raw.hex(),
             parent=p1, memory=mem1),
        case("valid-correction", None, "an event and its error declaration (same hash ID): the way a record is "
             "corrected", block=build([r[0], correction]).raw.hex(), parent=gp),
        case("valid-empty", None, "block 2 with no records (records_root is H(''))",
             block=build([], height=2, prev=b1.hash, timestamp=B0).raw.hex(), parent=p1, memory=mem1),
        case("valid-view-5", None, "block 1 proposed in view 5 by validator 1 (5 mod 4)",
             block=build(r[:3], view=5).raw.hex(), parent=gp),
        case("valid-timestamp-at-skew", None,
             "timestamp exactly max_clock_skew_ms (15000) ahead of the validator's clock",
             block=b1.raw.hex(), parent=gp, now_ms=B0 - 15000),
        case("valid-max-records", None, "max_block_records (4) records", block=build(r[:4]).raw.hex(), parent=gp),
    ]
    hb = encode(h1)
    bad: list[tuple[str, str, str, bytes, dict[str, Any]]] = [
        ("trailing-bytes", "encoding", "block 1 followed by a byte 00", b1.raw + b"\x00", {}),
        ("unsorted-header-keys", "encoding", "block 1 with its header's keys in reverse order",
         b1.raw.replace(hb, pack(dict(reversed(list(h1.items()))))), {}),
        ("records-not-array", "block shape", "records is a map", encode({"header": h1, "records": {}}), {}),
        ("record-as-array", "block shape", "a record that is an array, not a byte string",
         block_bytes(h1, [r[0].raw, r[1].raw, [1]]), {}),
        ("extra-key", "block shape", "a third key, certificate",
         encode({"certificate": None, "header": h1, "records": [x.raw for x in r[:3]]}), {}),
        ("header-height-float", "header field", "height 1.0", raw1(height=1.0), {}),
        ("header-view-negative", "header field", "view -1", raw1(view=-1), {}),
        ("header-proposer-upper", "header field", "proposer in upper-case hex", raw1(proposer=VALIDATORS[0].id.upper()),
         {}),
        ("header-prev-hash-31", "header field", "prev_hash of 31 bytes", raw1(prev_hash=G[:31]), {}),
        ("header-missing-view", "header field", "no view",
         block_bytes({k: x for k, x in h1.items() if k != "view"}, [x.raw for x in r[:3]]), {}),
        ("wrong-chain", "wrong chain", "header chain is another genesis hash", raw1(chain=OTHER_CHAIN), {}),
        ("height", "height", "header says height 2 on the genesis", raw1(height=2), {}),
        ("hash-link", "hash link", "prev_hash is not the parent's hash", raw1(prev_hash=OTHER_CHAIN), {}),
        ("record-count", "record count", "record_count 2 with three records", raw1(record_count=2), {}),
        ("records-root", "records root", "records in another order than the root's",
         block_bytes(h1, [r[1].raw, r[0].raw, r[2].raw]), {}),
        ("too-many-records", "block too large", "5 records (max_block_records is 4)", build(r[:5]).raw, {}),
        ("too-many-bytes", "block too large", "4 records of 1020 bytes: over max_block_bytes (4096)",
         build(fat).raw, {}),
        ("non-validator-proposer", "proposer", "proposer is a member, not a validator",
         build(r[:3], proposer=ACME.id).raw, {}),
        ("proposer-not-primary", "proposer", "validator 1 proposes in view 0 (validator 0 leads it)",
         build(r[:3], proposer=VALIDATORS[1].id).raw, {}),
        ("timestamp-below-parent", "timestamp", "block 2's timestamp 1 ms below block 1's",
         build(r[3:5], height=2, prev=b1.hash, timestamp=B0 - 1).raw, {"parent": p1, "memory": mem1}),
        ("timestamp-ahead", "timestamp", "15001 ms ahead of the validating validator's clock (now_ms)",
         b1.raw, {"now_ms": B0 - 15001}),
        ("record-too-large", "too large", "a record of 1025 bytes (max_record_bytes is 1024)", build([big]).raw, {}),
        ("repeated-record", "duplicate record", "the same record twice", build([r[0], r[1], r[0]]).raw, {}),
        ("record-in-chain", "duplicate record", "block 2 repeats a record of block 1 (memory)",
         build([r[3], r[0]], height=2, prev=b1.hash, timestamp=B0).raw, {"parent": p1, "memory": mem1}),
        ("repeated-event", "duplicate event", "two records (different nonces) of the same event",
         build([r[0], same_event]).raw, {}),
        ("corrected-twice", "duplicate event", "an event and two error declarations of it (one correction only)",
         build([r[0], correction, correction_again]).raw, {}),
        ("event-in-chain", "duplicate event", "block 2 holds a new record of an event of block 1 (memory)",
         build([r[3], same_event], height=2, prev=b1.hash, timestamp=B0).raw, {"parent": p1, "memory": mem1}),
        ("record-version-true", "record version", "a record with version true",
         build([r[0], _raw_record(with_field(3, version=True))]).raw, {}),
        ("record-version-float", "record version", "a record with version 1.0",
         build([_raw_record(with_field(3, version=1.0))]).raw, {}),
        ("record-not-canonical", "encoding", "a record whose keys are unsorted",
         build([_raw_record(pack(dict(reversed(list(r[0].fields.items())))))]).raw, {}),
        ("record-bad-signature", "signature does not verify", "a record with a flipped signature bit",
         build([_raw_record(encode({**r[0].fields, "signature": flip(r[0].signature, 5)}))]).raw, {}),
        ("record-unknown-member", "unknown member", "a record signed by a non-member",
         build([record(3, signer=STRANGER)]).raw, {}),
        ("record-role-denied", "role denied", "a record of watchdog (auditor role only)",
         build([record(3, signer=WATCHDOG)]).raw, {}),
    ]
    for name, rule, desc, b, extra in bad:
        cases.append(case(name, rule, desc, block=b.hex(), parent=extra.get("parent", gp),
                          **{k: x for k, x in extra.items() if k != "parent"}))
    return cases, b1, r


def _raw_record(raw: bytes) -> SignedRecord:
    """Bytes carried as a block's record without parsing (Block.build only needs raw and id)."""
    return SignedRecord(raw, sha256(raw), {})


# -- certificates.json -----------------------------------------------------------------------------


def vote(signer: Signer, height: int, view: int, block_hash: bytes, chain: bytes = G) -> tuple[str, bytes]:
    return signer.id, signer.sign(COMMIT_KIND, chain, commit_body(height, view, block_hash))


def certify(block: Block, view: int = 0, signers: list[Signer] | None = None) -> CommitCertificate:
    signers = VALIDATORS if signers is None else signers
    votes = sorted(vote(s, block.height, view, block.hash) for s in signers)
    return CommitCertificate(block.height, view, block.hash, tuple(votes))


def cert_obj(height: int, view: int, block_hash: bytes, votes: list[tuple[str, bytes]]) -> dict[str, Any]:
    return {"block_hash": block_hash, "height": height, "view": view, "votes": [[v, s] for v, s in votes]}


def certificate_cases(b1: Block) -> list[dict[str, Any]]:
    r = [record(10 + i) for i in range(3)]
    b3 = build(r, view=2)  # header view 2, proposer validator 2
    h, bh = b1.height, b1.hash
    by_id = sorted(VALIDATORS, key=lambda s: s.id)
    votes4 = sorted(vote(s, h, 0, bh) for s in VALIDATORS)
    three = votes4[:3]
    stranger = vote(STRANGER, h, 0, bh)
    cases = [
        case("valid-four-votes", None, "all four validators", header=b1.header.encode().hex(),
             certificate=encode(cert_obj(h, 0, bh, votes4)).hex()),
        case("valid-quorum", None, "three votes: 2f+1 with n = 4", header=b1.header.encode().hex(),
             certificate=encode(cert_obj(h, 0, bh, three)).hex()),
        case("valid-later-view", None, "committed in view 3, after a view change; the header says view 2",
             header=b3.header.encode().hex(),
             certificate=encode(cert_obj(h, 3, b3.hash, sorted(vote(s, h, 3, b3.hash) for s in by_id[:3]))).hex()),
    ]
    bad: list[tuple[str, str, str, Block, Any]] = [
        ("below-quorum", "certificate quorum", "two votes (2f+1 = 3)", b1, cert_obj(h, 0, bh, votes4[:2])),
        ("no-votes", "certificate quorum", "no votes", b1, cert_obj(h, 0, bh, [])),
        ("unsorted-votes", "certificate votes", "four valid votes in reverse id order", b1,
         cert_obj(h, 0, bh, votes4[::-1])),
        ("duplicate-signer", "certificate votes", "one validator's vote twice, and one other", b1,
         cert_obj(h, 0, bh, [votes4[0], votes4[0], votes4[1]])),
        ("unknown-validator", "certificate votes", "three validators and a non-validator's valid signature", b1,
         cert_obj(h, 0, bh, sorted(three + [stranger]))),
        ("unknown-validator-named-needed", "certificate shape",
         "a vote whose id is the text 'needed': not a validator id at all (16 lower-case hex digits)", b1,
         cert_obj(h, 0, bh, sorted(three + [("needed", stranger[1])]))),
        ("bad-signature", "certificate signature", "a vote with one bit flipped", b1,
         cert_obj(h, 0, bh, [votes4[0], (votes4[1][0], flip(votes4[1][1], 3)), votes4[2]])),
        ("signature-for-other-view", "certificate signature", "view 1 claimed; the votes sign view 0", b1,
         cert_obj(h, 1, bh, three)),
        ("signature-for-other-chain", "certificate signature", "votes signed for another chain", b1,
         cert_obj(h, 0, bh, sorted(vote(s, h, 0, bh, OTHER_CHAIN) for s in by_id[:3]))),
        ("view-below-header", "certificate view", "header view 2, certificate (validly signed) for view 1", b3,
         cert_obj(h, 1, b3.hash, sorted(vote(s, h, 1, b3.hash) for s in by_id[:3]))),
        ("wrong-height", "certificate height", "a valid certificate for height 2 of the same hash", b1,
         cert_obj(2, 0, bh, sorted(vote(s, 2, 0, bh) for s in by_id[:3]))),
        ("wrong-hash", "certificate block hash", "a valid certificate for another block hash", b1,
         cert_obj(h, 0, OTHER_CHAIN, sorted(vote(s, h, 0, OTHER_CHAIN) for s in by_id[:3]))),
        ("missing-votes", "certificate shape", "no votes key", b1,
         {"block_hash": bh, "height": h, "view": 0}),
        ("height-as-text", "certificate shape", "height '1'", b1, {**cert_obj(h, 0, bh, three), "height": "1"}),
        ("vote-without-signature", "certificate shape", "a vote [id] with no signature", b1,
         {**cert_obj(h, 0, bh, three), "votes": [[three[0][0]]]}),
        ("signature-as-text", "certificate shape", "a signature as hex text", b1,
         {**cert_obj(h, 0, bh, []), "votes": [[v, s.hex()] for v, s in three]}),
        ("missing", "missing certificate", "no certificate (nil)", b1, None),
    ]
    for name, rule, desc, blk, obj in bad:
        cases.append(case(name, rule, desc, header=blk.header.encode().hex(), certificate=encode(obj).hex()))
    cases.append(case("unsorted-keys", "encoding", "a valid certificate with its keys in reverse order",
                      header=b1.header.encode().hex(),
                      certificate=pack(dict(reversed(list(cert_obj(h, 0, bh, three).items())))).hex()))
    return cases


# -- receipts.json ---------------------------------------------------------------------------------


def receipt_cases() -> list[dict[str, Any]]:
    typed = record(2, typed_event())
    recs = [record(10), typed, record(11)]
    blk = build(recs)
    cert = certify(blk, signers=VALIDATORS[:3])
    rc = Receipt(typed, 1, tuple(merkle.inclusion_proof(blk.record_ids(), 1)), blk.header, cert)
    text = rc.to_json()
    doc = json.loads(text)

    def dump(d: dict[str, Any]) -> str:
        return json.dumps(d, indent=2, ensure_ascii=False) + "\n"

    def edit(fn: Any) -> str:
        d = json.loads(text)
        fn(d)
        return dump(d)

    def event_edit(**changes: Any) -> str:
        return edit(lambda d: d["event"].update(changes))

    forged = SignedRecord.from_fields({**typed.fields, "event": {**typed.event, "bizStep": "shipping"}})
    cases = [
        case("valid", None, "record 1 of a three-record block, certified by three validators", file=text),
        case("valid-key-order", None, "the same receipt with its JSON keys in another order and no indentation",
             file=json.dumps(dict(reversed(list(doc.items())))) + "\n"),
    ]
    up = doc["record_id"].upper()
    bad: list[tuple[str, str, str, str]] = [
        ("reversed-votes", "certificate votes", "the certificate's votes in reverse order",
         edit(lambda d: d["certificate"]["votes"].reverse())),
        ("upper-case-record-id", "receipt shape", "record_id in upper-case hex",
         edit(lambda d: d.update(record_id=up))),
        ("upper-case-path", "receipt shape", "a path hash in upper-case hex",
         edit(lambda d: d["path"].__setitem__(0, d["path"][0].upper()))),
        ("upper-case-signature", "receipt shape", "a vote signature in upper-case hex",
         edit(lambda d: d["certificate"]["votes"][0].__setitem__(1, d["certificate"]["votes"][0][1].upper()))),
        ("short-block-hash", "receipt shape", "certificate.block_hash of 62 hex digits",
         edit(lambda d: d["certificate"].update(block_hash=d["certificate"]["block_hash"][:62]))),
        ("extra-key", "receipt shape", "an unknown key note", edit(lambda d: d.update(note="hi"))),
        ("missing-event", "receipt shape", "no event key", edit(lambda d: d.pop("event"))),
        ("wrong-format", "receipt shape", "format rantai-receipt/2",
         edit(lambda d: d.update(format="rantai-receipt/2"))),
        ("genesis-hash-mismatch", "receipt shape", "genesis_hash differs from the header's chain",
         edit(lambda d: d.update(genesis_hash=OTHER_CHAIN.hex()))),
        ("event-0-to-false", "receipt event", "the readable event says false where the signed one says 0",
         event_edit(**{"example:count": False})),
        ("event-100-to-float", "receipt event", "the readable event says 100.0 where the signed one says 100",
         text.replace('"quantity": 100,', '"quantity": 100.0,')),
        ("event-changed", "receipt event", "the readable event names another bizStep",
         event_edit(bizStep="shipping")),
        ("bad-path", "inclusion proof", "a path hash with one bit flipped",
         edit(lambda d: d["path"].__setitem__(0, flip(bytes.fromhex(d["path"][0]), 0).hex()))),
        ("short-path", "inclusion proof", "a path with its last hash removed", edit(lambda d: d["path"].pop())),
        ("wrong-index", "inclusion proof", "index 0 with record 1's path", edit(lambda d: d.update(index=0))),
        ("record-changed", "signature does not verify",
         "the record's event changed (record_id and event updated to match); the signature no longer verifies",
         edit(lambda d: d.update(record=forged.raw.hex(), record_id=forged.id.hex(), event=forged.event))),
        ("below-quorum", "certificate quorum", "two votes", edit(lambda d: d["certificate"]["votes"].pop())),
        ("header-changed", "certificate signature", "the header's timestamp changed (the certificate signs the hash)",
         edit(lambda d: (d["header"].update(timestamp=B0 + 1),
                         d["certificate"].update(block_hash=_header_hash(d["header"]))))),
    ]
    cases += [case(name, rule, desc, file=f) for name, rule, desc, f in bad]
    return cases


def _header_hash(h: dict[str, Any]) -> str:
    obj = {**h, **{k: bytes.fromhex(h[k]) for k in ("chain", "prev_hash", "records_root")}}
    return sha256(encode(obj)).hex()


# -- heads.json ------------------------------------------------------------------------------------


def head_cases(b1: Block) -> list[dict[str, Any]]:
    cert = certify(b1, signers=VALIDATORS[:3]).to_obj()
    good = {"height": 1, "block_hash": b1.hash, "header": b1.header.to_obj(), "certificate": cert}
    empty = {"height": 0, "block_hash": G, "header": None, "certificate": None}
    rows = [
        ("empty", None, "height 0: the genesis hash, no header, no certificate", empty),
        ("height-1", None, "height 1 with block 1's header and certificate", good),
        ("empty-with-other-hash", "head", "height 0 naming another hash", {**empty, "block_hash": OTHER_CHAIN}),
        ("empty-with-header", "head", "height 0 with a header", {**empty, "header": b1.header.to_obj()}),
        ("negative-height", "head", "height -1", {**empty, "height": -1}),
        ("height-mismatch", "head", "height 2 with block 1's header", {**good, "height": 2}),
        ("hash-mismatch", "head", "block_hash is not the header's hash", {**good, "block_hash": OTHER_CHAIN}),
        ("no-certificate", "missing certificate", "height 1 without a certificate", {**good, "certificate": None}),
        ("few-votes", "certificate quorum", "a certificate of two votes",
         {**good, "certificate": {**cert, "votes": cert["votes"][:2]}}),
    ]
    return [case(name, rule, desc, head=encode(obj).hex()) for name, rule, desc, obj in rows]


# -- governance.json -------------------------------------------------------------------------------
# Its own genesis (genesis-governance.json): the four validators, three admins (majority: 2 approvals),
# acme (submitter) and watchdog (auditor), window 2, so a change approved at height H is in force from H + 3.

TANI, KOPI, PASAR = (Signer.from_seed(seed(f"vector admin {n}")) for n in ("tani", "kopi", "pasar"))
CAFE = Signer.from_seed(seed("vector member cafe"))  # joins by governance
CAFE_2 = Signer.from_seed(seed("vector member cafe 2"))  # a second candidate for the name cafe
ACME_2 = Signer.from_seed(seed("vector member acme rotated"))  # acme's key after a rotation
VALIDATOR_4 = Signer.from_seed(seed("vector validator 4"))  # joins the validators by governance
VALIDATOR_5 = Signer.from_seed(seed("vector validator 5"))  # validator-3's key after a rekey

GOV_PARAMS = {**PARAMS, "window": 2}
GOV_GENESIS = Genesis.build(
    "rantai-vectors-governance",
    [(v.public_key, f"validator-{i}", f"http://127.0.0.1:{7100 + i}") for i, v in enumerate(VALIDATORS)],
    [(TANI.public_key, "tani", "Koperasi Tani", ["admin", "submitter"]),
     (KOPI.public_key, "kopi", "Kopi Gayo", ["admin"]),
     (PASAR.public_key, "pasar", "Pasar Raya", ["admin"]),
     (ACME.public_key, "acme", "Acme Coffee", ["submitter"]),
     (WATCHDOG.public_key, "watchdog", "Watchdog Audit", ["auditor"])],
    params=GOV_PARAMS,
    created_at="2026-01-01T00:00:00Z",
)
GG = GOV_GENESIS.hash
DELAY = GOV_PARAMS["window"] + 1  # approved at H: in force from H + DELAY


def proof(signer: Signer, name: str, chain: bytes = GG, kind: str = POSSESSION_KIND) -> bytes:
    """The new key's proof of possession: its signature of ``name ‖ 0x00 ‖ public key`` as kind possession."""
    return signer.sign(kind, chain, possession_body(chain, name, signer.public_key))


def join(name: str = "cafe", who: Signer = CAFE, **over: Any) -> dict[str, Any]:
    return {"op": "add_member", "name": name, "organisation": "Kafe Senja", "public_key": who.public_key,
            "roles": ["submitter"], "proof": proof(who, name), **over}


def approve(p: SignedRecord | bytes) -> dict[str, Any]:
    return {"op": "approve", "proposal": p if isinstance(p, bytes) else p.id}


def summary(c: Consortium) -> dict[str, Any]:
    """What a governance vector expects of the consortium in force at a height."""
    return {
        "members": [{"name": m.name, "id": m.id, "roles": sorted(m.roles), "active": m.active}
                    for m in sorted(c.members.values(), key=lambda m: m.name)],
        "validators": [{"name": v.name, "id": v.id, "url": v.url} for v in c.validators],
        "approvals": "majority" if c.approvals is None else c.approvals,
        "needed": c.approvals_needed(),
        "params": {k: c.params[k] for k in sorted(CHANGEABLE_PARAMS)},
    }


class Seq:
    """A chain of the governance genesis, written block by block and checked by the reference as it grows
    (``Governance`` through ``check_block``, and ``check_record``): what a governance case replays."""

    def __init__(self) -> None:
        self.gov = Governance(GOV_GENESIS)
        self.parent = Parent.genesis(GOV_GENESIS)
        self.blocks: list[Block] = []
        self.n = 0

    @property
    def next(self) -> int:
        return self.parent.height + 1

    def _nonce(self) -> tuple[bytes, int]:
        self.n += 1
        return self.n.to_bytes(16, "big"), T0 + self.n

    def change(self, signer: Signer, change: dict[str, Any]) -> SignedRecord:
        nonce, at = self._nonce()
        return sign_change(signer, GG, change, nonce=nonce, submitted_at=at)

    def event(self, signer: Signer) -> SignedRecord:
        nonce, at = self._nonce()
        return SignedRecord.from_fields(signed_fields(
            {"chain": GG, "event": event(100 + self.n), "nonce": nonce, "submitted_at": at,
             "submitter": signer.id, "version": 1}, signer, GG))

    def build(self, records: list[SignedRecord], view: int = 0) -> Block:
        h = self.next
        c = self.gov.at(h)
        return Block.build(chain=GG, height=h, prev_hash=self.parent.hash, view=view,
                           proposer=c.validators[view % len(c.validators)].id, timestamp=B0 + 1000 * h,
                           records=records)

    def add(self, *records: SignedRecord, view: int = 0) -> Block:
        """Append a block of ``records`` that the reference accepts."""
        block = self.build(list(records), view)
        c = self.gov.at(block.height)
        check_block(block, c, self.parent, governance=self.gov)
        for r in records:
            check_record(r, c)
        self.blocks.append(block)
        self.parent = Parent.of(block.header)
        return block

    def until(self, height: int) -> None:
        """Empty blocks, so that the next block is at ``height``."""
        while self.next < height:
            self.add()

    def refused(self, rule: str, *records: SignedRecord, view: int = 0) -> list[str]:
        """The case's blocks: every block so far, then one of ``records`` that the reference refuses for ``rule``."""
        block = self.build(list(records), view)
        c = self.gov.at(block.height)
        try:
            check_block(block, c, self.parent, governance=self.gov.fork())
            for r in records:
                check_record(r, c)
        except RantaiError as exc:
            assert exc.rule == rule, (rule, exc.rule, str(exc))
        else:  # pragma: no cover - a generator mistake
            raise AssertionError(f"not refused: {rule}")
        return [b.raw.hex() for b in (*self.blocks, block)]

    def valid(self, *heights: int) -> dict[str, Any]:
        return {"blocks": [b.raw.hex() for b in self.blocks],
                "expect": [{"height": h, "consortium": summary(self.gov.at(h))} for h in heights]}


def approved(seq: Seq, change: dict[str, Any], proposer: Signer = TANI, approver: Signer = KOPI) -> int:
    """Propose ``change`` in one block and approve it in the next; returns the height it is in force from."""
    p = seq.change(proposer, change)
    seq.add(p)
    seq.add(seq.change(approver, approve(p)))
    return seq.next - 1 + DELAY


def governance_chain_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def ok(name: str, desc: str, seq: Seq, *heights: int) -> None:
        cases.append(case(name, None, desc, **seq.valid(*heights)))

    def bad(name: str, rule: str, desc: str, seq: Seq, *records: SignedRecord, view: int = 0) -> None:
        cases.append(case(name, rule, desc, blocks=seq.refused(rule, *records, view=view)))

    # -- valid sequences ---------------------------------------------------------------------------
    s = Seq()
    p = s.change(TANI, join())
    s.add(p)  # height 1: tani proposes (her first approval)
    s.add(s.change(KOPI, approve(p)))  # height 2: kopi approves: 2 of 3, approved; in force from 2 + 3 = 5
    s.add(s.event(ACME))  # height 3
    s.until(5)
    s.add(s.event(CAFE))  # height 5: cafe's first record
    ok("valid-join", "tani proposes add_member cafe (height 1), kopi approves (height 2): cafe is a member from "
       "height 5 (2 + window 2 + 1) and signs a record there", s, 4, 5)

    s = Seq()
    e = approved(s, {"op": "rotate_key", "member": "acme", "public_key": ACME_2.public_key,
                     "proof": proof(ACME_2, "acme")})
    s.add(s.event(ACME))  # height 3: the old key still signs (the rotation is not yet in force)
    s.until(e)
    s.add(s.event(ACME_2))
    ok("valid-rotate-key", "acme's key rotated (approved at height 2): the old key signs at height 3, the new one "
       "from height 5", s, 4, 5)

    s = Seq()
    e = approved(s, {"op": "add_validator", "name": "validator-4", "public_key": VALIDATOR_4.public_key,
                     "url": "http://127.0.0.1:7104", "proof": proof(VALIDATOR_4, "validator-4")})
    s.add(view=4)  # height 3: four validators in force, view 4 is led by validator-0 (4 mod 4)
    s.until(e)
    s.add(view=4)  # height 5: five validators in force, view 4 is led by validator-4
    ok("valid-add-validator", "validator-4 added (approved at height 2): block 3 in view 4 is proposed by "
       "validator-0 (4 mod 4), block 5 in view 4 by validator-4 (4 mod 5)", s, 4, 5)

    s = Seq()
    approved(s, {"op": "add_validator", "name": "validator-4", "public_key": VALIDATOR_4.public_key,
                 "url": "http://127.0.0.1:7104", "proof": proof(VALIDATOR_4, "validator-4")})
    approved(s, {"op": "rekey_validator", "validator": "validator-3", "public_key": VALIDATOR_5.public_key,
                 "proof": proof(VALIDATOR_5, "validator-3")})
    e = approved(s, {"op": "remove_validator", "validator": "validator-1"})  # five in the latest: four are left
    s.until(e)
    s.add(view=1)  # validator-2 leads view 1 of [validator-0, validator-2, validator-3, validator-4]
    ok("valid-rekey-and-remove-validator", "validator-4 added (in force from 5), validator-3 rekeyed (from 7), "
       "validator-1 removed (from 9: five validators in the latest consortium, so four are left)", s, 5, 7, 8, 9)

    s = Seq()
    e = approved(s, {"op": "set_governance", "approvals": 3})
    s.until(e)
    p = s.change(KOPI, {"op": "suspend_member", "member": "watchdog"})
    s.add(p, s.change(PASAR, approve(p)))  # 2 approvals: no longer enough
    s.add(s.change(TANI, approve(p)))  # the third approves it
    e2 = s.next - 1 + DELAY
    s.until(e2)
    s.add()
    ok("valid-threshold", "set_governance approvals 3 (approved at height 2, in force from 5); a proposal with two "
       "approvals at height 5 stays open, the third approval (height 6) approves it: watchdog is suspended from 9",
       s, 4, 5, 8, 9)

    s = Seq()
    e = approved(s, {"op": "set_governance", "approvals": 1})
    s.until(e)
    p = s.change(PASAR, {"op": "set_params", "params": {"max_record_bytes": 2048, "max_block_bytes": 8192}})
    s.add(p)  # approvals 1: the proposal approves itself
    e2 = s.next - 1 + DELAY
    p = s.change(PASAR, {"op": "set_governance", "approvals": "majority"})
    s.add(p)
    e3 = s.next - 1 + DELAY
    s.until(e3)
    s.add()
    ok("valid-self-approval-and-majority", "approvals 1 (in force from 5): pasar's set_params (height 5) and "
       "set_governance majority (height 6) approve themselves; in force from 8 and 9", s, e2 - 1, e2, e3)

    s = Seq()
    p = s.change(TANI, {"op": "remove_member", "member": "acme"})
    s.add(p, s.event(ACME))
    s.add(s.change(PASAR, approve(p)), s.event(ACME))
    s.add(s.event(ACME))
    s.add(s.event(ACME))  # height 4: the last height acme's key is in force
    s.add()
    ok("valid-records-before-removal", "acme removed (approved at height 2, in force from 5): acme's records at "
       "heights 1 to 4 are valid, and stay so", s, 4, 5)

    s = Seq()
    e = approved(s, {"op": "suspend_member", "member": "acme"})
    s.until(e)
    e2 = approved(s, {"op": "reinstate_member", "member": "acme"}, PASAR, KOPI)
    s.until(e2)
    s.add(s.event(ACME))
    ok("valid-suspend-reinstate", "acme suspended (in force from 5), then reinstated (approved at 6, in force from "
       "9): acme signs again at height 9", s, 4, 5, 9)

    s = Seq()
    s.add(s.change(TANI, {"op": "set_roles", "member": "acme", "roles": ["submitter", "admin"]}),
          s.change(KOPI, {"op": "set_validator_url", "validator": "validator-1", "url": "https://v1.example"}))
    p1, p2 = (x.id for x in s.blocks[-1].records)
    s.add(s.change(PASAR, approve(p1)), s.change(PASAR, approve(p2)))
    s.until(5)
    s.add(s.change(ACME, {"op": "rekey_validator", "validator": "validator-3", "public_key": VALIDATOR_4.public_key,
                           "proof": proof(VALIDATOR_4, "validator-3")}))
    ok("valid-two-changes-one-block", "two proposals in one block and both approved in the next (in force from 5); "
       "acme, an admin from 5, proposes a validator rekey there", s, 4, 5)

    s = Seq()
    s.add(s.change(TANI, {"op": "set_read_policy", "read_policy": "parties"}),
          s.change(KOPI, {"op": "set_company_prefixes", "member": "acme", "company_prefixes": ["0614141", "8991234"]}))
    p1, p2 = (x.id for x in s.blocks[-1].records)
    s.add(s.change(PASAR, approve(p1)), s.change(PASAR, approve(p2)))
    s.until(5)
    s.add(s.change(TANI, {"op": "set_company_prefixes", "member": "acme", "company_prefixes": []}))
    ok("valid-read-policy", "the read policy set to parties and acme's GS1 Company Prefixes to 0614141 and 8991234 "
       "(approved at 2, in force from 5); at 5 tani proposes clearing them (an empty list)", s, 4, 5)

    # -- change shape ----------------------------------------------------------------------------
    shapes = [
        ("unknown-op", {"op": "make_me_king"}, "an unknown op"),
        ("no-op", {"member": "acme"}, "no op"),
        ("extra-field", {"op": "suspend_member", "member": "acme", "reason": "late"}, "suspend_member with a reason"),
        ("missing-field", {"op": "add_member", "name": "cafe", "organisation": "Kafe Senja",
                           "public_key": CAFE.public_key, "roles": ["submitter"]}, "add_member without proof"),
        ("key-as-hex", join(public_key=CAFE.public_key.hex()), "public_key as hex text, not 32 bytes"),
        ("key-31-bytes", join(public_key=CAFE.public_key[:31]), "public_key of 31 bytes"),
        ("proof-63-bytes", join(proof=proof(CAFE, "cafe")[:63]), "proof of 63 bytes"),
        ("name-upper-case", join(name="Cafe"), "name with an upper-case letter"),
        ("organisation-empty", join(organisation=""), "an empty organisation (1 to 128 characters)"),
        ("organisation-129", join(organisation="x" * 129), "an organisation of 129 characters"),
        ("roles-empty", join(roles=[]), "no roles"),
        ("roles-repeated", join(roles=["submitter", "submitter"]), "a role twice"),
        ("roles-unknown", join(roles=["owner"]), "an unknown role"),
        ("url-not-http", {"op": "set_validator_url", "validator": "validator-1", "url": "ftp://v1.example"},
         "a url that is not http(s)"),
        ("approvals-zero", {"op": "set_governance", "approvals": 0}, "approvals 0 (1 to 1000, or \"majority\")"),
        ("approvals-true", {"op": "set_governance", "approvals": True}, "approvals true, not an integer"),
        ("approvals-float", {"op": "set_governance", "approvals": 2.0}, "approvals 2.0, not an integer"),
        ("approvals-text", {"op": "set_governance", "approvals": "2"}, "approvals the text 2"),
        ("params-window", {"op": "set_params", "params": {"window": 4}}, "window is fixed at genesis"),
        ("params-empty", {"op": "set_params", "params": {}}, "no params"),
        ("params-zero", {"op": "set_params", "params": {"max_record_bytes": 0}}, "a param of 0"),
        ("read-policy-unknown", {"op": "set_read_policy", "read_policy": "secret"}, "an unknown read policy"),
        ("prefix-short", {"op": "set_company_prefixes", "member": "acme", "company_prefixes": ["061"]},
         "a GS1 Company Prefix of 3 digits (4 to 12)"),
        ("prefix-letters", {"op": "set_company_prefixes", "member": "acme", "company_prefixes": ["06141A1"]},
         "a GS1 Company Prefix with a letter"),
        ("prefix-repeated", {"op": "set_company_prefixes", "member": "acme",
                             "company_prefixes": ["0614141", "0614141"]}, "a GS1 Company Prefix twice"),
        ("proposal-31-bytes", {"op": "approve", "proposal": bytes(31)}, "an approval naming 31 bytes"),
        ("proposal-as-hex", {"op": "approve", "proposal": bytes(32).hex()}, "an approval naming hex text"),
    ]
    for name, change, desc in shapes:
        bad(f"change-shape-{name}", "change shape", f"tani signs a change with {desc}", Seq(),
            Seq().change(TANI, change))

    # -- not an admin ------------------------------------------------------------------------------
    bad("not-an-admin-proposes", "not an admin", "acme (submitter only) proposes add_member", Seq(),
        Seq().change(ACME, join()))
    s = Seq()
    p = s.change(TANI, join())
    s.add(p)
    bad("not-an-admin-approves", "not an admin", "watchdog (auditor only) approves tani's proposal", s,
        s.change(WATCHDOG, approve(p)))
    s = Seq()
    approved(s, {"op": "set_roles", "member": "acme", "roles": ["admin", "submitter"]})
    p = s.change(TANI, join())
    s.add(p)
    bad("not-an-admin-yet", "not an admin", "acme made admin (approved at height 2, in force from 5) approves at "
        "height 4: not yet an admin", s, s.change(ACME, approve(p)))
    s = Seq()
    e = approved(s, {"op": "set_roles", "member": "pasar", "roles": ["submitter"]})
    s.until(e)
    bad("not-an-admin-any-more", "not an admin", "pasar's admin role dropped (in force from 5); pasar proposes at 5",
        s, s.change(PASAR, {"op": "suspend_member", "member": "acme"}))

    # -- unknown proposal, proposal closed, approved twice ---------------------------------------------
    bad("unknown-proposal", "unknown proposal", "an approval naming 32 bytes that are no entry's id", Seq(),
        Seq().change(TANI, approve(bytes(range(32)))))
    s = Seq()
    r = s.event(ACME)
    s.add(r)
    bad("unknown-proposal-event-record", "unknown proposal", "an approval naming an EPCIS record on the chain", s,
        s.change(TANI, approve(r)))
    s = Seq()
    p = s.change(TANI, join())
    a = s.change(KOPI, approve(p))
    s.add(p)
    s.add(a)
    bad("unknown-proposal-an-approval", "unknown proposal", "an approval naming an approval entry", s,
        s.change(PASAR, approve(a)))
    s = Seq()
    p = s.change(TANI, join())
    s.add(p)
    q = s.change(PASAR, join("cafe-2", CAFE_2))
    bad("unknown-proposal-same-block", "unknown proposal", "an approval before its proposal in the same block", s,
        s.change(KOPI, approve(q)), q)
    s = Seq()
    p = s.change(TANI, join())
    s.add(p)
    s.add(s.change(KOPI, approve(p)))
    bad("proposal-closed", "proposal closed", "pasar approves a proposal approved at height 2", s,
        s.change(PASAR, approve(p)))
    s = Seq()
    p = s.change(TANI, join())
    bad("proposal-closed-same-block", "proposal closed", "a proposal, its approving entry, and a third approval, "
        "all in one block", s, p, s.change(KOPI, approve(p)), s.change(PASAR, approve(p)))
    s = Seq()
    p = s.change(TANI, join())
    s.add(p)
    bad("approved-twice-by-proposer", "approved twice", "tani approves her own proposal (proposing is approving)",
        s, s.change(TANI, approve(p)))
    s = Seq()
    approved(s, {"op": "set_governance", "approvals": 3})
    s.until(5)
    p = s.change(TANI, join())
    s.add(p, s.change(KOPI, approve(p)))
    bad("approved-twice", "approved twice", "with approvals 3, kopi approves the same proposal again", s,
        s.change(KOPI, approve(p)))

    # -- change refused ----------------------------------------------------------------------------
    bad("refused-three-validators", "change refused", "remove_validator: three would be left (at least 4)", Seq(),
        Seq().change(TANI, {"op": "remove_validator", "validator": "validator-3"}))
    s = Seq()
    approved(s, {"op": "remove_member", "member": "pasar"})
    approved(s, {"op": "remove_member", "member": "kopi"})  # kopi still an admin at height 4: approves it
    bad("refused-no-admin-left", "change refused", "pasar and kopi removed (approved; not yet in force): tani drops "
        "her own admin role, which would leave no active admin", s,
        s.change(TANI, {"op": "set_roles", "member": "tani", "roles": ["submitter"]}))
    s = Seq()
    approved(s, {"op": "remove_member", "member": "pasar"})
    approved(s, {"op": "remove_member", "member": "kopi"})
    bad("refused-suspend-last-admin", "change refused", "the same, but tani suspends herself", s,
        s.change(TANI, {"op": "suspend_member", "member": "tani"}))
    bad("refused-threshold-above-admins", "change refused", "set_governance approvals 4 with three admins", Seq(),
        Seq().change(TANI, {"op": "set_governance", "approvals": 4}))
    s = Seq()
    approved(s, {"op": "set_governance", "approvals": 3})
    bad("refused-threshold-after-removal", "change refused", "approvals 3 (approved), then removing an admin would "
        "leave 2 admins for 3 approvals", s, s.change(TANI, {"op": "remove_member", "member": "pasar"}))
    proofs = [
        ("zero", bytes(64), "64 zero bytes"),
        ("other-name", proof(CAFE, "kafe"), "cafe's key's signature for the name kafe"),
        ("other-key", proof(TANI, "cafe"), "tani's signature (not the new key's)"),
        ("record-kind", proof(CAFE, "cafe", kind=RECORD_KIND), "the new key's signature as kind record"),
        ("other-chain", proof(CAFE, "cafe", chain=G), "the new key's signature for another chain"),
    ]
    for name, pr, desc in proofs:
        bad(f"refused-proof-{name}", "change refused", f"add_member cafe whose proof of possession is {desc}", Seq(),
            Seq().change(TANI, join(proof=pr)))
    bad("refused-proof-validator", "change refused", "add_validator validator-4 with the proof signed for the name "
        "validator-5", Seq(), Seq().change(TANI, {"op": "add_validator", "name": "validator-4",
                                                  "public_key": VALIDATOR_4.public_key, "url": "http://127.0.0.1:7104",
                                                  "proof": proof(VALIDATOR_4, "validator-5")}))
    bad("refused-duplicate-name", "change refused", "add_member named acme (a member's name)", Seq(),
        Seq().change(TANI, join("acme", CAFE)))
    bad("refused-duplicate-key", "change refused", "add_member cafe with watchdog's key (and watchdog's valid proof)",
        Seq(), Seq().change(TANI, join("cafe", WATCHDOG)))
    bad("refused-validator-key", "change refused", "add_member cafe with validator-0's key (and its valid proof)",
        Seq(), Seq().change(TANI, join("cafe", VALIDATORS[0])))
    s = Seq()
    approved(s, {"op": "rotate_key", "member": "acme", "public_key": ACME_2.public_key, "proof": proof(ACME_2, "acme")})
    bad("refused-retired-key", "change refused", "acme's key rotated away; add_member cafe with acme's old key", s,
        s.change(TANI, join("cafe", ACME)))
    bad("refused-duplicate-validator-name", "change refused", "add_validator named validator-1", Seq(),
        Seq().change(TANI, {"op": "add_validator", "name": "validator-1", "public_key": VALIDATOR_4.public_key,
                            "url": "http://127.0.0.1:7104", "proof": proof(VALIDATOR_4, "validator-1")}))
    bad("refused-no-such-member", "change refused", "suspend_member nobody", Seq(),
        Seq().change(TANI, {"op": "suspend_member", "member": "nobody"}))
    bad("refused-not-suspended", "change refused", "reinstate_member acme, who is not suspended", Seq(),
        Seq().change(TANI, {"op": "reinstate_member", "member": "acme"}))
    s = Seq()
    approved(s, {"op": "suspend_member", "member": "acme"})
    bad("refused-already-suspended", "change refused", "acme's suspension approved (not yet in force): suspending "
        "again is refused (proposals apply to the latest consortium)", s,
        s.change(TANI, {"op": "suspend_member", "member": "acme"}))
    bad("refused-same-read-policy", "change refused", "set_read_policy members on a chain whose policy is members",
        Seq(), Seq().change(TANI, {"op": "set_read_policy", "read_policy": "members"}))
    s = Seq()
    approved(s, {"op": "set_company_prefixes", "member": "acme", "company_prefixes": ["0614141"]})
    bad("refused-prefix-clash", "change refused", "acme's prefix 0614141 approved (not yet in force): watchdog's "
        "061414 would begin it, so an identifier could belong to both", s,
        s.change(TANI, {"op": "set_company_prefixes", "member": "watchdog", "company_prefixes": ["061414"]}))
    bad("refused-record-above-block", "change refused", "set_params max_record_bytes 8192 above max_block_bytes 4096",
        Seq(), Seq().change(TANI, {"op": "set_params", "params": {"max_record_bytes": 8192}}))
    s = Seq()
    p1, p2 = s.change(TANI, join("cafe", CAFE)), s.change(PASAR, join("cafe", CAFE_2))
    s.add(p1, p2)
    s.add(s.change(KOPI, approve(p1)))
    bad("refused-at-approval", "change refused", "two proposals to add a member cafe (other keys), both valid when "
        "made; the first is approved, so the approval that would approve the second is refused", s,
        s.change(KOPI, approve(p2)))

    # -- member suspended, member removed ------------------------------------------------------------
    s = Seq()
    e = approved(s, {"op": "suspend_member", "member": "acme"})
    s.add(s.event(ACME))
    s.until(e)
    bad("member-suspended", "member suspended", "acme suspended (approved at 2, in force from 5): acme's record at 5",
        s, s.event(ACME))
    s = Seq()
    e = approved(s, {"op": "remove_member", "member": "acme"})
    s.add(s.event(ACME))
    s.until(e)
    bad("member-removed", "member removed", "acme removed (approved at 2, in force from 5): acme's record at 5", s,
        s.event(ACME))
    s = Seq()
    e = approved(s, {"op": "rotate_key", "member": "acme", "public_key": ACME_2.public_key,
                     "proof": proof(ACME_2, "acme")})
    s.until(e)
    bad("member-removed-rotated-key", "member removed", "acme's key rotated (in force from 5): a record of the old "
        "key at 5", s, s.event(ACME))
    return cases


def gov_certify(block: Block) -> CommitCertificate:
    """Block ``block`` committed in view 0 by validators 0, 1 and 2 of the governance genesis."""
    votes = sorted(vote(s, block.height, 0, block.hash, GG) for s in VALIDATORS[:3])
    return CommitCertificate(block.height, 0, block.hash, tuple(votes))


def gov_receipt(block: Block, index: int) -> Receipt:
    return Receipt(block.records[index], index, tuple(merkle.inclusion_proof(block.record_ids(), index)),
                   block.header, gov_certify(block))


def governance_receipt_cases() -> list[dict[str, Any]]:
    s = Seq()
    p = s.change(TANI, join())
    s.add(p, s.event(ACME))  # height 1: the proposal is record 0
    s.add(s.event(ACME), s.change(KOPI, approve(p)))  # height 2: the approval is record 1
    s.until(5)
    s.add(s.event(CAFE))  # height 5
    b1, b2, b5 = s.blocks[0], s.blocks[1], s.blocks[4]
    prop, appr = gov_receipt(b1, 0), gov_receipt(b2, 1)
    text = gov_receipt(b5, 0).with_changes((prop, appr)).to_json()

    def edit(fn: Any) -> str:
        d = json.loads(text)
        fn(d)
        return json.dumps(d, indent=2, ensure_ascii=False) + "\n"

    weak = Receipt(appr.record, appr.index, appr.path, appr.header,
                   CommitCertificate(2, 0, b2.hash, appr.certificate.votes[:2]))
    rows = [
        ("receipt-valid-with-changes", None, "cafe's record at height 5, carrying the receipts of the proposal "
         "(height 1) and the approval (height 2) that made cafe a member from height 5", text),
        ("receipt-valid-change-entry", None, "a receipt of the approval entry itself (a change file: key change, not "
         "event), carrying the proposal it approves", gov_receipt(b2, 1).with_changes((prop,)).to_json()),
        ("receipt-without-changes", "unknown member", "cafe's record without its changes: the genesis does not know "
         "cafe", gov_receipt(b5, 0).to_json()),
        ("receipt-changes-without-approval", "unknown member", "only the proposal: the change is not approved",
         edit(lambda d: d["changes"].pop())),
        ("receipt-changes-out-of-order", "change shape", "the approval before the proposal",
         edit(lambda d: d["changes"].reverse())),
        ("receipt-change-below-quorum", "certificate quorum", "the approval's block certified by two validators",
         edit(lambda d: d["changes"].__setitem__(1, json.loads(weak.to_json())))),
        ("receipt-change-nested-changes", "receipt shape", "a change receipt carrying changes of its own",
         edit(lambda d: d["changes"][1].update(changes=[d["changes"][0]]))),
        ("receipt-change-file-with-event", "receipt shape", "a change entry's receipt file whose readable copy is "
         "under the key event instead of change", edit(lambda d: d["changes"][1].update(event=d["changes"][1].pop(
             "change")))),
        ("receipt-change-readable-differs", "receipt event", "the approval's readable change names another proposal",
         edit(lambda d: d["changes"][1]["change"].update(proposal="00" * 32))),
    ]
    return [case(name, rule, desc, receipt=f) for name, rule, desc, f in rows]


# -- files -----------------------------------------------------------------------------------------

PROCEDURES = {
    "encoding.json": "decode `bytes` with the canonical decoder (format.md §1)",
    "records.json": "parse `record` as a signed record (shape, version, fields: §4), then check it on the genesis "
                    "(size, chain, member, role, signature, EPCIS schema: validity.check_record)",
    "blocks.json": "parse `block` (§6; each record parsed as in records.json), then the block rules against `parent` "
                   "with `memory` (record ids and event hash digests already in the chain, by height) and, when "
                   "present, `now_ms` (validity.check_block, with the records' event digests); then each record's "
                   "rules as in records.json",
    "certificates.json": "decode `certificate` (nil: missing), read it as a certificate (§7), then check it for the "
                         "header `header` (validity.check_certificate)",
    "receipts.json": "read `file` as a receipt file (§8, Receipt.from_json), then verify it on the genesis "
                     "(validity.check_receipt)",
    "heads.json": "decode `head`, a GET /v1/head answer, and check it on the genesis (validity.check_head)",
    "governance.json": "on genesis-governance.json: a case with `blocks` replays them from height 1 (each parsed as "
                       "in blocks.json; its block rules and its change entries checked and applied in block order "
                       "against the governance state after the block below: validity.check_block with a Governance; "
                       "then each record's rules on the consortium in force at that height: validity.check_record); "
                       "a valid case then has, at each `expect` height, the consortium `expect` states. A case with "
                       "`receipt` reads it as a receipt file with its `changes` (format.md §11.7), replays the "
                       "changes (validity.replay_changes) and verifies the receipt on the consortium in force at its "
                       "height (Receipt.verify)",
}


def document(name: str, cases: list[dict[str, Any]], genesis: str = "genesis.json", chain: bytes = G) -> str:
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), name
    doc = {"genesis": genesis, "genesis_hash": chain.hex(), "procedure": PROCEDURES[name], "cases": cases}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """Every vector file's text, by name."""
    blocks, b1, _ = block_cases()
    return {
        "genesis.json": GENESIS.to_json(),
        "encoding.json": document("encoding.json", encoding_cases()),
        "records.json": document("records.json", record_cases()),
        "blocks.json": document("blocks.json", blocks),
        "certificates.json": document("certificates.json", certificate_cases(b1)),
        "receipts.json": document("receipts.json", receipt_cases()),
        "heads.json": document("heads.json", head_cases(b1)),
        "genesis-governance.json": GOV_GENESIS.to_json(),
        "governance.json": document("governance.json", governance_chain_cases() + governance_receipt_cases(),
                                    "genesis-governance.json", GG),
    }


def main(argv: list[str]) -> int:
    files = generate()
    if "--check" in argv:
        stale = [n for n, t in files.items() if not (HERE / n).exists() or (HERE / n).read_text(encoding="utf-8") != t]
        for n in stale:
            print(f"stale: tests/vectors/{n}")
        return 1 if stale else 0
    for n, t in files.items():
        (HERE / n).write_text(t, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
