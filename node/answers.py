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

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from rantai.client.format.encoding import encode, hexify
from rantai.client.format.errors import InvalidEncoding, Overloaded, RecordTooLarge

from .validation import error_body, status_of

__all__ = ["JSON", "MSGPACK", "MAX_JSON_DEPTH", "ApiError", "client_address", "error_response", "json_depth",
           "load_json", "read_body", "respond", "wants_msgpack"]

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


