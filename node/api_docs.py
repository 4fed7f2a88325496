"""``/docs`` without internet and an ``/openapi.json`` a client generator can use.

Swagger UI's files come from the ``fastapi-offline`` package (Swagger UI 5, which renders the OpenAPI
3.1 documents FastAPI writes; ``swagger-ui-bundle``, the other packaged copy, ships Swagger UI 4, which
refuses 3.1), served by FastAPI's own ``get_swagger_ui_html`` from this node: no CDN, no font service.

The hot routes read raw bodies (node/app.py: msgpack or JSON, bounded as they stream in), so FastAPI
sees neither their bodies nor their query parameters; ``OPERATIONS`` describes them, by method and path,
in the words of docs/api.md, and ``install`` merges that into the generated document. A route missing
here keeps what FastAPI found; a test checks every route with a body or a parameter is described.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

__all__ = ["OPERATIONS", "SCHEMAS", "install"]

ASSETS = "/docs/assets"

HEX = {"type": "string", "pattern": "^[0-9a-f]*$", "description": "bytes as lowercase hex (JSON); raw bytes in msgpack"}
ID = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "a record id: SHA-256 of the signed record"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "message"], "additionalProperties": True,
              "description": "Every refusal: the rule's stable name, a sentence, and details (docs/api.md).",
              "properties": {"error": {"type": "string", "description": "the rule, e.g. `signature does not "
                                                                        "verify`, `duplicate record`, `overloaded`"},
                             "message": {"type": "string"},
                             "retry_after": {"type": "number", "description": "with 429: seconds to wait"}}},
    "RecordsBody": {"type": "object", "required": ["records"], "additionalProperties": False,
                    "properties": {"records": {"type": "array", "minItems": 1, "items": HEX,
                                               "description": "signed records (docs/format.md), at most "
                                                              "max_block_records"}}},
    "Receipt": {"type": "object", "additionalProperties": True,
                "description": "A record with its proof: msgpack `{record, index, path, header, certificate}`; "
                               "JSON: the receipt file form (docs/format.md)."},
    "Certificate": {"type": "object", "required": ["height", "view", "block_hash", "votes"],
                    "properties": {"height": {"type": "integer"}, "view": {"type": "integer"}, "block_hash": HEX,
                                   "votes": {"type": "array", "items": {"type": "array", "prefixItems": [
                                       {"type": "string"}, HEX], "minItems": 2, "maxItems": 2}}}},
    "SubmitResult": {"type": "object", "required": ["id", "status"],
                     "properties": {"id": ID, "status": {"enum": ["accepted", "committed", "duplicate", "rejected"]},
                                    "height": {"type": "integer"}, "receipt": _ref("Receipt"),
                                    "error": _ref("Error")}},
    "SubmitResults": {"type": "object", "required": ["results"],
                      "properties": {"results": {"type": "array", "items": _ref("SubmitResult")}}},
    "Head": {"type": "object", "required": ["height", "block_hash", "header", "certificate"],
             "properties": {"height": {"type": "integer"}, "block_hash": HEX,
                            "header": {"type": ["object", "null"]},
                            "certificate": {"anyOf": [_ref("Certificate"), {"type": "null"}]}}},
    "Block": {"type": "object", "additionalProperties": True,
              "description": "msgpack `{block, certificate}`; JSON `{header, hash, record_ids, certificate}`."},
    "Config": {"type": "object", "additionalProperties": True,
               "required": ["chain_id", "genesis_hash", "validators", "members", "params", "height", "proposals"],
               "properties": {"chain_id": {"type": "string"}, "genesis_hash": HEX, "since": {"type": "integer"},
                              "version": {"type": "integer"}, "governance": {"type": "object"},
                              "validators": {"type": "array", "items": {"type": "object"}},
                              "members": {"type": "array", "items": {"type": "object"}},
                              "params": {"type": "object"}, "height": {"type": "integer"},
                              "head": {"type": "integer"},
                              "proposals": {"type": "array", "items": {"type": "object"}}}},
    "Changes": {"type": "object", "required": ["to", "changes"],
                "properties": {"to": {"type": "integer"}, "changes": {"type": "array", "items": _ref("Receipt")}}},
    "History": {"type": "object", "required": ["item", "receipts"],
                "properties": {"item": {"type": "string"}, "height": {"type": "integer"}, "head": {"type": "integer"},
                               "receipts": {"type": "array", "items": _ref("Receipt")},
                               "complete": {"type": "boolean"}, "next": {"type": ["string", "null"]}}},
    "Peer": {"type": "object", "properties": {"id": {"type": "string"}, "url": {"type": "string"},
                                              "height": {"type": ["integer", "null"]},
                                              "reachable": {"type": "boolean"}, "queued": {"type": "integer"},
                                              "sent": {"type": "integer"}, "dropped": {"type": "integer"}}},
    "Status": {"type": "object", "additionalProperties": True,
               "required": ["node", "chain_id", "height", "view", "primary", "mode", "mempool", "peers"],
               "properties": {"node": {"type": "string"}, "name": {"type": "string"}, "chain_id": {"type": "string"},
                              "genesis_hash": HEX, "height": {"type": "integer"}, "view": {"type": "integer"},
                              "primary": {"type": "string"},
                              "mode": {"type": "string", "description": "normal, view-change, observing, retired"},
                              "mempool": {"type": "integer"}, "in_flight": {"type": "integer"},
                              "peers": {"type": "array", "items": _ref("Peer")},
                              "catch_up": {"type": "object"}, "fatal": {"type": ["string", "null"]},
                              "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
                              "admission": {"type": "object", "additionalProperties": {"type": "integer"}},
                              "version": {"type": "string"}, "uptime_s": {"type": "number"},
                              "time_ms": {"type": "integer", "description": "the node's wall clock (Unix ms)"},
                              "disk": {"type": ["object", "null"]}, "view_changes": {"type": "integer"},
                              "last_view_change": {"type": "string"}, "records": {"type": "object"},
                              "storage_errors": {"type": "integer"}}},
    "Ok": {"type": "object", "properties": {"ok": {"const": True}}},
    "PeerAccepted": {"type": "object",
                     "properties": {"accepted": {"type": "integer"}, "received": {"type": "integer"}}},
    "BackupManifest": {"type": "object", "additionalProperties": True,
                       "properties": {"dir": {"type": "string"}, "height": {"type": "integer"}, "head_hash": HEX,
                                      "bytes": {"type": "integer"}, "seconds": {"type": "number"}}},
}


def _json(schema: dict[str, Any], msgpack: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"application/json": {"schema": schema}}
    if msgpack:
        out["application/msgpack"] = {"schema": {"type": "string", "format": "binary",
                                                 "description": "the same object, canonical msgpack (byte strings "
                                                                "as bytes)"}}
    return out


def _answer(description: str, schema: dict[str, Any] | None = None, msgpack: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = _json(schema, msgpack)
    return out


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "malformed: bad encoding, shape, parameter (rule named in `error`)",
             401: "unknown member, or a signature that does not verify", 403: "role denied, member suspended or "
             "removed, not a validator, not loopback", 404: "not found", 409: "duplicate record or event",
             413: "too large", 415: "unsupported media type", 429: "overloaded: mempool full or over the client's "
             "admission limits (Retry-After)", 503: "unavailable: shutting down, retired, or not running"}
    return {str(c): _answer(words[c], _ref("Error")) for c in codes}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


EPCIS_DOCUMENT = {"type": "object", "description": "an EPCIS 2.0 JSON-LD document (docs/epcis.md)"}
EPCIS_QUERY = [_query(name, {"type": "string"}, "several values: repeat the parameter or separate with |")
               for name in ("eventType", "GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime",
                            "EQ_action", "EQ_bizStep", "EQ_disposition", "EQ_readPoint", "EQ_bizLocation",
                            "MATCH_epc", "MATCH_anyEPC", "MATCH_parentID", "MATCH_inputEPC", "MATCH_outputEPC")] + [
    _query("perPage", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 30}, "events per page"),
    _query("nextPageToken", {"type": "string"}, "from the previous page's GS1-Next-Page-Token"),
    _query("proofs", {"type": "boolean"}, "add `rantai:proofs`: one receipt per event")]

MP_OR_JSON = "Accept: application/msgpack for msgpack, JSON otherwise"

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/records"): {
        "description": "Submit signed records (docs/api.md, Records). " + MP_OR_JSON + ".",
        "parameters": [_query("wait", {"enum": ["commit"]}, "wait until the records are committed (or timeout_ms)"),
                       _query("timeout_ms", {"type": "integer", "minimum": 0, "maximum": 120000, "default": 30000},
                              "with wait=commit: how long to wait")],
        "requestBody": {"required": True, "content": _json(_ref("RecordsBody"))},
        "responses": {"202": _answer("accepted (or not all committed within timeout_ms)", _ref("SubmitResults")),
                      "200": _answer("with wait=commit: every record committed (receipts included)",
                                     _ref("SubmitResults")),
                      **_errors(400, 401, 403, 409, 413, 415, 429, 503)}},
    ("get", "/v1/records/{record_id}"): {
        "responses": {"200": _answer("the record with its proof", _ref("Receipt")), **_errors(400, 404)}},
    ("get", "/v1/blocks"): {
        "parameters": [_query("from", {"type": "integer", "minimum": 1}, "first height", required=True),
                       _query("to", {"type": "integer"}, "last height, inclusive (default from + 999; at most 1000 "
                                                         "blocks; the stream stops at the head)")],
        "responses": {"200": {"description": "the concatenation of canonical msgpack `{block, certificate}` "
                                             "objects in height order (always msgpack)",
                              "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}},
                      **_errors(400)}},
    ("get", "/v1/blocks/{height}"): {
        "responses": {"200": _answer("the block and its commit certificate", _ref("Block")), **_errors(400, 404)}},
    ("get", "/v1/head"): {"responses": {"200": _answer("the last committed block's header and certificate",
                                                       _ref("Head"))}},
    ("get", "/v1/genesis"): {"responses": {"200": _answer("the genesis file, byte for byte", {"type": "object"},
                                                          msgpack=False)}},
    ("get", "/v1/config"): {
        "parameters": [_query("height", {"type": "integer", "minimum": 0}, "the height whose consortium (default: "
                                                                           "the next block's)")],
        "responses": {"200": _answer("the consortium in force at that height, and every proposal", _ref("Config")),
                      **_errors(400)}},
    ("get", "/v1/changes"): {
        "parameters": [_query("to", {"type": "integer"}, "the last height (default: the node's)")],
        "responses": {"200": _answer("the receipts of the governance entries up to `to`", _ref("Changes")),
                      **_errors(400)}},
    ("get", "/v1/items/{item_id}/history"): {
        "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
                              "receipts per page"),
                       _query("page", {"type": "string"}, "the previous page's `next` token"),
                       _query("height", {"type": "integer", "minimum": 0}, "answer as of this height (default: "
                                                                           "the head; a page token pins it)")],
        "responses": {"200": _answer("a page of the records naming the GS1 identifier, in chain order: `{item, "
                                     "height, head, receipts, complete, next}` (docs/api.md, Items)",
                                     _ref("History")), **_errors(400, 503)}},
    ("get", "/v1/status"): {"responses": {"200": _answer("the node's state (docs/operations.md)", _ref("Status"))}},
    ("get", "/metrics"): {"responses": {"200": {"description": "Prometheus text exposition (docs/operations.md, "
                                                               "Metrics)",
                                                "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    ("get", "/healthz"): {"responses": {"200": _answer("serving", _ref("Ok")),
                                        "503": _answer("stopped on a broken invariant", _ref("Error"))}},
    ("post", "/v1/peer/messages"): {
        "description": "Validators only (header x-rantai-sender); they stream instead (POST /v1/peer/stream).",
        "parameters": [{"name": "x-rantai-sender", "in": "header", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/msgpack": {"schema": {
            "type": "string", "format": "binary", "description": "one consensus message (consensus/wire.py)"}}}},
        "responses": {"202": {"description": "delivered to consensus"}, **_errors(400, 403, 413, 415)}},
    ("post", "/v1/peer/records"): {
        "description": "Validators only (header x-rantai-sender): records gossiped by another validator.",
        "parameters": [{"name": "x-rantai-sender", "in": "header", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/msgpack": {"schema": {
            "type": "string", "format": "binary", "description": "`{records: [bytes]}`, canonical msgpack"}}}},
        "responses": {"202": _answer("how many were admitted", _ref("PeerAccepted"), msgpack=False),
                      **_errors(400, 403, 413, 415)}},
    ("get", "/v1/events/{event_id}"): {
        "description": "By CBV 2.0 hash ID (ni:///sha-256;…?ver=CBV2.0, URL-escaped) or the event's own eventID.",
        "responses": {"200": _answer("the receipt of the committed event (headers x-rantai-event-hash-id, "
                                     "x-rantai-record-id)", _ref("Receipt")), **_errors(400, 404)}},
    ("get", "/epcis/capture/{capture_id}"): {
        "responses": {"200": _answer("the capture job: captureID, createdAt, finishedAt, running, success, errors, "
                                     "events (docs/api.md, EPCIS)", {"type": "object"}, msgpack=False),
                      **_errors(404)}},
    ("post", "/epcis/capture"): {
        "description": "Capture an EPCISDocument of signed events (docs/epcis.md, section 4).",
        "requestBody": {"required": True, "content": {t: {"schema": {
            "type": "object", "description": "an EPCISDocument whose events each carry `rantai:signature` "
                                             "{submitter, nonce, submitted_at, signature}"}}
            for t in ("application/ld+json", "application/json")}},
        "responses": {"202": _answer("`{captureID}`, with Location: /epcis/capture/{captureID}",
                                     {"type": "object", "properties": {"captureID": {"type": "string"}}},
                                     msgpack=False), **_errors(400, 413, 415)}},
    ("get", "/epcis/events"): {
        "description": "SimpleEventQuery: an EPCISQueryDocument (application/ld+json), paged (docs/api.md, EPCIS).",
        "parameters": EPCIS_QUERY,
        "responses": {"200": {"description": "an EPCISQueryDocument", "content": {"application/ld+json": {
            "schema": EPCIS_DOCUMENT}}}, **_errors(400, 503)}},
    ("post", "/epcis/events"): {
        "description": "Capture one signed event and wait for its commit (docs/epcis.md).",
        "requestBody": {"required": True, "content": {t: {"schema": {
            "type": "object", "description": "one EPCIS 2.0 event carrying `rantai:signature`"}}
            for t in ("application/ld+json", "application/json")}},
        "responses": {"201": _answer("the event committed, with its receipt", {"type": "object"}, msgpack=False),
                      **_errors(400, 401, 403, 409, 413, 415, 429, 503)}},
    ("post", "/epcis/queries"): {
        "description": "Create a named query (docs/epcis.md §4.9); a signed read under every policy but public.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["name", "query"],
            "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$"},
                           "query": {"type": "object", "description": "parameters of GET /epcis/events"}}}}}}},
    ("post", "/epcis/queries/{query_name}/subscriptions"): {
        "description": "Subscribe a webhook to a named query (docs/epcis.md §4.9).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["dest"],
            "properties": {"dest": {"type": "string", "format": "uri"}, "signatureToken": {"type": "string"},
                           "reportIfEmpty": {"type": "boolean"}, "stream": {"type": "boolean"},
                           "proofs": {"type": "boolean"}, "initialRecordTime": {"type": "string"},
                           "schedule": {"type": "object"}}}}}}},
    ("post", "/v1/admin/backup"): {
        "description": "Served to loopback clients only (rantai-node backup; docs/operations.md).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["dir"], "additionalProperties": False,
            "properties": {"dir": {"type": "string", "description": "an absolute path on the node's host, absent "
                                                                    "or empty: the backup is written there"}}}}}},
        "responses": {"200": _answer("the backup's manifest", _ref("BackupManifest"), msgpack=False),
                      **_errors(400, 403, 409, 503)}},
}


def install(app: FastAPI) -> None:
    """Serve Swagger UI from the package at ``/docs`` and the completed document at ``/openapi.json``.

    ``app`` must be made with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load from a CDN).
    """
    static = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
                                   swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
                                   oauth2_redirect_url=f"{root}/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(title=app.title, version=app.version,
                                                      description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``OPERATIONS`` merged in and FastAPI's 422 answers replaced: the node answers 400."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(SCHEMAS)
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", _answer("malformed parameter", _ref("Error")))
            if path.startswith("/epcis"):
                _epcis(path, method, op)
            extra = OPERATIONS.get((method, path))
            if extra is None:
                continue
            known = {(p["in"], p["name"]) for p in op.get("parameters", [])}
            for p in extra.get("parameters", []):
                if (p["in"], p["name"]) not in known:
                    op.setdefault("parameters", []).append(p)
            if "requestBody" in extra:
                op["requestBody"] = extra["requestBody"]
            if "description" in extra:
                op["description"] = extra["description"]
            for code, answer in extra.get("responses", {}).items():
                responses[code] = answer
            if "200" in responses and "202" in extra.get("responses", {}) and "200" not in extra["responses"]:
                del responses["200"]
    return doc


def _epcis(path: str, method: str, op: dict[str, Any]) -> None:
    """The EPCIS 2.0 REST resources (node/epcis_api.py) answer EPCIS JSON-LD documents; those that list
    events (``…/events``) take the SimpleEventQuery parameters of ``GET /epcis/events``."""
    for code, answer in op["responses"].items():
        if code.startswith("2"):
            for media in answer.get("content", {}).values():
                if not media.get("schema"):
                    media["schema"] = EPCIS_DOCUMENT
    if method == "get" and path.endswith("/events") and path != "/epcis/events":
        known = {p["name"] for p in op.get("parameters", [])}
        op.setdefault("parameters", []).extend(p for p in EPCIS_QUERY if p["name"] not in known)
