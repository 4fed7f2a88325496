"""The HTTP API of a node (docs/api.md): FastAPI routes, each thin, over a ``Node``.

Content negotiation: request bodies are ``application/msgpack`` (canonical, strict) or
``application/json`` (byte strings as hex); responses are msgpack when ``Accept`` names it,
JSON otherwise. Errors are ``{"error": RULE, "message": TEXT, ...}`` with the rule's HTTP status.
The hot path, ``POST /v1/records``, reads the raw body from a plain Starlette ``Request`` (no
pydantic models), bounded in size as it streams in.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from rantai.client.format.encoding import decode
from rantai.client.format.errors import DuplicateRecord, InvalidEncoding, RantaiError, RecordTooLarge
from rantai.client.format.records import SignedRecord
from rantai.consensus import wire
from rantai.consensus.errors import ProtocolViolation

from .admission import CURRENT_TICKET, Admission, AdmissionConfig
from .answers import (
    JSON,
    MSGPACK,
    ApiError,
    PackedReceipts,
    _media,
    client_address,
    error_response,
    load_json,
    read_body,
    respond,
    wants_msgpack,
)
from .api_docs import install as install_docs
from .backup import backup_router
from .driver import Node, error_entry
from .epcis_api import epcis_problem, epcis_router
from .explorer import explorer_router
from .history import history_router
from .metrics import CONTENT_TYPE_LATEST, NodeMetrics
from .read_policy import ReadGuard, ReadRefusalCollector, check_visible
from .subscriptions import Subscriptions
from .transport import STREAM_PATH, frames
from .validation import error_body, status_of

__all__ = ["NodeApp", "create_app"]

log = logging.getLogger("rantai.node.app")

MAX_PEER_MESSAGE_BYTES = 32 * 1024 * 1024
# Records in one gossip body: a validator forwards at most 4 MiB per frame (forwarding.GOSSIP_CHUNK_BYTES),
# and a signed record is over 200 bytes, so an honest frame never holds more.
PEER_RECORDS_MAX = 32_768
MAX_WAIT_MS = 120_000
DEFAULT_WAIT_MS = 30_000
SENDER_HEADER = "x-rantai-sender"


_RECORDS_KEY = b"\x81\xa7records"


def msgpack_records_count(head: bytes) -> int | None:
    """The record count a canonical ``{"records": [...]}`` body announces in its first bytes, or None."""
    if not head.startswith(_RECORDS_KEY) or len(head) < 9:
        return None
    tag = head[9]
    if tag & 0xF0 == 0x90:
        return tag & 0x0F
    if tag == 0xDC and len(head) >= 12:
        return int.from_bytes(head[10:12], "big")
    if tag == 0xDD and len(head) >= 14:
        return int.from_bytes(head[10:14], "big")
    return None


def body_limit(media: str, max_block_bytes: int) -> int:
    """A request never needs more than a block's bytes (JSON's hex doubles them), plus room for framing."""
    return (2 if media == JSON else 1) * max_block_bytes + 1024 * 1024


async def read_records(request: Request, limit: int, max_count: int, on_count: Callable[[int], None] | None = None,
                       ) -> list[bytes]:
    """``{"records": [bytes...]}`` from a msgpack or JSON (hex) body.

    A msgpack body announces its record count in its first bytes: a request over ``max_count`` is
    refused there (413) and ``on_count`` (admission control) sees it, before the rest is read.
    """
    media = _media(request)
    if media not in (MSGPACK, JSON):
        raise ApiError(415, "unsupported media type", f"content-type must be {MSGPACK} or {JSON}")
    counted = False

    def head(first: bytes) -> None:
        nonlocal counted
        n = msgpack_records_count(first)
        if n is None:
            return
        if n > max_count:
            raise RecordTooLarge(f"body: {n} records, at most {max_count} per request", limit=max_count)
        if on_count is not None:
            on_count(n)
            counted = True

    body = await read_body(request, limit, head if media == MSGPACK else None)
    obj = decode(body) if media == MSGPACK else load_json(body, "body")
    records = records_of(obj, max_count)
    if on_count is not None and not counted:
        on_count(len(records))
    if media == JSON:
        out = []
        for i, r in enumerate(records):
            try:
                out.append(bytes.fromhex(r))
            except (TypeError, ValueError) as exc:
                raise InvalidEncoding(f"body: records[{i}] is not a hex string") from exc
        return out
    return byte_records(records)


def byte_records(records: list[Any]) -> list[bytes]:
    """``records`` when every item is a byte string (msgpack bodies); else ``InvalidEncoding`` naming the first."""
    for i, r in enumerate(records):
        if not isinstance(r, bytes):
            raise InvalidEncoding(f"body: records[{i}] is not a byte string")
    return records


def records_of(obj: Any, max_count: int) -> list[Any]:
    """The list in ``{"records": [...]}``, checked for shape and count (not yet for its items' type)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("records"), list) or set(obj) != {"records"}:
        raise InvalidEncoding('body: {"records": [...]} expected')
    records = obj["records"]
    if not records:
        raise InvalidEncoding("body: no records")
    if len(records) > max_count:
        raise RecordTooLarge(f"body: {len(records)} records, at most {max_count} per request", limit=max_count)
    return records


def peer_sender(node: Node, value: str | None) -> str:
    """The validator a peer request says it comes from (``x-rantai-sender``), checked before its body is read.

    Only a claim: requests are not signed, so this keeps strangers from costing a node the reading
    and decoding of peer bodies, while what matters is checked on the content — every consensus
    message is signed by its sender (who must be this claimed one), every gossiped record is
    re-verified within the peer's budget of refused records.
    """
    if value is None or not node.is_validator(value) or value == node.id:
        node._count("peer-not-validator")
        raise ApiError(403, "not a validator",
                       f"peer endpoints serve this chain's other validators only ({SENDER_HEADER} names one)")
    return value


def peer_messages(node: Node, parts: list[bytes], claimed: str | None = None) -> list[Any]:
    """Decode consensus messages from peers; ``ApiError`` unless each is well formed and from another validator
    (``claimed``, the one the stream says it comes from, when given)."""
    messages = []
    for part in parts:
        try:
            message = wire.decode(part)
        except ProtocolViolation as exc:
            node._count("peer-malformed")
            raise ApiError(400, "protocol", f"peer message: {exc}") from None
        sender = getattr(message, "sender", None)
        if sender is None or not node.is_validator(sender) or sender == node.id:
            node._count("peer-not-validator")
            raise ApiError(403, "not a validator", "peer messages are accepted from this chain's validators only")
        if claimed is not None and sender != claimed:
            node._count("peer-not-validator")
            raise ApiError(403, "not a validator", f"peer message from {sender} on a stream of {claimed}")
        messages.append(message)
    return messages


class PeerStream:
    """``POST /v1/peer/stream``: a validator's frames, handled as they arrive (node/transport.py).

    A plain ASGI endpoint: it reads the request body for as long as the peer keeps it open and
    answers only when the stream ends — 200 when the peer closed it, 503 when this node is
    shutting down, 4xx (and the end of the stream) at the first frame it refuses.
    """

    def __init__(self, node: Node, records_limit: int, admission: Admission) -> None:
        self.node = node
        self.admission = admission
        self.limits = {"messages": MAX_PEER_MESSAGE_BYTES, "records": records_limit}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        node = self.node
        headers = dict(scope["headers"])
        kind = headers.get(b"x-rantai-lane", b"").decode("latin-1")
        status, body = 200, {"ok": True}
        try:
            raw_sender = headers.get(SENDER_HEADER.encode())
            sender = peer_sender(node, None if raw_sender is None else raw_sender.decode("latin-1"))
            if kind not in self.limits:
                raise ApiError(400, "bad request", f"x-rantai-lane must be one of {sorted(self.limits)}")
            if node.closing is None:
                raise ApiError(503, "unavailable", "node: not running")
            if node.closing.done():
                raise ApiError(503, "unavailable", "node: shutting down")
            await self._serve(kind, receive, sender, client_address(scope))
        except ApiError as exc:
            status, body = exc.status, exc.body
        except RantaiError as exc:
            status, body = status_of(exc), error_body(exc)
        except _Gone:
            return  # the peer hung up: nobody to answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", JSON.encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    async def _serve(self, kind: str, receive: Any, sender: str, address: str) -> None:
        node, limit = self.node, self.limits[kind]
        closing = node.closing
        assert closing is not None  # checked by the caller
        buffer = bytearray()
        # The node's shutdown interrupts a wait for the peer's next bytes (and only that: never a
        # frame being handled) by cancelling this task there; a task and an ``asyncio.wait`` per
        # received chunk cost ~7 µs more than awaiting ``receive`` itself.
        task = asyncio.current_task()
        receiving = False

        def interrupt(_: Any) -> None:
            if receiving and task is not None:
                task.cancel()

        closing.add_done_callback(interrupt)
        try:
            while True:
                if closing.done():
                    raise ApiError(503, "unavailable", "node: shutting down")
                receiving = True
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if closing.done() and task is not None and task.uncancel() == 0:
                        raise ApiError(503, "unavailable", "node: shutting down") from None
                    raise
                finally:
                    receiving = False
                await self._frames(kind, message, buffer, limit, sender, address)
                if not message.get("more_body", False):
                    return
        finally:
            closing.remove_done_callback(interrupt)

    async def _frames(self, kind: str, message: dict, buffer: bytearray, limit: int, sender: str,
                      address: str) -> None:
        """Handle one received piece of the stream: the complete frames it ends."""
        node = self.node
        if message["type"] == "http.disconnect":
            raise _Gone
        buffer += message.get("body", b"")
        try:
            parts = frames(buffer, limit)
        except ValueError as exc:
            raise RecordTooLarge(f"peer stream: {exc}", limit=limit) from None
        if parts:
            if kind == "messages":
                for m in peer_messages(node, parts, sender):
                    node.deliver(m)
            else:
                for part in parts:
                    await self._records(part, f"peer:{sender}@{address}")
        if not message.get("more_body", False) and buffer:
            raise InvalidEncoding("peer stream: ends inside a frame")

    async def _records(self, part: bytes, key: str) -> None:
        raws = byte_records(records_of(decode(part), PEER_RECORDS_MAX))
        # A peer's refused records are bounded too; by claimed id *and* address, so a stranger naming a
        # validator in its header spends a budget of its own, not that validator's.
        token = CURRENT_TICKET.set(self.admission.ticket(key))
        try:
            await self.node.submit(raws, gossip=False)
        finally:
            CURRENT_TICKET.reset(token)


class _Gone(Exception):
    """The peer closed the connection."""


@functools.lru_cache(maxsize=256)
def _parsed_query(query_string: bytes) -> Mapping[str, str]:
    """A query string's parameters (the last of a repeated name, as Starlette's ``query_params``),
    parsed once per distinct string: clients send the same few (``wait=commit``) with every request."""
    return MappingProxyType(dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)))


