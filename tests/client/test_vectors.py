"""The conformance vectors of tests/vectors/ (README.md there): up to date, and each one judged by
``rantai.client.format.validity`` exactly as it says (valid, or refused for exactly the named rule).

This file is also a reference runner: ``run(kind, case, genesis)`` is the whole procedure a verifier
in another language follows for each file.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rantai.client.format.blocks import Block, BlockHeader
from rantai.client.format.consortium import CHANGEABLE_PARAMS, Consortium
from rantai.client.format.encoding import decode
from rantai.client.format.errors import RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import OPS, Governance
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import SignedRecord
from rantai.client.format.validity import (
    RULES,
    Parent,
    certificate_of,
    check_block,
    check_certificate,
    check_head,
    check_record,
    event_digests,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
KINDS = ("encoding", "records", "blocks", "certificates", "receipts", "heads", "governance")


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("rantai_vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENESIS = Genesis.load(VECTORS / "genesis.json")
GENESES = {"genesis.json": GENESIS, "genesis-governance.json": Genesis.load(VECTORS / "genesis-governance.json")}


class Memory:
    """``validity.ChainMemory`` from a vector's ``memory`` (hex keys to heights)."""

    def __init__(self, obj: dict[str, dict[str, int]]) -> None:
        self.records = {bytes.fromhex(k): h for k, h in obj.get("records", {}).items()}
        self.events = {bytes.fromhex(k): h for k, h in obj.get("events", {}).items()}

    def record_height(self, record_id: bytes) -> int | None:
        return self.records.get(record_id)

    def event_height(self, digest: bytes) -> int | None:
        return self.events.get(digest)


def run(kind: str, case: dict[str, Any], genesis: Genesis) -> None:
    """Judge one case; raises the ``RantaiError`` (with ``.rule``) of the first rule it breaks."""
    if kind == "encoding":
        decode(bytes.fromhex(case["bytes"]))
    elif kind == "records":
        check_record(SignedRecord.from_bytes(bytes.fromhex(case["record"])), genesis)
    elif kind == "blocks":
        block = Block.from_bytes(bytes.fromhex(case["block"]))
        p = case["parent"]
        check_block(block, genesis, Parent(p["height"], bytes.fromhex(p["hash"]), p["timestamp"]),
                    memory=Memory(case.get("memory", {})), digests=event_digests(block.records),
                    now_ms=case.get("now_ms"))
        for r in block.records:
            check_record(r, genesis)
    elif kind == "certificates":
        header = BlockHeader.from_obj(decode(bytes.fromhex(case["header"])))
        cert = certificate_of(decode(bytes.fromhex(case["certificate"])), header.height)
        check_certificate(cert, genesis, header)
    elif kind == "receipts":
        Receipt.from_json(case["file"]).verify(genesis)
    elif kind == "heads":
        check_head(decode(bytes.fromhex(case["head"])), genesis)
    elif kind == "governance":
        if "receipt" in case:
            Receipt.from_json(case["receipt"]).verify(genesis)  # replays its changes (validity.replay_changes)
            return
        gov = replay(case["blocks"], genesis)
        for want in case.get("expect", []):
            assert summary(gov.at(want["height"])) == want["consortium"], f"consortium at {want['height']}"
    else:  # pragma: no cover
        raise AssertionError(kind)


def replay(blocks: list[str], genesis: Genesis) -> Governance:
    """A governance case's blocks from height 1: each block's rules and change entries against the state after
    the block below (``check_block`` with ``governance``), then each record's rules on the consortium in force."""
    gov = Governance(genesis)
    parent = Parent.genesis(genesis)
    for raw in blocks:
        block = Block.from_bytes(bytes.fromhex(raw))
        consortium = gov.at(parent.height + 1)
        check_block(block, consortium, parent, digests=event_digests(block.records), governance=gov)
        for r in block.records:
            check_record(r, consortium)
        parent = Parent.of(block.header)
    return gov


