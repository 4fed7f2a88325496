"""``/explorer``: the explorer page every node serves — static files that verify in the browser.

The page (the files beside this module: HTML, CSS and plain ES modules, no build step, nothing fetched
from anywhere but this node) reads the API like any client and checks every receipt it shows against the genesis the
user pins (node/explorer/verify.js, a second implementation of docs/format.md). This router only hands
out the files: the node is not trusted for what they show, so serving them needs no state of the node.
The Content-Security-Policy lets the page talk to this node only.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ..answers import ApiError

__all__ = ["explorer_router"]

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _assets() -> dict[str, bytes]:
    """The page's files by name, read once (they ship in the package: pyproject package-data)."""
    folder = files(__name__)
    return {f.name: f.read_bytes() for f in folder.iterdir()
            if f.is_file() and any(f.name.endswith(ext) for ext in _TYPES)}


def explorer_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    assets = _assets()

    def serve(name: str) -> Response:
        body = assets.get(name)
        if body is None:
            raise ApiError(404, "not found", f"/explorer/{name}: no such file")
        return Response(body, media_type=_TYPES[name[name.rfind("."):]], headers=_HEADERS)

    @router.get("/explorer")
    async def explorer_root() -> Response:
        return RedirectResponse("/explorer/", status_code=308)

    @router.get("/explorer/")
    async def explorer_index() -> Response:
        return serve("index.html")

    @router.get("/explorer/{name}")
    async def explorer_file(name: str) -> Response:
        return serve(name)

    return router
