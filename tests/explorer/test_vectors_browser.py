"""The browser verifier (node/explorer/verify.js) judges every conformance vector as the reference does.

Each file of tests/vectors/ is run case by case in headless Chromium (tests/explorer/vectors.mjs); a
valid case must pass, an invalid one must fail naming the same rule. Every case, the EPCIS rules
(``schema``, node/explorer/epcis_rules.js) included: the browser checks a record's event as
``validity.check_record`` does, and tests/explorer/test_epcis_rules_browser.py checks it agrees with
validate.py's verdicts well beyond the two vectors of that rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
KINDS = ["encoding", "records", "blocks", "certificates", "receipts", "heads", "governance"]


@pytest.mark.parametrize("kind", KINDS)
def test_browser_verifier_agrees_with_every_vector(page, static_url, kind):
    doc = json.loads((VECTORS / f"{kind}.json").read_text(encoding="utf-8"))
    genesis = (VECTORS / doc["genesis"]).read_text(encoding="utf-8")
    run = "async ([kind, doc, genesis]) => (await import('/tests/explorer/vectors.mjs')).runFile(kind, doc, genesis)"
    got = page.evaluate(run, [kind, doc, genesis])
    wrong = []
    for case in doc["cases"]:
        verdict = got[case["name"]]
        want = {"valid": True} if case["valid"] else {"valid": False, "rule": case["rule"]}
        have = {k: verdict[k] for k in ("valid", "rule") if k in verdict}
        if have != want:
            wrong.append(f"{case['name']}: want {want}, got {verdict}")
    assert not wrong, "\n".join(wrong)
    assert len(got) == len(doc["cases"])


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_browser_merkle_proofs_agree_with_every_vector(page, kind):
    """tests/vectors/merkle/: RFC 9162 inclusion and consistency proofs, valid, malformed and leading elsewhere."""
    files = sorted((VECTORS / "merkle" / kind).glob("*.json"))
    assert files
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        got = page.evaluate("async ([kind, doc]) => (await import('/tests/explorer/vectors.mjs')).runMerkle(kind, doc)",
                            [kind, doc])
        want = [c["want_error"] for c in doc["cases"]]
        assert got == want, f"{path.name}: " + "; ".join(
            f"{c['desc']}: want {w}, got {g}" for c, w, g in zip(doc["cases"], want, got, strict=True) if w != g)
