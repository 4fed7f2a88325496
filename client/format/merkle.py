"""RFC 9162 (Certificate Transparency v2) Merkle trees over SHA-256.

Every block commits to its records with the root of a Merkle tree whose
leaves are the records' 32-byte ids; a receipt carries an inclusion proof
against that root, and an auditor who saw an older tree can check a newer
one with a consistency proof. Everything here is a pure function of its
arguments: no I/O, no state, no clock.

Hashes (RFC 9162 section 2.1.1, unchanged from RFC 6962)::

    leaf hash    H(0x00 || leaf)
    node hash    H(0x01 || left || right)
    empty tree   H("")

A leaf may be any byte string (the RFC test vectors use leaves of 0 to 16
bytes); rantai's leaves are 32-byte record ids. Hashes, roots and proof
elements are always HASH_SIZE (32) bytes, and lengths are checked before
anything is hashed.

Vocabulary
----------
A tree of ``size`` leaves has levels 0 (the leaf hashes) up to the root.
Level ``l`` holds ``width(l) = ceil(size / 2**l)`` nodes, and node
``(l, i)`` is the root of the leaves ``[i * 2**l, min((i + 1) * 2**l, size))``.
A node is *perfect* when that range is full (``2**l`` leaves). Each level is
built from the one below by hashing pairs left to right; when a level has an
odd width its last node has no sibling and is *carried* up unchanged.

This level-by-level construction gives exactly the tree of RFC 9162 section
2.1.1 (split ``n`` leaves at ``k``, the largest power of two smaller than
``n``): the first ``k`` leaves form a perfect node, and the remaining ones are
paired among themselves because ``k`` is a multiple of every ``2**l`` below
it. So an audit path is simply the sibling of the leaf's ancestor at every
level where that sibling exists, bottom-up (RFC 9162 section 2.1.3.1), and
proofs are computed in one pass over the levels instead of the RFC's
recursion. ``tests/client/merkle_reference.py`` holds the recursion itself
and the tests check both agree.

Node ids: ``inclusion_nodes`` and ``consistency_nodes`` return the ``(level,
index)`` pairs whose hashes form a proof; this index math needs no hashes, so
storage can fetch just those nodes (``tree_levels()[level][index]``).

Errors (from client/errors.py, re-exported here): ``InvalidProof`` when a
proof cannot be checked at all (bad sizes or indexes, wrong number of hashes,
a hash of the wrong length); its subclass ``RootMismatch``, carrying
``.expected`` and ``.calculated``, when a well-formed proof leads to another
root than the one trusted. Both are ``VerificationError``s. Misuse that is a
programming error (a str for bytes, a bool for an index) raises TypeError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import InvalidProof, RootMismatch

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "InvalidProof",
    "RootMismatch",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "inclusion_proofs",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "tree_levels",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash, root and proof element (SHA-256)."""

LEAF_HASH_PREFIX = b"\x00"
"""Domain separation: a leaf hash can never equal a node hash (RFC 9162 2.1.1)."""

NODE_HASH_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the tree with no leaves: H("")."""

_sha256 = hashlib.sha256


def _root_mismatch(what: str, expected: bytes, calculated: bytes) -> RootMismatch:
    return RootMismatch(
        f"{what} mismatch: expected {bytes(expected).hex()}, calculated {bytes(calculated).hex()}",
        expected=bytes(expected),
        calculated=bytes(calculated),
    )


# --- Hashes -------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    """Return H(0x00 || leaf).

    Requires ``leaf`` to be bytes-like, of any length (record ids are 32 bytes).
    Raises TypeError otherwise.
    """
    if not isinstance(leaf, (bytes, bytearray, memoryview)):
        raise TypeError(f"leaf must be bytes, not {type(leaf).__name__}")
    return _sha256(LEAF_HASH_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return H(0x01 || left || right).

    Requires both children to be HASH_SIZE-byte hashes; raises ValueError
    (TypeError for non-bytes) otherwise.
    """
    _check_hash(left, "left child", ValueError)
    _check_hash(right, "right child", ValueError)
    return _sha256(NODE_HASH_PREFIX + left + right).digest()


# --- Building trees -----------------------------------------------------------


