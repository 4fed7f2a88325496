"""A peer stream outlives whatever its HTTP client raises (node/transport.py): a lane whose request
fails with an error that is not an ``httpx.HTTPError`` (seen: httpcore's AttributeError on a connection
reset just after it was accepted, through the fault suite's proxy) or that never starts its body is
reopened, and the messages queued meanwhile reach the peer. Before, the AttributeError ended the lane's
task silently and the peer was never written to again (the SIGTERM-restart stall of tests/faults)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rantai.node import transport as transport_module
from rantai.node.transport import PeerTransport, frames

pytestmark = pytest.mark.timeout(60)


class Flaky(httpx.AsyncBaseTransport):
    """Fails the first ``fail`` requests in the given way, then reads stream bodies into ``received``."""

    def __init__(self, fail: int, how: str) -> None:
        self.fail, self.how = fail, how
        self.calls = 0
        self.received: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.fail:
            if self.how == "attribute-error":  # httpcore's getpeername on a reset connection
                raise AttributeError("'NoneType' object has no attribute 'getpeername'")
            await asyncio.sleep(3600)  # "hang": a request that never takes its body
        buffer = bytearray()
        async for chunk in request.stream:
            buffer += chunk
            self.received.extend(frames(buffer, 1 << 20))
        return httpx.Response(200)


@pytest.mark.parametrize("how", ["attribute-error", "hang"])
def test_a_lane_survives_its_client_failing_and_delivers_what_was_queued(monkeypatch, how):
    monkeypatch.setattr(transport_module, "STALL_TIMEOUT_S", 0.4)
    flaky = Flaky(2, how)

    async def main() -> None:
        t = PeerTransport({"p": "http://peer"}, sender="me", transport=flaky, backoff_s=(0.01, 0.05))
        t.start()
        try:
            t.send("p", "/v1/peer/messages", b"one")
            for _ in range(500):
                if flaky.received:
                    break
                await asyncio.sleep(0.01)
            t.send("p", "/v1/peer/messages", b"two")
            for _ in range(200):
                if len(flaky.received) >= 2:
                    break
                await asyncio.sleep(0.01)
            lane = t.status()[0]["lanes"]["messages"]
            assert flaky.received == [b"one", b"two"], (flaky.calls, lane)
            assert lane["failures"] == 2 and lane["phase"] == "streaming", lane
        finally:
            await t.close()

    asyncio.run(main())
