"""Tests for client/merkle.py (RFC 9162 Merkle trees).

Goal: the level-by-level code in client/merkle.py must compute exactly the
RFC 9162 trees and proofs, and its verifiers must accept exactly what the
RFC's own verification algorithms accept, rejecting malformed input before
hashing and saying what failed.

Methodology, in the manner of transparency-dev/merkle:
  1. The classic RFC 6962 eight-leaf roots, as published.
  2. JSON vectors in tests/vectors/merkle/{inclusion,consistency}/, each a
     happy path plus systematic corruptions with the error they must raise.
     They are generated from tests/client/merkle_reference.py (the RFC's
     recursion and verification algorithms, transcribed), never from the
     code under test, and a test checks they are up to date. Regenerate
     with ``python tests/client/test_merkle.py --write-vectors``.
  3. Sweeps: every index of every tree size up to 300, every (old, new)
     size pair up to 100, against the reference; bit flips and wrong indexes.
  4. Hypothesis: random trees and corruptions up to size 1024, where the
     fast verifier must agree with the RFC verifier case by case.
  5. A fold of every root and proof up to size 130 into one SHA-256, pinned
     to a constant, so any change of output is loud.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rantai.client.format import errors, merkle
from rantai.client.format.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    InvalidProof,
    RootMismatch,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion_proof,
    tree_levels,
    verify_consistency,
    verify_inclusion,
)


def _load_reference():
    # Loaded by path: this works whether or not tests/client is a package.
    path = Path(__file__).with_name("merkle_reference.py")
    spec = importlib.util.spec_from_file_location("rantai_tests_merkle_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = _load_reference()
ReferenceTree = reference.ReferenceTree

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors" / "merkle"

# The RFC 6962 test leaves (also used by RFC 9162 implementations) and the
# published root of each prefix.
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# Leaves shaped like rantai's: 32-byte record ids.
RECORD_IDS = [hashlib.sha256(b"rantai/merkle-test/%d" % i).digest() for i in range(2048)]

ERRORS = {None: None, "InvalidProof": InvalidProof, "RootMismatch": RootMismatch}


def flip_bit(value: bytes, bit: int) -> bytes:
    """``value`` with bit ``bit`` (0 = most significant of byte 0) inverted."""
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 0x80 >> (bit % 8)
    return bytes(out)


# --- Classification by the reference (never by the code under test) ----------


def ref_path_length(index: int, size: int) -> int:
    return len(ReferenceTree([b""] * size).path(index))


def ref_consistency_length(old_size: int, new_size: int) -> int:
    return len(ReferenceTree([b""] * new_size).proof(old_size))


def expected_inclusion_error(index, size, leaf, proof, root_) -> str | None:
    """What verify_inclusion must raise, decided by the shape rules and the RFC verifier."""
    if len(root_) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        return "InvalidProof"
    if not 0 <= index < size or len(proof) != ref_path_length(index, size):
        return "InvalidProof"
    lh = hashlib.sha256(b"\x00" + leaf).digest()
    return None if reference.rfc_verify_inclusion(index, size, lh, proof, root_) else "RootMismatch"


def expected_consistency_error(old_size, new_size, old_root, new_root, proof) -> str | None:
    """What verify_consistency must raise, decided by the shape rules and the RFC verifier."""
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return "InvalidProof"
    if any(len(p) != HASH_SIZE for p in proof) or not 0 <= old_size <= new_size:
        return "InvalidProof"
    if len(proof) != ref_consistency_length(old_size, new_size):
        return "InvalidProof"
    ok = reference.rfc_verify_consistency(old_size, new_size, old_root, new_root, proof)
    return None if ok else "RootMismatch"


# --- Vector generation ---------------------------------------------------------

GARBAGE = hashlib.sha256(b"garbage").digest()

# (file name, description, leaves, index, size)
INCLUSION_BASES = [
    ("rfc-leaf0-size1", "RFC 6962 leaves: the only leaf of a one-leaf tree (empty proof)", RFC_LEAVES, 0, 1),
    ("rfc-leaf0-size8", "RFC 6962 leaves: first leaf of the full 8-leaf tree", RFC_LEAVES, 0, 8),
    ("rfc-leaf5-size8", "RFC 6962 leaves: leaf 5 of the full 8-leaf tree", RFC_LEAVES, 5, 8),
    ("rfc-leaf2-size3", "RFC 6962 leaves: last leaf of 3, carried up one level", RFC_LEAVES, 2, 3),
    ("rfc-leaf1-size5", "RFC 6962 leaves: leaf 1 of 5, right subtree is one leaf", RFC_LEAVES, 1, 5),
    ("rfc-leaf4-size5", "RFC 6962 leaves: last leaf of 5, carried up two levels", RFC_LEAVES, 4, 5),
    ("rfc-leaf6-size7", "RFC 6962 leaves: last leaf of 7", RFC_LEAVES, 6, 7),
    ("records-leaf0-size1000", "32-byte record ids: first of 1000", RECORD_IDS, 0, 1000),
    ("records-leaf777-size1000", "32-byte record ids: leaf 777 of 1000", RECORD_IDS, 777, 1000),
    ("records-leaf999-size1000", "32-byte record ids: last of 1000", RECORD_IDS, 999, 1000),
]

# (file name, description, leaves, old_size, new_size)
CONSISTENCY_BASES = [
    ("rfc-1-to-8", "RFC 6962 leaves: 1 to 8 (old size a power of two)", RFC_LEAVES, 1, 8),
    ("rfc-6-to-8", "RFC 6962 leaves: 6 to 8", RFC_LEAVES, 6, 8),
    ("rfc-2-to-5", "RFC 6962 leaves: 2 to 5", RFC_LEAVES, 2, 5),
    ("rfc-3-to-7", "RFC 6962 leaves: 3 to 7", RFC_LEAVES, 3, 7),
    ("rfc-4-to-7", "RFC 6962 leaves: 4 to 7 (old size a power of two)", RFC_LEAVES, 4, 7),
    ("rfc-7-to-8", "RFC 6962 leaves: 7 to 8", RFC_LEAVES, 7, 8),
    ("rfc-0-to-8", "RFC 6962 leaves: from the empty tree (empty proof)", RFC_LEAVES, 0, 8),
    ("rfc-8-to-8", "RFC 6962 leaves: equal sizes (empty proof)", RFC_LEAVES, 8, 8),
    ("records-512-to-1000", "32-byte record ids: 512 to 1000", RECORD_IDS, 512, 1000),
    ("records-600-to-1000", "32-byte record ids: 600 to 1000", RECORD_IDS, 600, 1000),
    ("records-999-to-1000", "32-byte record ids: 999 to 1000", RECORD_IDS, 999, 1000),
]


def _proof_corruptions(proof: list[bytes]):
    """(desc, corrupted proof) pairs shared by both proof kinds."""
    if proof:
        yield "empty-proof", []
    yield "trailing-garbage", [*proof, GARBAGE]
    yield "preceding-garbage", [GARBAGE, *proof]
    for i, element in enumerate(proof):
        bit = (i * 37 + 5) % 256
        yield f"proof@{i}-bit@{bit}-flipped", [*proof[:i], flip_bit(element, bit), *proof[i + 1 :]]
        yield f"proof@{i}-missing", proof[:i] + proof[i + 1 :]
        yield f"proof@{i}-duplicated", [*proof[: i + 1], element, *proof[i + 1 :]]
        yield f"proof@{i}-truncated", [*proof[:i], element[:-1], *proof[i + 1 :]]
    if len(proof) > 1:
        yield "proof-reversed", proof[::-1]


ACCEPTED_NOTE = (
    "accepted, by the RFC 9162 verifier too: the proof does not depend on what was changed "
    "(tree sizes are bound by the signed tree head, not by the proof)"
)


def _annotate(case: dict) -> dict:
    """Say why a corrupted case is accepted, so no reader takes it for a bug."""
    if case["want_error"] is None and case["desc"] != "happy-path":
        case["note"] = ACCEPTED_NOTE
    return case


def inclusion_cases(leaves, index: int, size: int) -> list[dict]:
    tree = ReferenceTree(leaves[:size])
    leaf, proof, root_ = leaves[index], tree.path(index), tree.mth()
    variants = [("happy-path", index, size, leaf, proof, root_)]
    variants.append(("wrong-leaf", index, size, leaf + b"\x00", proof, root_))
    variants.append(("leaf-hash-as-leaf", index, size, hashlib.sha256(b"\x00" + leaf).digest(), proof, root_))
    variants.append(("wrong-root", index, size, leaf, proof, flip_bit(root_, 7)))
    variants.append(("root-of-smaller-tree", index, size, leaf, proof, ReferenceTree(leaves[: size - 1]).mth()))
    seen = {index}
    for desc, other in [
        ("index-XOR-1", index ^ 1),
        ("index-XOR-2", index ^ 2),
        ("index-XOR-4", index ^ 4),
        ("index-plus-1", index + 1),
        ("index-minus-1", index - 1),
        ("index-equals-size", size),
    ]:
        if other not in seen:
            seen.add(other)
            variants.append((desc, other, size, leaf, proof, root_))
    for desc, other in [
        ("size-plus-1", size + 1),
        ("size-minus-1", size - 1),
        ("size-doubled", size * 2),
        ("size-zero", 0),
    ]:
        variants.append((desc, index, other, leaf, proof, root_))
    for desc, bad in _proof_corruptions(proof):
        variants.append((desc, index, size, leaf, bad, root_))
    return [
        _annotate({
            "desc": desc,
            "index": i,
            "size": n,
            "leaf": lf.hex(),
            "proof": [p.hex() for p in pr],
            "root": rt.hex(),
            "want_error": expected_inclusion_error(i, n, lf, pr, rt),
        })
        for desc, i, n, lf, pr, rt in variants
    ]


def consistency_cases(leaves, old_size: int, new_size: int) -> list[dict]:
    new_tree = ReferenceTree(leaves[:new_size])
    old_root, new_root = ReferenceTree(leaves[:old_size]).mth(), new_tree.mth()
    proof = new_tree.proof(old_size)
    variants = [("happy-path", old_size, new_size, old_root, new_root, proof)]
    if old_root != new_root:
        variants.append(("swapped-roots", old_size, new_size, new_root, old_root, proof))
    variants.append(("wrong-old-root", old_size, new_size, flip_bit(old_root, 3), new_root, proof))
    variants.append(("wrong-new-root", old_size, new_size, old_root, flip_bit(new_root, 250), proof))
    for desc, m, n in [
        ("old-size-plus-1", old_size + 1, new_size),
        ("old-size-minus-1", old_size - 1, new_size),
        ("new-size-plus-1", old_size, new_size + 1),
        ("new-size-minus-1", old_size, new_size - 1),
        ("old-size-zero", 0, new_size),
        ("sizes-swapped", new_size, old_size),
    ]:
        if (m, n) != (old_size, new_size):
            variants.append((desc, m, n, old_root, new_root, proof))
    for desc, bad in _proof_corruptions(proof):
        variants.append((desc, old_size, new_size, old_root, new_root, bad))
    return [
        _annotate({
            "desc": desc,
            "old_size": m,
            "new_size": n,
            "old_root": o.hex(),
            "new_root": r.hex(),
            "proof": [p.hex() for p in pr],
            "want_error": expected_consistency_error(m, n, o, r, pr),
        })
        for desc, m, n, o, r, pr in variants
    ]


def generate_vectors() -> dict[str, dict]:
    """Every vector file, by path relative to VECTORS_DIR."""
    files = {}
    for name, desc, leaves, index, size in INCLUSION_BASES:
        files[f"inclusion/{name}.json"] = {"desc": desc, "cases": inclusion_cases(leaves, index, size)}
    for name, desc, leaves, old_size, new_size in CONSISTENCY_BASES:
        files[f"consistency/{name}.json"] = {
            "desc": desc,
            "cases": consistency_cases(leaves, old_size, new_size),
        }
    return files


def _dump(document: dict) -> str:
    return json.dumps(document, indent=1) + "\n"


def write_vectors() -> None:
    for relative, document in generate_vectors().items():
        path = VECTORS_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump(document))


def _load_cases(kind: str):
    params = []
    for path in sorted((VECTORS_DIR / kind).glob("*.json")):
        for case in json.loads(path.read_text())["cases"]:
            params.append(pytest.param(case, id=f"{path.stem}/{case['desc']}"))
    return params


# --- 1. Published values --------------------------------------------------------


@pytest.mark.parametrize("size", range(len(RFC_ROOTS)))
def test_rfc6962_roots(size):
    assert root(RFC_LEAVES[:size]).hex() == RFC_ROOTS[size]
    assert ReferenceTree(RFC_LEAVES[:size]).mth().hex() == RFC_ROOTS[size]


def test_hash_definitions():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = RECORD_IDS[0], RECORD_IDS[1]
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # Domain separation: a 64-byte leaf never hashes like the node over its halves.
    assert leaf_hash(left + right) != node_hash(left, right)


# --- 2. JSON vectors --------------------------------------------------------------


def test_vectors_are_up_to_date():
    on_disk = {
        str(path.relative_to(VECTORS_DIR)): path.read_text() for path in VECTORS_DIR.glob("*/*.json")
    }
    generated = {relative: _dump(document) for relative, document in generate_vectors().items()}
    assert sorted(on_disk) == sorted(generated), "run: python tests/client/test_merkle.py --write-vectors"
    for relative, text in generated.items():
        assert on_disk[relative] == text, f"{relative} is stale; regenerate the vectors"


@pytest.mark.parametrize("case", _load_cases("inclusion"))
def test_inclusion_vector(case):
    args = (
        case["index"],
        case["size"],
        bytes.fromhex(case["leaf"]),
        [bytes.fromhex(p) for p in case["proof"]],
        bytes.fromhex(case["root"]),
    )
    want = ERRORS[case["want_error"]]
    if want is None:
        verify_inclusion(*args)
    else:
        with pytest.raises(want):
            verify_inclusion(*args)


@pytest.mark.parametrize("case", _load_cases("consistency"))
def test_consistency_vector(case):
    args = (
        case["old_size"],
        case["new_size"],
        bytes.fromhex(case["old_root"]),
        bytes.fromhex(case["new_root"]),
        [bytes.fromhex(p) for p in case["proof"]],
    )
    want = ERRORS[case["want_error"]]
    if want is None:
        verify_consistency(*args)
    else:
        with pytest.raises(want):
            verify_consistency(*args)


def test_vectors_cover_both_outcomes():
    # A generator bug that classified everything one way would pass the tests above.
    for kind in ("inclusion", "consistency"):
        wants = {p.values[0]["want_error"] for p in _load_cases(kind)}
        assert {None, "InvalidProof", "RootMismatch"} <= wants, kind


# --- 3. Sweeps against the reference ---------------------------------------------


def test_inclusion_sweep_up_to_300():
    # Every index of every size: same proofs as the RFC recursion, and they verify.
    for size in range(1, 301):
        leaves = RECORD_IDS[:size]
        tree = ReferenceTree(leaves)
        expected_root = tree.mth()
        assert root(leaves) == expected_root
        levels = tree_levels(leaves)
        assert levels[-1] == [expected_root]
        proofs = inclusion_proofs(leaves)
        assert len(proofs) == size
        spot = range(size) if size <= 40 else (0, size // 2, size - 1)
        for index in spot:
            assert inclusion_proof(leaves, index) == proofs[index]
        for index, proof in enumerate(proofs):
            assert proof == tree.path(index), (index, size)
            assert [levels[lv][i] for lv, i in inclusion_nodes(index, size)] == proof
            verify_inclusion(index, size, leaves[index], proof, expected_root)


def test_inclusion_bit_flips_and_wrong_indexes_fail():
    # Flip one bit of each proof hash (up to 130), try every other index (up to 48).
    for size in range(1, 131):
        leaves = RECORD_IDS[:size]
        tree_root = root(leaves)
        for index, proof in enumerate(inclusion_proofs(leaves)):
            for k, element in enumerate(proof):
                bad = [*proof[:k], flip_bit(element, (size + 7 * index + 31 * k) % 256), *proof[k + 1 :]]
                with pytest.raises(RootMismatch):
                    verify_inclusion(index, size, leaves[index], bad, tree_root)
            if size <= 48:
                for other in range(size):
                    if other != index:
                        with pytest.raises(InvalidProof):
                            verify_inclusion(other, size, leaves[index], proof, tree_root)


def test_consistency_sweep_up_to_100():
    # Every (old, new) pair: same proofs as the RFC recursion, they verify, and
    # one flipped bit in any proof hash or either root fails.
    roots = [root(RECORD_IDS[:n]) for n in range(101)]
    for new_size in range(101):
        leaves = RECORD_IDS[:new_size]
        tree = ReferenceTree(leaves)
        levels = tree_levels(leaves) if leaves else []
        for old_size in range(new_size + 1):
            proof = consistency_proof(leaves, old_size)
            assert proof == tree.proof(old_size), (old_size, new_size)
            if proof:
                assert [levels[lv][i] for lv, i in consistency_nodes(old_size, new_size)] == proof
            old_root, new_root = roots[old_size], roots[new_size]
            verify_consistency(old_size, new_size, old_root, new_root, proof)
            assert reference.rfc_verify_consistency(old_size, new_size, old_root, new_root, proof)
            for k, element in enumerate(proof):
                bad = [*proof[:k], flip_bit(element, (old_size + 13 * k) % 256), *proof[k + 1 :]]
                with pytest.raises(RootMismatch):
                    verify_consistency(old_size, new_size, old_root, new_root, bad)
            if old_size:  # Every tree extends the empty one, whatever its root.
                with pytest.raises(RootMismatch):
                    verify_consistency(old_size, new_size, old_root, flip_bit(new_root, new_size), proof)
                with pytest.raises(RootMismatch):
                    verify_consistency(old_size, new_size, flip_bit(old_root, old_size), new_root, proof)


# --- 4. Properties: the fast verifiers decide exactly as the RFC's -----------------

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def inclusion_attempts(draw):
    size = draw(st.integers(1, 1024))
    index = draw(st.integers(0, size - 1))
    proof = inclusion_proof(RECORD_IDS[:size], index)
    kind = draw(st.sampled_from(["none", "flip", "index", "size", "drop", "extra"]))
    claimed_index, claimed_size = index, size
    if kind == "flip" and proof:
        k = draw(st.integers(0, len(proof) - 1))
        proof[k] = flip_bit(proof[k], draw(st.integers(0, 255)))
    elif kind == "index":
        claimed_index = draw(st.integers(0, size - 1).filter(lambda i: i != index or size == 1))
    elif kind == "size":
        claimed_size = draw(st.integers(1, 2 * size))
    elif kind == "drop" and proof:
        del proof[draw(st.integers(0, len(proof) - 1))]
    elif kind == "extra":
        proof.insert(draw(st.integers(0, len(proof))), GARBAGE)
    return kind, index, size, claimed_index, claimed_size, proof


@PROPERTY_SETTINGS
@given(inclusion_attempts())
def test_inclusion_verifier_agrees_with_rfc(attempt):
    kind, index, size, claimed_index, claimed_size, proof = attempt
    leaves = RECORD_IDS[:size]
    tree_root = root(leaves)
    want = expected_inclusion_error(claimed_index, claimed_size, leaves[index], proof, tree_root)
    if kind == "flip" and proof or kind == "index" and claimed_index != index:
        assert want is not None  # A flipped bit or a wrong index never verifies.
    if want is None:
        verify_inclusion(claimed_index, claimed_size, leaves[index], proof, tree_root)
    else:
        with pytest.raises(ERRORS[want]):
            verify_inclusion(claimed_index, claimed_size, leaves[index], proof, tree_root)


@st.composite
def consistency_attempts(draw):
    new_size = draw(st.integers(1, 300))
    old_size = draw(st.integers(0, new_size))
    proof = consistency_proof(RECORD_IDS[:new_size], old_size)
    kind = draw(st.sampled_from(["none", "flip", "old", "new", "drop", "extra"]))
    claimed_old, claimed_new = old_size, new_size
    if kind == "flip" and proof:
        k = draw(st.integers(0, len(proof) - 1))
        proof[k] = flip_bit(proof[k], draw(st.integers(0, 255)))
    elif kind == "old":
        claimed_old = draw(st.integers(0, new_size))
    elif kind == "new":
        claimed_new = draw(st.integers(0, 2 * new_size))
    elif kind == "drop" and proof:
        del proof[draw(st.integers(0, len(proof) - 1))]
    elif kind == "extra":
        proof.insert(draw(st.integers(0, len(proof))), GARBAGE)
    return kind, old_size, new_size, claimed_old, claimed_new, proof


@PROPERTY_SETTINGS
@given(consistency_attempts())
def test_consistency_verifier_agrees_with_rfc(attempt):
    kind, old_size, new_size, claimed_old, claimed_new, proof = attempt
    old_root, new_root = root(RECORD_IDS[:old_size]), root(RECORD_IDS[:new_size])
    args = (claimed_old, claimed_new, old_root, new_root, proof)
    want = expected_consistency_error(*args)
    if kind == "flip" and proof:
        assert want is not None
    if want is None:
        verify_consistency(*args)
    else:
        with pytest.raises(ERRORS[want]):
            verify_consistency(*args)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_arbitrary_byte_leaves_match_reference(leaves, data):
    # Leaves of any length (the RFC vectors use 0 to 16 bytes) build the same tree.
    tree = ReferenceTree(leaves)
    assert root(leaves) == tree.mth()
    index = data.draw(st.integers(0, len(leaves) - 1))
    assert inclusion_proof(leaves, index) == tree.path(index)
    old_size = data.draw(st.integers(0, len(leaves)))
    assert consistency_proof(leaves, old_size) == tree.proof(old_size)


# --- 5. Pinned fold of every output up to size 130 --------------------------------

FOLD_MAX_SIZE = 130
FOLD_SHA256 = "4610431841bf05c7e4f112315ac8cdd7775d51bab6c5cb7ca624d8b65c0e5b4c"


def _fold_outputs() -> str:
    fold = hashlib.sha256()

    def absorb(proof: list[bytes]) -> None:
        fold.update(len(proof).to_bytes(1, "big"))
        fold.update(b"".join(proof))

    for size in range(1, FOLD_MAX_SIZE + 1):
        leaves = RECORD_IDS[:size]
        fold.update(size.to_bytes(2, "big") + root(leaves))
        for proof in inclusion_proofs(leaves):
            absorb(proof)
        for old_size in range(size + 1):
            absorb(consistency_proof(leaves, old_size))
    return fold.hexdigest()


def test_fold_of_all_proofs_is_pinned():
    assert _fold_outputs() == FOLD_SHA256


# --- 6. Preconditions and error messages -------------------------------------------


def test_inclusion_index_out_of_range_says_so():
    proof = inclusion_proof(RECORD_IDS[:5], 4)
    with pytest.raises(InvalidProof, match="inclusion proof: index 7 out of range for tree size 5"):
        verify_inclusion(7, 5, RECORD_IDS[4], proof, root(RECORD_IDS[:5]))
    with pytest.raises(InvalidProof, match="index 0 out of range for tree size 0"):
        inclusion_proof([], 0)
    with pytest.raises(InvalidProof, match="index -1 out of range"):
        inclusion_nodes(-1, 4)


def test_wrong_proof_length_says_how_many():
    leaves = RECORD_IDS[:16]
    proof = inclusion_proof(leaves, 3)
    with pytest.raises(InvalidProof, match="proof has 3 hashes, 4 expected"):
        verify_inclusion(3, 16, leaves[3], proof[:3], root(leaves))
    with pytest.raises(InvalidProof, match="consistency proof: proof has 0 hashes, 5 expected"):
        verify_consistency(5, 16, root(leaves[:5]), root(leaves), [])
    with pytest.raises(InvalidProof, match="from size 16 to 16: proof has 1 hashes, 0 expected"):
        verify_consistency(16, 16, root(leaves), root(leaves), [GARBAGE])


def test_short_hashes_are_named():
    leaves = RECORD_IDS[:16]
    proof = inclusion_proof(leaves, 3)
    proof[1] = proof[1][:31]
    with pytest.raises(InvalidProof, match="proof hash 1 has 31 bytes, 32 expected"):
        verify_inclusion(3, 16, leaves[3], proof, root(leaves))
    with pytest.raises(InvalidProof, match="root has 33 bytes, 32 expected"):
        verify_inclusion(3, 16, leaves[3], inclusion_proof(leaves, 3), root(leaves) + b"\x00")
    with pytest.raises(InvalidProof, match="leaf hash has 0 bytes"):
        root_from_inclusion_proof(0, 1, b"", [])
    with pytest.raises(ValueError, match="right child has 16 bytes"):
        node_hash(RECORD_IDS[0], RECORD_IDS[1][:16])


def test_consistency_preconditions():
    with pytest.raises(InvalidProof, match="0 <= old <= new, got old 9, new 8"):
        verify_consistency(9, 8, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(InvalidProof, match="got old 9, new 8"):
        consistency_proof(RECORD_IDS[:8], 9)
    with pytest.raises(InvalidProof, match="got old -1"):
        consistency_nodes(-1, 8)
    # From the empty tree: any tree extends it, but the old root must be H("").
    verify_consistency(0, 8, EMPTY_ROOT, root(RECORD_IDS[:8]), [])
    with pytest.raises(RootMismatch, match="old root of empty tree"):
        verify_consistency(0, 8, GARBAGE, root(RECORD_IDS[:8]), [])


def test_root_mismatch_carries_both_roots():
    leaves = RECORD_IDS[:10]
    good = root(leaves)
    with pytest.raises(RootMismatch) as caught:
        verify_inclusion(2, 10, leaves[2], inclusion_proof(leaves, 2), GARBAGE)
    assert caught.value.expected == GARBAGE
    assert caught.value.calculated == good
    assert f"expected {GARBAGE.hex()}, calculated {good.hex()}" in str(caught.value)
    assert isinstance(caught.value, InvalidProof)
    # One error tree for the whole client: merkle raises client/errors.py's classes.
    assert RootMismatch is errors.RootMismatch and InvalidProof is errors.InvalidProof
    assert isinstance(caught.value, errors.VerificationError)
    with pytest.raises(RootMismatch, match="consistency proof: new root mismatch") as caught:
        verify_consistency(4, 10, root(leaves[:4]), GARBAGE, consistency_proof(leaves, 4))
    assert caught.value.calculated == good


def test_lengths_are_checked_before_hashing(monkeypatch):
    leaves = RECORD_IDS[:16]
    proof, good = inclusion_proof(leaves, 5), root(leaves)
    cproof, old = consistency_proof(leaves, 5), root(leaves[:5])

    def no_hashing(*_):
        raise AssertionError("hashed before checking lengths")

    monkeypatch.setattr(merkle, "_sha256", no_hashing)
    for bad in (proof[:-1], [*proof, GARBAGE], [proof[0][:31], *proof[1:]]):
        with pytest.raises(InvalidProof):
            root_from_inclusion_proof(5, 16, RECORD_IDS[0], bad)
    for bad in (cproof[:-1], [*cproof, GARBAGE], [*cproof[:-1], cproof[-1] + b"\x00"]):
        with pytest.raises(InvalidProof):
            verify_consistency(5, 16, old, good, bad)


def test_argument_types():
    with pytest.raises(TypeError, match="leaf must be bytes, not str"):
        leaf_hash("abc")
    with pytest.raises(TypeError, match="leaf must be bytes"):
        root([RECORD_IDS[0], "abc"])
    with pytest.raises(TypeError, match="index must be an int, not bool"):
        inclusion_nodes(True, 4)
    with pytest.raises(ValueError, match="empty tree has no nodes"):
        tree_levels([])
    assert root([]) == EMPTY_ROOT
    assert inclusion_proofs([]) == []
    assert consistency_nodes(0, 5) == [] and consistency_nodes(5, 5) == []


def test_node_ids():
    # Leaf 5 of 8: sibling leaf 4, then node (1, 3) = leaves 6..7, then (2, 0) = 0..3.
    assert inclusion_nodes(5, 8) == [(0, 4), (1, 3), (2, 0)]
    # Leaf 4 of 5 has no sibling until level 2, where (2, 0) covers leaves 0..3.
    assert inclusion_nodes(4, 5) == [(2, 0)]
    # 6 to 8: start node (1, 2) = leaves 4..5, its sibling (1, 3), then (2, 0).
    assert consistency_nodes(6, 8) == [(1, 2), (1, 3), (2, 0)]
    # 4 to 7: the start node is the old root (2, 0) itself, so only its path.
    assert consistency_nodes(4, 7) == [(2, 1)]


def test_exported_names():
    assert merkle.__all__ == sorted(merkle.__all__)
    for name in merkle.__all__:
        assert hasattr(merkle, name), name


# --- 7. Work guard ----------------------------------------------------------------


def test_root_hashes_each_node_once(monkeypatch):
    # root() runs for every block: it must do linear work (n leaf hashes, n-1 node hashes),
    # counted rather than timed, since this machine is shared and noisy.
    leaves = RECORD_IDS[:1000]
    expected = root(leaves)
    calls = {"n": 0}
    real = merkle._sha256

    def counting(data=b""):
        calls["n"] += 1
        return real(data)

    monkeypatch.setattr(merkle, "_sha256", counting)
    assert root(leaves) == expected
    assert calls["n"] == 2 * len(leaves) - 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        write_vectors()
        print(f"wrote {len(generate_vectors())} files under {VECTORS_DIR}")
    elif sys.argv[1:] == ["--fold"]:
        print(_fold_outputs())
    else:
        sys.exit("usage: python tests/client/test_merkle.py --write-vectors | --fold")