def root(leaves: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 Merkle tree hash (MTH) of ``leaves``.

    Iterative and linear: ``len(leaves)`` leaf hashes plus ``len(leaves) - 1``
    node hashes, holding one level at a time. ``root([])`` is EMPTY_ROOT.
    Requires every leaf to be bytes-like (TypeError otherwise).
    """
    if not leaves:
        return EMPTY_ROOT
    level = _leaf_level(leaves)
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Return the hash of every node: ``tree_levels(leaves)[l][i]`` is node (l, i).

    Level 0 holds the leaf hashes and the last level holds only the root.
    Nodes carried up from an odd level appear again, unchanged, on the next.
    Requires at least one leaf (ValueError otherwise).
    """
    if not leaves:
        raise ValueError("tree_levels: the empty tree has no nodes")
    levels = [_leaf_level(leaves)]
    while len(levels[-1]) > 1:
        levels.append(_parent_level(levels[-1]))
    return levels


def _leaf_level(leaves: Sequence[bytes]) -> list[bytes]:
    sha256, prefix = _sha256, LEAF_HASH_PREFIX
    try:
        return [sha256(prefix + leaf).digest() for leaf in leaves]
    except TypeError:
        for leaf in leaves:
            leaf_hash(leaf)  # Raises with a message naming the bad type.
        raise


def _parent_level(level: list[bytes]) -> list[bytes]:
    """Hash pairs left to right; an odd last node is carried up unchanged."""
    sha256, prefix = _sha256, NODE_HASH_PREFIX
    pairs = iter(level)
    # zip(pairs, pairs) takes the nodes two at a time; strict=False because an odd last node has no pair
    parents = [sha256(prefix + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
    if len(level) & 1:
        parents.append(level[-1])
    return parents


# --- Index math (no hashes) ---------------------------------------------------


def _width(level: int, size: int) -> int:
    """Number of nodes on ``level`` of a tree of ``size`` leaves."""
    return (size + (1 << level) - 1) >> level


def _path_nodes(level: int, index: int, size: int) -> list[tuple[int, int]]:
    """Siblings of node (level, index) and of its ancestors, bottom-up.

    A node with no sibling (the last node of an odd level) contributes
    nothing: it is carried up, so the proof skips that level.
    """
    nodes = []
    width = _width(level, size)
    while width > 1:
        if index ^ 1 < width:
            nodes.append((level, index ^ 1))
        index >>= 1
        level += 1
        width = (width + 1) >> 1  # ceil(ceil(n / 2**l) / 2) == ceil(n / 2**(l + 1))
    return nodes


def _path_length(level: int, index: int, size: int) -> int:
    """``len(_path_nodes(level, index, size))``, without building the list."""
    length = 0
    width = _width(level, size)
    while width > 1:
        length += index ^ 1 < width
        index >>= 1
        width = (width + 1) >> 1
    return length


def inclusion_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """Return the ``(level, index)`` ids of the audit path of leaf ``index``.

    Requires ``0 <= index < size``; raises InvalidProof otherwise.
    """
    _check_index(index, size, "inclusion proof")
    return _path_nodes(0, index, size)


def _consistency_start(old_size: int) -> tuple[int, int]:
    """The largest perfect node that ends exactly at leaf ``old_size``.

    Its level is the number of trailing zero bits of ``old_size``, so it
    covers the last ``2**level`` leaves of the old tree. It is the same node
    in the old and the new tree, and every other node of the old tree is
    either inside it or to its left.
    """
    level = (old_size & -old_size).bit_length() - 1
    return level, (old_size - 1) >> level


def consistency_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Return the ``(level, index)`` ids of the consistency proof (RFC 9162 2.1.4).

    The proof is the start node (see ``_consistency_start``) followed by its
    path to the root of the new tree. The start node is left out when
    ``old_size`` is a power of two: it is then the old root itself, which the
    verifier already has. Empty when ``old_size`` is 0 or equals ``new_size``.

    Requires ``0 <= old_size <= new_size``; raises InvalidProof otherwise.
    """
    _check_sizes(old_size, new_size)
    if old_size == 0 or old_size == new_size:
        return []
    level, index = _consistency_start(old_size)
    path = _path_nodes(level, index, new_size)
    return path if index == 0 else [(level, index), *path]


# --- Proofs -------------------------------------------------------------------


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path of ``leaves[index]`` (RFC 9162 section 2.1.3.1).

    Builds the tree once (linear) and picks one sibling per level.
    Requires ``0 <= index < len(leaves)``; raises InvalidProof otherwise.
    """
    nodes = inclusion_nodes(index, len(leaves))
    levels = tree_levels(leaves)
    return [levels[level][i] for level, i in nodes]


def inclusion_proofs(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Return the audit path of every leaf: ``inclusion_proof(leaves, i)`` for each i.

    Builds the tree once, so proving all records of a block costs one tree
    plus ``log2(n)`` list lookups per record.
    """
    if not leaves:
        return []
    size, levels = len(leaves), tree_levels(leaves)
    return [[levels[level][i] for level, i in _path_nodes(0, index, size)] for index in range(size)]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the proof that the tree of ``leaves[:old_size]`` is a prefix of ``leaves``.

    RFC 9162 section 2.1.4.1 (``PROOF(m, D[n])``). Empty when ``old_size`` is
    0 or ``len(leaves)``. Requires ``0 <= old_size <= len(leaves)``; raises
    InvalidProof otherwise.
    """
    nodes = consistency_nodes(old_size, len(leaves))
    if not nodes:
        return []
    levels = tree_levels(leaves)
    return [levels[level][i] for level, i in nodes]


# --- Verification -------------------------------------------------------------


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` leads to from ``leaf_hash`` at ``index``.

    Walks up the levels: where the ancestor has a sibling, the next proof
    hash is that sibling, on the left if the ancestor's index is odd and on
    the right if even; where it has none, the ancestor is carried up.

    Requires ``0 <= index < size``, HASH_SIZE-byte ``leaf_hash`` and proof
    hashes, and exactly ``len(inclusion_nodes(index, size))`` proof hashes;
    raises InvalidProof otherwise, before hashing anything.
    """
    _check_index(index, size, "inclusion proof")
    _check_hash(leaf_hash, "inclusion proof: leaf hash")
    _check_proof(proof, _path_length(0, index, size), "inclusion proof")
    return _chain(0, index, size, leaf_hash, proof)


def _chain(level: int, index: int, size: int, seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Hash ``seed``, node (level, index), up to the root along its checked path."""
    sha256, prefix = _sha256, NODE_HASH_PREFIX
    node, used = seed, 0
    width = _width(level, size)
    while width > 1:
        if index & 1:
            node = sha256(prefix + proof[used] + node).digest()
            used += 1
        elif index + 1 < width:
            node = sha256(prefix + node + proof[used]).digest()
            used += 1
        index >>= 1
        width = (width + 1) >> 1
    return node


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    ``leaf`` is the leaf itself (a record id), not its hash.
    Requires ``0 <= index < size`` and a HASH_SIZE-byte ``root``.
    Raises InvalidProof if the proof is malformed (see
    ``root_from_inclusion_proof``), RootMismatch if it leads to another root.
    """
    _check_hash(root, "inclusion proof: root")
    calculated = root_from_inclusion_proof(index, size, leaf_hash(leaf), proof)
    if calculated != root:
        raise _root_mismatch("inclusion proof: root", root, calculated)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` leaves is a prefix of the one of ``new_size``.

    Cases, as in RFC 9162 section 2.1.4.2:
      * ``old_size == 0``: every tree extends the empty one; the proof must be
        empty and ``old_root`` must be EMPTY_ROOT.
      * ``old_size == new_size``: the proof must be empty and the roots equal.
      * otherwise the proof must hold ``len(consistency_nodes(old_size,
        new_size))`` hashes. From the start node (the proof's first hash, or
        ``old_root`` when ``old_size`` is a power of two), each path hash is
        a left sibling (inside the old tree: it enters both roots) or a right
        sibling (only in the new tree: it enters the new root only).

    Requires ``0 <= old_size <= new_size`` and HASH_SIZE-byte roots and proof
    hashes; raises InvalidProof otherwise (before hashing anything), and
    RootMismatch if the proof leads to another old or new root.
    """
    _check_sizes(old_size, new_size)
    _check_hash(old_root, "consistency proof: old root")
    _check_hash(new_root, "consistency proof: new root")
    if old_size == 0 or old_size == new_size:
        _check_proof(proof, 0, f"consistency proof from size {old_size} to {new_size}")
        if old_size == 0:
            if old_root != EMPTY_ROOT:
                raise _root_mismatch("consistency proof: old root of empty tree", old_root, EMPTY_ROOT)
        elif old_root != new_root:
            raise _root_mismatch("consistency proof: equal sizes, root", new_root, old_root)
        return
    level, index = _consistency_start(old_size)
    path_length = _path_length(level, index, new_size)
    seeded = index != 0  # Otherwise the start node is the old root itself.
    _check_proof(proof, path_length + seeded, "consistency proof")
    seed, path = (proof[0], proof[1:]) if seeded else (old_root, proof)

    old_node = new_node = seed
    sha256, prefix, used = _sha256, NODE_HASH_PREFIX, 0
    width = _width(level, new_size)
    while width > 1:
        if index & 1:
            old_node = sha256(prefix + path[used] + old_node).digest()
            new_node = sha256(prefix + path[used] + new_node).digest()
            used += 1
        elif index + 1 < width:
            new_node = sha256(prefix + new_node + path[used]).digest()
            used += 1
        index >>= 1
        width = (width + 1) >> 1

    if old_node != old_root:
        raise _root_mismatch("consistency proof: old root", old_root, old_node)
    if new_node != new_root:
        raise _root_mismatch("consistency proof: new root", new_root, new_node)


# --- Argument checks ----------------------------------------------------------


def _check_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _check_index(index: int, size: int, what: str) -> None:
    _check_int(index, "index")
    _check_int(size, "size")
    if not 0 <= index < size:
        raise InvalidProof(f"{what}: index {index} out of range for tree size {size}")


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_int(old_size, "old_size")
    _check_int(new_size, "new_size")
    if not 0 <= old_size <= new_size:
        raise InvalidProof(
            f"consistency proof: sizes must satisfy 0 <= old <= new, got old {old_size}, new {new_size}"
        )


def _check_hash(value: object, what: str, error: type[Exception] = InvalidProof) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise error(f"{what} has {len(value)} bytes, {HASH_SIZE} expected")


def _check_proof(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise InvalidProof(f"{what}: proof has {len(proof)} hashes, {expected} expected")
    for position, element in enumerate(proof):
        if type(element) is not bytes or len(element) != HASH_SIZE:  # Fast path first.
            _check_hash(element, f"{what}: proof hash {position}")
