"""``GET /v1/items/{item}/history``: every committed record naming a GS1 identifier, in pages pinned to a height.

An item's history has no natural bound (a warehouse GLN names every event there), so it is served in
pages of at most ``MAX_PAGE`` receipts, each page as of the first page's height (node/paging.py, the
tokens ``/epcis/events`` uses): the answer says whether it is complete, and a client follows ``next``
until it is. ``height=H`` pins a first page to H, so a client cross-checking f+1 nodes asks each the
same question; the answer carries block H's header and certificate, which proves H is a real height.

Included by ``node/app.py`` with ``app.include_router(history_router(node))``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from .answers import ApiError, respond, wants_msgpack
from .paging import PageTokenError, PinnedPages, encode_token

__all__ = ["MAX_PAGE", "history_router", "history_fingerprint"]

MAX_PAGE = 1000


def history_fingerprint(item_id: str) -> bytes:
    """What a history page token is bound to: the item (a token of another item or of a query is refused)."""
    return hashlib.sha256(b"item history\x00" + item_id.encode("utf-8")).digest()[:8]


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, "bad request", f"query parameter {name!r} must be a non-negative integer")
    return int(raw)


def history_router(node: Any) -> APIRouter:
    router = APIRouter()
    pages = PinnedPages(node)

    @router.get("/v1/items/{item_id:path}/history",
                summary="Committed records naming a GS1 identifier, paged (limit, page, height), with receipts")
    async def get_history(request: Request, item_id: str) -> Response:
        limit = _int(request, "limit")
        limit = MAX_PAGE if limit is None else limit
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, "bad request", f"limit: 1..{MAX_PAGE} expected", limit=MAX_PAGE)
        fp = history_fingerprint(item_id)
        try:
            max_height, start = await pages.start(request.query_params.get("page"), fp, "page", _int(request, "height"))
        except PageTokenError as exc:
            raise ApiError(exc.status, "page token" if exc.status == 400 else "behind", str(exc),
                           **exc.details) from None
        ledger = node.ledger
        # one more than the page holds: if it exists, the next page starts there
        locs = node.storage.item_locations(item_id, limit + 1, start, max_height)
        nxt = encode_token(max_height, locs[limit], fp) if len(locs) > limit else None
        locs = locs[:limit]
        msgpack = wants_msgpack(request)
        receipts: list[Any] = []
        for height, index in locs:
            if msgpack:
                receipts.append(ledger.receipt_obj_at(height, index))
            else:
                r = ledger.receipt_at(height, index)
                receipts.append(None if r is None else json.loads(r.to_json()))
        if any(r is None for r in receipts):  # pragma: no cover - the index names only stored records
            raise ApiError(503, "storage", f"history of {item_id}: a record of the index is not readable")
        head = None
        if max_height > 0:
            block = ledger.block_json(max_height)
            if block is not None:
                head = {"height": max_height, "block_hash": block["hash"], "header": block["header"],
                        "certificate": block["certificate"]}
        body = {"item": item_id, "height": max_height, "head": head, "receipts": receipts,
                "complete": nxt is None, "next": nxt}
        headers = {"x-rantai-height": str(max_height)}
        if nxt is not None:
            query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "height")]
            headers["Link"] = f'<{request.url.path}?{urlencode([*query, ("page", nxt)])}>; rel="next"'
        return respond(request, body, headers=headers)

    return router
