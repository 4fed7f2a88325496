"""Named queries and query subscriptions of the EPCIS 2.0 REST binding, delivered by webhook or WebSocket.

* ``/epcis/queries``: named queries (a SimpleEventQuery's parameters under a name), stored in this node's
  LevelDB under the ``n`` tag (docs/storage.md), node-local: a trading partner's view and delivery state
  are an arrangement with the node it talks to, not a fact the validators must agree on — putting them
  in consensus would make every validator call every partner's webhook, and a partner's secret would
  sit on every node's disk and in every backup of the chain.
* ``/epcis/queries/{name}/events``: the query's answer, exactly as ``GET /epcis/events`` with the stored
  parameters (it is answered by that very endpoint); with ``Upgrade: websocket`` a subscription over the
  connection.
* ``/epcis/queries/{name}/subscriptions``: webhook subscriptions (``dest``, ``signatureToken``, ``stream``
  or ``schedule``, ``reportIfEmpty``, ``initialRecordTime``, and rantai's ``proofs``).

Delivery reads the chain, not a queue: each subscription keeps a cursor (the next ``(height, index)`` to
look at) and pages through the query engine (``node/epcis_query.py``, the same plan and exact check as
``GET /epcis/events``) from it, so a subscription never holds more than one batch in memory, delivers in
chain order, and resumes after a restart from its persisted cursor (at-least-once: a batch delivered but
not yet recorded is sent again; every event carries its ``eventID`` to deduplicate by). The driver is
never waited on: stored blocks are announced through ``Storage.on_commit`` (the disk thread), which only
wakes this module's tasks on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from rantai.client.format.epcis import event_hash_id
from rantai.client.format.errors import RantaiError
from rantai.client.format.receipts import Receipt
from rantai.consensus.crypto import sha256, signing_bytes

from .answers import load_json, read_body
from .epcis_api import (
    DISCOVERY_HEADERS,
    EPCIS_CONTEXT,
    EPCIS_HEADERS,
    JSONLD,
    PROOFS_KEY,
    RANTAI_NS,
    epcis_problem,
    iso_ms,
    media_refusal,
    negotiate,
    present_event,
)
from .epcis_query import EventQuery, QueryParameterError, query_time, run_query
from .read_policy import may_deliver, reader_key
from .validation import status_of

__all__ = ["Schedule", "Subscription", "Subscriptions", "may_see", "query_pairs", "reader_of",
           "webhook_signature", "node_signature", "WEBHOOK_SIGNATURE_KIND"]

log = logging.getLogger("rantai.node.subscriptions")

# -- key layout (docs/storage.md): b"n" = node-local, never part of the chain ----------------------------
QUERY_KEY = b"nq"  # + query name (UTF-8)      -> JSON {"name", "query", "createdAt", "creator"}
SUB_KEY = b"ns"  # + subscription id (ASCII)     -> JSON: the subscription as created (with its secret)
CURSOR_KEY = b"nc"  # + subscription id          -> JSON {"next": [height, index], "lastNotifiedAt": ms | null}

MAX_QUERIES = 1000
MAX_SUBSCRIPTIONS = 1000  # webhook subscriptions on one node
MAX_WEBSOCKETS = 256  # open WebSocket subscriptions on one node
DEFAULT_BATCH = 100  # events per delivered document (a webhook answering 413 gets smaller ones)
MAX_BATCH = 1000
RETRY_BASE_S = 0.5  # webhook retries: 0.5 s, 1 s, 2 s ... (with jitter), at most RETRY_CAP_S apart
RETRY_CAP_S = 60.0
POST_TIMEOUT_S = 10.0
CURSOR_SAVE_S = 10.0  # a cursor moved past non-matching blocks only is saved at most this often
MAX_BODY = 64 * 1024  # a query definition or a subscription request
WEBHOOK_SIGNATURE_KIND = "webhook"  # consensus.crypto.signing_bytes kind of the node's signature on a delivery
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
# Parameters the query engine may know that make no sense for a subscription delivered in chain order.
ORDER_PARAMS = frozenset({"orderBy", "orderDirection", "eventCountLimit", "maxEventCount"})
PAGE_PARAMS = frozenset({"perPage", "nextPageToken"})
SCHEDULE_FIELDS = ("second", "minute", "hour", "dayOfMonth", "month", "dayOfWeek")  # finest first
CONTROL_PARAMS = frozenset({"stream", "reportIfEmpty", "initialRecordTime", "proofs", *SCHEDULE_FIELDS})


class ControlError(ValueError):
    """A subscription request the binding refuses: 400 SubscriptionControlsException."""


# -- the read-policy hooks (node/read_policy.py plugs in here) ----------------------------------------------

def reader_of(request: Request | WebSocket) -> str | None:
    """Who is asking: the public key (hex) the read guard (node/read_policy.py) verified on this request, or
    None for an anonymous one (admitted only under the ``public`` read policy). It is stored with what they
    create and handed to ``may_see`` for every event, possibly long after: a key, not a resolved member, so
    each delivery is judged by the consortium in force then. The subscription POST and the WebSocket handshake
    both pass here (both are guarded like reads)."""
    key = reader_key(request)
    return key.hex() if key is not None else None


def may_see(node: Any, reader: str | None, receipt: Receipt) -> bool:
    """May ``reader`` (the subscription's creator, ``reader_of``) be sent this committed event? The one place
    every subscription delivery (webhook and WebSocket) asks before an event leaves the node: a subscription
    delivers only what its creator may read now (``may_deliver``)."""
    return may_deliver(node, bytes.fromhex(reader) if reader is not None else None, receipt.record)


# -- query definitions ---------------------------------------------------------------------------------------

def query_pairs(query: Any) -> list[tuple[str, str]]:
    """A named query's ``query`` object as the (name, value) pairs of ``GET /epcis/events``.

    A list is one pair per item (values of one parameter are ORed); booleans are ``true``/``false``.
    """
    if not isinstance(query, dict):
        raise QueryParameterError("query: a JSON object of query parameters expected")
    out: list[tuple[str, str]] = []
    for name, value in query.items():
        if name in PAGE_PARAMS:
            raise QueryParameterError(f"query: {name} belongs to a request for the query's events, not to the query")
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool):
                out.append((name, "true" if v else "false"))
            elif isinstance(v, (str, int, float)):
                out.append((name, str(v)))
            else:
                raise QueryParameterError(f"query: {name}: a string, number, boolean or a list of them expected")
    return out


def parse_query(query: Any, per_page: int | None = None) -> EventQuery:
    """The engine's parse of a stored query (``QueryParameterError`` when it refuses it)."""
    pairs = query_pairs(query)
    if per_page is not None:
        pairs.append(("perPage", str(per_page)))
    return EventQuery.parse(pairs)


# -- schedules ---------------------------------------------------------------------------------------------

_RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "dayOfMonth": (1, 31), "month": (1, 12),
           "dayOfWeek": (1, 7)}


