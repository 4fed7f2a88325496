"""A TCP forwarder on 127.0.0.1 with one listening port per directed validator link.

Validator i reaches validator j at ``http://127.0.0.1:<port of link (i, j)>`` (its config's
``[[peers]]`` overrides, written by tests/faults/harness.py); the proxy forwards to j's real port.
Each link has a mode that the test changes while the network runs. What each mode really does:

``pass``
    Bytes are copied both ways as they arrive. At most a few chunks are held per direction, so a
    receiver that stops reading pushes back on the sender as it would without the proxy.
``drop``
    A partition that looks like a black hole, not a refusal: connections are still accepted,
    and bytes in both directions are read and thrown away, so the sender's writes succeed and its
    streams look alive while nothing arrives. Leaving ``drop`` cuts every connection that was open
    during it (a stream that lost bytes mid-frame must not resume), so the sender reconnects.
``delay``
    Every chunk is held ``delay_s`` plus a uniform random ``0..jitter_s`` before it is forwarded.
    Order within a connection is kept (a chunk never overtakes the one before it), as TCP would.
``reset``
    Connection-level loss: each new connection is refused (accepted, then reset with SO_LINGER 0)
    with probability ``loss``, and every established connection is reset at a random moment, with a
    mean lifetime of ``lifetime_s``. Whatever was in flight is lost; the sender reconnects (with
    its backoff) and the replica retransmits what matters. This is also how duplication and
    reordering are modelled: raw TCP bytes are never duplicated or reordered (that would corrupt
    the length-prefixed frames, which TCP itself never does), but a cut stream makes the replica
    send messages again, so the receiver sees repeats and messages out of their original order.

Flapping is a schedule, not a mode: the harness switches links between ``drop`` and ``pass``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["Link", "LinkProxy", "MODES"]

MODES = ("pass", "drop", "delay", "reset")
CHUNK = 64 * 1024
QUEUE_CHUNKS = 4  # chunks held per direction of a connection before the proxy stops reading (backpressure)


@dataclass
class Link:
    src: int
    dst: int
    target_port: int
    port: int = 0
    mode: str = "pass"
    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    lifetime_s: float = 1.0
    conns: set = field(default_factory=set)  # the open _Conn objects
    accepted: int = 0
    refused: int = 0
    resets: int = 0


class _Conn:
    def __init__(self, link: Link, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter,
                 up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter, mode_at_start: str) -> None:
        self.link = link
        self.down_r, self.down_w, self.up_r, self.up_w = down_r, down_w, up_r, up_w
        self.saw_drop = mode_at_start == "drop"
        self.tasks: list[asyncio.Task] = []

    def abort(self) -> None:
        for w in (self.down_w, self.up_w):
            _reset(w)
        for t in self.tasks:
            t.cancel()


def _reset(w: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), the way a crashed host or a middlebox cuts a connection."""
    sock = w.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    w.transport.abort()


