"""Auditing a node over HTTP: its blocks streamed into the chain auditor (``rantai.client.format.audit``).

``NodeSource`` streams ``GET /v1/blocks?from=&to=`` (msgpack items); everything it yields is checked by
the same rules a validator applies, so a node that lies is caught whatever it serves. A stopped
node's data directory is audited by the node's own tools (``rantai-node audit --data-dir``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from rantai.consensus.crypto import Signer

from .format.audit import AuditReport, Auditor, BlockSource, ProgressFn
from .format.encoding import decode
from .format.errors import InvalidBlock, NodeError, RantaiError
from .format.genesis import Genesis
from .format.stream import BlockStreamReader
from .http import SignedReads

__all__ = ["NodeSource", "audit", "open_source"]


class NodeSource:
    """Streams blocks from a node: ``GET /v1/blocks?from=A&to=B`` (≤ 1000 per request), msgpack items."""

    def __init__(self, url: str, *, timeout: float = 60.0, chunk: int = 1000,
                 transport: httpx.BaseTransport | None = None, key: Signer | None = None) -> None:
        self.name = url.rstrip("/")
        self.chunk = chunk
        self.served_head: dict[str, Any] | None = None
        self.stream_error: InvalidBlock | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), transport=transport,
                                  headers={"accept": "application/msgpack"}, auth=SignedReads(key))

    def _fail(self, message: str) -> NodeError:
        return NodeError(f"node {self.name}: {message}", node=self.name)

    def head_height(self) -> int:
        """The node's reported head height; its whole answer is kept (``served_head``) for the auditor to check."""
        try:
            resp = self._http.get(f"{self.name}/v1/head")
        except httpx.HTTPError as exc:
            raise self._fail(f"unreachable ({type(exc).__name__}: {exc})") from exc
        if resp.status_code != 200:
            raise self._fail(f"GET /v1/head answered HTTP {resp.status_code}{_refusal(resp)}")
        try:
            obj = decode(resp.content)
        except RantaiError as exc:
            raise self._fail(f"GET /v1/head: {exc}") from exc
        if type(obj) is not dict or type(obj.get("height")) is not int:
            raise self._fail("GET /v1/head: no height")
        self.served_head = obj
        return int(obj["height"])

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, bytes | None, Any]]:
        h = start
        while h <= end:
            to = min(end, h + self.chunk - 1)
            got = 0
            reader = BlockStreamReader()
            try:
                with self._http.stream("GET", f"{self.name}/v1/blocks", params={"from": h, "to": to}) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        raise self._fail(f"GET /v1/blocks?from={h}&to={to} answered HTTP {resp.status_code}"
                                         f"{_refusal(resp)}")
                    for data in resp.iter_bytes():
                        for block, certificate in reader.feed(data):
                            yield h, block, certificate
                            h += 1
                            got += 1
            except httpx.HTTPError as exc:
                raise self._fail(f"block stream broke at height {h} ({type(exc).__name__}: {exc})") from exc
            except InvalidBlock as exc:
                # A malformed item is the node's answer for height h, not a transport failure: the
                # auditor reports it as that height's broken rule (``stream_error``).
                self.stream_error = InvalidBlock(f"block {h}: {exc}", rule=exc.rule, height=h)
                return
            if reader.pending:
                raise self._fail(f"block stream at height {h} ended inside an item")
            if got == 0:
                return  # the node has nothing from h on: the auditor reports the missing heights

    def close(self) -> None:
        self._http.close()



def _refusal(resp: httpx.Response) -> str:
    """A refused read's rule, in words an auditor can act on (docs/api.md, "Signed reads")."""
    try:
        body = decode(resp.content) if resp.headers.get("content-type", "").startswith("application/msgpack") \
            else resp.json()
    except (RantaiError, ValueError):
        return ""
    rule = body.get("error") if isinstance(body, dict) else None
    if not isinstance(rule, str) or not rule.startswith("read."):
        return ""
    return (f": {rule}: {body.get('message', '')} (auditing a node needs the key of an auditor or a validator "
            "(--key), or a public read policy)")


def open_source(url: str, *, transport: httpx.BaseTransport | None = None, key: Signer | None = None) -> BlockSource:
    """A node by its URL (a data directory is ``rantai-node audit --data-dir``'s job)."""
    if not url.startswith(("http://", "https://")):
        raise NodeError(f"{url}: not a node URL (to audit a stopped node's data directory, run "
                        f"`rantai-node audit --data-dir {url}`)")
    return NodeSource(url, transport=transport, key=key)


def audit(genesis: Genesis, source: BlockSource | str, *, end: int | None = None, workers: int | None = None,
          schema: bool = False, progress: ProgressFn | None = None) -> AuditReport:
    """Audit ``source`` (a ``BlockSource`` or a node URL) against ``genesis``."""
    src = open_source(source) if isinstance(source, str) else source
    try:
        with Auditor(genesis, workers=workers, schema=schema) as auditor:
            return auditor.run(src, end=end, progress=progress)
    finally:
        if isinstance(source, str):
            src.close()
