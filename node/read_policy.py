"""Every read a node serves passes here: who signed it (RFC 9421), and what that reader may see.

``ReadGuard`` is ASGI middleware in front of every route, so a read endpoint added later is guarded
without doing anything (under ``parties`` it is then for auditors and validators only, until it filters
by reader with ``visible``/``check_visible``). The rules themselves are pure and live in
``rantai.client.format.signed_requests`` (the signature) and ``read_access`` (the policy); this module
only feeds them the request as received and the consortium in force, counts refusals for /metrics, and
signs this validator's own reads of its peers (``ValidatorReadAuth``: catch-up, peer heights).
docs/api.md, "Signed reads", is the contract.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Generator, Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from rantai.client.format.read_access import Reader, may_read, reader_of
from rantai.client.format.records import SignedRecord
from rantai.client.format.signed_requests import (
    ALG,
    COMPONENTS,
    LABEL,
    READ_RULES,
    ReadRefused,
    authority,
    is_signed_request,
    sign_request,
    verify,
)
from rantai.consensus.crypto import Signer

__all__ = ["ReadGuard", "ValidatorReadAuth", "ReadRefusalCollector", "check_visible", "reader", "visible"]

# Never signed, under every policy: liveness, operations, the API's own description, the explorer's
# static files, and the peer endpoints (validators authenticate those by their signed messages).
OPEN_PATHS = frozenset({"/healthz", "/v1/status", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json"})
OPEN_PREFIXES = ("/v1/peer/", "/docs/", "/explorer", "/static/")
# Under "parties", what a member without the auditor role may ask for: endpoints that filter by reader
# (records, events, items, EPCIS queries) and what every reader needs to verify a receipt.
PARTIES_PATHS = frozenset({"/v1/head", "/v1/genesis", "/v1/config", "/v1/changes", "/epcis/events", "/epcis",
                           "/epcis/", "/epcis/eventTypes", "/epcis/queries"})
# Named queries and subscriptions filter too: their answers run /epcis/events with the same reader, and every
# delivery passes ``may_deliver`` (node/subscriptions.py).
PARTIES_PREFIXES = ("/v1/records/", "/v1/events/", "/v1/items/", "/epcis/capture/", "/epcis/events/",
                    "/epcis/queries/")

# /epcis/{resource}/{value}/events answers a filtered query; the value lists (/epcis/epcs …) are not filtered
_FILTERED_QUERY = re.compile(r"/epcis/[A-Za-z]+/.+/events\Z")
ACCEPT_SIGNATURE = f'{LABEL}=({" ".join(f"{chr(34)}{c}{chr(34)}" for c in COMPONENTS)});alg="{ALG}"'
_SCOPE_KEY = "rantai.reader"
_KEY_SCOPE_KEY = "rantai.reader_key"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A request header's lines joined with ", " (RFC 9110 §5.3), or None when absent."""
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class ReadGuard:
    """ASGI middleware: a read (GET/HEAD) off the open paths is served only to the reader the read policy
    admits; the reader is left in the scope for the endpoints that filter (``reader``)."""

    def __init__(self, app: Any, node: Any) -> None:
        self.app = app
        self.node = node
        if getattr(node, "read_refusals", None) is None:
            node.read_refusals = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A WebSocket is a read too (its handshake is a GET): a subscription's stream carries records.
        websocket = scope["type"] == "websocket"
        guarded = websocket or (scope["type"] == "http" and is_signed_request(scope["method"], scope["path"]))
        if not guarded or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            found = self.admit(scope)
        except ReadRefused as exc:
            self.node.read_refusals[exc.rule] += 1
            if websocket:  # refused before it is accepted: the server answers the handshake 403
                await send({"type": "websocket.close", "code": 1008, "reason": exc.rule})
            else:
                await refusal(Request(scope), exc)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[_SCOPE_KEY], state[_KEY_SCOPE_KEY] = found
        await self.app(scope, receive, send)

    def admit(self, scope: Mapping[str, Any]) -> tuple[Reader, bytes | None]:
        headers = scope["headers"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.split(b"?", 1)[0].decode("latin-1")  # httpx's in-process transport sends path?query
        query = "?" + bytes(scope.get("query_string") or b"").decode("latin-1")
        host = authority(_header(headers, b"host") or "", scope.get("scheme", "http"))
        method = scope.get("rantai.sent_method") or scope.get("method", "GET")  # HEAD is served as GET (node/app.py)
        signed = verify(_header(headers, b"signature-input"), _header(headers, b"signature"),
                        method=method, authority=host, path=path, query=query, now=int(time.time()))
        gov = self.node.ledger.governance
        found = reader_of(gov.at(gov.height + 1), signed.public_key if signed is not None else None, gov.latest)
        p = scope["path"]
        filtered = p in PARTIES_PATHS or p.startswith(PARTIES_PREFIXES) or _FILTERED_QUERY.match(p) is not None
        if not found.sees_all and not filtered:
            raise ReadRefused("read.not-allowed", f"under the 'parties' read policy only auditors and validators read "
                              f"{scope['path']} (it holds every member's records)", reader=found.name)
        return found, (signed.public_key if signed is not None else None)


def refusal(request: Request, exc: ReadRefused) -> Response:
    """A refused read in the shape of every error (docs/api.md); under /epcis/ RFC 7807 problem details."""
    from .answers import error_response  # late: answers imports FastAPI machinery this module does not need
    from .epcis_api import epcis_problem

    headers = {"accept-signature": ACCEPT_SIGNATURE} if exc.status_hint == 401 else {}
    if request.url.path.startswith("/epcis"):
        return epcis_problem(exc.status_hint, "SecurityException", exc.message, headers=headers, **exc.to_obj())
    response = error_response(request, exc)
    response.headers.update(headers)
    return response


def reader(request: Request) -> Reader | None:
    """The reader the guard admitted for this request (None on a path it does not guard)."""
    found: Reader | None = request.scope.get("state", {}).get(_SCOPE_KEY)
    return found


def reader_key(request: Request | WebSocket) -> bytes | None:
    """The verified public key the guard admitted this request with (None: anonymous or unguarded)."""
    key: bytes | None = request.scope.get("state", {}).get(_KEY_SCOPE_KEY)
    return key


def may_deliver(node: Any, public_key: bytes | None, record: SignedRecord) -> bool:
    """Whether a subscription created with ``public_key`` may be sent ``record`` now: the same rules as a read,
    judged by the consortium in force at delivery, so a member removed (or a policy tightened) after it
    subscribed stops receiving."""
    gov = node.ledger.governance
    try:
        found = reader_of(gov.at(gov.height + 1), public_key, gov.latest)
    except ReadRefused:
        return False
    return may_read(found, record)


def visible(request: Request, record: SignedRecord) -> bool:
    """Whether this request's reader may see ``record``: for endpoints that list (they leave out the rest)."""
    found = reader(request)
    return found is None or may_read(found, record)


def check_visible(request: Request, record: SignedRecord, node: Any) -> None:
    """For endpoints that answer one record: 403 ``read.not-allowed`` unless the reader may see it."""
    if not visible(request, record):
        node.read_refusals["read.not-allowed"] += 1
        raise ReadRefused("read.not-allowed", "under the 'parties' read policy a member reads the records it "
                          "submitted and the events naming its own GS1 identifiers; this one is neither",
                          reader=getattr(reader(request), "name", None))


class ReadRefusalCollector:
    """``rantai_read_refused_total{rule=...}`` for the node's prometheus registry (node/metrics.py): refused
    reads by rule, every rule listed (0 until one happens)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("rantai_read_refused", "Reads refused by the read policy or its signature "
                                     "checks, by rule (docs/api.md \"Signed reads\").", labels=["rule"])
        counts = getattr(self.node, "read_refusals", None) or {}
        for rule in READ_RULES:
            family.add_metric([rule], counts.get(rule, 0))
        yield family


class ValidatorReadAuth(httpx.Auth):
    """Signs this validator's reads of its peers (GET/HEAD) with its key; everything else passes as is."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if is_signed_request(request.method, request.url.path):
            request.headers.update(sign_request(self.signer, request.method, request.headers["host"],
                                               request.url.scheme, request.url.raw_path.decode("ascii"),
                                               int(time.time())))
        yield request


