"""How records a validator admits from its clients reach the validator that can propose them.

Only the primary needs a record to propose it, and every other validator receives it inside the
PRE-PREPARE, so a record goes to the primary alone: one request per batch instead of one per
validator. Each record is then watched until it is committed: re-forwarded to the new primary on
every view change (a view change abandons proposals, and a node that rejoins the others' view must
not sit on its clients' records: docs/consensus.md, view synchronisation); shared with every
validator when it is in no proposal ``SHARE_ALL_MS`` after it was sent (PBFT's client retransmission
to all replicas: every backup then holds it as pending and runs its view-change timer, so a silent
or censoring primary is replaced, and a new primary has it to propose), at most ``SHARE_ALL_TIMES``
times. Being in a proposal, not being committed, is what stops the sharing: under a backlog,
records wait for commits, and sharing those would only double the work of a busy network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rantai.client.format.encoding import encode

from .mempool import Mempool
from .transport import PeerTransport

__all__ = ["GOSSIP_CHUNK_BYTES", "PEER_RECORDS", "SHARE_ALL_MS", "SHARE_ALL_TIMES", "Forwarder"]

PEER_RECORDS = "/v1/peer/records"
GOSSIP_CHUNK_BYTES = 4 * 1024 * 1024
SHARE_ALL_MS = 3000  # a forwarded record in no proposal by then goes to every validator
SHARE_ALL_TIMES = 3  # ... at most this many times


class Forwarder:
    """The forwarding policy of one validator; ``flush`` runs once per driver step."""

    def __init__(self, me: str, mempool: Mempool, transport: PeerTransport, count: Callable[[str], None]) -> None:
        self.me = me
        self.mempool = mempool
        self.transport = transport
        self.count = count
        self.fresh: list[tuple[bytes, bytes]] = []  # (id, raw) admitted from clients since the last flush
        # record id -> (forwarded or last shared at ms, raw, times shared with all), until committed
        self.watched: dict[bytes, tuple[int, bytes, int]] = {}
        self.forwarded_view = -1
        self.next_check = 0

    def admitted(self, record_id: bytes, raw: bytes) -> None:
        self.fresh.append((record_id, raw))

    def flush(self, now: int, view: int, primary: str) -> None:
        if view != self.forwarded_view:
            # A new view, a new primary: what is watched and in no proposal goes to it now.
            self.forwarded_view = view
            again = [raw for rid, (_, raw, _) in self.watched.items() if self.mempool.is_ready(rid)]
            if again and primary != self.me:
                self.count("records-reforwarded")
                self.send(again, primary)
        if self.fresh:
            if primary != self.me:
                self.send([raw for _, raw in self.fresh], primary)
            # Watched even when this node is the primary of its view: a node stuck alone in a view
            # change would otherwise hold its clients' records where no working primary sees them.
            for rid, raw in self.fresh:
                self.watched[rid] = (now, raw, 0)
            self.fresh = []
        if self.watched and now >= self.next_check:
            self.next_check = now + SHARE_ALL_MS // 4
            late: list[bytes] = []
            for rid, (t, raw, shared) in list(self.watched.items()):
                if rid not in self.mempool:  # committed (or dropped): done
                    del self.watched[rid]
                elif not self.mempool.is_ready(rid):  # in a proposal: the primary has it; the clock restarts
                    self.watched[rid] = (now, raw, shared)
                elif now - t >= SHARE_ALL_MS and shared < SHARE_ALL_TIMES:
                    late.append(raw)
                    self.watched[rid] = (now, raw, shared + 1)
            if late:
                self.count("records-shared-with-all")
                self.send(late, None)

    def send(self, raws: Sequence[bytes], to: str | None) -> None:
        """POST records to one validator (``to``) or all, in chunks of at most GOSSIP_CHUNK_BYTES."""
        batch: list[bytes] = []
        size = 0
        for raw in [*raws, None]:
            if raw is None or (size + len(raw) > GOSSIP_CHUNK_BYTES and batch):
                if batch:
                    body = encode({"records": batch})
                    if to is None:
                        self.transport.broadcast(PEER_RECORDS, body)
                    else:
                        self.transport.send(to, PEER_RECORDS, body)
                batch, size = [], 0
            if raw is not None:
                batch.append(raw)
                size += len(raw)
