"""Reconfiguration: a sequence of *epochs*, each a ``Replica`` over one fixed validator set.

An epoch ``k`` governs the heights ``[start_k, start_{k+1})``. The application learns a change when
it commits the block ``H`` that approves it and calls ``schedule(start, validators)`` with
``start = H + window + 1`` (``client/format/governance.py``); from then on the current epoch's
replica never proposes, accepts, prepares or commit-votes a height ``>= start`` (``Replica.set_end``).
Once the node has committed ``start - 1`` (by ``Commit`` or by state transfer) the next epoch's
replica starts from there with the new set: n, f, quorums and the primary rotation change at
``start`` and nowhere else.

Epochs are kept apart without touching any signed bytes:

* **Heights.** Ordering messages (PRE-PREPARE, PREPARE, COMMIT) name a height, and each height
  belongs to exactly one epoch.
* **Views.** Epoch ``k`` uses the views ``[k << 32, (k + 1) << 32)`` (``first_view``). A message whose
  view lies outside the current epoch's range is dropped, so a VIEW-CHANGE, NEW-VIEW or vote signed
  in one epoch can never be replayed as a statement about another (a validator present in both
  signs with the same key, and the signed bytes carry no epoch).
* **Base.** Epoch ``k`` starts with the unsigned stable checkpoint ``(start_k - 1, digest)``, the
  block every member committed before entering it; VIEW-CHANGEs may carry that base and nothing
  lower (``Replica(base=...)``).
* **Persisted entries.** Epoch 0 uses the replica's keys unchanged; epoch ``k >= 1`` prefixes them
  with ``b"e/" + u64(k)``. Entries of finished epochs are deleted once the next epoch starts.
* **Membership.** Messages from a sender outside the current epoch's set are dropped.

A node that holds no key of the current epoch either **observes** (a later known epoch includes
one of its keys, or it never was a validator: it follows the chain by state transfer, vouched for by
f+1 members of the epoch it is in) or is **retired** (it was a member, is not any more, and no known
later epoch includes it): ``status()["retired"]`` is then true and it sends nothing.

Safety argument: docs/consensus.md, "Reconfiguration".
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .certificate import max_faulty, primary_index
from .config import ReplicaConfig
from .crypto import Signer, Verifier
from .effects import Commit, Effect, FetchState, Persist, Proposal, Slot
from .messages import Checkpoint, CommitVote, NewView, PrePrepare, Prepare, ViewChange
from .replica import Replica

__all__ = ["EPOCH_VIEW_BITS", "Consensus", "Epoch", "epoch_key", "first_view"]

EPOCH_VIEW_BITS = 32  # epoch k owns the views [k << 32, (k + 1) << 32)
_Q = struct.Struct(">Q")
_PREFIX = b"e/"

Validators = tuple[tuple[str, bytes], ...]


def first_view(epoch: int) -> int:
    return epoch << EPOCH_VIEW_BITS


def epoch_key(epoch: int, key: bytes) -> bytes:
    """The persisted key of a replica key in ``epoch``: unchanged in epoch 0, else ``e/ ‖ u64(epoch) ‖ key``."""
    return key if epoch == 0 else _PREFIX + _Q.pack(epoch) + key


def _split_key(key: bytes) -> tuple[int, bytes]:
    if key.startswith(_PREFIX) and len(key) >= len(_PREFIX) + 8:
        (epoch,) = _Q.unpack(key[2:10])
        return epoch, key[10:]
    return 0, key


@dataclass(frozen=True)
class Epoch:
    """Epoch ``number`` governs heights from ``start``; ``validators`` in the order the primary rotates."""

    number: int
    start: int
    validators: Validators

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(v for v, _ in self.validators)


class Consensus:
    """The ``Replica`` API over a schedule of validator sets (see the module docstring).

    Args:
        config: the genesis validator set and every bound (used by all epochs; only the set changes).
        keys: this node's signing keys: one ``Signer`` or several (a validator whose key is re-keyed
            holds the old and the new key across the change). Each epoch signs with the one it lists.
        persisted: every entry written by earlier ``Persist`` effects, as for ``Replica``.
        committed: ``(height, digest)`` of the node's last stored block.
        schedule: on restart, every change on the node's chain: ``(start, validators)`` in start order
            (what ``schedule`` was called with).
        boundaries: ``{start - 1: digest}`` for each scheduled start the node's chain has reached
            (the digest of the block before the start). Needed for the epoch the node is in.
        verifier: builds a ``Verifier`` from a public key (default ``Verifier``; the simulator caches).
    """

    def __init__(
        self,
        config: ReplicaConfig,
        keys: Signer | Sequence[Signer],
        persisted: Mapping[bytes, bytes],
        committed: tuple[int, bytes],
        *,
        schedule: Sequence[tuple[int, Validators]] = (),
        boundaries: Mapping[int, bytes] | None = None,
        verifier: Callable[[bytes], Verifier] = Verifier,
    ) -> None:
        self.cfg = config
        self.chain = config.chain
        self.keys: dict[str, Signer] = {k.id: k for k in ([keys] if isinstance(keys, Signer) else keys)}
        if not self.keys:
            raise ValueError("at least one signing key is needed")
        self.make_verifier = verifier
        self.epochs: list[Epoch] = [Epoch(0, 1, config.validators)]
        self.committed_h, self.committed_d = committed
        self.boundary: dict[int, bytes] = {0: config.chain, **(boundaries or {})}
        self.boundary[self.committed_h] = self.committed_d
        self.replica: Replica | None = None
        self.epoch = -1  # the epoch whose replica runs (or that we observe)
        self.stored: dict[int, dict[bytes, bytes]] = {}  # epoch -> its persisted entries (unprefixed keys)
        for key, value in persisted.items():
            e, k = _split_key(key)
            self.stored.setdefault(e, {})[k] = value
        self.deletes: list[bytes] = []  # persisted keys of finished epochs, deleted with the next effects
        self.obs_high: dict[str, int] = {}
        self.obs_fetch_until = -1
        self.counters: dict[str, int] = {}
        self._verifier_cache: dict[int, dict[str, Verifier]] = {}
        self._retired: bool | None = None  # cached; recomputed when the epoch or the schedule changes
        self._seen_h = -1  # stuck probe: the tip at the last tick it moved, and when
        self._seen_ms = 0
        self._probe_until = -1
        for start, validators in schedule:
            self._add_epoch(start, validators, restoring=True)
        self._advance([])

    # ------------------------------------------------------------------------------ schedule

    def schedule(self, start: int, validators: Validators) -> None:
        """A validator-set change approved in the block just committed: ``validators`` govern heights
        from ``start`` (= approving height + window + 1). Call it once per approved change, in chain
        order, right after storing the approving block and before any other call (also for blocks
        stored by state transfer). Two changes approved in one block: call twice with the same start;
        the later set replaces the earlier."""
        self._add_epoch(start, tuple(validators), restoring=False)

    def _add_epoch(self, start: int, validators: Validators, restoring: bool) -> None:
        self._retired = None
        last = self.epochs[-1]
        validators = tuple((v, pk) for v, pk in validators)
        dataclasses.replace(self.cfg, validators=validators)  # validates the set (ids match keys, distinct)
        if start == last.start and last.number > 0:
            if not restoring and last.number <= self.epoch:
                raise ValueError(f"epoch starting at {start} has already started")
            self.epochs[-1] = Epoch(last.number, start, validators)
            self._verifier_cache.pop(last.number, None)
            return
        if start <= last.start:
            raise ValueError(f"changes must be scheduled in height order: {start} after {last.start}")
        self.epochs.append(Epoch(len(self.epochs), start, validators))
        if not restoring:
            try:
                self._check_not_started(self._first_height(len(self.epochs) - 1))
            except ValueError:
                self.epochs.pop()
                raise
        r = self.replica
        if r is not None and self.epoch == len(self.epochs) - 2:
            r.set_end(self._first_height(len(self.epochs) - 1))

    def _check_not_started(self, start: int) -> None:
        """Safety of the barrier: the running replica holds nothing at or above ``start``."""
        if start <= self.committed_h:
            raise ValueError(f"change from height {start} scheduled after committing {self.committed_h}")
        r = self.replica
        if r is None:
            return
        bad = [h for h, H in r.log.items() if h >= start and (H.pp or H.my_prepare or H.my_commit)]
        bad += [h for (_k, h, _v) in r.votes if h >= start]
        if bad:
            raise ValueError(f"change from height {start} scheduled too late: heights {sorted(bad)} in flight")

    def _first_height(self, epoch: int) -> int:
        """The first height governed by ``epoch`` (its set's quorums and primaries apply from here)."""
        return self.epochs[epoch].start

    def _verifiers(self, epoch: int) -> dict[str, Verifier]:
        """The verifiers of ``epoch``'s members: whose votes count there, and no one else's."""
        got = self._verifier_cache.get(epoch)
        if got is None:
            got = self._verifier_cache[epoch] = {v: self.make_verifier(pk) for v, pk in self.epochs[epoch].validators}
        return got

    def epoch_of(self, height: int) -> int:
        k = len(self.epochs) - 1
        while k > 0 and self._first_height(k) > height:
            k -= 1
        return k

    # ------------------------------------------------------------------------------ epoch switching

    def _my_key(self, epoch: int) -> Signer | None:
        mine = [self.keys[v] for v in self.epochs[epoch].ids if v in self.keys]
        if len(mine) > 1:
            raise ValueError(f"epoch {epoch} lists several keys of this node")
        return mine[0] if mine else None

    def _advance(self, out: list[Effect]) -> None:
        """Enter the epoch holding height committed + 1 if it is not the one running."""
        k = self.epoch_of(self.committed_h + 1)
        if k == self.epoch:
            return
        if self.replica is not None:
            self.counters["epochs-finished"] = self.counters.get("epochs-finished", 0) + 1
        for e in range(k):  # finished epochs: their votes are never needed again
            for key in sorted(self.stored.pop(e, {})):
                self.deletes.append(epoch_key(e, key))
        self.epoch = k
        self._retired = None
        self.replica = None
        self.obs_high.clear()
        self.obs_fetch_until = -1
        signer = self._my_key(k)
        if signer is None:
            return
        base_h = self._first_height(k) - 1
        base_d = self.boundary.get(base_h)
        if base_d is None:
            raise ValueError(f"the digest of block {base_h} (the base of epoch {k}) is unknown: call "
                             "state_transferred at each epoch boundary, or pass boundaries= on restart")
        cfg = dataclasses.replace(self.cfg, validators=self.epochs[k].validators)
        self.replica = Replica(cfg, signer, dict(self.stored.get(k, {})), (self.committed_h, self.committed_d),
                               verifiers=self._verifiers(k), base=(base_h, base_d), first_view=first_view(k))
        if k + 1 < len(self.epochs):
            self.replica.set_end(self._first_height(k + 1))
        self._flush(out)

    def _flush(self, out: list[Effect]) -> None:
        if self.deletes:
            out.append(Persist(tuple((key, None) for key in self.deletes)))
            self.deletes = []

    def _wrap(self, effects: list[Effect], out: list[Effect]) -> None:
        """Pass the running replica's effects on: persisted keys get the epoch prefix; commits move our tip."""
        k = self.epoch
        for e in effects:
            if type(e) is Persist:
                mine = self.stored.setdefault(k, {})
                for key, value in e.entries:
                    if value is None:
                        mine.pop(key, None)
                    else:
                        mine[key] = value
                if k:
                    e = Persist(tuple((epoch_key(k, key), value) for key, value in e.entries))
            elif type(e) is Commit:
                self._tip(e.proposal.height, e.proposal.digest)
            out.append(e)

    def _tip(self, height: int, digest: bytes) -> None:
        self.committed_h, self.committed_d = height, digest
        if any(self._first_height(e.number) == height + 1 for e in self.epochs):
            self.boundary[height] = digest

    def _in_range(self, view: int) -> bool:
        return first_view(self.epoch) <= view < first_view(self.epoch + 1)

    # ------------------------------------------------------------------------------ the Replica API

    def handle(self, message: Any, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        self._flush(out)
        sender = getattr(message, "sender", None)
        members = self._verifiers(self.epoch)
        if sender not in members or sender in self.keys:
            self._drop("not-a-member")
            return out
        r = self.replica
        if r is None:
            if not self.retired:
                self._observe(message)
            return out
        t = type(message)
        if t is PrePrepare or t is Prepare or t is CommitVote or t is ViewChange or t is NewView:
            if not self._in_range(message.view):
                self._drop("other-epoch")
                return out
            if t is ViewChange and any(not self._in_range(p.view) for p in message.prepared):
                self._drop("other-epoch")
                return out
            if t is NewView and any(not self._in_range(p.view) for vc in message.view_changes for p in vc.prepared):
                self._drop("other-epoch")
                return out
            if t is not ViewChange and t is not NewView and message.height < self._first_height(self.epoch):
                self._drop("other-epoch")
                return out
        self._wrap(r.handle(message, now_ms), out)
        self._advance(out)
        return out

    def tick(self, now_ms: int, pending: bool) -> list[Effect]:
        out: list[Effect] = []
        self._flush(out)
        r = self.replica
        if r is not None:
            self._wrap(r.tick(now_ms, pending), out)
            self._advance(out)
        elif not self.retired:
            self._observer_fetch(out, now_ms)
        self._probe(out, now_ms, pending)
        return out

    def _probe(self, out: list[Effect], now_ms: int, pending: bool) -> None:
        """Stuck with work to do (or observing) and no one we trust vouches for a height above ours: a
        laggard whose epoch's members were all replaced since hears no one it may believe. Then ask every
        member of our epoch for what follows our tip, every 2 x ``state_transfer_timeout_ms``. Safe: the
        node verifies every fetched block's certificate against the set in force at its height; once
        it stores the approving blocks it learns the later epochs and their members."""
        if self.committed_h != self._seen_h:
            self._seen_h, self._seen_ms = self.committed_h, now_ms
            return
        r = self.replica
        stuck = r.mode != "normal" or pending if r is not None else not self.retired
        every = 2 * self.cfg.state_transfer_timeout_ms
        if not stuck or now_ms - self._seen_ms < every or now_ms < self._probe_until:
            return
        self._probe_until = now_ms + every
        self.counters["stuck-probes"] = self.counters.get("stuck-probes", 0) + 1
        peers = tuple(v for v, _ in self.epochs[self.epoch].validators if v not in self.keys)
        out.append(FetchState(self.committed_h + 1, self.committed_h + self.cfg.log_max, peers))

    def next_slot(self) -> Slot | None:
        return self.replica.next_slot() if self.replica is not None else None

    def propose(self, proposal: Proposal, now_ms: int) -> list[Effect]:
        if self.replica is None:
            raise ValueError("not a validator of the current epoch")
        out: list[Effect] = []
        self._flush(out)
        self._wrap(self.replica.propose(proposal, now_ms), out)
        self._advance(out)
        return out

    def validated(self, view: int, height: int, digest: bytes, ok: bool, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        self._flush(out)
        if self.replica is not None and self._in_range(view) and height >= self._first_height(self.epoch):
            self._wrap(self.replica.validated(view, height, digest, ok, now_ms), out)
            self._advance(out)
        return out

    def state_transferred(self, height: int, digest: bytes, now_ms: int) -> list[Effect]:
        """As ``Replica.state_transferred``. A transfer that crosses the start ``A`` of a scheduled epoch
        must report ``A - 1`` on its way (the node knows: it calls ``schedule`` while storing)."""
        out: list[Effect] = []
        self._flush(out)
        self.obs_fetch_until = -1
        if height <= self.committed_h:
            if self.replica is not None:
                self._wrap(self.replica.state_transferred(height, digest, now_ms), out)
            return out
        r = self.replica
        nxt = self.epoch + 1
        if r is not None and (nxt >= len(self.epochs) or height < self._first_height(nxt) - 1):
            self._tip(height, digest)
            self._wrap(r.state_transferred(height, digest, now_ms), out)  # may deliver more: Commit moves the tip
        else:
            self._tip(height, digest)
        self._advance(out)
        return out

    def status(self) -> dict[str, Any]:
        k = self.epoch
        end = self._first_height(k + 1) if k + 1 < len(self.epochs) else None
        info: dict[str, Any] = {"epoch": k, "epoch_start": self._first_height(k), "epoch_end": end,
                                "member": self.replica is not None, "retired": self.retired}
        r = self.replica
        if r is not None:
            st = r.status()
            st["epoch_view"] = r.view - first_view(k)
            st["dropped"] = {**st["dropped"], **self.counters}
            return {**st, **info}
        v = first_view(k)
        return {"id": sorted(self.keys)[0], "view": v, "epoch_view": 0, "primary": self.primary(v),
                "mode": "retired" if self.retired else "observer", "committed_height": self.committed_h,
                "committed_digest": self.committed_d.hex(), "stable_checkpoint": 0, "in_flight": [],
                "view_change_attempts": 0, "dropped": dict(self.counters), **info}

    @property
    def mode(self) -> str:
        """The running epoch's replica's mode; ``observing`` or ``retired`` when this node has none."""
        if self.replica is not None:
            return self.replica.mode
        return "retired" if self.retired else "observing"

    @property
    def view(self) -> int:
        return self.replica.view if self.replica is not None else first_view(self.epoch)

    def primary(self, view: int) -> str:
        ids = self.epochs[self.epoch].validators
        return ids[primary_index(view, len(ids))][0]

    @property
    def retired(self) -> bool:
        """Not in the current epoch, a member of an earlier one, and in no later known epoch."""
        if self._retired is None:
            mine = self.keys.keys()
            if self.replica is not None or self._my_key(self.epoch) is not None:
                self._retired = False
            else:
                earlier = any(mine & e.ids for e in self.epochs[: self.epoch])
                later = any(mine & e.ids for e in self.epochs[self.epoch + 1:])
                self._retired = earlier and not later
        return self._retired

    # ------------------------------------------------------------------------------ observers

    def _drop(self, why: str) -> None:
        self.counters[why] = self.counters.get(why, 0) + 1

    def _observe(self, m: Any) -> None:
        """Not a member yet: learn how far the current epoch's members are from their CHECKPOINTs and COMMITs."""
        t = type(m)
        if t is not Checkpoint and t is not CommitVote:
            return
        if m.height <= self.obs_high.get(m.sender, 0):
            return
        if not self._verifiers(self.epoch)[m.sender].verify(m.sig, m.KIND, self.chain, m.body()):
            self._drop("bad-signature")
            return
        self.obs_high[m.sender] = m.height

    def _observer_fetch(self, out: list[Effect], now_ms: int) -> None:
        f = max_faulty(len(self.epochs[self.epoch].validators))
        highs = sorted(self.obs_high.values(), reverse=True)
        target = highs[f] if len(highs) > f else 0  # f+1 members vouch for it
        if target <= self.committed_h or now_ms < self.obs_fetch_until:
            return
        self.obs_fetch_until = now_ms + self.cfg.state_transfer_timeout_ms
        peers = tuple(sorted((s for s, h in self.obs_high.items() if h >= target), key=lambda s: -self.obs_high[s]))
        out.append(FetchState(self.committed_h + 1, target, peers))