def _field_values(name: str, spec: Any) -> frozenset[int]:
    """One schedule field: comma-separated ``N``, ``[A-B]`` / ``A-B``, ``*``, ``A/S`` / ``*/S`` (every S from A)."""
    lo, hi = _RANGES[name]
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise ControlError(f"schedule.{name}: a string such as \"5\", \"[1-5]\" or \"0/15\" expected")
    out: set[int] = set()
    for raw in str(spec).split(","):
        part = raw.strip()
        try:
            if "/" in part:
                start_s, step_s = part.split("/", 1)
                start = lo if start_s in ("*", "") else int(start_s)
                step = int(step_s)
                if step < 1:
                    raise ValueError
                values = range(start, hi + 1, step)
            elif part == "*":
                values = range(lo, hi + 1)
            else:
                inner = part[1:-1] if part.startswith("[") and part.endswith("]") else part
                if "-" in inner:
                    a, b = inner.split("-", 1)
                    values = range(int(a), int(b) + 1)
                else:
                    values = range(int(inner), int(inner) + 1)
        except ValueError:
            raise ControlError(f"schedule.{name}: {part!r} is not N, [A-B], * or A/S") from None
        if not values or values[0] < lo or values[-1] > hi:
            raise ControlError(f"schedule.{name}: {part!r} is outside {lo}..{hi}")
        out.update(values)
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    """An EPCIS query schedule (UTC). Fields not given that are finer than the finest given one are their
    first value (``{"hour": "1", "minute": "5"}`` fires once a day, at 01:05:00); coarser ones match any."""

    spec: Mapping[str, Any]
    sets: tuple[frozenset[int], ...]  # in SCHEDULE_FIELDS order

    @classmethod
    def parse(cls, spec: Any) -> "Schedule":
        if not isinstance(spec, dict) or not spec:
            raise ControlError("schedule: an object with at least one of " + ", ".join(SCHEDULE_FIELDS) + " expected")
        unknown = sorted(set(spec) - set(SCHEDULE_FIELDS))
        if unknown:
            raise ControlError(f"schedule: unknown field {unknown[0]!r} (fields: {', '.join(SCHEDULE_FIELDS)})")
        finest = min(SCHEDULE_FIELDS.index(k) for k in spec)
        sets = []
        for i, name in enumerate(SCHEDULE_FIELDS):
            lo, hi = _RANGES[name]
            if name in spec:
                sets.append(_field_values(name, spec[name]))
            else:
                sets.append(frozenset([lo]) if i < finest and name in ("second", "minute", "hour")
                            else frozenset(range(lo, hi + 1)))
        schedule = cls(dict(spec), tuple(sets))
        if schedule.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc)) is None:
            raise ControlError("schedule: matches no date (e.g. day 31 of a 30-day month only)")
        return schedule

    def next_after(self, t: datetime) -> datetime | None:
        """The first time strictly after ``t`` (whole seconds, UTC) the schedule matches, within 8 years."""
        seconds, minutes, hours, days, months, weekdays = self.sets
        t = t.astimezone(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=8 * 366)
        while t < limit:
            if t.month not in months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif t.day not in days or t.isoweekday() not in weekdays:
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in seconds:
                t += timedelta(seconds=1)
            else:
                return t
        return None


# -- subscriptions -----------------------------------------------------------------------------------------

def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ControlError(f"{what}: true or false expected")


