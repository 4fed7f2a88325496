"""The worked example of docs/format.md, computed from the code.

``python tests/client/worked_example.py`` prints the values; test_format_doc.py checks that the
document states exactly these, so the document can never drift from the code.
"""

from __future__ import annotations

import hashlib

from rantai.client.format import merkle
from rantai.client.format.blocks import Block
from rantai.client.format.genesis import Genesis
from rantai.client.format.records import RECORD_KIND, sign_event
from rantai.consensus.certificate import COMMIT_KIND, commit_body
from rantai.consensus.crypto import Signer, signing_bytes


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def compute() -> dict[str, str]:
    member = Signer.from_seed(seed("example member"))
    validators = [Signer.from_seed(seed(f"example validator {i}")) for i in range(4)]
    genesis = Genesis.build(
        "rantai-example",
        [(v.public_key, f"validator-{i}", f"http://127.0.0.1:{7100 + i}") for i, v in enumerate(validators)],
        [(member.public_key, "gayo-coop", "Koperasi Kopi Gayo", ["submitter"])],
        created_at="2026-01-01T00:00:00Z",
    )
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "ADD",
        "bizStep": "commissioning",
    }
    records = [
        sign_event(member, genesis, {**event, "epcList": [f"urn:epc:id:sgtin:0614141.107346.{2017 + i}"]},
                   nonce=bytes([i]) * 16, submitted_at=1_772_326_800_000 + i)
        for i in range(3)
    ]
    rec = records[0]
    block = Block.build(chain=genesis.hash, height=1, prev_hash=genesis.hash, view=0,
                        proposer=validators[0].id, timestamp=1_772_326_801_000, records=records)
    ids = block.record_ids()
    proof = merkle.inclusion_proof(ids, 0)
    statement = signing_bytes(COMMIT_KIND, genesis.hash, commit_body(1, 0, block.hash))
    vote = validators[0].sign(COMMIT_KIND, genesis.hash, commit_body(1, 0, block.hash))
    return {
        "member_seed": seed("example member").hex(),
        "member_public_key": member.public_key.hex(),
        "member_id": member.id,
        "genesis_hash": genesis.hash.hex(),
        "record_unsigned": rec.unsigned_bytes().hex(),
        "record_signing_bytes": signing_bytes(RECORD_KIND, genesis.hash, rec.unsigned_bytes()).hex(),
        "record_signature": rec.signature.hex(),
        "record_signed": rec.raw.hex(),
        "record_id": rec.id.hex(),
        "record_id_1": ids[1].hex(),
        "record_id_2": ids[2].hex(),
        "leaf_hash_0": merkle.leaf_hash(ids[0]).hex(),
        "records_root": block.header.records_root.hex(),
        "inclusion_proof_0": ",".join(p.hex() for p in proof),
        "header": block.header.encode().hex(),
        "block_hash": block.hash.hex(),
        "validator_0_id": validators[0].id,
        "commit_statement": statement.hex(),
        "commit_signature_0": vote.hex(),
    }


if __name__ == "__main__":
    for k, v in compute().items():
        print(f"{k} = {v}")
