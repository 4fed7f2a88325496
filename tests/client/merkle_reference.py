"""A direct, recursive transcription of RFC 9162 section 2.1, for tests only.

It cross-checks client/merkle.py, which computes the same things level by
level. It shares no code with it and is written to be obviously right, not
fast: each function is one definition of the RFC, on the slice D[lo:hi] of
the leaves. Subtree hashes are memoized per tree so sweeps over every index
of every tree size stay cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _largest_power_of_two_below(n: int) -> int:
    """k such that k < n <= 2k (RFC 9162 2.1.1), for n > 1."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int = 0, hi: int | None = None) -> bytes:
        """MTH(D[lo:hi])."""
        hi = len(self.leaves) if hi is None else hi
        if (lo, hi) not in self._mth:
            n = hi - lo
            if n == 0:
                value = hashlib.sha256(b"").digest()
            elif n == 1:
                value = hashlib.sha256(b"\x00" + self.leaves[lo]).digest()
            else:
                k = _largest_power_of_two_below(n)
                value = hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()
            self._mth[lo, hi] = value
        return self._mth[lo, hi]

    def path(self, m: int, lo: int = 0, hi: int | None = None) -> list[bytes]:
        """PATH(m, D[lo:hi]): the audit path of leaf lo + m (RFC 9162 2.1.3.1)."""
        hi = len(self.leaves) if hi is None else hi
        n = hi - lo
        assert 0 <= m < n
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def proof(self, m: int) -> list[bytes]:
        """PROOF(m, D[n]): the consistency proof from size m (RFC 9162 2.1.4.1)."""
        n = len(self.leaves)
        assert 0 <= m <= n
        if m == 0 or m == n:
            return []
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def rfc_verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """The verification algorithm of RFC 9162 section 2.1.3.2, step by step."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:  # Until LSB(fn) is set or fn is 0.
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def rfc_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> bool:
    """The verification algorithm of RFC 9162 section 2.1.4.2, step by step.

    The two edge cases the RFC leaves to the caller are decided as rantai
    does: first == 0 needs an empty proof and first_hash == H(""), and
    first == second needs an empty proof and equal hashes.
    """
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not proof and first_hash == hashlib.sha256(b"").digest()
    if first == second:
        return not proof and first_hash == second_hash
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # An exact power of two.
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn and not fn & 1:  # Until LSB(fn) is set or fn is 0.
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0
