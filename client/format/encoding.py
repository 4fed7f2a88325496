"""Canonical msgpack: the one definition of the bytes rantai signs, hashes and proves.

Rules (docs/format.md states them byte by byte):
- maps have ``str`` keys, sorted by their UTF-8 bytes, no duplicates;
- integers in their shortest msgpack form; bool and nil as themselves;
- floats always float64, never NaN or ±∞;
- ``str`` (UTF-8 text) and ``bytes`` (bin) stay distinct; no ext types;
- nesting at most ``MAX_DEPTH`` deep: the top-level value is at depth 0, a value inside a map or
  array at depth d is at depth d+1, and no map or array may sit deeper than ``MAX_DEPTH`` (so at most
  33 maps or arrays inside one another; scalars may sit at depth 33).

Decoding is strict: anything that would not re-encode to the very same bytes — unsorted or
duplicate keys, a long form of a short integer, float32, trailing bytes — is refused. That makes
"equal bytes" and "equal values" the same thing, which is what hashing and signing need.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from .errors import InvalidEncoding

__all__ = ["MAX_DEPTH", "MAX_SIZE", "decode", "encode", "hexify", "normalize"]

MAX_DEPTH = 32
MAX_SIZE = 64 * 1024 * 1024

_packer_options = {"use_bin_type": True, "use_single_float": False, "strict_types": False, "autoreset": True}


_PLAIN = frozenset({str, bytes, bool, type(None)})  # scalars that are their own canonical form


def normalize(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with every map's keys in canonical order; refuse what has no canonical form."""
    if depth > MAX_DEPTH:
        raise InvalidEncoding(f"encoding: nested deeper than {MAX_DEPTH}")
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not -(2**63) <= value < 2**64:
            raise InvalidEncoding("encoding: integer out of the 64-bit range")
        return value
    if t is float:
        if not math.isfinite(value):
            raise InvalidEncoding("encoding: NaN and infinity have no canonical form")
        return value
    if t is dict:
        for k in value:
            if type(k) is not str:
                raise InvalidEncoding(f"encoding: map key {k!r} is not a string")
        # UTF-8 preserves code point order, so sorting the str keys sorts their UTF-8 bytes.
        d = depth + 1
        return {k: v if type(v) in _PLAIN else normalize(v, d) for k in sorted(value) for v in (value[k],)}
    if t is list or t is tuple:
        d = depth + 1
        return [v if type(v) in _PLAIN else normalize(v, d) for v in value]
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InvalidEncoding(f"encoding: {t.__name__} values cannot be encoded")


def _in_canonical_order(value: Any) -> bool:
    """Check ``value`` has a canonical form; True when every map's keys are already in order.

    The hot path of both ``encode`` and ``decode``: an iterative walk that visits containers only
    and builds nothing, so values that are already canonical (everything ``decode`` accepts, and
    most of what rantai builds) go to the C packer as they are. Raises like ``normalize``.
    """
    in_order = True
    stack = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth = pop()
        t = type(v)
        if t is dict:
            keys = list(v)
            for k in keys:
                if type(k) is not str:
                    raise InvalidEncoding(f"encoding: map key {k!r} is not a string")
            if in_order and keys != sorted(keys):
                in_order = False
            children: Any = v.values()
        elif t is list or t is tuple:
            children = v
        else:
            normalize(v, depth)  # a lone scalar (top level): its own checks
            continue
        if depth > MAX_DEPTH:
            raise InvalidEncoding(f"encoding: nested deeper than {MAX_DEPTH}")
        for c in children:
            tc = type(c)
            if tc is str or tc is bytes or tc is bool or c is None:
                continue
            if tc is int:
                if not -(2**63) <= c < 2**64:
                    raise InvalidEncoding("encoding: integer out of the 64-bit range")
            elif tc is float:
                if not math.isfinite(c):
                    raise InvalidEncoding("encoding: NaN and infinity have no canonical form")
            elif tc is dict or tc is list or tc is tuple:
                push((c, depth + 1))
            else:
                normalize(c, depth + 1)  # bytearray, memoryview, or a type with no encoding
    return in_order


def encode(value: Any) -> bytes:
    """Canonical bytes of ``value`` (dict/list/tuple/str/bytes/int/float/bool/None)."""
    if not _in_canonical_order(value):
        value = normalize(value)
    try:
        packed: bytes = msgpack.packb(value, **_packer_options)  # msgpack has no type hints: packb returns Any
    except UnicodeEncodeError as exc:
        raise InvalidEncoding("encoding: text that is not valid Unicode (a lone surrogate)") from exc
    return packed


def decode(data: bytes, *, max_size: int = MAX_SIZE) -> Any:
    """Parse canonical bytes; raise ``InvalidEncoding`` for anything else (never another exception)."""
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidEncoding("encoding: expected bytes")
        data = bytes(data)
    if len(data) > max_size:
        raise InvalidEncoding(f"encoding: {len(data)} bytes is over the {max_size}-byte limit")
    if not data:
        raise InvalidEncoding("encoding: empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=1_000_000,
            max_map_len=100_000,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise InvalidEncoding("encoding: trailing bytes after the value") from exc
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # OutOfData, FormatError, StackError, UnicodeDecodeError and ext types all land here.
        raise InvalidEncoding(f"encoding: malformed msgpack ({type(exc).__name__})") from exc
    except Exception as exc:  # the C unpacker's error types vary across versions; none may escape
        raise InvalidEncoding(f"encoding: malformed msgpack ({type(exc).__name__})") from exc
    # Decoded maps keep the input's key order, so out-of-order keys show up here, and every other
    # non-canonical form (long integers, float32, duplicate keys) shows up as different bytes.
    t = type(value)
    in_order = _decoded_in_order(value, 0) if t is dict or t is list else _in_canonical_order(value)
    if not in_order or msgpack.packb(value, **_packer_options) != data:
        raise InvalidEncoding("encoding: not canonical (key order, duplicate keys or integer/float form)")
    return value


def _decoded_in_order(value: Any, depth: int) -> bool:
    """``_in_canonical_order`` of a map or array ``msgpack.unpackb`` returned (``decode``'s hot path).

    Decoded values hold only maps, arrays, str, bytes, float, bool, nil and integers already in the
    64-bit range, so the walk is shorter: recursive, nothing built but each map's key list. Refuses
    what ``_in_canonical_order`` refuses, with its messages (an input with several faults may be
    named by another of them: the walk's order differs).
    """
    in_order = True
    if type(value) is dict:
        keys = list(value)
        for k in keys:
            if type(k) is not str:
                raise InvalidEncoding(f"encoding: map key {k!r} is not a string")
        if keys != sorted(keys):
            in_order = False
        children: Any = value.values()
    else:
        children = value
    for c in children:
        tc = type(c)
        if tc is str or tc is bytes or tc is int or tc is bool or c is None:
            continue
        if tc is float:
            if not math.isfinite(c):
                raise InvalidEncoding("encoding: NaN and infinity have no canonical form")
        elif depth >= MAX_DEPTH:  # c, a map or an array, sits at depth + 1
            raise InvalidEncoding(f"encoding: nested deeper than {MAX_DEPTH}")
        elif not _decoded_in_order(c, depth + 1):
            in_order = False
    return in_order


def hexify(value: Any) -> Any:
    """``value`` for JSON: byte strings as lower-case hex, maps and arrays walked (receipt files,
    the API's JSON answers, governance descriptions: one spelling of bytes everywhere)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: hexify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [hexify(v) for v in value]
    return value
