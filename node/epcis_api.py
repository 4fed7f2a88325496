"""EPCIS 2.0 endpoints of a node (a subset of the EPCIS REST binding) and event lookup by eventID.

* ``GET /v1/events/{eventID}``: the receipt of the committed event whose hash ID, or own ``eventID``, this is;
* ``POST /epcis/capture``: an EPCISDocument whose events carry their record signature
  (``rantai:signature``, see docs/epcis.md); ``202`` with ``Location: /epcis/capture/{captureID}``;
* ``GET /epcis/capture/{captureID}``: the capture job, with per-event outcomes;
* ``GET /epcis/events``: SimpleEventQuery over the LevelDB postings (node/epcis_index.py), answering an
  EPCISQueryDocument, paged by ``perPage``/``nextPageToken``, with receipts when ``proofs=true``.

Included by ``node/app.py`` with ``app.include_router(epcis_router(node))``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from rantai.client.format.epcis import document_events, event_hash_id
from rantai.client.format.epcis.event_hash import correction_digest, normalise_identifier
from rantai.client.format.errors import InvalidRecord, RantaiError, RecordTooLarge
from rantai.client.format.records import RECORD_VERSION, SignedRecord

from .admission import CURRENT_TICKET
from .answers import ApiError, client_address, load_json, read_body, respond, wants_msgpack
from .epcis_index import (
    VALUE_FIELDS,
    list_values,
    lookup_event_id,
    lookup_hash,
    lookup_hash_id,
    norm_id,
    norm_term,
    parse_hash_id,
)
from .epcis_query import (
    EVENT_TYPES,
    MAX_PER_PAGE,
    EventQuery,
    QueryParameterError,
    QueryTooLarge,
    count_matches,
    run_ordered,
    run_query,
)
from .paging import PageTokenError, PinnedPages, decode_token, encode_token
from .read_policy import check_visible, visible
from .validation import error_body, status_of

__all__ = ["epcis_problem", "epcis_router", "present_event", "SIGNATURE_KEY", "EPCIS_CONTEXT", "RANTAI_NS"]

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
RANTAI_NS = "urn:rantai:"
SIGNATURE_KEY = "rantai:signature"
PROOFS_KEY = "rantai:proofs"
JSONLD = "application/ld+json"
PROBLEM = "application/problem+json"
EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
VERSION = (2, 0, 0)  # the one EPCIS and CBV version served: GS1-EPCIS-Min/Max and GS1-CBV-Min/Max must admit it
EPC_FORMATS = ("No_Preference", "Always_GS1_Digital_Link", "Always_EPC_URN", "Never_Translates")
DISCOVERY_HEADERS = {**EPCIS_HEADERS, "GS1-EPCIS-Min": "2.0.0", "GS1-EPCIS-Max": "2.0.0", "GS1-CBV-Min": "2.0.0",
                     "GS1-CBV-Max": "2.0.0", "GS1-EPC-Format": "Never_Translates, Always_GS1_Digital_Link",
                     "GS1-Extensions": "", "GS1-Vendor-Version": "rantai"}
TOP_LEVEL = ["capture", "events", "eventTypes", "epcs", "bizSteps", "bizLocations", "readPoints", "dispositions"]
#: sub-resource -> the query parameter its /{value}/events adds
RESOURCE_PARAMS = {"eventTypes": "eventType", "epcs": "MATCH_anyEPC", "bizSteps": "EQ_bizStep",
                   "bizLocations": "EQ_bizLocation", "readPoints": "EQ_readPoint", "dispositions": "EQ_disposition"}
_ORDERED = 0xFFFFFFFF  # a page token's index for an orderBy query: its "height" field is the offset
CAPTURE_WAIT_S = 120.0
MAX_JOBS = 1000


def iso_ms(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def present_event(event: dict[str, Any], hash_id: str, record_time_ms: int) -> dict[str, Any]:
    """The event as this repository serves it: the signed event, with ``recordTime`` the block's time
    and ``eventID`` its hash ID when it declares none (neither field is part of the hash)."""
    out = dict(event)
    out.setdefault("eventID", hash_id)
    out["recordTime"] = iso_ms(record_time_ms)
    return out


def _json(obj: Any, status: int = 200, media: str = "application/json",
          headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=media, headers={**EPCIS_HEADERS, **(headers or {})})


def epcis_problem(status: int, kind: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """An EPCIS binding error (RFC 7807 problem details) that also carries rantai's error/message keys."""
    body = {"type": f"epcisException:{kind}", "title": kind, "status": status, "detail": detail,
            "error": "query parameter" if kind == "QueryParameterException" else kind, "message": detail, **extra}
    return _json(body, status, PROBLEM, headers)