def summary(c: Consortium) -> dict[str, Any]:
    """A consortium as a governance vector's ``expect`` states it (tests/vectors/README.md)."""
    return {
        "members": [{"name": m.name, "id": m.id, "roles": sorted(m.roles), "active": m.active}
                    for m in sorted(c.members.values(), key=lambda m: m.name)],
        "validators": [{"name": v.name, "id": v.id, "url": v.url} for v in c.validators],
        "approvals": "majority" if c.approvals is None else c.approvals,
        "needed": c.approvals_needed(),
        "params": {k: c.params[k] for k in sorted(CHANGEABLE_PARAMS)},
    }


def cases() -> list[Any]:
    out = []
    for kind in KINDS:
        doc = json.loads((VECTORS / f"{kind}.json").read_text(encoding="utf-8"))
        for c in doc["cases"]:
            out.append(pytest.param(kind, c, doc["genesis"], id=f"{kind}/{c['name']}"))
    return out


def test_vectors_regenerate_byte_for_byte():
    files = _generator().generate()
    on_disk = {p.name for p in VECTORS.glob("*.json")}
    assert on_disk == set(files), "run: python tests/vectors/generate.py"
    for name, text in files.items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, f"tests/vectors/{name} is stale"


def test_vector_files_name_their_genesis():
    for kind in KINDS:
        doc = json.loads((VECTORS / f"{kind}.json").read_text(encoding="utf-8"))
        want = "genesis-governance.json" if kind == "governance" else "genesis.json"
        assert doc["genesis"] == want and doc["genesis_hash"] == GENESES[want].hash.hex()
        for c in doc["cases"]:
            assert c["valid"] == ("rule" not in c)
            assert c.get("rule", "encoding") in RULES, c["name"]


@pytest.mark.parametrize(("kind", "case", "genesis"), cases())
def test_vector(kind, case, genesis):
    if case["valid"]:
        run(kind, case, GENESES[genesis])
        return
    with pytest.raises(RantaiError) as info:
        run(kind, case, GENESES[genesis])
    assert info.value.rule == case["rule"], f"{info.value.rule!r}: {info.value}"


def test_every_rule_has_an_invalid_vector():
    """Each rule of ``RULES`` that a single structure can break has an invalid vector; the rest are
    rules of a whole chain or a node's answers, tested elsewhere (named here)."""
    covered = set()
    for kind in KINDS:
        doc = json.loads((VECTORS / f"{kind}.json").read_text(encoding="utf-8"))
        covered |= {c["rule"] for c in doc["cases"] if "rule" in c}
    elsewhere = {"missing block"}  # tests/client/test_audit.py (a chain with a gap; no single structure)
    assert set(RULES) - covered == elsewhere


def test_governance_vectors_cover_each_valid_op_and_refusal_variant():
    """governance.json: every op applied in a valid sequence, and each ``change refused`` variant the brief of
    docs/format.md §11 names (validators, admins, threshold, proof of possession, names and keys)."""
    doc = json.loads((VECTORS / "governance.json").read_text(encoding="utf-8"))
    ops = set()
    for c in doc["cases"]:
        if c["valid"] and "blocks" in c:
            for raw in c["blocks"]:
                ops |= {r.change["op"] for r in Block.from_bytes(bytes.fromhex(raw)).records if r.is_change}
    assert ops == set(OPS)
    names = {c["name"] for c in doc["cases"]}
    assert {"refused-three-validators", "refused-no-admin-left", "refused-threshold-above-admins",
            "refused-proof-zero", "refused-duplicate-name", "refused-duplicate-key", "member-suspended",
            "member-removed"} <= names


def test_format_md_states_every_rule():
    """docs/format.md §10 has one table row per rule of ``RULES``, by its stable name, and no other."""
    import re

    text = (VECTORS.parents[1] / "docs" / "format.md").read_text(encoding="utf-8")
    section = text[text.index("## 10. Validity rules"):text.index("## 11. ")]
    named = re.findall(r"^\| `([a-z ]+)` \|", section, re.M)
    assert sorted(named) == sorted(RULES) and len(named) == len(set(named))
