"""The bench's lean HTTP/1.1 client (client/leanhttp.py) against a scripted loopback server.

Goal: the load generator reads every response our node can send (Content-Length and chunked bodies, on one
kept-alive connection, and again after the server closed it), signs the reads the read policy judges, and
fails loudly on anything else (a response that does not parse, a connection closed mid-body) instead of
counting it. Method: an asyncio server on 127.0.0.1 answers each request with the next scripted bytes and
keeps what it received.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from rantai.client.format.signed_requests import verify
from rantai.client.leanhttp import LeanConnection, LeanHTTPError
from rantai.consensus.crypto import Signer

OK_LENGTH = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: application/msgpack\r\n\r\nhello"
OK_CHUNKED = b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
CLOSE = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"


async def serve(port: int, script: list[bytes | None], received: list[bytes]) -> asyncio.Server:
    """Answers each request (read up to its blank line and Content-Length body) with the next item of
    ``script``; None, a ``connection: close`` answer or the script's end closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while script:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                received.append(head + await reader.readexactly(length))
                answer = script.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


def run(coro):
    return asyncio.run(coro)


def test_reads_length_and_chunked_bodies_on_one_connection_and_reconnects_after_close(free_base_port):
    port = free_base_port(1)

    async def main():
        received: list[bytes] = []
        server = await serve(port, [OK_LENGTH, OK_CHUNKED, CLOSE, OK_LENGTH], received)
        conn = LeanConnection(f"http://127.0.0.1:{port}")
        try:
            a = await conn.request("POST", "/v1/records?wait=commit", b"\x81\xa7records\x90")
            b = await conn.request("POST", "/v1/records", b"xyz")
            c = await conn.request("POST", "/v1/records", b"xyz")
            d = await conn.request("GET", "/v1/status")  # a new connection: the server closed the last
        finally:
            conn.close()
            server.close()
        return received, [(r.status, r.content) for r in (a, b, c, d)], a.headers

    received, answers, headers = run(main())
    assert answers == [(200, b"hello"), (202, b"abcdefg"), (429, b"no"), (200, b"hello")]
    assert headers["content-type"] == "application/msgpack"
    first = received[0].decode("latin-1")
    assert first.startswith("POST /v1/records?wait=commit HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{port}\r\n" in first and "content-length: 10\r\n" in first
    assert received[0].endswith(b"\x81\xa7records\x90")
    assert received[3].startswith(b"GET /v1/status HTTP/1.1\r\n") and b"content-length: 0" in received[3]


@pytest.mark.parametrize("answer, words", [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "closed before the response ended"),
    (b"this is not HTTP\r\n\r\n", "unparsable response"),
    (None, "closed before the response ended"),
])
def test_fails_loudly_on_what_is_not_a_whole_response(free_base_port, answer, words):
    port = free_base_port(1)

    async def main():
        server = await serve(port, [answer], [])  # the script ends: the server closes after answering
        conn = LeanConnection(f"http://127.0.0.1:{port}", timeout=10)
        try:
            with pytest.raises(LeanHTTPError, match=words):
                await conn.request("POST", "/v1/records", b"x")
        finally:
            conn.close()
            server.close()

    run(main())


def test_signs_reads_and_not_writes(free_base_port):
    port = free_base_port(1)
    signer = Signer.from_seed(b"\x05" * 32)

    async def main():
        received: list[bytes] = []
        server = await serve(port, [OK_LENGTH, OK_LENGTH], received)
        conn = LeanConnection(f"http://127.0.0.1:{port}", signer=signer)
        try:
            await conn.request("GET", "/v1/blocks/3?x=1")
            await conn.request("POST", "/v1/records", b"r")
        finally:
            conn.close()
            server.close()
        return received

    get, post = run(main())
    headers = {}
    for line in get.decode("latin-1").split("\r\n")[1:]:
        if line:
            k, _, v = line.partition(": ")
            headers[k.lower()] = v
    assert b"signature" not in post.lower()
    read = verify(headers.get("signature-input"), headers.get("signature"), method="GET",
                  authority=f"127.0.0.1:{port}", path="/v1/blocks/3", query="?x=1", now=int(time.time()))
    assert read is not None and read.public_key == signer.public_key
