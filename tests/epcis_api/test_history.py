"""``GET /v1/items/{item}/history`` in pages pinned to a height (node/history.py, node/paging.py), on four
in-process validators: every page as of the first page's chain, the same on every node, tokens bound to
the item, pins above the head refused, and the client following the pages.

Method: a real 4-node cluster over ASGI; the chain grows between pages to show the pin holds.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx
import pytest

from rantai.client.format.encoding import decode, encode
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import sign_event
from rantai.client.http import AsyncClient, verify_receipt

from .conftest import Cluster

pytestmark = pytest.mark.timeout(120)

MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}
LOCATION = "urn:epc:id:sgln:0614141.07346.1234"


def ev(n: int) -> dict:
    return {"type": "ObjectEvent", "eventTime": f"2025-01-01T08:{n // 60 % 60:02d}:{n % 60:02d}.000+07:00",
            "eventTimeZoneOffset": "+07:00", "epcList": [f"urn:epc:id:sgtin:0614141.107346.{n}"], "action": "OBSERVE",
            "bizStep": "shipping", "bizLocation": {"id": LOCATION}}


async def commit(c: Cluster, cl, events) -> None:
    records = [sign_event(c.net.acme, c.net.genesis, e) for e in events]
    r = await cl.post("/v1/records?wait=commit&timeout_ms=20000", content=encode({"records": [x.raw for x in records]}),
                      headers=MP)
    assert r.status_code == 200 and {x["status"] for x in decode(r.content)["results"]} == {"committed"}


def test_history_pages_are_pinned_and_identical_on_every_node(tmp_path):
    async def main():
        c = Cluster(tmp_path)
        await c.start()
        try:
            path = f"/v1/items/{quote(LOCATION, safe='')}/history"
            async with c.client(0) as cl, c.client(2) as other:
                await commit(c, cl, [ev(n) for n in range(5)])
                await commit(c, cl, [ev(n) for n in range(5, 9)])
                height = await c.settle()
                r = await cl.get(path, params={"limit": 3})
                first = r.json()
                assert r.status_code == 200 and first["height"] == height == int(r.headers["x-rantai-height"])
                assert first["complete"] is False and len(first["receipts"]) == 3 and 'rel="next"' in r.headers["link"]
                assert first["head"]["header"]["height"] == height
                await commit(c, cl, [ev(n) for n in range(9, 12)])  # the chain grows; the pages do not
                await c.settle()
                seen, page, pages = list(first["receipts"]), first, 1
                while page["next"]:
                    who = other if pages % 2 else cl  # any node at or past the pinned height continues the answer
                    r = await who.get(path, params={"limit": 3, "page": page["next"]})
                    page = r.json()
                    assert r.status_code == 200 and page["height"] == height
                    seen += page["receipts"]
                    pages += 1
                assert pages == 3 and page["complete"] is True and "link" not in r.headers
                receipts = [Receipt.from_json(json.dumps(x)) for x in seen]
                for x in receipts:
                    verify_receipt(x, c.net.genesis)
                assert [x.record.event["epcList"][0][-1] for x in receipts] == [str(n) for n in range(9)]
                # msgpack answers the same pages; a pinned first page is the same question on another node
                m = decode((await other.get(path, params={"limit": 3, "height": height}, headers=MP)).content)
                assert [Receipt.from_obj(x).record.id for x in m["receipts"]] == [x.record.id for x in receipts[:3]]
                assert m["next"] == first["next"]
                # refusals: a token of another item, garbage, a limit out of range, a pin above every head
                other_item = f"/v1/items/{quote('urn:epc:id:sgtin:0614141.107346.1', safe='')}/history"
                r = await cl.get(other_item, params={"page": first["next"]})
                assert r.status_code == 400 and r.json()["error"] == "page token"
                assert "other query parameters" in r.json()["message"]
                r = await cl.get(path, params={"page": "garbage"})
                assert r.status_code == 400 and r.json()["error"] == "page token"
                for bad in ("0", "1001", "x"):
                    assert (await cl.get(path, params={"limit": bad})).status_code == 400
                r = await cl.get(path, params={"height": 10_000})
                assert r.status_code == 400 and "above every validator" in r.json()["message"]
                # an unknown item: one complete, empty page
                r = await cl.get("/v1/items/urn:epc:id:sgtin:0614141.107346.999999/history")
                assert r.json()["receipts"] == [] and r.json()["complete"] is True
                # the client follows every page, alone and cross-checked
                async with AsyncClient(c.net.genesis, [f"http://n{i}" for i in range(4)],
                                       transport=_Router(c)) as client:
                    got = await client.history(LOCATION, page_size=4)
                    assert len(got) == 12 and [g.height for g in got] == sorted(g.height for g in got)
                    crossed = await client.history(LOCATION, cross_check=True, page_size=5)
                    assert [g.id for g in crossed] == [g.id for g in got]
        finally:
            await c.stop()

    asyncio.run(main())


class _Router(httpx.AsyncBaseTransport):
    """An httpx async transport sending http://nI/... to node I's ASGI app."""

    def __init__(self, c: Cluster) -> None:
        self.c = c

    async def handle_async_request(self, request):
        i = int(request.url.host[1:])
        return await self.c.transport(i).handle_async_request(request)