@dataclass
class Subscription:
    """One standing query: a webhook (persisted) or a WebSocket (lives as long as its connection)."""

    id: str
    query_name: str
    dest: str | None  # None: a WebSocket
    token: str | None = None  # signatureToken (never shown back)
    stream: bool = False
    schedule: Schedule | None = None
    report_if_empty: bool = False
    proofs: bool = False
    initial_record_time: str | None = None
    created_at: int = 0  # ms
    creator: str | None = None
    batch: int = DEFAULT_BATCH
    # delivery state
    next: tuple[int, int] = (1, 0)  # the first (height, index) not yet delivered
    last_notified_at: int | None = None
    last_error: str | None = None
    attempts: int = 0
    saved_at: float = field(default=0.0)

    @classmethod
    def from_controls(cls, query_name: str, controls: Mapping[str, Any], *, dest: str | None,
                      creator: str | None) -> "Subscription":
        """From a subscription body (webhook) or the query string (WebSocket); ``ControlError`` when refused."""
        stream = "stream" in controls and _bool(controls["stream"], "stream")
        if dest is None:
            given = {k: controls[k] for k in SCHEDULE_FIELDS if k in controls}
            schedule_spec: Any = given or None
        else:
            schedule_spec = controls.get("schedule")
            stray = sorted(k for k in SCHEDULE_FIELDS if k in controls)
            if stray:
                raise ControlError(f"{stray[0]}: schedule fields go inside \"schedule\"")
        if stream and schedule_spec is not None:
            raise ControlError("stream and schedule are mutually exclusive")
        if not stream and schedule_spec is None:
            raise ControlError("stream=true or a schedule is required (a subscription must say when it reports)")
        if "stream" in controls and not stream:
            raise ControlError("stream: only true is allowed (give a schedule instead)")
        schedule = Schedule.parse(schedule_spec) if schedule_spec is not None else None
        report = "reportIfEmpty" in controls and _bool(controls["reportIfEmpty"], "reportIfEmpty")
        if report and schedule is None:
            raise ControlError("reportIfEmpty applies to scheduled subscriptions only")
        initial = controls.get("initialRecordTime")
        if initial is not None:
            try:
                query_time("initialRecordTime", initial if isinstance(initial, str) else repr(initial))
            except QueryParameterError as exc:
                raise ControlError(str(exc)) from None
        token = controls.get("signatureToken")
        if token is not None and (not isinstance(token, str) or not token):
            raise ControlError("signatureToken: a non-empty string expected")
        proofs = "proofs" in controls and _bool(controls["proofs"], "proofs")
        return cls(id=str(uuid.uuid4()), query_name=query_name, dest=dest, token=token, stream=stream,
                   schedule=schedule, report_if_empty=report, proofs=proofs, initial_record_time=initial,
                   created_at=int(time.time() * 1000), creator=creator)

    def stored(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"subscriptionID": self.id, "queryName": self.query_name, "dest": self.dest,
                               "createdAt": self.created_at, "reportIfEmpty": self.report_if_empty,
                               "proofs": self.proofs, "creator": self.creator}
        if self.token is not None:
            obj["signatureToken"] = self.token
        if self.stream:
            obj["stream"] = True
        if self.schedule is not None:
            obj["schedule"] = dict(self.schedule.spec)
        if self.initial_record_time is not None:
            obj["initialRecordTime"] = self.initial_record_time
        return obj

    @classmethod
    def from_stored(cls, obj: Mapping[str, Any]) -> "Subscription":
        sub = cls.from_controls(obj["queryName"], obj, dest=obj["dest"], creator=obj.get("creator"))
        sub.id, sub.created_at = obj["subscriptionID"], obj["createdAt"]
        return sub

    def describe(self) -> dict[str, Any]:
        """The subscription as the API shows it: without its secret."""
        obj: dict[str, Any] = {"subscriptionID": self.id, "queryName": self.query_name, "dest": self.dest,
                               "createdAt": iso_ms(self.created_at), "reportIfEmpty": self.report_if_empty,
                               "proofs": self.proofs, "signed": self.token is not None,
                               "nextHeight": self.next[0], "nextIndex": self.next[1]}
        if self.stream:
            obj["stream"] = True
        if self.schedule is not None:
            obj["schedule"] = dict(self.schedule.spec)
        if self.initial_record_time is not None:
            obj["initialRecordTime"] = self.initial_record_time
        if self.last_notified_at is not None:
            obj["lastNotifiedAt"] = iso_ms(self.last_notified_at)
        if self.last_error is not None:
            obj["lastError"] = self.last_error
            obj["attempts"] = self.attempts
        return obj


def webhook_signature(token: str, body: bytes) -> str:
    """The ``GS1-Signature`` header of a delivery: ``sha256=`` HMAC-SHA256(signatureToken, body) in hex."""
    return "sha256=" + hmac.new(token.encode("utf-8"), body, hashlib.sha256).hexdigest()


def node_signature_bytes(chain: bytes, body: bytes) -> bytes:
    """What a node's Ed25519 signature on a delivery signs: ``signing_bytes("webhook", chain, SHA-256(body))``."""
    return signing_bytes(WEBHOOK_SIGNATURE_KIND, chain, sha256(body))


def node_signature(signer: Any, chain: bytes, body: bytes) -> str:
    return str(signer.sign(WEBHOOK_SIGNATURE_KIND, chain, sha256(body)).hex())


class _Gone(Exception):
    """The subscription ended (deleted, its query deleted, its WebSocket closed, or the node stopping)."""


def _problem_of(exc: Exception) -> Response:
    if isinstance(exc, ControlError):
        return epcis_problem(400, "SubscriptionControlsException", str(exc))
    return epcis_problem(400, "QueryParameterException", str(exc))


def _doc_json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None,
              media: str = "application/json") -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=media, headers={**EPCIS_HEADERS, **(headers or {})})


