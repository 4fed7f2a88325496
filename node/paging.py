"""Page tokens pinned to a height: how every paged answer of a node (``/epcis/events``, item history)
continues where it stopped, as of one chain, on any up-to-date validator.

A token is ``(max_height, next height, next index, fingerprint)``: the first page's head, the location
of the next match, and 8 bytes that bind it to the request's parameters. Nothing in it is secret or
node-specific, so another validator at or past ``max_height`` continues the same answer (fail-over
between pages), and the same question asked of any up-to-date node pages identically.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

__all__ = ["PageTokenError", "PinnedPages", "encode_token", "decode_token"]

_TOKEN = struct.Struct(">QQI8s")


class PageTokenError(Exception):
    """A token (or pinned height) this node cannot answer: 400 = not of this chain or query, 503 = behind."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


def encode_token(max_height: int, resume: tuple[int, int], fingerprint: bytes) -> str:
    return base64.urlsafe_b64encode(_TOKEN.pack(max_height, resume[0], resume[1], fingerprint)).decode().rstrip("=")


def decode_token(token: str, fingerprint: bytes, name: str = "nextPageToken") -> tuple[int, tuple[int, int]]:
    """(max_height, resume location) of a token issued for ``fingerprint``; ``PageTokenError`` (400) otherwise.
    What the location means beyond that (a loc at or below the height, or an offset) is the caller's."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        max_height, h, i, tfp = _TOKEN.unpack(raw)
    except (ValueError, struct.error):
        raise PageTokenError(400, f"{name}: not a token of this repository") from None
    if tfp != fingerprint:
        raise PageTokenError(400, f"{name}: issued for other query parameters")
    return max_height, (h, i)


class PinnedPages:
    """Where a paged answer starts on this node: from a token, from a height the caller pins, or from the head."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._peer_height = 0
        self._asked_at = float("-inf")

    async def highest_peer_height(self) -> int:
        """The highest head the other validators report, asked at most once a second (forged page
        tokens must not make this node query its peers once per request)."""
        now = time.monotonic()
        if now - self._asked_at >= 1.0:
            self._asked_at = now
            heights = [h for h in (await self.node.peer_heights()).values() if h is not None]
            self._peer_height = max(heights, default=0)
        return self._peer_height

    async def check(self, max_height: int, name: str) -> None:
        """Refuse a pin this node cannot answer for: above every validator (400: not of this chain; retrying
        cannot help, unlike a pin from a node that is ahead of this one) or above this node's head (503)."""
        height = self.node.storage.height
        if max_height > height and max_height > await self.highest_peer_height():
            raise PageTokenError(400, f"{name}: pins height {max_height}, above every validator's head; "
                                      "not a token of this chain")
        if max_height > height:
            raise PageTokenError(503, f"this node is at height {height}, the query is as of {max_height}; "
                                      "retry, or ask another node", height=height)

    async def start(self, token: str | None, fingerprint: bytes, name: str = "nextPageToken",
                    pin: int | None = None) -> tuple[int, tuple[int, int]]:
        """(max_height, first location) of the page asked for: the token's, else ``pin`` (a height the
        client chose, e.g. to ask several nodes the same question), else this node's head."""
        if token:
            max_height, start = decode_token(token, fingerprint, name)
            if start[0] > max_height:  # the next location lies at or below the pinned height
                raise PageTokenError(400, f"{name}: not a token of this repository")
            await self.check(max_height, name)
            return max_height, start
        if pin is not None:
            await self.check(pin, "height")
            return pin, (0, 0)
        return self.node.storage.height, (0, 0)
