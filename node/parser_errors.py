"""The HTTP parser's own refusals (a request line with non-ASCII bytes, an unknown method, a malformed
header) in the error shape docs/api.md promises for every answer, instead of uvicorn's plain text.

uvicorn answers these itself, before any ASGI app sees a request, so no exception handler of the app can
shape them: the protocol class is the one place they pass through.
"""

from __future__ import annotations

import json
from typing import Any


def parser_error_body(msg: str) -> bytes:
    """The whole HTTP/1.1 answer to a request the parser could not read (the connection is then closed)."""
    body = json.dumps({"error": "bad request", "message": f"HTTP request not readable: {msg}"},
                      separators=(",", ":")).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


def shaped_protocol(base: type) -> type:
    """uvicorn's HTTP protocol class ``base`` whose parser refusals have the API's error shape."""

    class Protocol(base):
        def send_400_response(self, msg: str) -> None:
            transport: Any = self.transport
            transport.write(parser_error_body(msg))
            transport.close()

    return Protocol
