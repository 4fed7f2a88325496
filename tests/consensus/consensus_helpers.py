"""A hand-driven cluster for unit tests: replicas, keys, and a switchboard that delivers effects."""

from __future__ import annotations

import hashlib
from typing import Any

from rantai.consensus import (
    Broadcast,
    Commit,
    FetchState,
    Persist,
    Proposal,
    Replica,
    ReplicaConfig,
    Send,
    Signer,
    Validate,
)
from rantai.consensus.crypto import sha256

CHAIN = sha256(b"unit-test-chain")


def signers(n: int) -> list[Signer]:
    return [Signer.from_seed(hashlib.sha256(b"unit-key-%d" % i).digest()) for i in range(n)]


def config(n: int = 4, **kw: Any) -> tuple[ReplicaConfig, list[Signer]]:
    ss = signers(n)
    return ReplicaConfig(CHAIN, tuple((s.id, s.public_key) for s in ss), **kw), ss


def block(height: int, parent: bytes, tag: bytes = b"") -> Proposal:
    payload = b"block|%d|" % height + parent + tag
    return Proposal(height, parent, sha256(payload), payload)


def of(effects: list[Any], kind: type) -> list[Any]:
    return [e for e in effects if type(e) is kind]


def msgs(effects: list[Any], kind: type) -> list[Any]:
    return [e.message for e in effects if type(e) in (Broadcast, Send) and type(e.message) is kind]


class Cluster:
    """n replicas; ``pump`` delivers every queued Broadcast/Send and answers Validate with ok=True."""

    def __init__(self, n: int = 4, **kw: Any) -> None:
        self.cfg, self.signers = config(n, **kw)
        self.persisted: list[dict[bytes, bytes]] = [{} for _ in range(n)]
        self.replicas = [Replica(self.cfg, s, {}, (0, CHAIN)) for s in self.signers]
        self.commits: list[list[Commit]] = [[] for _ in range(n)]
        self.fetches: list[list[FetchState]] = [[] for _ in range(n)]
        self.queue: list[tuple[int, Any]] = []  # (destination index, message)
        self.down: set[int] = set()
        self.now = 0
        self.valid = True

    def index(self, rid: str) -> int:
        return [s.id for s in self.signers].index(rid)

    def apply(self, i: int, effects: list[Any]) -> None:
        for e in effects:
            if type(e) is Persist:
                for k, v in e.entries:
                    if v is None:
                        self.persisted[i].pop(k, None)
                    else:
                        self.persisted[i][k] = v
            elif type(e) is Broadcast:
                self.queue.extend((j, e.message) for j in range(len(self.replicas)) if j != i)
            elif type(e) is Send:
                self.queue.append((self.index(e.to), e.message))
            elif type(e) is Commit:
                self.commits[i].append(e)
            elif type(e) is FetchState:
                self.fetches[i].append(e)
            elif type(e) is Validate:
                r = self.replicas[i]
                self.apply(i, r.validated(e.view, e.height, e.proposal.digest, self.valid, self.now))

    def pump(self, limit: int = 100000) -> None:
        while self.queue and limit:
            limit -= 1
            j, m = self.queue.pop(0)
            if j in self.down:
                continue
            self.apply(j, self.replicas[j].handle(m, self.now))

    def tick(self, ms: int, pending: bool = False) -> None:
        self.now += ms
        for i, r in enumerate(self.replicas):
            if i not in self.down:
                self.apply(i, r.tick(self.now, pending))

    def propose(self, tag: bytes = b"") -> Proposal | None:
        for i, r in enumerate(self.replicas):
            if i in self.down:
                continue
            slot = r.next_slot()
            if slot is not None:
                p = block(slot.height, slot.parent, tag)
                self.apply(i, r.propose(p, self.now))
                return p
        return None

    def restart(self, i: int) -> None:
        c = self.commits[i]
        committed = (c[-1].proposal.height, c[-1].proposal.digest) if c else (0, CHAIN)
        self.replicas[i] = Replica(self.cfg, self.signers[i], dict(self.persisted[i]), committed)
        self.down.discard(i)
