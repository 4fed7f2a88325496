"""Keep-alive HTTP/1.1 on a bare asyncio protocol: the bench's load generator, too light to be what it measures.

Why not httpx: with one client per outstanding request (its pool checks every connection it holds on
every request), the closed loop's four client processes still used about a third of this 2-core
machine, which the validators being measured share. Here a request is one ``transport.write`` of a
pre-built head and the body, and the response is parsed by httptools (llhttp, C; installed with the
``node`` extra, which a bench needs anyway to start validators): about 1 µs a response, where h11
(pure Python) takes ~50 µs for a request and its response.

One request at a time per connection (no pipelining), like the peers' clients; Content-Length and
chunked bodies are both read by the parser; anything the parser refuses, a connection closed
mid-response, or a second request while one is outstanding raises ``LeanHTTPError``. Reads the read
policy judges (``is_signed_request``) are signed when a ``signer`` is given (docs/api.md "Signed reads").
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import time
from collections.abc import Coroutine
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from rantai.consensus.crypto import Signer

from .format.signed_requests import is_signed_request, sign_request

__all__ = ["LeanConnection", "LeanHTTPError", "LeanResponse", "loop_name", "run"]

T = TypeVar("T")


class LeanHTTPError(Exception):
    """The connection broke, or what came back was not an HTTP/1.1 response the parser accepts."""


class LeanResponse:
    __slots__ = ("status", "headers", "content")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status, self.headers, self.content = status, headers, content


class _Protocol(asyncio.Protocol):
    """Feeds what arrives to the parser; completes the waiting request's future at the end of a message."""

    def __init__(self) -> None:
        import httptools  # the node extra (see the module docstring); imported where it is used

        self._errors: tuple[type[BaseException], ...] = (httptools.HttpParserError,)
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[LeanResponse] | None = None
        self.parts: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.closed = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self._errors as exc:
            self.fail(LeanHTTPError(f"unparsable response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(LeanHTTPError(f"connection closed before the response ended ({exc or 'by the peer'})"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.parts = []
        self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            self.fail(LeanHTTPError("a response nobody asked for"))
            if self.transport is not None:
                self.transport.close()
            return
        if not self.parser.should_keep_alive():
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if not waiter.done():
            waiter.set_result(LeanResponse(self.parser.get_status_code(), self.headers, b"".join(self.parts)))

    def fail(self, exc: LeanHTTPError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class LeanConnection:
    """One keep-alive connection to ``base_url`` (http or https), reopened by the next request once closed."""

    def __init__(self, base_url: str, *, ssl_context: ssl.SSLContext | None = None,
                 signer: Signer | None = None, timeout: float = 120.0) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{base_url}: an http:// or https:// URL expected")
        self.scheme, self.host = url.scheme, url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.authority = url.netloc
        if url.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.ssl = ssl_context if url.scheme == "https" else None
        self.signer, self.timeout = signer, timeout
        self._proto: _Protocol | None = None
        self._heads: dict[tuple[str, str, str], bytes] = {}

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Protocol, self.host, self.port, ssl=self.ssl)
        return proto

    def _head(self, method: str, target: str, content_type: str) -> bytes:
        """The request line and fixed headers, built once per (method, target, type); Content-Length follows."""
        key = (method, target, content_type)
        head = self._heads.get(key)
        if head is None:
            lines = [f"{method} {target} HTTP/1.1", f"host: {self.authority}", "accept: application/msgpack"]
            if content_type:
                lines.append(f"content-type: {content_type}")
            head = self._heads[key] = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        return head

    async def request(self, method: str, target: str, body: bytes = b"",
                      content_type: str = "application/msgpack") -> LeanResponse:
        proto = self._proto
        if proto is None or proto.closed:
            proto = self._proto = await self._connect()
        if proto.waiter is not None:
            raise LeanHTTPError("one request at a time on a connection")
        extra = ""
        if self.signer is not None and is_signed_request(method, target.partition("?")[0]):
            signed = sign_request(self.signer, method, self.authority, self.scheme, target, int(time.time()))
            extra = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
        waiter = proto.waiter = asyncio.get_running_loop().create_future()
        assert proto.transport is not None
        head = self._head(method, target, content_type if body else "")
        proto.transport.write(b"%s%scontent-length: %d\r\n\r\n%s" % (head, extra.encode("latin-1"), len(body), body))
        timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, proto, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self, proto: _Protocol, waiter: asyncio.Future[LeanResponse]) -> None:
        if not waiter.done():
            proto.fail(LeanHTTPError(f"no response within {self.timeout:g} s"))
            self.close()

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def aclose(self) -> None:
        self.close()


def loop_name() -> str:
    """Which event loop ``run`` uses."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when installed (node extra): the lighter loop for a load generator."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