_problem = epcis_problem


def media_refusal(request: Request) -> Response | None:
    """415 unless the body is declared JSON or JSON-LD: every EPCIS route that takes a body (capture, named
    queries, subscriptions) refuses another media type before reading a byte of it."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/json", JSONLD):
        return _problem(415, "UnsupportedMediaTypeException", f"content-type must be {JSONLD} or application/json")
    return None


class NotAcceptable(StarletteHTTPException):
    """406 NotAcceptableException (RFC 7807, by the app's handler for /epcis)."""

    def __init__(self, detail: str) -> None:
        super().__init__(406, detail)


def _version(text: str) -> tuple[int, ...] | None:
    try:
        parts = tuple(int(x) for x in text.strip().split("."))
    except ValueError:
        return None
    return (parts + (0, 0, 0))[:3] if 1 <= len(parts) <= 3 else None


def _accepts_json(accept: str) -> bool:
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", "application/json", JSONLD, PROBLEM, "application/msgpack"):
            return True
    return False


async def negotiate(request: Request) -> None:
    """Every /epcis request: what it accepts and the GS1 version headers must admit what this repository
    serves (JSON / JSON-LD, EPCIS and CBV 2.0.0), else 406 NotAcceptableException. The EPC format asked for
    (``GS1-EPC-Format``) is left in ``request.state.epc_format``."""
    if not request.url.path.startswith("/epcis"):
        return
    accept = request.headers.get("accept")
    if accept and not _accepts_json(accept):
        raise NotAcceptable(f"Accept: {accept}: this repository answers application/json, {JSONLD} "
                            f"(and {PROBLEM} for errors)")
    for name in ("GS1-EPCIS-Min", "GS1-EPCIS-Max", "GS1-CBV-Min", "GS1-CBV-Max"):
        text = request.headers.get(name)
        if text is None:
            continue
        v = _version(text)
        if v is None:
            raise NotAcceptable(f"{name}: {text!r} is not a version (e.g. 2.0.0)")
        if (v > VERSION) if name.endswith("Min") else (v < VERSION):
            raise NotAcceptable(f"{name}: {text}: this repository serves EPCIS 2.0.0 with CBV 2.0.0")
    fmt = request.headers.get("GS1-EPC-Format", "Never_Translates")
    if fmt not in EPC_FORMATS:
        raise NotAcceptable(f"GS1-EPC-Format: {fmt!r}: one of {', '.join(EPC_FORMATS)}")
    if fmt == "Always_EPC_URN":
        raise NotAcceptable("GS1-EPC-Format: Always_EPC_URN: a GS1 Digital Link URI cannot be written as an EPC URN "
                            "without its company prefix length, which this repository does not know; ask "
                            "Never_Translates (the signed form) or Always_GS1_Digital_Link")
    request.state.epc_format = "Never_Translates" if fmt == "No_Preference" else fmt


_EPC_KEYS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QTY_KEYS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")


def api_routes(routes: Any, prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route, inside included routers too (FastAPI nests them)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix + r.path, r
        elif hasattr(r, "original_router"):
            inner = getattr(getattr(r, "include_context", None), "prefix", "") or ""
            yield from api_routes(r.original_router.routes, prefix + inner)
        elif hasattr(r, "routes") and not isinstance(r.routes, property):
            yield from api_routes(r.routes, prefix + (getattr(r, "path", "") or ""))


def in_epc_format(event: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The event with its EPCs (EPC lists, parentID, quantity classes, readPoint/bizLocation, parties) as
    GS1 Digital Link URIs for ``Always_GS1_Digital_Link``; unchanged (the signed form) otherwise."""
    if fmt != "Always_GS1_Digital_Link":
        return event

    def dl(v: Any) -> Any:
        return normalise_identifier(v) if isinstance(v, str) and v.startswith("urn:epc:") else v

    out = dict(event)
    for k in _EPC_KEYS:
        if isinstance(out.get(k), list):
            out[k] = [dl(v) for v in out[k]]
    if "parentID" in out:
        out["parentID"] = dl(out["parentID"])
    for k in _QTY_KEYS:
        if isinstance(out.get(k), list):
            out[k] = [{**q, "epcClass": dl(q.get("epcClass"))} if isinstance(q, dict) and "epcClass" in q else q
                      for q in out[k]]
    for k in ("readPoint", "bizLocation"):
        if isinstance(out.get(k), dict) and "id" in out[k]:
            out[k] = {**out[k], "id": dl(out[k]["id"])}
    for k, item in (("sourceList", "source"), ("destinationList", "destination")):
        if isinstance(out.get(k), list):
            out[k] = [{**x, item: dl(x.get(item))} if isinstance(x, dict) and item in x else x for x in out[k]]
    return out


def _hex(v: Any, n: int, what: str) -> bytes:
    if not isinstance(v, str):
        raise InvalidRecord(f"{SIGNATURE_KEY}.{what}: a hex string expected")
    try:
        b = bytes.fromhex(v)
    except ValueError:
        raise InvalidRecord(f"{SIGNATURE_KEY}.{what}: a hex string expected") from None
    if len(b) != n:
        raise InvalidRecord(f"{SIGNATURE_KEY}.{what}: {n} bytes expected")
    return b


def record_of_captured(event: Any, chain: bytes) -> SignedRecord:
    """The signed record a captured event stands for: the event without its ``rantai:signature``."""
    if not isinstance(event, dict):
        raise InvalidRecord("event: a JSON object expected")
    sig = event.get(SIGNATURE_KEY)
    if not isinstance(sig, dict):
        raise InvalidRecord(f"event: unsigned ({SIGNATURE_KEY} missing); capture records events signed by a member "
                            "(rantai import, or client.documents.sign_document)")
    if set(sig) != {"submitter", "nonce", "submitted_at", "signature"}:
        raise InvalidRecord(f"{SIGNATURE_KEY}: exactly submitter, nonce, submitted_at, signature expected")
    body = {k: v for k, v in event.items() if k != SIGNATURE_KEY}
    fields = {"version": RECORD_VERSION, "chain": chain, "submitter": sig["submitter"],
              "nonce": _hex(sig["nonce"], 16, "nonce"), "submitted_at": sig["submitted_at"], "event": body,
              "signature": _hex(sig["signature"], 64, "signature")}
    return SignedRecord.from_fields(fields)


class _Job:
    __slots__ = ("id", "created", "finished", "outcomes", "running", "behaviour")

    def __init__(self, n: int, behaviour: str = "rollback") -> None:
        self.behaviour = behaviour
        self.id = uuid.uuid4().hex
        self.created = int(time.time() * 1000)
        self.finished: int | None = None
        self.outcomes: list[dict[str, Any]] = [{"index": i, "status": "pending"} for i in range(n)]
        self.running = True

    def to_obj(self) -> dict[str, Any]:
        errors = [{"type": "epcisException:ValidationException" if o.get("error", {}).get("error") == "schema"
                   else "epcisException:CaptureLimitExceededException" if o.get("status_code") == 413
                   else "epcisException:ImplementationException" if o.get("status_code", 400) >= 500
                   else "epcisException:ValidationException",
                   "title": o["error"].get("error", "rejected"), "status": o.get("status_code", 400),
                   "detail": o["error"].get("message", ""), "instance": f"/epcisBody/eventList/{o['index']}"}
                  for o in self.outcomes if o["status"] in ("rejected", "duplicate")]
        obj: dict[str, Any] = {
            "captureID": self.id, "createdAt": iso_ms(self.created), "running": self.running,
            "success": not self.running and all(o["status"] in ("recorded", "duplicate") for o in self.outcomes),
            "captureErrorBehaviour": self.behaviour, "errors": errors, "events": self.outcomes,
        }
        if self.finished is not None:
            obj["finishedAt"] = iso_ms(self.finished)
        return obj


def epcis_router(node: Any) -> APIRouter:
    router = APIRouter(dependencies=[Depends(negotiate)])
    jobs: OrderedDict[str, _Job] = OrderedDict()
    tasks: set[asyncio.Task] = set()

    pages = PinnedPages(node)  # node/paging.py: tokens pinned to a height, shared with item history

    # -- events by id ----------------------------------------------------------------------------
    @router.get("/v1/events/{event_id:path}", summary="The receipt of an event, by its hash ID or its own eventID")
    async def get_event(request: Request, event_id: str) -> Response:

        if request.url.query and event_id.startswith("ni:") and "?" not in event_id:
            event_id += "?" + request.url.query  # ni:///sha-256;…?ver=CBV2.0 sent with an unescaped '?'
        db = node.storage.db
        hit = None
        digest = parse_hash_id(event_id)
        if digest is not None:
            hit = lookup_hash_id(db, digest)
        if hit is None:
            found = lookup_event_id(db, event_id, limit=2)
            hit = found[0] if found else None
        if hit is None:
            raise ApiError(404, "not found", f"no committed event has the id {event_id}", eventID=event_id)
        rid, height, index = hit
        receipt = node.ledger.receipt_at(height, index)
        if receipt is None:
            raise ApiError(404, "not found", f"event {event_id}: record {rid.hex()} not readable", eventID=event_id)
        check_visible(request, receipt.record, node)
        hid = event_hash_id(receipt.record.event)
        headers = {"x-rantai-event-hash-id": hid, "x-rantai-record-id": rid.hex()}
        if wants_msgpack(request):
            return respond(request, receipt.to_obj(), headers=headers)
        return Response(receipt.to_json(), media_type="application/json", headers=headers)

    # -- capture ---------------------------------------------------------------------------------
    def capture_gate(request: Request) -> Response | None:
        """What both capture routes refuse before reading a body: another media type (415), and the same
        admission control as POST /v1/records (429): they are other ways in to the same verifications."""
        if (refusal := media_refusal(request)) is not None:
            return refusal
        refused = node.admission.before_body(client_address(request.scope))
        if refused is not None:
            return _problem(429, "CaptureLimitExceededException", str(refused),
                            headers={"retry-after": str(refused.details.get("retry_after", 1))})
        return None

    @router.post("/epcis/capture", summary="Capture an EPCISDocument of signed events", status_code=202)
    async def capture(request: Request) -> Response:
        if (refusal := capture_gate(request)) is not None:
            return refusal
        address = client_address(request.scope)
        admission = node.admission
        params = node.genesis.params
        limit = 4 * params["max_block_bytes"] + 1024 * 1024
        try:
            body = await read_body(request, limit)
            doc = load_json(body, "capture")
            events = document_events(doc)
        except RecordTooLarge as exc:
            return _problem(413, "CapturePayloadTooLargeException", str(exc))
        except (RantaiError, ValueError) as exc:
            return _problem(400, "ValidationException", str(exc))
        if not events:
            return _problem(400, "ValidationException", "capture: the document holds no event")
        if len(events) > params["max_block_records"]:
            return _problem(413, "CaptureLimitExceededException",
                            f"capture: {len(events)} events, at most {params['max_block_records']} per document")
        behaviour = request.headers.get("GS1-Capture-Error-Behaviour", "rollback")
        if behaviour not in ("rollback", "proceed"):
            return _problem(400, "ValidationException",
                            f"GS1-Capture-Error-Behaviour: {behaviour!r}: rollback (the default) or proceed")
        job = _Job(len(events), behaviour)
        raws: list[bytes] = []
        where: list[int] = []
        for i, ev in enumerate(events):
            try:
                raws.append(record_of_captured(ev, node.genesis.hash).raw)
                where.append(i)
            except RantaiError as exc:
                job.outcomes[i] = {"index": i, "status": "rejected", "error": error_body(exc),
                                   "status_code": status_of(exc)}
        admission.charge_address(address, len(events))
        token = CURRENT_TICKET.set(admission.ticket(address))
        try:
            if behaviour == "rollback" and raws and not await _all_admissible(job, raws, where):
                raws, where = [], []  # all or nothing: nothing is submitted
            results = await node.submit(raws) if raws else []
        finally:
            CURRENT_TICKET.reset(token)
        waits: list[tuple[int, bytes]] = []
        for i, (rid, res) in zip(where, results, strict=True):
            o: dict[str, Any] = {"index": i, "record": rid.hex() if rid else None}
            if isinstance(res, SignedRecord):
                o["status"] = "accepted"
                o["eventID"] = event_hash_id(res.event)
                waits.append((i, res.id))
            else:
                err = error_body(res)
                duplicate = err.get("error") in ("duplicate event", "duplicate record")
                o.update(status="duplicate" if duplicate else "rejected", error=err, status_code=status_of(res))
                if err.get("error") == "duplicate event":
                    o["eventID"] = err.get("event_hash_id")
                    o["existing"] = err.get("existing")
                elif err.get("error") == "duplicate record" and rid:
                    o["existing"] = rid.hex()
            job.outcomes[i] = o
        jobs[job.id] = job
        while len(jobs) > MAX_JOBS:
            jobs.popitem(last=False)
        task = asyncio.create_task(_settle(job, waits))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return _json({"captureID": job.id}, 202, headers={"Location": f"/epcis/capture/{job.id}"})

    async def _all_admissible(job: _Job, raws: list[bytes], where: list[int]) -> bool:
        """``rollback``: every event must pass admission (checked without admitting any; a duplicate of an
        event already recorded passes, re-capture is idempotent), else all are refused. A ledger cannot
        undo a commit, so the all-or-nothing holds at admission: an event refused later (a race with an
        identical event from elsewhere) is reported as such."""
        checked = await node.validator.admit(raws)
        bad = [(i, res) for i, res in zip(where, checked, strict=True) if not isinstance(res, SignedRecord)
               and error_body(res).get("error") not in ("duplicate event", "duplicate record")]
        failed = [o["index"] for o in job.outcomes if o["status"] == "rejected"]
        if not bad and not failed:
            return True
        for i, res in bad:
            job.outcomes[i] = {"index": i, "status": "rejected", "error": error_body(res),
                               "status_code": status_of(res)}
        first = min([i for i, _ in bad] + failed)
        for i in where:
            if job.outcomes[i]["status"] == "pending":
                job.outcomes[i] = {"index": i, "status": "rejected", "status_code": 400, "error": {
                    "error": "rolled back", "message": f"capture rolled back: event {first} was refused "
                    "(GS1-Capture-Error-Behaviour: rollback; send proceed to record the others)"}}
        return False

    async def _settle(job: _Job, waits: list[tuple[int, bytes]]) -> None:
        futs = [(i, rid, node.waiter(rid)) for i, rid in waits]
        try:
            if futs:
                await asyncio.wait([f for _, _, f in futs], timeout=CAPTURE_WAIT_S)
        finally:
            for i, rid, f in futs:
                o = job.outcomes[i]
                if f.done() and not f.cancelled():
                    o["status"] = "recorded"
                    o["height"], o["position"] = f.result()
                else:
                    node.drop_waiter(rid, f)
                    o["status"] = "accepted"
            job.running = False
            job.finished = int(time.time() * 1000)

    @router.get("/epcis/capture/{capture_id}", summary="The outcome of a capture job")
    async def capture_job(capture_id: str) -> Response:
        job = jobs.get(capture_id)
        if job is None:
            return _problem(404, "NoSuchResourceException", f"no capture job {capture_id} on this node")
        return _json(job.to_obj())

    # -- query -----------------------------------------------------------------------------------
    def _load(height: int, index: int) -> Any:
        receipt = node.ledger.receipt_at(height, index)
        if receipt is None:
            return None
        return receipt.record.event, receipt.header.timestamp * 1000, receipt

    def _document(request: Request, receipts: list[Any], proofs: bool, max_height: int) -> dict[str, Any]:
        """An EPCISQueryDocument of these committed events (as served), with their receipts on request."""
        fmt = getattr(request.state, "epc_format", "Never_Translates")
        event_list = []
        proof_list = []
        for receipt in receipts:
            hid = event_hash_id(receipt.record.event)
            served = present_event(receipt.record.event, hid, receipt.header.timestamp)
            event_list.append(in_epc_format(served, fmt))
            if proofs:
                proof_list.append({"eventID": hid, "record": receipt.record.id.hex(),
                                   "receipt": json.loads(receipt.to_json())})
        context: list[Any] = [EPCIS_CONTEXT]
        if proofs:
            context.append({"rantai": RANTAI_NS})
        doc: dict[str, Any] = {"@context": context, "type": "EPCISQueryDocument", "schemaVersion": "2.0"}
        if max_height > 0:
            head = node.ledger.block_json(max_height)
            if head is not None:
                doc["creationDate"] = iso_ms(head["header"]["timestamp"])
        doc["epcisBody"] = {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": event_list}}}
        if proofs:
            doc[PROOFS_KEY] = proof_list
        return doc

    async def _answer(request: Request, fixed: tuple[str, str] | None = None) -> Response:
        """A SimpleEventQuery from the request's parameters (and ``fixed``, the one a resource path
        names: /epcis/bizSteps/{bizStep}/events ...), one page of it as an EPCISQueryDocument."""
        items = request.query_params.multi_items()
        proofs = False
        params = []
        for k, v in items:
            if k == "proofs":
                if v not in ("true", "false"):
                    return _problem(400, "QueryParameterException", "proofs: true or false expected")
                proofs = v == "true"
            elif fixed is not None and k == fixed[0]:
                return _problem(400, "QueryParameterException",
                                f"{k}: set by the path {request.url.path}; not again as a parameter")
            else:
                params.append((k, v))
        if fixed is not None:
            params.append(fixed)
        try:
            q = EventQuery.parse(params)
        except QueryParameterError as exc:
            return _problem(400, "QueryParameterException", str(exc))

        def load(height: int, index: int) -> Any:  # under "parties": only the reader's events (read_policy.py)
            got = _load(height, index)
            return got if got is None or visible(request, got[2].record) else None

        fp = q.fingerprint()
        token = request.query_params.get("nextPageToken")
        if token:
            try:
                max_height, (h, i) = decode_token(token, fp)
                if (i == _ORDERED) != (q.order_by is not None) or (i != _ORDERED and h > max_height):
                    raise PageTokenError(400, "nextPageToken: not a token of this repository")
                await pages.check(max_height, "nextPageToken")  # node/paging.py: pinned heights, as item history
            except PageTokenError as exc:
                kind = "QueryParameterException" if exc.status == 400 else "ImplementationException"
                return _problem(exc.status, kind, str(exc), **exc.details)
            start = (h, i)
        else:
            max_height, start = node.storage.height, (0, 0)
            if q.max_event_count is not None:
                n = count_matches(node.storage.db, q, max_height=max_height, load=load, limit=q.max_event_count + 1)
                if n > q.max_event_count:
                    return _problem(413, "QueryTooLargeException",
                                    f"maxEventCount: more than {q.max_event_count} events match")
        # on the loop: the ledger's block cache is not thread-safe; a page is bounded (perPage <= 1000)
        resume: tuple[int, int] | None
        if q.order_by is not None:
            try:
                page, nxt = run_ordered(node.storage.db, q, offset=start[0] if token else 0, max_height=max_height,
                                        load=load)
            except QueryTooLarge as exc:
                return _problem(413, "QueryTooLargeException", str(exc))
            found = [receipt for _, _, receipt in page]
            resume = None if nxt is None else (nxt, _ORDERED)
        else:
            hits, resume, _reads = run_query(node.storage.db, q, start=start, max_height=max_height, load=load)
            found = [receipt for _, _, receipt in hits]
        doc = _document(request, found, proofs, max_height)
        headers = {"x-rantai-height": str(max_height),
                   "GS1-EPC-Format": getattr(request.state, "epc_format", "Never_Translates")}
        if resume is not None:
            nxt_token = encode_token(max_height, resume, fp)
            keep = [(k, v) for k, v in items if k != "nextPageToken"] + [("nextPageToken", nxt_token)]
            headers["Link"] = f'<{request.url.path}?{urlencode(keep)}>; rel="next"'
            headers["GS1-Next-Page-Token"] = nxt_token
        return _json(doc, 200, JSONLD, headers)

    @router.get("/epcis/events", summary="SimpleEventQuery: an EPCISQueryDocument, paged")
    async def events(request: Request) -> Response:

        return await _answer(request)

    @router.get("/epcis/events/{event_id:path}", summary="One event and its error declarations, an EPCISQueryDocument")
    async def event_by_id(request: Request, event_id: str) -> Response:

        if request.url.query and event_id.startswith("ni:") and "?" not in event_id:
            event_id += "?" + request.url.query  # ni:///sha-256;…?ver=CBV2.0 sent with an unescaped '?'
        proofs = request.query_params.get("proofs") == "true"
        db = node.storage.db
        locs: set[tuple[int, int]] = set()
        digests = []
        digest = parse_hash_id(event_id)
        if digest is not None:
            digests.append(digest)
        for _, h, i in lookup_event_id(db, event_id, limit=MAX_PER_PAGE):
            locs.add((h, i))
            receipt = node.ledger.receipt_at(h, i)
            if receipt is not None:
                d = parse_hash_id(event_hash_id(receipt.record.event))
                if d is not None:
                    digests.append(d)
        for d in digests:  # the event of that hash ID, and its error declaration (same hash ID)
            for key in (d, correction_digest(d)):
                hit = lookup_hash(db, key)
                if hit is not None:
                    locs.add((hit[1], hit[2]))
        if digest is not None and not lookup_event_id(db, event_id, limit=1):
            # a hash ID names the events that declare no eventID of their own (theirs is served instead)
            locs = {(h, i) for h, i in locs if _own_event_id(h, i) in (None, event_id)}
        receipts = [r for h, i in sorted(locs) if (r := node.ledger.receipt_at(h, i)) is not None]
        if not receipts:
            return _problem(404, "NoSuchResourceException", f"no committed event has the eventID {event_id}")
        if not any(visible(request, r.record) for r in receipts):
            check_visible(request, receipts[0].record, node)  # under "parties": 403 read.not-allowed
        receipts = [r for r in receipts if visible(request, r.record)]
        headers = {"x-rantai-height": str(node.storage.height),
                   "GS1-EPC-Format": getattr(request.state, "epc_format", "Never_Translates")}
        return _json(_document(request, receipts, proofs, node.storage.height), 200, JSONLD, headers)

    def _own_event_id(height: int, index: int) -> str | None:
        receipt = node.ledger.receipt_at(height, index)
        own = receipt.record.event.get("eventID") if receipt is not None else None
        return own if isinstance(own, str) and own else None

    @router.post("/epcis/events", summary="Capture one signed event, synchronously", status_code=201)
    async def capture_event(request: Request) -> Response:
        if (refusal := capture_gate(request)) is not None:
            return refusal
        address = client_address(request.scope)
        admission = node.admission
        try:
            body = await read_body(request, node.genesis.params["max_block_bytes"])
            event = load_json(body, "event")
            raw = record_of_captured(event, node.genesis.hash).raw
        except RecordTooLarge as exc:
            return _problem(413, "CapturePayloadTooLargeException", str(exc))
        except (RantaiError, ValueError) as exc:
            return _problem(400, "ValidationException", str(exc))
        admission.charge_address(address, 1)
        token = CURRENT_TICKET.set(admission.ticket(address))
        try:
            [(rid, res)] = await node.submit([raw])
        finally:
            CURRENT_TICKET.reset(token)
        if not isinstance(res, SignedRecord):
            err = error_body(res)
            status = status_of(res)
            if err.get("error") in ("duplicate event", "duplicate record"):
                return _problem(409, "ResourceAlreadyExistsException", err.get("message", "duplicate"),
                                **{k: v for k, v in err.items() if k in ("event_hash_id", "existing")})
            kind = ("CapturePayloadTooLargeException" if status == 413 else "CaptureLimitExceededException"
                    if status == 429 else "ValidationException" if status < 500 else "ImplementationException")
            return _problem(status if status in (400, 401, 403, 413, 429) else 400, kind,
                            err.get("message", "rejected"), error=err.get("error"))
        hid = event_hash_id(res.event)
        location = f"/epcis/events/{quote(hid, safe='')}"
        fut = node.waiter(res.id)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=CAPTURE_WAIT_S)
        except asyncio.TimeoutError:
            node.drop_waiter(res.id, fut)
            # admitted, not committed yet: the ledger will record it; the event is at Location once it is
            return _json({"eventID": hid, "record": res.id.hex(), "status": "accepted"}, 202,
                         headers={"Location": location})
        height, index = fut.result()
        receipt = node.ledger.receipt_at(height, index)
        served = present_event(res.event, hid, receipt.header.timestamp if receipt is not None else 0)
        return _json(served, 201, JSONLD, {"Location": location, "x-rantai-record-id": res.id.hex()})

    # -- top level, resources and discovery ----------------------------------------------------------
    def _collection(members: list[str], headers: dict[str, str] | None = None) -> Response:
        return _json({"@context": EPCIS_CONTEXT, "type": "Collection", "member": members}, 200, headers=headers)

    @router.get("/epcis", summary="The top-level resources of this EPCIS repository")
    @router.get("/epcis/", include_in_schema=False)
    async def top_level(request: Request) -> Response:

        members = list(TOP_LEVEL)
        if any(path.startswith("/epcis/queries") for path, _ in api_routes(request.app.routes)):
            members.insert(0, "queries")
        return _collection(members)

    @router.get("/epcis/eventTypes", summary="The event types of EPCIS 2.0")
    async def event_types(request: Request) -> Response:

        return _collection(list(EVENT_TYPES))

    # One route per resource name (not /epcis/{resource}/...), so that other routers' paths under /epcis
    # (/epcis/queries/...) are never shadowed by these.
    def _resource_of(request: Request) -> str:
        return request.url.path.split("/")[2]

    async def resource_events(request: Request, value: str) -> Response:

        return await _answer(request, (RESOURCE_PARAMS[_resource_of(request)], value))

    async def resource(request: Request, value: str) -> Response:

        kind = _resource_of(request)
        if kind == "eventTypes" and value not in EVENT_TYPES:
            return _problem(404, "NoSuchResourceException", f"no event type {value!r} ({', '.join(EVENT_TYPES)})")
        if kind in VALUE_FIELDS:
            f = VALUE_FIELDS[kind]
            norm = norm_term(value, {"bizSteps": "bizStep", "dispositions": "disposition"}.get(kind)) \
                if kind in ("bizSteps", "dispositions") else norm_id(value)
            if node.storage.db.get(b"V" + f + norm.encode("utf-8")) is None:
                return _problem(404, "NoSuchResourceException", f"no committed event names {kind} {value!r}")
        return _collection(["events"])

    async def values(request: Request) -> Response:

        f = VALUE_FIELDS[_resource_of(request)]
        per_page = request.query_params.get("perPage", "30")
        if not per_page.isdigit() or not 1 <= int(per_page) <= MAX_PER_PAGE:
            return _problem(400, "QueryParameterException", f"perPage: 1..{MAX_PER_PAGE} expected")
        after = None
        token = request.query_params.get("nextPageToken")
        if token:
            try:
                after = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
            except ValueError:
                return _problem(400, "QueryParameterException", "nextPageToken: not a token of this repository")
        members, more = list_values(node.storage.db, f, after, int(per_page))
        headers = {}
        if more and members:
            nxt = base64.urlsafe_b64encode(members[-1].encode("utf-8")).decode().rstrip("=")
            link = urlencode({"perPage": per_page, "nextPageToken": nxt})
            headers["Link"] = f'<{request.url.path}?{link}>; rel="next"'
            headers["GS1-Next-Page-Token"] = nxt
        return _collection(members, headers)

    for kind in RESOURCE_PARAMS:
        router.add_api_route(f"/epcis/{kind}/{{value:path}}/events", resource_events, methods=["GET"],
                             summary=f"The events of one of /epcis/{kind}", name=f"{kind}_events")
        router.add_api_route(f"/epcis/{kind}/{{value:path}}", resource, methods=["GET"],
                             summary=f"The sub-resources of one of /epcis/{kind}", name=f"{kind}_one")
        if kind in VALUE_FIELDS:
            router.add_api_route(f"/epcis/{kind}", values, methods=["GET"], name=kind,
                                 summary=f"The {kind} committed events name")

    async def discovery(request: Request) -> Response:

        path = request.url.path.rstrip("/") or "/epcis"
        methods: set[str] = set()
        for full, r in api_routes(request.app.routes):
            if r.name != "discovery" and compile_path(full)[0].match(path):
                methods |= set(r.methods or ())
        if not methods:
            return _problem(404, "NoSuchResourceException", f"no resource {path}")
        headers = {**DISCOVERY_HEADERS, "Allow": ", ".join(sorted(methods | {"OPTIONS"}))}
        if path == "/epcis/capture":
            params = node.genesis.params
            headers.update({"GS1-EPCIS-Capture-Limit": str(params["max_block_records"]),
                            "GS1-EPCIS-Capture-File-Size-Limit": str(4 * params["max_block_bytes"] + 1024 * 1024),
                            "GS1-Capture-Error-Behaviour": "all"})
        return Response(status_code=204, headers=headers)

    # OPTIONS on each path this router serves (a catch-all would answer 405 instead of 404 for unknown paths)
    for path in sorted({r.path for r in router.routes if isinstance(r, APIRoute) and r.path.startswith("/epcis")}):
        router.add_api_route(path, discovery, methods=["OPTIONS"], include_in_schema=False, name="discovery")
    return router
