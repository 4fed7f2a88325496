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
import struct
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from rantai.client.format.epcis import document_events, event_hash_id
from rantai.client.format.errors import InvalidRecord, RantaiError, RecordTooLarge
from rantai.client.format.records import RECORD_VERSION, SignedRecord

from .admission import CURRENT_TICKET
from .answers import ApiError, client_address, load_json, read_body, respond, wants_msgpack
from .epcis_index import lookup_event_id, lookup_hash_id, parse_hash_id
from .epcis_query import EventQuery, QueryParameterError, run_query
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
CAPTURE_WAIT_S = 120.0
MAX_JOBS = 1000
_TOKEN = struct.Struct(">QQI8s")


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
    __slots__ = ("id", "created", "finished", "outcomes", "running")

    def __init__(self, n: int) -> None:
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
            "captureErrorBehaviour": "proceed", "errors": errors, "events": self.outcomes,
        }
        if self.finished is not None:
            obj["finishedAt"] = iso_ms(self.finished)
        return obj


def epcis_router(node: Any) -> APIRouter:
    router = APIRouter()
    jobs: OrderedDict[str, _Job] = OrderedDict()
    tasks: set[asyncio.Task] = set()

    peer_height = {"height": 0, "at": float("-inf")}

    async def highest_peer_height() -> int:
        """The highest head the other validators report, asked at most once a second (forged page
        tokens must not make this node query its peers once per request)."""

        now = time.monotonic()
        if now - peer_height["at"] >= 1.0:
            peer_height["at"] = now
            heights = [h for h in (await node.peer_heights()).values() if h is not None]
            peer_height["height"] = max(heights, default=0)
        return int(peer_height["height"])

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
    @router.post("/epcis/capture", summary="Capture an EPCISDocument of signed events", status_code=202)
    async def capture(request: Request) -> Response:

        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/json", JSONLD):
            return _problem(415, "UnsupportedMediaTypeException", f"content-type must be {JSONLD} or application/json")
        # The same admission control as POST /v1/records: this is another way in to the same verifications.
        address = client_address(request.scope)
        admission = node.admission
        refused = admission.before_body(address)
        if refused is not None:
            return _problem(429, "CaptureLimitExceededException", str(refused),
                            headers={"retry-after": str(refused.details.get("retry_after", 1))})
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
        job = _Job(len(events))
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
    @router.get("/epcis/events", summary="SimpleEventQuery: an EPCISQueryDocument, paged")
    async def events(request: Request) -> Response:
        items = request.query_params.multi_items()
        proofs = False
        params = []
        for k, v in items:
            if k == "proofs":
                if v not in ("true", "false"):
                    return _problem(400, "QueryParameterException", "proofs: true or false expected")
                proofs = v == "true"
            else:
                params.append((k, v))
        try:
            q = EventQuery.parse(params)
        except QueryParameterError as exc:
            return _problem(400, "QueryParameterException", str(exc))
        fp = q.fingerprint()
        token = request.query_params.get("nextPageToken")
        if token:
            try:
                raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
                max_height, h, i, tfp = _TOKEN.unpack(raw)
            except (ValueError, struct.error):
                return _problem(400, "QueryParameterException", "nextPageToken: not a token of this repository")
            if tfp != fp:
                return _problem(400, "QueryParameterException", "nextPageToken: issued for other query parameters")
            if h > max_height:
                return _problem(400, "QueryParameterException", "nextPageToken: not a token of this repository")
            if max_height > node.storage.height and max_height > await highest_peer_height():
                # No validator is that high: the token was not issued by this chain (a forged or foreign
                # one); retrying cannot help, unlike a token from a node that is ahead of this one.
                return _problem(400, "QueryParameterException",
                                f"nextPageToken: pins height {max_height}, above every validator's head; "
                                "not a token of this chain")
            if max_height > node.storage.height:
                return _problem(503, "ImplementationException",
                                f"this node is at height {node.storage.height}, the query is as of {max_height}; "
                                "retry, or ask another node", height=node.storage.height)
            start = (h, i)
        else:
            max_height, start = node.storage.height, (0, 0)
        ledger = node.ledger

        def load(height: int, index: int) -> Any:
            receipt = ledger.receipt_at(height, index)
            if receipt is None or not visible(request, receipt.record):  # "parties": only the reader's events
                return None
            return receipt.record.event, receipt.header.timestamp * 1000, receipt

        # on the loop: the ledger's block cache is not thread-safe; a page is bounded (perPage <= 1000)
        found, resume, _reads = run_query(node.storage.db, q, start=start, max_height=max_height, load=load)
        event_list = []
        proof_list = []
        for _, _, receipt in found:
            hid = event_hash_id(receipt.record.event)
            event_list.append(present_event(receipt.record.event, hid, receipt.header.timestamp))
            if proofs:
                proof_list.append({"eventID": hid, "record": receipt.record.id.hex(),
                                   "receipt": json.loads(receipt.to_json())})
        context: list[Any] = [EPCIS_CONTEXT]
        if proofs:
            context.append({"rantai": RANTAI_NS})
        doc: dict[str, Any] = {"@context": context, "type": "EPCISQueryDocument", "schemaVersion": "2.0"}
        if max_height > 0:
            head = ledger.block_json(max_height)
            if head is not None:
                doc["creationDate"] = iso_ms(head["header"]["timestamp"])
        doc["epcisBody"] = {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": event_list}}}
        if proofs:
            doc[PROOFS_KEY] = proof_list
        headers = {"x-rantai-height": str(max_height)}
        if resume is not None:
            nxt = base64.urlsafe_b64encode(_TOKEN.pack(max_height, resume[0], resume[1], fp)).decode().rstrip("=")
            keep = [(k, v) for k, v in items if k != "nextPageToken"] + [("nextPageToken", nxt)]
            headers["Link"] = f'<{request.url.path}?{urlencode(keep)}>; rel="next"'
            headers["GS1-Next-Page-Token"] = nxt
        return _json(doc, 200, JSONLD, headers)

    return router
