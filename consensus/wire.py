"""Strict msgpack framing of consensus messages. Wire bytes are never signed (see ``messages``).

Each message is one msgpack array whose first element is a type tag::

    [1, view, height, parent, digest, payload, sender, sig]          PrePrepare
    [2, view, height, digest, sender, sig]                           Prepare
    [3, view, height, digest, sender, sig]                           CommitVote
    [4, height, digest, sender, sig]                                 Checkpoint
    [5, view, stable, prepared, sender, sig, payloads]               ViewChange
         stable   = [height, digest, [[id, sig], ...]]
         prepared = [[view, height, digest, parent, pp_sig, [[id, sig], ...]], ...]
    [6, view, [viewchange...], [preprepare...], sender, sig]         NewView (nested without tags)

``decode`` raises ``ProtocolViolation`` for anything else: unknown tag, wrong arity or types, a
non-canonical integer type, bytes of the wrong length, ids that are not 16 lowercase hex digits,
oversized payloads, trailing bytes. It never verifies signatures (the replica does).
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import ProtocolViolation
from .messages import (
    Checkpoint,
    CheckpointCert,
    CommitVote,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    ViewChange,
)

__all__ = ["MAX_MESSAGE_BYTES", "MAX_PAYLOAD_BYTES", "MAX_VALIDATORS", "decode", "encode"]

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_VALIDATORS = 256
MAX_PREPARED = 1024  # prepared certificates in one VIEW-CHANGE (bounded by the log window)
_HEX = frozenset("0123456789abcdef")
_U64 = 2**64


# ---------------------------------------------------------------------------------------- encode

def _votes(votes: tuple[tuple[str, bytes], ...]) -> list[list[Any]]:
    return [[i, s] for i, s in votes]


def _pp(m: PrePrepare) -> list[Any]:
    return [m.view, m.height, m.parent, m.digest, m.payload, m.sender, m.sig]


def _vc(m: ViewChange) -> list[Any]:
    stable = [m.stable.height, m.stable.digest, _votes(m.stable.votes)]
    prepared = [[p.view, p.height, p.digest, p.parent, p.pp_sig, _votes(p.prepares)] for p in m.prepared]
    return [m.view, stable, prepared, m.sender, m.sig, list(m.payloads)]


def encode(message: Message) -> bytes:
    """The wire bytes of ``message`` (one msgpack array)."""
    obj: list[Any]
    if type(message) is Prepare or type(message) is CommitVote:
        tag = 2 if type(message) is Prepare else 3
        obj = [tag, message.view, message.height, message.digest, message.sender, message.sig]
    elif type(message) is PrePrepare:
        obj = [1, *_pp(message)]
    elif type(message) is Checkpoint:
        obj = [4, message.height, message.digest, message.sender, message.sig]
    elif type(message) is ViewChange:
        obj = [5, *_vc(message)]
    elif type(message) is NewView:
        obj = [6, message.view, [_vc(v) for v in message.view_changes], [_pp(p) for p in message.pre_prepares],
               message.sender, message.sig]
    else:
        raise TypeError(f"not a consensus message: {type(message).__name__}")
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


# ---------------------------------------------------------------------------------------- decode

def _fail(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"consensus message: {what}")


def _u64(x: Any) -> int:
    if type(x) is not int or not 0 <= x < _U64:
        raise _fail("expected an unsigned 64-bit integer")
    return x


def _b(x: Any, size: int) -> bytes:
    if type(x) is not bytes or len(x) != size:
        raise _fail(f"expected {size} bytes")
    return x


def _id(x: Any) -> str:
    if type(x) is not str or len(x) != 16 or not _HEX.issuperset(x):
        raise _fail("expected a validator id (16 lowercase hex digits)")
    return x


def _arr(x: Any, n: int | None = None, limit: int = MAX_VALIDATORS) -> tuple[Any, ...]:
    if type(x) is not tuple or (n is not None and len(x) != n) or len(x) > max(limit, n or 0):
        raise _fail("wrong array shape")
    return x


def _votes_in(x: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple((_id(v[0]), _b(v[1], 64)) for v in (_arr(i, 2) for i in _arr(x)))


def _payload(x: Any) -> bytes:
    if type(x) is not bytes or len(x) > MAX_PAYLOAD_BYTES:
        raise _fail("payload must be bytes within the size limit")
    return x


def _pp_in(a: Any) -> PrePrepare:
    a = _arr(a, 7)
    return PrePrepare(_u64(a[0]), _u64(a[1]), _b(a[2], 32), _b(a[3], 32), _payload(a[4]), _id(a[5]), _b(a[6], 64))


def _vc_in(a: Any) -> ViewChange:
    a = _arr(a, 6)
    s = _arr(a[1], 3)
    stable = CheckpointCert(_u64(s[0]), _b(s[1], 32), _votes_in(s[2]))
    prepared = []
    for p in _arr(a[2], limit=MAX_PREPARED):
        p = _arr(p, 6)
        prepared.append(PreparedCert(_u64(p[0]), _u64(p[1]), _b(p[2], 32), _b(p[3], 32), _b(p[4], 64), _votes_in(p[5])))
    payloads = tuple(_payload(x) for x in _arr(a[5], limit=MAX_PREPARED))
    if payloads and len(payloads) != len(prepared):
        raise _fail("view-change payloads do not match its prepared certificates")
    return ViewChange(_u64(a[0]), stable, tuple(prepared), _id(a[3]), _b(a[4], 64), payloads)


def decode(data: bytes) -> Message:
    """Parse wire bytes into a message. Raises ``ProtocolViolation`` on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_MESSAGE_BYTES:
        raise _fail("not bytes, or too large")
    try:
        obj = msgpack.unpackb(
            data, raw=False, use_list=False, strict_map_key=True, max_bin_len=MAX_PAYLOAD_BYTES,
            max_str_len=64, max_array_len=max(MAX_PREPARED, MAX_VALIDATORS), max_map_len=0, max_ext_len=0,
        )
    except ProtocolViolation:
        raise
    except Exception as exc:  # msgpack raises several unrelated types (ExtraData, ValueError, ...)
        raise _fail(f"not valid msgpack ({type(exc).__name__})") from exc
    if type(obj) is not tuple or not obj or type(obj[0]) is not int:
        raise _fail("expected a tagged array")
    tag, body = obj[0], obj[1:]
    try:
        if tag == 2 or tag == 3:
            a = _arr(body, 5)
            cls = Prepare if tag == 2 else CommitVote
            return cls(_u64(a[0]), _u64(a[1]), _b(a[2], 32), _id(a[3]), _b(a[4], 64))
        if tag == 1:
            return _pp_in(body)
        if tag == 4:
            a = _arr(body, 4)
            return Checkpoint(_u64(a[0]), _b(a[1], 32), _id(a[2]), _b(a[3], 64))
        if tag == 5:
            return _vc_in(body)
        if tag == 6:
            a = _arr(body, 5)
            vcs = tuple(_vc_in(v) for v in _arr(a[1]))
            pps = tuple(_pp_in(p) for p in _arr(a[2], limit=MAX_PREPARED))
            return NewView(_u64(a[0]), vcs, pps, _id(a[3]), _b(a[4], 64))
    except (IndexError, TypeError) as exc:
        raise _fail("wrong shape") from exc
    raise _fail(f"unknown tag {tag}")