def _query(request: Request) -> Mapping[str, str]:
    return _parsed_query(request.scope.get("query_string", b""))


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    raw = _query(request).get(name)
    if raw is None:
        if default is None:
            raise ApiError(400, "bad request", f"query parameter {name!r} is required")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "bad request", f"query parameter {name!r} must be an integer") from None


class NodeApp:
    """The node's ASGI app: the two hot paths served directly, everything else by FastAPI.

    ``POST /v1/records`` (one request per client submission) and ``POST /v1/peer/stream`` skip
    FastAPI's middleware, routing and endpoint machinery, which cost more CPU per request than
    the records endpoint itself (~55 % of the request in py-spy, closed loop). ``POST /v1/records``
    runs the very handler FastAPI routes to (so /docs still lists it); the peer stream, a plain
    ASGI endpoint, is served only from here.
    """

    def __init__(self, api: FastAPI, records: Any, stream: PeerStream, metrics: NodeMetrics | None = None) -> None:
        self.api = api
        self._records = records
        self._stream = stream
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # RFC 9110 §9.3.2: HEAD is GET without the content (uvicorn drops the body, seeing HEAD in its own
            # scope); FastAPI routes GET only, so `curl -I` and HEAD health checks met 405.
            # The request as sent stays in the scope: a signed read covers "HEAD" (node/read_policy.py).
            scope = {**scope, "method": "GET", "rantai.sent_method": "HEAD"}
        if self.metrics is None or scope["type"] != "http" or scope["path"] == STREAM_PATH:
            await self._serve(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self._serve(scope, receive, send)
        finally:  # by the route's template, so ids in paths do not make a series each
            route = getattr(scope.get("route"), "path", None) or (scope["path"] if scope["path"] == "/v1/records"
                                                                   else "other")
            self.metrics.observe_request(scope["method"], route, time.perf_counter() - t0)

    async def _serve(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/v1/records":
                request = Request(scope, receive)
                try:
                    response = await self._records(request)
                except (RantaiError, ApiError) as exc:
                    response = error_response(request, exc)
                    if response.status_code in (413, 429):
                        # The body may be unread: closing spares the node reading (and the sender sending)
                        # megabytes it has already refused.
                        response.headers["connection"] = "close"
                except Exception:
                    log.exception("POST /v1/records failed")
                    response = respond(request, {"error": "internal", "message": "internal error"}, 500)
                await response(scope, receive, send)
                return
            if path == STREAM_PATH:
                await self._stream(scope, receive, send)
                return
        await self.api(scope, receive, send)


def _http_rule(status: int) -> str:
    return {400: "bad request", 404: "not found", 405: "method not allowed", 413: "too large",
            415: "unsupported media type"}.get(status, "bad request" if status < 500 else "internal")


def create_app(node: Node, *, manage_lifecycle: bool = True, admission: Admission | AdmissionConfig | None = None,
               ) -> NodeApp:
    """The API of ``node``. With ``manage_lifecycle`` the app's lifespan starts and stops the node.

    ``admission``: the per-client limits (node/admission.py); the defaults when None.
    """
    if not isinstance(admission, Admission):
        admission = Admission(admission)
    node.admission = admission  # status and tests read its counters
    metrics = NodeMetrics(node, admission.counters)  # one registry per app: tests run several in a process
    receipts = PackedReceipts()  # ?wait=commit answers in msgpack: each block's header and certificate packed once
    metrics.registry.register(ReadRefusalCollector(node))  # rantai_read_refused_total{rule} (read_policy.py)
    node.metrics = metrics
    subscriptions = Subscriptions(node)  # named queries, webhook and WebSocket delivery (node/subscriptions.py)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await node.start()
            await subscriptions.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await subscriptions.stop()
                await node.stop()

    app = FastAPI(title="rantai node", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="A rantai validator's API (docs/api.md).")
    install_docs(app)  # /docs from packaged Swagger UI files, /openapi.json with bodies (node/api_docs.py)
    app.add_middleware(ReadGuard, node=node)  # every read: signed, and allowed by the read policy (read_policy.py)
    params = node.genesis.params
    max_block_bytes = params["max_block_bytes"]
    max_count = params["max_block_records"]

    @app.exception_handler(RantaiError)
    async def _rantai_error(request: Request, exc: RantaiError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc)

    # FastAPI's own answers (unknown path, wrong method, a path parameter of the wrong type) in the
    # shape docs/api.md promises for every error; under /epcis also as RFC 7807 problem details.
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if request.url.path.startswith("/epcis"):
            kind = {404: "NoSuchResourceException", 405: "MethodNotAllowedException",
                    406: "NotAcceptableException"}.get(
                exc.status_code, "ValidationException" if exc.status_code < 500 else "ImplementationException")
            return epcis_problem(exc.status_code, kind, message, headers=dict(exc.headers or {}))
        return respond(request, {"error": _http_rule(exc.status_code), "message": message}, exc.status_code,
                       dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        message = f"{request.method} {request.url.path}: {where or 'bad request'}"
        if request.url.path.startswith("/epcis"):
            return epcis_problem(400, "ValidationException", message)
        return respond(request, {"error": "bad request", "message": message}, 400)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return respond(request, {"error": "internal", "message": "internal error (logged by the node)"}, 500)

    # -- records -----------------------------------------------------------------------------
    @app.post("/v1/records", summary="Submit signed records (one or a batch)", status_code=202)
    async def post_records(request: Request) -> Response:
        address = client_address(request.scope)
        refused = admission.before_body(address)  # cheapest first: not even the body is read
        if refused is not None:
            raise refused
        if node.started and node.replica.retired:
            # Removed by governance: it no longer follows the chain, so it would accept records and never
            # see them committed (a client's whole wait share lost on it). Say so, and send them elsewhere.
            raise ApiError(503, "unavailable", f"node: validator {node.name} was removed by governance and has "
                           f"retired (its chain stops at height {node.storage.height}): it takes no records; "
                           f"submit to the validators in force (GET /v1/config on one of them)")
        wait = _query(request).get("wait") == "commit"
        timeout_ms = min(max(_int_param(request, "timeout_ms", DEFAULT_WAIT_MS), 0), MAX_WAIT_MS)
        try:
            raws = await read_records(request, body_limit(_media(request), max_block_bytes), max_count,
                                      lambda n: admission.charge_address(address, n))
        except RantaiError:
            admission.refused(address)  # a body refused whole costs the sender's refusal budget too
            raise
        token = CURRENT_TICKET.set(admission.ticket(address))
        try:
            results = await node.submit(raws)
        finally:
            CURRENT_TICKET.reset(token)
        entries: list[dict[str, Any]] = []
        waits: list[tuple[int, bytes]] = []
        for i, (rid, res) in enumerate(results):
            if isinstance(res, SignedRecord):
                entries.append({"id": rid, "status": "accepted"})
                waits.append((i, res.id))
            elif isinstance(res, DuplicateRecord):
                e: dict[str, Any] = {"id": rid, "status": "duplicate"}
                if "height" in res.details:
                    e["height"] = res.details["height"]
                entries.append(e)
                if rid is not None:
                    waits.append((i, rid))
            else:
                entries.append(error_entry(rid, res))
        if len(raws) == 1:
            res = results[0][1]
            if not isinstance(res, (SignedRecord, DuplicateRecord)) or (isinstance(res, DuplicateRecord) and not wait):
                return error_response(request, res)
        if not wait:
            return respond(request, {"results": entries}, 202)
        futs = [(i, rid, node.waiter(rid)) for i, rid in waits]
        closing = node.closing
        try:
            if futs:
                watch = [f for _, _, f in futs] + ([closing] if closing is not None else [])
                deadline = time.monotonic() + timeout_ms / 1000
                while not all(f.done() for _, _, f in futs) and not (closing is not None and closing.done()):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    await asyncio.wait(watch, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                    watch = [f for f in watch if not f.done()]
        finally:
            for _, rid, f in futs:
                if not f.done():
                    node.drop_waiter(rid, f)
        if closing is not None and closing.done() and not all(f.done() and not f.cancelled() for _, _, f in futs):
            # Waiting on would end in the server's forced close (a bare 500): say what is known instead.
            raise ApiError(503, "unavailable", "node: shutting down before the records were seen committed; they "
                           "were accepted and may still commit: ask another node (resending them is safe)",
                           headers={"retry-after": "1"}, results=entries)
        complete = True
        as_msgpack = wants_msgpack(request)
        packed: dict[int, tuple[int, dict[str, Any]]] = {}  # msgpack: entry -> its receipt, packed with the answer
        for i, _rid, f in futs:
            if not f.done() or f.cancelled():
                complete = False
                continue
            height, index = f.result()
            if as_msgpack:
                receipt_obj = node.ledger.receipt_obj_at(height, index)
            else:
                receipt = node.ledger.receipt_at(height, index)
                receipt_obj = None if receipt is None else json.loads(receipt.to_json())
            if receipt_obj is None:
                complete = False
                continue
            entry = entries[i]
            status = "committed" if entry["status"] == "accepted" else entry["status"]
            if as_msgpack:
                entries[i] = {**entry, "height": height, "status": status}
                packed[i] = (height, receipt_obj)
            else:
                # Rebuilt with its keys in canonical order, so encoding the answer needs no re-sorting.
                entries[i] = dict(sorted({**entry, "height": height, "receipt": receipt_obj, "status": status}.items()))
        if as_msgpack:  # the same bytes as respond() would send, the receipts' per-block parts packed once
            return Response(receipts.answer(entries, packed), status_code=200 if complete else 202,
                            media_type=MSGPACK)
        return respond(request, {"results": entries}, 200 if complete else 202)

    @app.get("/v1/records/{record_id}", summary="A committed record with its proof (a receipt)")
    async def get_record(request: Request, record_id: str) -> Response:
        try:
            rid = bytes.fromhex(record_id)
        except ValueError:
            rid = b""
        if len(rid) != 32:
            raise ApiError(400, "bad request", "record id: 64 hex digits expected")
        receipt = node.ledger.receipt(rid)
        if receipt is None:
            raise ApiError(404, "not found", f"record {record_id} is not committed here", id=record_id)
        check_visible(request, receipt.record, node)
        if wants_msgpack(request):
            return respond(request, receipt.to_obj())
        return Response(receipt.to_json(), media_type=JSON)

    # -- blocks --------------------------------------------------------------------------------
    @app.get("/v1/blocks", summary="Blocks from..to (inclusive, at most 1000): a msgpack stream")
    async def get_blocks(request: Request) -> Response:
        start = _int_param(request, "from")
        stop = _int_param(request, "to", start + 999)
        if start < 1 or stop < start:
            raise ApiError(400, "bad request", "1 <= from <= to expected")
        if stop - start >= 1000:
            raise ApiError(400, "bad request", "at most 1000 blocks per request")
        stop = min(stop, node.storage.height)
        return StreamingResponse(node.ledger.stream(start, stop), media_type=MSGPACK)

    @app.get("/v1/blocks/{height}", summary="One block with its commit certificate")
    async def get_block(request: Request, height: int) -> Response:
        if not 0 < height < 2**63:  # no such block; and msgpack has no integer for a height past 2^64
            raise ApiError(404, "not found", f"no block at height {height}")
        if wants_msgpack(request):
            obj = node.ledger.block_obj(height)
        else:
            obj = node.ledger.block_json(height)
        if obj is None:
            raise ApiError(404, "not found", f"no block at height {height}", height=height)
        return respond(request, obj)

    @app.get("/v1/head", summary="The last committed block's header and certificate")
    async def get_head(request: Request) -> Response:
        return respond(request, node.ledger.head_obj())

    @app.get("/v1/genesis", summary="The genesis file, byte for byte")
    async def get_genesis() -> Response:
        return Response(node.genesis_bytes, media_type=JSON)

    # -- governance ------------------------------------------------------------------------------
    @app.get("/v1/config", summary="The consortium in force at a height (default: the next block's), and proposals")
    async def get_config(request: Request) -> Response:
        gov = node.ledger.governance
        height = _int_param(request, "height", gov.height + 1)
        if height < 0:
            raise ApiError(400, "bad request", "height >= 0 expected")
        return respond(request, {**gov.at(height).describe(), "height": height, "head": gov.height,
                                 "proposals": [p.describe() for p in sorted(gov.proposals.values(),
                                                                            key=lambda p: (p.height, p.index))]})

    @app.get("/v1/changes", summary="Receipts of the change entries that shape the consortium up to a height")
    async def get_changes(request: Request) -> Response:
        to = min(_int_param(request, "to", node.storage.height), node.storage.height)
        receipts = node.ledger.change_receipts(to)
        if wants_msgpack(request):
            return respond(request, {"to": to, "changes": [r.to_obj() for r in receipts]})
        return respond(request, {"to": to, "changes": [json.loads(r.to_json()) for r in receipts]})

    # -- node ------------------------------------------------------------------------------------
    @app.get("/v1/status", summary="Height, view, primary, mempool and peers")
    async def get_status(request: Request) -> Response:
        status = node.status()
        status["admission"] = dict(admission.counters)  # how often each limit refused (docs/operations.md)
        status.update(metrics.extra_status())  # version, uptime, clock, disk, view changes, records (metrics.py)
        status["subscriptions"] = subscriptions.status()  # named queries, subscriptions, deliveries
        heights = await node.peer_heights()
        for p in status["peers"]:
            h = heights.get(p["id"])
            p["height"] = h
            if h is not None:
                p["reachable"] = True
        return respond(request, status)

    @app.get("/metrics", summary="Prometheus text exposition (docs/operations.md, Metrics)")
    async def get_metrics() -> Response:
        if node.started:
            metrics.peer_heights = await node.peer_heights()  # for rantai_peer_lag_blocks: asked now, 0.5 s at most
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness")
    async def healthz(request: Request) -> Response:
        if node.fatal is not None:
            raise ApiError(503, "invariant broken", f"this validator stopped: {node.fatal}")
        return respond(request, {"ok": True})

    # -- peers -----------------------------------------------------------------------------------
    @app.post("/v1/peer/messages", summary="A consensus message from a validator (consensus.wire)", status_code=202)
    async def peer_message(request: Request) -> Response:
        sender = peer_sender(node, request.headers.get(SENDER_HEADER))
        if _media(request) != MSGPACK:
            raise ApiError(415, "unsupported media type", f"content-type must be {MSGPACK}")
        body = await read_body(request, MAX_PEER_MESSAGE_BYTES)
        for message in peer_messages(node, [body], sender):  # validators stream theirs: POST /v1/peer/stream
            node.deliver(message)
        return Response(status_code=202)

    @app.post("/v1/peer/records", summary="Records gossiped by another validator", status_code=202)
    async def peer_records(request: Request) -> Response:
        sender = peer_sender(node, request.headers.get(SENDER_HEADER))
        if _media(request) != MSGPACK:
            raise ApiError(415, "unsupported media type", f"content-type must be {MSGPACK}")
        raws = await read_records(request, body_limit(MSGPACK, max_block_bytes), PEER_RECORDS_MAX)
        token = CURRENT_TICKET.set(admission.ticket(f"peer:{sender}@{client_address(request.scope)}"))
        try:
            results = await node.submit(raws, gossip=False)
        finally:
            CURRENT_TICKET.reset(token)
        accepted = sum(1 for _, r in results if isinstance(r, SignedRecord))
        return respond(request, {"accepted": accepted, "received": len(raws)}, 202)

    app.include_router(subscriptions.router())  # /epcis/queries/... (node/subscriptions.py)
    app.state.subscriptions = subscriptions  # started by the lifespan; by hand where the caller runs the node
    app.include_router(epcis_router(node))  # /v1/events, /epcis/* (node/epcis_api.py)
    app.include_router(history_router(node))  # /v1/items/{item}/history, paged (node/history.py)
    app.include_router(explorer_router())  # /explorer: the page that verifies in the browser (node/explorer/)
    app.include_router(backup_router(node))  # POST /v1/admin/backup, loopback only (node/backup.py)
    return NodeApp(app, post_records, PeerStream(node, body_limit(MSGPACK, max_block_bytes), admission), metrics)
