"""HTTP answers: content negotiation, the one error shape, and reading request bodies safely.

Shared by the node's API (node/app.py) and its EPCIS binding (node/epcis_api.py), which each
import it; neither imports the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any

import msgpack
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from rantai.client.format.encoding import encode, hexify
from rantai.client.format.errors import InvalidEncoding, Overloaded, RecordTooLarge

from .validation import error_body, status_of

__all__ = ["JSON", "MSGPACK", "MAX_JSON_DEPTH", "ApiError", "PackedReceipts", "client_address", "error_response",
           "json_depth", "load_json", "read_body", "respond", "wants_msgpack"]

MSGPACK = "application/msgpack"
JSON = "application/json"
MAX_JSON_DEPTH = 64  # an EPCIS document nests about 8 deep; json.loads recurses once per level
_HEAD_BYTES = 16


class ApiError(Exception):
    def __init__(self, status: int, rule: str, message: str, *, headers: dict[str, str] | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body = {"error": rule, "message": message, **details}


def wants_msgpack(request: Request) -> bool:
    return MSGPACK in request.headers.get("accept", "")


def respond(request: Request, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if wants_msgpack(request):
        return Response(encode(obj), status_code=status, media_type=MSGPACK, headers=headers)
    return Response(
        json.dumps(hexify(obj), ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


_PACKER = msgpack.Packer(use_bin_type=True, use_single_float=False, autoreset=True)
_pack = _PACKER.pack
_SCALARS = (int, str, bytes)  # packed by msgpack exactly as ``encode`` packs them (bool is an int: not here)
_KEYS: dict[str, bytes] = {}  # map keys, packed
_RESULTS = _pack("results")
_PATH, _RECORD = _pack("path"), _pack("record")
_COMMITTED_KEYS = ("height", "id", "receipt", "status")  # a committed entry's keys, in canonical order


def _packed(value: Any) -> bytes:
    """``encode(value)``, for the scalars of an answer without the canonical walk."""
    return _pack(value) if type(value) in _SCALARS else encode(value)


def _key(k: str) -> bytes:
    packed = _KEYS.get(k)
    if packed is None:
        packed = _pack(k)
        if len(_KEYS) < 256:  # the few keys answers have; bounded all the same
            _KEYS[k] = packed
    return packed


class PackedReceipts:
    """The ``?wait=commit`` answer as msgpack, its receipts' per-block parts packed once per block.

    ``answer(entries, receipts)`` is byte for byte ``encode({"results": entries})`` with each
    ``receipts[i]`` (a ``Ledger.receipt_obj_at`` map) as ``entries[i]["receipt"]``; the block's
    header and certificate, the same in every receipt of the block, are packed at its first answer
    (and kept for the last ``size`` blocks), not walked and packed once per answer.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._heads: dict[int, bytes] = {}

    def receipt(self, height: int, obj: Mapping[str, Any]) -> bytes:
        """``encode(obj)`` of a receipt map (keys: certificate, header, index, path, record)."""
        head = self._heads.get(height)
        if head is None:
            head = b"".join((_PACKER.pack_map_header(5), _key("certificate"), encode(obj["certificate"]),
                             _key("header"), encode(obj["header"]), _key("index")))
            self._heads[height] = head
            if len(self._heads) > self.size:
                del self._heads[next(iter(self._heads))]  # the oldest first answered
        path = obj["path"]
        packed_path = _pack(path) if type(path) is list and all(type(x) is bytes for x in path) else encode(path)
        return b"".join((head, _pack(obj["index"]), _PATH, packed_path, _RECORD, _packed(obj["record"])))

    def answer(self, entries: list[dict[str, Any]], receipts: Mapping[int, tuple[int, Mapping[str, Any]]]) -> bytes:
        """``encode({"results": entries})``, entry ``i`` with ``receipt`` = ``receipts[i]`` = (height, map)."""
        out = [b"\x81", _RESULTS, _PACKER.pack_array_header(len(entries))]
        for i, entry in enumerate(entries):
            got = receipts.get(i)
            if got is None:
                out.append(encode(entry))
                continue
            keys = _COMMITTED_KEYS if len(entry) == 3 and "height" in entry and "id" in entry and "status" in entry \
                else sorted({*entry, "receipt"})
            out.append(_PACKER.pack_map_header(len(keys)))
            for k in keys:
                out.append(_key(k))
                out.append(self.receipt(*got) if k == "receipt" else _packed(entry[k]))
        return b"".join(out)


def error_response(request: Request, err: BaseException) -> Response:
    if isinstance(err, ApiError):
        return respond(request, err.body, err.status, err.headers)
    headers = {"retry-after": str(err.details.get("retry_after", 1))} if isinstance(err, Overloaded) else None
    return respond(request, error_body(err), status_of(err), headers)


def client_address(scope: Mapping[str, Any]) -> str:
    """The source address admission control charges (the TCP peer; a proxy in front is one client)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# -- JSON nesting: refused before json.loads, whose C scanner recurses once per level -----------
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def json_depth(body: bytes) -> int:
    """How deep ``body``'s arrays and objects nest (brackets inside strings do not count); when the
    body has too few brackets to nest deeper than ``MAX_JSON_DEPTH``, their count (a bound) instead.

    Bytes-level passes in C (a regex for strings, ``translate``, ``accumulate`` over signed bytes),
    so a 17 MB body costs tens of milliseconds, not a Python loop per byte.
    """
    opening = body.count(b"[") + body.count(b"{")
    if opening <= MAX_JSON_DEPTH:
        return opening
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(memoryview(brackets.translate(_DEPTH_STEP)).cast("b")), default=0)


def load_json(body: bytes, what: str) -> Any:
    """``json.loads`` for a request body; ``InvalidEncoding`` (400) for bad or too deeply nested JSON."""
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise InvalidEncoding(f"{what}: JSON nested {depth} deep, at most {MAX_JSON_DEPTH} levels",
                              limit=MAX_JSON_DEPTH)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidEncoding(f"{what}: not valid JSON ({exc})") from exc


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int, head: Callable[[bytes], None] | None = None) -> bytes:
    """The body, refused (413) as soon as it is over ``limit``; ``head`` sees its first bytes as soon
    as they arrive and may refuse the request before the rest is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RecordTooLarge(f"body: {declared} bytes, the limit is {limit}", limit=limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RecordTooLarge(f"body: over the {limit}-byte limit", limit=limit)
            chunks.append(chunk)
            if head is not None and size >= _HEAD_BYTES:
                head(b"".join(chunks)[:_HEAD_BYTES])
                head = None
    except ClientDisconnect:
        # The sender went away mid-body (or its length lied): its fault, not the node's, so a refusal
        # nobody will read rather than an internal error with a traceback in the log for each one.
        raise ApiError(400, "bad request", f"body: the client closed the connection after {size} bytes, "
                       "before the body ended") from None
    body = b"".join(chunks)
    if head is not None:
        head(body)
    return body