class Subscriptions:
    """The named queries, the subscriptions and their delivery tasks of one node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.queries: dict[str, dict[str, Any]] = {}
        self.subs: dict[str, Subscription] = {}
        self.sockets: dict[str, Subscription] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._writes: set[asyncio.Future] = set()
        self._tick: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._hooked: Any = None
        self.started = False
        self.counters: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """Load what the store holds and start delivering (after ``Node.start``)."""
        if self.started:
            return
        self._loop = asyncio.get_running_loop()
        self._tick = asyncio.Event()
        db = self.node.storage.db
        for _, value in db.iterator(prefix=QUERY_KEY):
            obj = json.loads(value)
            self.queries[obj["name"]] = obj
        cursors = {k[len(CURSOR_KEY):].decode(): json.loads(v) for k, v in db.iterator(prefix=CURSOR_KEY)}
        for key, value in db.iterator(prefix=SUB_KEY):
            try:
                sub = Subscription.from_stored(json.loads(value))
            except (ValueError, KeyError, TypeError) as exc:  # ControlError too: rules may have tightened since
                # Kept on disk (deleting it is the partner's or the operator's call), but not run.
                log.error("subscription %s not resumed: %s", key[len(SUB_KEY):].decode("ascii", "replace"), exc)
                continue
            cur = cursors.get(sub.id)
            if cur is not None:
                sub.next = (cur["next"][0], cur["next"][1])
                sub.last_notified_at = cur.get("lastNotifiedAt")
            self.subs[sub.id] = sub
        self._http = httpx.AsyncClient(timeout=POST_TIMEOUT_S, follow_redirects=False, transport=transport)
        self._hooked = self._on_commit
        self.node.storage.on_commit.append(self._hooked)
        self.started = True
        for sub in self.subs.values():
            self._spawn(sub)
        if self.subs:
            log.info("%d webhook subscriptions resumed", len(self.subs))

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        self._announce()  # WebSocket loops see started=False and close
        try:
            self.node.storage.on_commit.remove(self._hooked)
        except ValueError:
            pass
        if self._http is not None:
            await self._http.aclose()

    def status(self) -> dict[str, Any]:
        """For ``GET /v1/status``: how many of each, what was delivered, and the subscriptions in trouble."""
        failing = sorted(s.id for s in self.subs.values() if s.last_error is not None)
        return {"queries": len(self.queries), "webhooks": len(self.subs), "websockets": len(self.sockets),
                "failing": failing, "counters": dict(self.counters)}

    # -- commit notification -----------------------------------------------------------------------------
    def _on_commit(self, height: int, info: Any) -> None:
        """Called by the storage after each stored block, on the disk thread: only wakes the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._announce)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting; never fail the commit
                pass

    def _announce(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        if tick is not None:
            tick.set()

    async def _until(self, ready: Callable[[], bool], deadline: float | None = None) -> None:
        """Until ``ready()``, re-checked after each stored block (and at ``deadline``, a ``time.time()``)."""
        while not ready():
            if not self.started:
                raise _Gone
            tick = self._tick
            assert tick is not None
            closing = self.node.closing
            waits: list[Awaitable[Any]] = [tick.wait()]
            if closing is not None:
                waits.append(closing)
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            done, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout,
                                               return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                if p is not closing:
                    p.cancel()
            if closing is not None and closing.done():
                raise _Gone
            if deadline is not None and time.time() >= deadline:
                return

    # -- the query engine --------------------------------------------------------------------------------
    def _start_of(self, sub: Subscription) -> tuple[int, int]:
        """Where a new subscription starts: the first block at or after ``initialRecordTime``, else the
        next block (the binding's default, "now")."""
        height = self.node.storage.height
        if sub.initial_record_time is None:
            return (height + 1, 0)
        t_ms = query_time("initialRecordTime", sub.initial_record_time) // 1000
        lo, hi = 1, height + 1  # block timestamps never decrease: the first height with timestamp >= t
        ledger = self.node.ledger
        while lo < hi:
            mid = (lo + hi) // 2
            parent = ledger.parent_at(mid)
            if parent is not None and parent.timestamp >= t_ms:
                hi = mid
            else:
                lo = mid + 1
        return (lo, 0)

    def _page(self, sub: Subscription, head: int) -> tuple[list[Receipt], tuple[int, int] | None]:
        """Up to ``sub.batch`` events matching the subscription's query from its cursor up to ``head``."""
        stored = self.queries.get(sub.query_name)
        if stored is None:
            raise _Gone
        q = parse_query(stored["query"], sub.batch)
        ledger = self.node.ledger

        def load(height: int, index: int) -> Any:
            receipt = ledger.receipt_at(height, index)
            if receipt is None:
                return None
            return receipt.record.event, receipt.header.timestamp * 1000, receipt

        # On the loop (the ledger's block cache is not thread-safe); a page is at most MAX_BATCH events.
        found, resume, _reads = run_query(self.node.storage.db, q, start=sub.next, max_height=head, load=load)
        return [r for _, _, r in found], resume

    def document(self, sub: Subscription, receipts: list[Receipt], head: int) -> dict[str, Any]:
        """The EPCISQueryDocument of one delivery (``rantai:proofs`` with each event's receipt when asked)."""
        events, proofs = [], []
        for r in receipts:
            hid = event_hash_id(r.record.event)
            events.append(present_event(r.record.event, hid, r.header.timestamp))
            if sub.proofs:
                proofs.append({"eventID": hid, "record": r.record.id.hex(), "receipt": json.loads(r.to_json())})
        context: list[Any] = [EPCIS_CONTEXT]
        if sub.proofs:
            context.append({"rantai": RANTAI_NS})
        doc: dict[str, Any] = {"@context": context, "type": "EPCISQueryDocument", "schemaVersion": "2.0"}
        block = self.node.ledger.parent_at(head) if head > 0 else None
        if block is not None:
            doc["creationDate"] = iso_ms(block.timestamp)
        doc["epcisBody"] = {"queryResults": {"subscriptionID": sub.id, "queryName": sub.query_name,
                                             "resultsBody": {"eventList": events}}}
        if sub.proofs:
            doc[PROOFS_KEY] = proofs
        return doc

    async def run(self, sub: Subscription, send: Callable[[Subscription, dict[str, Any], int], Awaitable[bool]],
                  save: Callable[[Subscription, bool], Awaitable[None]]) -> None:
        """Deliver ``sub`` until it ends: at each trigger (a stored block for ``stream``, the schedule's next
        time otherwise), every matching event from its cursor to the head, in chain order, a batch per
        ``send``; ``send`` returns False to ask for smaller batches (the cursor then stays)."""
        node = self.node

        def gone() -> bool:
            return sub.query_name not in self.queries

        while True:
            if sub.schedule is not None:
                when = sub.schedule.next_after(datetime.now(timezone.utc))
                if when is None:
                    raise _Gone
                await self._until(gone, when.timestamp())
            else:
                await self._until(lambda: gone() or node.storage.height >= sub.next[0])
            if gone():
                raise _Gone
            head = node.storage.height
            sent = False
            while True:
                if sub.query_name not in self.queries:
                    raise _Gone
                receipts, resume = self._page(sub, head)
                visible = [r for r in receipts if may_see(node, sub.creator, r)]
                last_page = resume is None
                if visible or (sub.report_if_empty and last_page and not sent):
                    if not await send(sub, self.document(sub, visible, head), head):
                        sub.batch = max(1, sub.batch // 2)
                        continue
                    sent = True
                    sub.last_notified_at = int(time.time() * 1000)
                before = sub.next
                sub.next = resume if resume is not None else (head + 1, 0)
                if sub.next != before:
                    await save(sub, bool(visible))
                if last_page:
                    break

    # -- webhooks ----------------------------------------------------------------------------------------
    def _spawn(self, sub: Subscription) -> None:
        task = asyncio.create_task(self._webhook(sub), name=f"rantai-webhook-{sub.id}")
        self._tasks[sub.id] = task

        def forget(t: asyncio.Task) -> None:
            if self._tasks.get(sub.id) is t:
                del self._tasks[sub.id]

        task.add_done_callback(forget)

    async def _webhook(self, sub: Subscription) -> None:
        try:
            await self.run(sub, self._post, self._save_cursor)
        except _Gone:
            return
        except QueryParameterError as exc:  # stored before this node's query engine refused it
            log.error("subscription %s stopped: its query is refused: %s", sub.id, exc)
            sub.last_error = f"the named query is refused by this node's query engine ({exc}): recreate it"
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take the node down; the subscription shows the error
            log.exception("subscription %s stopped", sub.id)
            sub.last_error = "internal error (logged by the node); delivery resumes after a restart"

    async def _post(self, sub: Subscription, doc: dict[str, Any], head: int) -> bool:
        """POST one document until the subscriber answers 2xx (True) or 413 (False); retried with
        exponential backoff and jitter, for as long as the subscription exists."""
        assert self._http is not None and sub.dest is not None
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        node = self.node
        headers = {"content-type": JSONLD, **EPCIS_HEADERS, "x-rantai-subscription": sub.id,
                   "x-rantai-height": str(head), "x-rantai-node": node.id,
                   "x-rantai-signature": node_signature(node.signer, node.genesis.hash, body)}
        if sub.token is not None:
            headers["GS1-Signature"] = webhook_signature(sub.token, body)
        while True:
            try:
                r = await self._http.post(sub.dest, content=body, headers=headers)
                status = r.status_code
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except httpx.HTTPError as exc:
                status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
            if error is None:
                sub.attempts, sub.last_error = 0, None
                self._count("webhook-delivered")
                return True
            if status == 413 and sub.batch > 1:
                self._count("webhook-413")
                return False
            sub.attempts += 1
            sub.last_error = error
            self._count("webhook-retries")
            delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(sub.attempts - 1, 30)) * (0.5 + random.random() / 2)
            log.info("subscription %s: delivery to %s failed (%s); retry %d in %.1f s", sub.id, sub.dest, error,
                     sub.attempts, delay)
            await asyncio.sleep(delay)

    async def _save_cursor(self, sub: Subscription, delivered: bool) -> None:
        """Persist the cursor after a delivery; past blocks with nothing to deliver, now and then only."""
        now = time.monotonic()
        if not delivered and now - sub.saved_at < CURSOR_SAVE_S:
            return
        sub.saved_at = now
        value = json.dumps({"next": list(sub.next), "lastNotifiedAt": sub.last_notified_at}).encode()
        await self._put([(CURSOR_KEY + sub.id.encode(), value)])

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    async def _put(self, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """A synced write of node-local keys (None deletes), off the loop."""
        db = self.node.storage.db
        items = list(entries)

        def write() -> None:
            with db.write_batch(sync=True) as wb:
                for k, v in items:
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)

        # Shielded and remembered: a task cancelled while its write runs must not let ``stop`` (and then the
        # node) close the store under a write still in progress in the thread.
        fut = asyncio.get_running_loop().run_in_executor(None, write)
        self._writes.add(fut)
        fut.add_done_callback(self._writes.discard)
        await asyncio.shield(fut)

    # -- WebSockets --------------------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket, query_name: str) -> None:
        """``GET /epcis/queries/{name}/events`` with ``Upgrade: websocket``: a subscription for as long as
        the connection lasts; each delivery is one text message (an EPCISQueryDocument)."""
        if not self.started:
            await _deny(ws, epcis_problem(503, "ImplementationException", "node: not running"))
            return
        if query_name not in self.queries:
            await _deny(ws, epcis_problem(404, "NoSuchNameException", f"no named query {query_name!r} on this node"))
            return
        controls = dict(ws.query_params.items())
        unknown = sorted(set(controls) - CONTROL_PARAMS)
        try:
            if unknown:
                raise ControlError(f"unknown subscription parameter {unknown[0]!r}")
            sub = Subscription.from_controls(query_name, controls, dest=None, creator=reader_of(ws))
        except ControlError as exc:
            await _deny(ws, _problem_of(exc))
            return
        if len(self.sockets) >= MAX_WEBSOCKETS:
            await _deny(ws, epcis_problem(429, "SubscriptionControlsException",
                                          f"this node serves at most {MAX_WEBSOCKETS} WebSocket subscriptions"))
            return
        sub.next = self._start_of(sub)
        await ws.accept()
        self.sockets[sub.id] = sub

        async def send(s: Subscription, doc: dict[str, Any], head: int) -> bool:
            await ws.send_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
            self._count("websocket-delivered")
            return True

        async def save(s: Subscription, delivered: bool) -> None:
            return None  # a WebSocket subscription ends with its connection: nothing to resume

        async def drain() -> None:
            while True:  # the client sends nothing we need; this notices when it goes away
                if (await ws.receive())["type"] == "websocket.disconnect":
                    return

        delivery = asyncio.create_task(self.run(sub, send, save))
        reader = asyncio.create_task(drain())
        code, reason = 1000, ""
        try:
            await asyncio.wait([delivery, reader], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.sockets.pop(sub.id, None)
            for t in (delivery, reader):
                t.cancel()
            for t in (delivery, reader):
                try:
                    await t
                except (asyncio.CancelledError, _Gone, WebSocketDisconnect):
                    pass
                except QueryParameterError as exc:  # the query was stored before the engine refused it
                    code, reason = 1008, f"the named query is refused: {exc}"[:120]
                except Exception:
                    log.exception("WebSocket subscription %s failed", sub.id)
                    code, reason = 1011, "internal error (logged by the node)"
            closing = self.node.closing
            if not self.started or (closing is not None and closing.done()):
                code, reason = 1001, "the node is shutting down"
            elif query_name not in self.queries:
                reason = "the named query was deleted"
            if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
                try:
                    await ws.close(code, reason)
                except Exception:  # noqa: BLE001 - the peer may be gone already
                    pass

    # -- the API -----------------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        # The HTTP routes take the /epcis request headers' checks (Accept, GS1 versions: 406) of node/epcis_api.py.
        router = APIRouter(dependencies=[Depends(negotiate)])
        outer = APIRouter()

        @router.get("/epcis/queries", summary="Named queries on this node (paged)")
        async def list_queries(request: Request) -> Response:
            try:
                per_page, after = _paging(request)
            except ValueError as exc:
                return epcis_problem(400, "QueryParameterException", str(exc))
            names = sorted(n for n in self.queries if after is None or n > after)
            page = names[:per_page]
            headers = {}
            if len(names) > per_page:
                token = _token(page[-1])
                headers["Link"] = f'</epcis/queries?{urlencode({"perPage": per_page, "nextPageToken": token})}>; ' \
                                  'rel="next"'
                headers["GS1-Next-Page-Token"] = token
            return _doc_json([{"name": n, "query": self.queries[n]["query"]} for n in page], headers=headers)

        @router.post("/epcis/queries", summary="Create a named query", status_code=201)
        async def create_query(request: Request) -> Response:
            if (refusal := media_refusal(request)) is not None:
                return refusal
            try:
                body = load_json(await read_body(request, MAX_BODY), "query")
            except RantaiError as exc:
                return _body_problem(exc)
            if not isinstance(body, dict) or set(body) != {"name", "query"}:
                return epcis_problem(400, "ValidationException", 'query: {"name": NAME, "query": {...}} expected')
            name = body["name"]
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                return epcis_problem(400, "ValidationException", "name: 1-128 characters of A-Z a-z 0-9 . _ ~ - "
                                     "(starting with a letter or digit) expected")
            try:
                parse_query(body["query"])
            except QueryParameterError as exc:
                return epcis_problem(400, "QueryParameterException", str(exc))
            if name in self.queries:
                return epcis_problem(409, "ResourceAlreadyExistsException", f"a named query {name!r} already exists "
                                     "(delete it first to redefine it)")
            if len(self.queries) >= MAX_QUERIES:
                return epcis_problem(400, "ValidationException", f"this node keeps at most {MAX_QUERIES} named queries")
            obj = {"name": name, "query": body["query"], "createdAt": int(time.time() * 1000),
                   "creator": reader_of(request)}
            self.queries[name] = obj
            await self._put([(QUERY_KEY + name.encode(), json.dumps(obj, sort_keys=True).encode())])
            return _doc_json({"name": name, "query": body["query"]}, 201,
                             {"Location": f"/epcis/queries/{quote(name, safe='')}"})

        @router.get("/epcis/queries/{query_name}", summary="A named query's definition")
        async def get_query(query_name: str) -> Response:
            q = self.queries.get(query_name)
            if q is None:
                return _no_query(query_name)
            return _doc_json({"name": query_name, "query": q["query"], "createdAt": iso_ms(q["createdAt"])})

        @router.delete("/epcis/queries/{query_name}", summary="Delete a named query and end its subscriptions")
        async def delete_query(query_name: str) -> Response:
            if self.queries.pop(query_name, None) is None:
                return _no_query(query_name)
            ended = [s for s in self.subs.values() if s.query_name == query_name]
            for sub in ended:
                await self._end(sub)
            await self._put([(QUERY_KEY + query_name.encode(), None)]
                            + [(k + s.id.encode(), None) for s in ended for k in (SUB_KEY, CURSOR_KEY)])
            self._announce()  # WebSocket subscriptions of the query see it gone and close
            return Response(status_code=204, headers=EPCIS_HEADERS)

        @router.get("/epcis/queries/{query_name}/events", summary="A named query's events (as GET /epcis/events)")
        async def query_events(request: Request, query_name: str) -> Response:
            q = self.queries.get(query_name)
            if q is None:
                return _no_query(query_name)
            extra = request.query_params.multi_items()
            stray = sorted({k for k, _ in extra} - {"perPage", "nextPageToken", "proofs"})
            if stray:
                return epcis_problem(400, "QueryParameterException",
                                     f"{stray[0]}: a named query's parameters are fixed; this endpoint takes "
                                     "perPage, nextPageToken and proofs (subscription parameters need a WebSocket)")
            return await _forward_events(request, query_name, query_pairs(q["query"]), extra)

        @outer.websocket("/epcis/queries/{query_name}/events")
        async def query_events_ws(websocket: WebSocket, query_name: str) -> None:
            await self.websocket(websocket, query_name)

        @router.post("/epcis/queries/{query_name}/subscriptions", summary="Subscribe a webhook to a named query",
                     status_code=201)
        async def subscribe(request: Request, query_name: str) -> Response:
            q = self.queries.get(query_name)
            if q is None:
                return _no_query(query_name)
            if (refusal := media_refusal(request)) is not None:
                return refusal
            try:
                body = load_json(await read_body(request, MAX_BODY), "subscription")
            except RantaiError as exc:
                return _body_problem(exc)
            try:
                if not isinstance(body, dict):
                    raise ControlError("subscription: a JSON object expected")
                unknown = sorted(set(body) - {"dest", "signatureToken", "schedule", *CONTROL_PARAMS})
                if unknown:
                    raise ControlError(f"unknown subscription field {unknown[0]!r}")
                dest = _dest(body.get("dest"))
                sub = Subscription.from_controls(query_name, body, dest=dest, creator=reader_of(request))
                bad = sorted(ORDER_PARAMS & set(q["query"]))
                if bad:
                    raise ControlError(f"the query uses {bad[0]}: a subscription delivers in chain order")
            except ControlError as exc:
                return _problem_of(exc)
            if len(self.subs) >= MAX_SUBSCRIPTIONS:
                return epcis_problem(400, "SubscriptionControlsException",
                                     f"this node keeps at most {MAX_SUBSCRIPTIONS} subscriptions")
            sub.next = self._start_of(sub)
            self.subs[sub.id] = sub
            sub.saved_at = time.monotonic()
            await self._put([(SUB_KEY + sub.id.encode(), json.dumps(sub.stored(), sort_keys=True).encode()),
                             (CURSOR_KEY + sub.id.encode(),
                              json.dumps({"next": list(sub.next), "lastNotifiedAt": None}).encode())])
            if self.started:
                self._spawn(sub)
            where = f"/epcis/queries/{quote(query_name, safe='')}/subscriptions/{sub.id}"
            return _doc_json(sub.describe(), 201, {"Location": where})

        @router.get("/epcis/queries/{query_name}/subscriptions", summary="A named query's webhook subscriptions")
        async def list_subscriptions(request: Request, query_name: str) -> Response:
            if query_name not in self.queries:
                return _no_query(query_name)
            try:
                per_page, after = _paging(request)
            except ValueError as exc:
                return epcis_problem(400, "QueryParameterException", str(exc))
            ids = sorted(s.id for s in self.subs.values()
                         if s.query_name == query_name and (after is None or s.id > after))
            page = ids[:per_page]
            headers = {}
            if len(ids) > per_page:
                token = _token(page[-1])
                path = f"/epcis/queries/{quote(query_name, safe='')}/subscriptions"
                headers["Link"] = f'<{path}?{urlencode({"perPage": per_page, "nextPageToken": token})}>; rel="next"'
                headers["GS1-Next-Page-Token"] = token
            return _doc_json([self.subs[i].describe() for i in page], headers=headers)

        @router.get("/epcis/queries/{query_name}/subscriptions/{subscription_id}", summary="One subscription")
        async def get_subscription(query_name: str, subscription_id: str) -> Response:
            sub = self.subs.get(subscription_id)
            if query_name not in self.queries:
                return _no_query(query_name)
            if sub is None or sub.query_name != query_name:
                return _no_subscription(query_name, subscription_id)
            return _doc_json(sub.describe())

        @router.delete("/epcis/queries/{query_name}/subscriptions/{subscription_id}", summary="Unsubscribe")
        async def unsubscribe(query_name: str, subscription_id: str) -> Response:
            sub = self.subs.get(subscription_id)
            if query_name not in self.queries:
                return _no_query(query_name)
            if sub is None or sub.query_name != query_name:
                return _no_subscription(query_name, subscription_id)
            await self._end(sub)
            await self._put([(SUB_KEY + sub.id.encode(), None), (CURSOR_KEY + sub.id.encode(), None)])
            return Response(status_code=204, headers=EPCIS_HEADERS)

        # OPTIONS discovery on each path, as node/epcis_api.py answers it on its own paths.
        allowed: dict[str, set[str]] = {}
        for r in router.routes:
            if isinstance(r, APIRoute):
                allowed.setdefault(r.path, set()).update(r.methods or ())
        for path, methods in sorted(allowed.items()):
            router.add_api_route(path, _discovery(methods), methods=["OPTIONS"], include_in_schema=False,
                                 name="discovery")
        outer.include_router(router)
        return outer

    async def _end(self, sub: Subscription) -> None:
        self.subs.pop(sub.id, None)
        task = self._tasks.pop(sub.id, None)
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


# -- helpers of the routes -------------------------------------------------------------------------------------

def _discovery(methods: set[str]) -> Callable[[], Awaitable[Response]]:
    headers = {**DISCOVERY_HEADERS, "Allow": ", ".join(sorted(methods | {"OPTIONS"}))}

    async def discovery() -> Response:
        return Response(status_code=204, headers=headers)

    return discovery


def _no_query(name: str) -> Response:
    return epcis_problem(404, "NoSuchNameException", f"no named query {name!r} on this node")


def _no_subscription(name: str, sid: str) -> Response:
    return epcis_problem(404, "NoSuchResourceException", f"no subscription {sid} to the query {name!r} on this node")


def _body_problem(exc: RantaiError) -> Response:
    if status_of(exc) == 413:
        return epcis_problem(413, "QueryTooComplexException", str(exc))
    return epcis_problem(400, "ValidationException", str(exc))


def _dest(value: Any) -> str:
    if not isinstance(value, str):
        raise ControlError("dest: the URL the node POSTs results to is required")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ControlError(f"dest: {value!r} is not an http(s) URL")
    return value


def _token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def _paging(request: Request) -> tuple[int, str | None]:
    raw = request.query_params.get("perPage", "30")
    try:
        per_page = int(raw)
    except ValueError:
        raise ValueError("perPage: an integer expected") from None
    if not 1 <= per_page <= 1000:
        raise ValueError("perPage: 1..1000 expected")
    token = request.query_params.get("nextPageToken")
    if token is None:
        return per_page, None
    try:
        return per_page, base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("nextPageToken: not a token of this endpoint") from None


async def _deny(ws: WebSocket, response: Response) -> None:
    """Refuse a WebSocket handshake with an HTTP answer (RFC 7807) where the server allows, else close 1008."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(response)
    else:
        await ws.close(1008, bytes(response.body)[:120].decode("utf-8", "replace"))


async def _forward_events(request: Request, name: str, pairs: list[tuple[str, str]],
                          extra: list[tuple[str, str]]) -> Response:
    """Answer with ``GET /epcis/events?<the query's parameters>&<extra>``, run by the app's router, so a named
    query answers exactly as the query endpoint (parameters, paging, proofs, headers, errors); the next-page
    link is rewritten to this path and ``queryName`` is the query's name."""
    scope = dict(request.scope)
    scope["path"] = "/epcis/events"
    scope["raw_path"] = b"/epcis/events"
    scope["query_string"] = urlencode(pairs + extra).encode()
    scope.pop("route", None)
    scope.pop("endpoint", None)
    scope["path_params"] = {}
    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    # The app's router, not the app: the middleware in front of it (the read policy's guard among them) has
    # admitted this request already, under its own path; what it left in the scope (the reader) goes along.
    await request.scope["router"](scope, receive, send)
    body = b"".join(chunks)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in started.get("headers", [])]
    out: dict[str, str] = {}
    token = None
    for k, v in headers:
        lk = k.lower()
        if lk in ("content-length", "content-type"):
            continue
        if lk == "gs1-next-page-token":
            token = v
        out[k] = v
    media = dict((k.lower(), v) for k, v in headers).get("content-type", "application/json")
    if token is not None:
        keep = [(k, v) for k, v in extra if k != "nextPageToken"] + [("nextPageToken", token)]
        for k in list(out):
            if k.lower() == "link":
                out[k] = f'</epcis/queries/{quote(name, safe="")}/events?{urlencode(keep)}>; rel="next"'
    status = int(started.get("status", 500))
    if status == 200:
        try:
            doc = json.loads(body)
            doc["epcisBody"]["queryResults"]["queryName"] = name
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        except (ValueError, KeyError, TypeError):
            pass
    return Response(body, status_code=status, headers=out, media_type=media)