class LinkProxy:
    """The forwarder, run on its own event loop in a daemon thread. ``set_mode`` is thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.links: dict[tuple[int, int], Link] = {}
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def _call(self, coro_or_fn, *args):
        if asyncio.iscoroutinefunction(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn(*args), self.loop).result(timeout=30)
        done = threading.Event()
        box: list = []

        def run() -> None:
            try:
                box.append(coro_or_fn(*args))
            finally:
                done.set()
        self.loop.call_soon_threadsafe(run)
        done.wait(30)
        return box[0] if box else None

    # -- setup ---------------------------------------------------------------------------------
    def add_link(self, src: int, dst: int, target_port: int) -> int:
        """Listen for link ``src -> dst`` (forwarding to ``target_port``); return the listening port."""
        link = Link(src, dst, target_port)
        self._call(self._listen, link)
        self.links[(src, dst)] = link
        return link.port

    async def _listen(self, link: Link) -> None:
        server = await asyncio.start_server(lambda r, w: self._accept(link, r, w), "127.0.0.1", 0)
        link.port = server.sockets[0].getsockname()[1]
        self._servers.append(server)

    def close(self) -> None:
        async def shut() -> None:
            for link in self.links.values():
                for c in list(link.conns):
                    c.abort()
            for s in self._servers:
                s.close()
        try:
            self._call(shut)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    # -- modes ---------------------------------------------------------------------------------
    def set_mode(self, links: list[tuple[int, int]] | None, mode: str, *, delay_s: float = 0.0,
                 jitter_s: float = 0.0, loss: float = 0.0, lifetime_s: float = 1.0) -> None:
        """Set ``mode`` on ``links`` (None: every link)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")

        def apply() -> None:
            for key in links if links is not None else list(self.links):
                link = self.links[key]
                old = link.mode
                link.mode, link.delay_s, link.jitter_s = mode, delay_s, jitter_s
                link.loss, link.lifetime_s = loss, lifetime_s
                for c in list(link.conns):
                    if old == "drop" and mode != "drop" or c.saw_drop and mode != "drop":
                        c.abort()  # bytes were thrown away: the stream cannot resume
                        link.resets += 1
                    elif mode == "drop":
                        c.saw_drop = True
                    elif mode == "reset":
                        self._schedule_reset(c)
        self._call(apply)

    def heal(self) -> None:
        self.set_mode(None, "pass")

    def partition(self, *groups: list[int]) -> list[tuple[int, int]]:
        """Drop every link between different groups (both directions); the rest pass. Returns the cut links."""
        side = {n: g for g, members in enumerate(groups) for n in members}
        cut = [k for k in self.links if side.get(k[0], -1) != side.get(k[1], -2)]
        keep = [k for k in self.links if k not in cut]
        if keep:
            self.set_mode(keep, "pass")
        if cut:
            self.set_mode(cut, "drop")
        return cut

    def stats(self) -> dict:
        return {f"{s}->{d}": {"mode": lk.mode, "accepted": lk.accepted, "refused": lk.refused, "resets": lk.resets}
                for (s, d), lk in sorted(self.links.items())}

    # -- forwarding ----------------------------------------------------------------------------
    def _schedule_reset(self, c: _Conn) -> None:
        link = c.link
        after = self.rng.expovariate(1.0 / max(0.01, link.lifetime_s))

        def fire() -> None:
            if c in link.conns and link.mode == "reset":
                link.resets += 1
                link.conns.discard(c)
                c.abort()
        self.loop.call_later(after, fire)

    async def _accept(self, link: Link, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        if link.mode == "reset" and self.rng.random() < link.loss:
            link.refused += 1
            _reset(down_w)
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", link.target_port)
        except OSError:  # the target is down: so is the link (the sender sees a reset, as it would)
            link.refused += 1
            _reset(down_w)
            return
        link.accepted += 1
        c = _Conn(link, down_r, down_w, up_r, up_w, link.mode)
        link.conns.add(c)
        if link.mode == "reset":
            self._schedule_reset(c)
        c.tasks = [asyncio.ensure_future(self._pump(c, down_r, up_w)),
                   asyncio.ensure_future(self._pump(c, up_r, down_w))]
        try:
            await asyncio.gather(*c.tasks, return_exceptions=True)
        finally:
            link.conns.discard(c)
            for w in (down_w, up_w):
                try:
                    w.close()
                except Exception:
                    pass

    async def _pump(self, c: _Conn, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Read from ``r`` and hand each chunk, with the time it is due, to a writer task (so a delay
        holds each chunk for ``delay_s`` without slowing the reads down to one chunk per delay)."""
        link = c.link
        # Bounded, so a receiver that stops reading pushes back on the sender as TCP would (an unbounded
        # queue here would hide it: the sender's writes would never time out and its stream would hang).
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        writer = asyncio.ensure_future(self._write(c, queue, w))
        last_due = 0.0
        try:
            while True:
                data = await r.read(CHUNK)
                if not data:
                    await queue.put((0.0, b""))
                    await writer
                    return
                if link.mode == "drop" or c.saw_drop:
                    c.saw_drop = True
                    continue
                due = 0.0
                if link.mode == "delay":
                    due = max(last_due, self.loop.time() + link.delay_s + self.rng.uniform(0, link.jitter_s))
                    last_due = due
                await queue.put((due, data))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            c.abort()
        finally:
            writer.cancel()

    async def _write(self, c: _Conn, queue: asyncio.Queue, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    if w.can_write_eof():
                        w.write_eof()
                    return
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if c.saw_drop:
                    continue
                if w.transport.is_closing():  # the far end is gone: asyncio would drop the bytes silently,
                    c.abort()  # where the sender's kernel would get a reset; reset the sender
                    return
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            c.abort()
