"""Peer streams (node/transport.py, ``POST /v1/peer/stream``): frames cut correctly however the bytes
arrive, a stream's messages reach the replica, and a bad frame, a non-validator, a wrong lane or a
node shutting down end the stream with the right status — while the node keeps serving."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from rantai.client.format.encoding import encode
from rantai.consensus import wire
from rantai.consensus.messages import Prepare, vote_body
from rantai.node.app import create_app
from rantai.node.driver import Node
from rantai.node.transport import FRAME_HEADER, STREAM_PATH, PeerTransport, frames

from .conftest import make_net

pytestmark = pytest.mark.timeout(60)


async def wait_until(condition, tries: int = 200) -> None:
    """Poll ``condition`` every 10 ms (up to ``tries`` times); the caller asserts what it expects after."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.01)


def framed(*bodies: bytes) -> bytes:
    return b"".join(FRAME_HEADER.pack(len(b)) + b for b in bodies)


def test_frames_survive_any_split():
    rng = random.Random(7)
    bodies = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))) for _ in range(50)]
    stream = framed(*bodies)
    for _ in range(200):
        buffer, out, pos = bytearray(), [], 0
        while pos < len(stream):
            step = rng.randrange(1, 64)
            buffer += stream[pos:pos + step]
            pos += step
            out.extend(frames(buffer, 1024))
        assert out == bodies and not buffer


def test_frame_over_limit_is_refused():
    with pytest.raises(ValueError, match="limit"):
        frames(bytearray(FRAME_HEADER.pack(5000)), 4096)
    buffer = bytearray(FRAME_HEADER.pack(3) + b"ab")
    assert frames(buffer, 10) == [] and bytes(buffer) == FRAME_HEADER.pack(3) + b"ab"  # waits for the rest


def _prepare(net, signer, height=1):
    body = vote_body(0, height, b"\1" * 32)
    return Prepare(0, height, b"\1" * 32, signer.id, signer.sign("prepare", net.genesis.hash, body))


def test_stream_endpoint_delivers_and_refuses(tmp_path):
    net = make_net()

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "v1")
        app = create_app(node, manage_lifecycle=False)
        await node.start()
        delivered = []
        node.deliver = delivered.append  # what reaches the replica
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
                async def stream(lane, body):
                    return await c.post(STREAM_PATH, content=body,
                                        headers={"x-rantai-lane": lane, "x-rantai-sender": net.validators[0].id})

                good = [_prepare(net, net.validators[0], h) for h in (1, 2, 3)]
                r = await stream("messages", framed(*(wire.encode(m) for m in good)))
                assert r.status_code == 200
                assert [m.height for m in delivered] == [1, 2, 3]

                delivered.clear()
                r = await stream("messages", framed(wire.encode(good[0]), b"\x93\x01\x02", wire.encode(good[1])))
                assert r.status_code == 400 and r.json()["error"] == "protocol"
                assert delivered == []  # a chunk with a bad frame is refused whole

                r = await stream("messages", framed(wire.encode(_prepare(net, net.stranger))))
                assert r.status_code == 403 and r.json()["error"] == "not a validator"
                r = await stream("messages", framed(wire.encode(_prepare(net, net.validators[1]))))  # itself
                assert r.status_code == 403

                r = await stream("messages", framed(wire.encode(good[0]))[:-3])
                assert r.status_code == 400 and "inside a frame" in r.json()["message"]
                r = await stream("messages", FRAME_HEADER.pack(64 * 1024 * 1024))
                assert r.status_code == 413
                r = await stream("votes", b"")
                assert r.status_code == 400 and "x-rantai-lane" in r.json()["message"]

                rec = net.record()
                r = await stream("records", framed(encode({"records": [rec.raw]})))
                assert r.status_code == 200 and node.mempool.is_ready(rec.id)
                r = await stream("records", framed(encode({"records": [1]})))
                assert r.status_code == 400 and r.json()["error"] == "encoding"

                assert (await c.get("/healthz")).json() == {"ok": True}
        finally:
            await node.stop()

    asyncio.run(main())


def test_shutdown_ends_open_streams_and_transport_reconnects(tmp_path):
    """A peer's stream stays open between messages; ``begin_shutdown`` ends it (503), and the sender
    opens a new one to whichever node then answers."""
    net = make_net()

    async def main():
        first = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "a")
        second = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "b")
        apps = {"a": create_app(first, manage_lifecycle=False), "b": create_app(second, manage_lifecycle=False)}
        target = {"app": apps["a"]}

        async def route(scope, receive, send):  # the peer's address, served by one node and then another
            await target["app"](scope, receive, send)

        got: dict[str, list] = {"a": [], "b": []}
        await first.start()
        await second.start()
        first.deliver = got["a"].append
        second.deliver = got["b"].append
        tr = PeerTransport({net.validators[1].id: "http://peer"}, sender=net.validators[0].id,
                           transport=httpx.ASGITransport(app=route), backoff_s=(0.01, 0.05))
        tr.start()
        try:
            tr.send(net.validators[1].id, "/v1/peer/messages", wire.encode(_prepare(net, net.validators[0], 1)))
            await wait_until(lambda: got["a"])
            assert [m.height for m in got["a"]] == [1]
            lane = tr.lanes["messages"][net.validators[1].id]
            assert lane.task is not None and not lane.task.done()  # the stream stays open, idle

            target["app"] = apps["b"]
            first.begin_shutdown()  # the open stream ends with 503; the next one reaches "b"
            await wait_until(lambda: "503" in lane.last_error)
            assert "503" in lane.last_error
            tr.send(net.validators[1].id, "/v1/peer/messages", wire.encode(_prepare(net, net.validators[0], 2)))
            await wait_until(lambda: got["b"], 300)
            assert [m.height for m in got["b"]] == [2]
            assert tr.status()[0]["sent"] == 2
        finally:
            await tr.close()
            await first.stop()
            await second.stop()

    asyncio.run(main())
