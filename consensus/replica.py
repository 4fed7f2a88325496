"""The PBFT replica: a pure state machine. Messages and ticks in, effects out.

Rule 1: every piece of protocol state lives in ``Replica`` (and its per-height ``_Height`` records);
nothing here reads a clock, a socket, a disk or a random source. ``now_ms`` is whatever the driver
says it is.
Rule 2: a vote is persisted before it leaves: every PREPARE / COMMIT / PRE-PREPARE / VIEW-CHANGE /
NEW-VIEW this replica signs is preceded, in the same effect list, by a ``Persist`` that records it,
so a replica rebuilt from ``persisted`` never signs two digests for one (view, height).

Safety rules beyond Castro-Liskov (blocks chain by hash, heights are pipelined):
  * PRE-PREPARE(v, h) is accepted only if its parent is the digest accepted at (v, h-1), or the
    committed / stable digest at h-1.
  * COMMIT(v, h) is sent only after COMMIT(v, h-1) for its parent (or once h-1 is committed), so a
    commit quorum at h implies f+1 honest replicas prepared every uncommitted height below it in v.
  * NEW-VIEW re-proposes the contiguous, parent-linked prefix of the highest-view prepared
    certificates above the highest stable checkpoint of its 2f+1 VIEW-CHANGEs; nothing else.
See docs/consensus.md for the full argument.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import msgpack

from . import wire
from .certificate import CommitCertificate, max_faulty, primary_index, quorum_size
from .config import ReplicaConfig
from .crypto import Signer, Verifier
from .effects import (
    Broadcast,
    Commit,
    Effect,
    FetchState,
    Persist,
    Proposal,
    Send,
    Slot,
    Validate,
)
from .errors import InvariantBroken
from .messages import (
    Checkpoint,
    CheckpointCert,
    CommitVote,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    ViewChange,
    checkpoint_body,
    preprepare_body,
    vote_body,
)

__all__ = ["Replica", "compute_reproposals"]

NORMAL = "normal"
VIEW_CHANGE = "view-change"
_HV = struct.Struct(">QQ")
_H = struct.Struct(">Q")
_MAX_VOTES_PER_SENDER = 4  # votes kept per (sender, view) at one height: bounds a double-voter's flood
_COMMIT_VIEWS_KEPT = 4  # COMMITs are kept for views [view - this, view + 1]; older ones are pruned


class _Height:
    """Everything known about one height inside the watermarks."""

    __slots__ = ("pp", "pp_wait", "proposals", "validated", "prepares", "commits", "per_sender",
                 "prepared", "my_prepare", "my_commit", "asked")

    def __init__(self) -> None:
        self.pp: dict[int, PrePrepare] = {}  # view -> the one accepted PRE-PREPARE
        self.pp_wait: dict[int, PrePrepare] = {}  # view -> verified, waiting for its parent
        self.proposals: dict[bytes, Proposal] = {}
        self.validated: dict[bytes, bool] = {}
        self.prepares: dict[tuple[int, bytes], dict[str, bytes]] = {}
        self.commits: dict[tuple[int, bytes], dict[str, bytes]] = {}
        self.per_sender: dict[tuple[str, int], int] = {}
        self.prepared: PreparedCert | None = None  # highest-view prepared certificate
        self.my_prepare: Prepare | None = None
        self.my_commit: CommitVote | None = None
        self.asked: set[tuple[int, bytes]] = set()  # (view, digest) a Validate was emitted for


def compute_reproposals(
    view_changes: tuple[ViewChange, ...],
) -> tuple[CheckpointCert, list[PreparedCert]]:
    """The NEW-VIEW rule (pure): the highest stable checkpoint among ``view_changes`` and, above it,
    the contiguous parent-linked prefix of the highest-view prepared certificate per height."""
    stable = max((vc.stable for vc in view_changes), key=lambda c: (c.height, c.digest))
    chosen: dict[int, PreparedCert] = {}
    for vc in view_changes:
        for p in vc.prepared:
            if p.height <= stable.height:
                continue
            best = chosen.get(p.height)
            if best is None or (p.view, p.digest) > (best.view, best.digest):
                chosen[p.height] = p
    out: list[PreparedCert] = []
    h, parent = stable.height + 1, stable.digest
    while (nxt := chosen.get(h)) is not None and nxt.parent == parent:
        out.append(nxt)
        parent, h = nxt.digest, h + 1
    return stable, out


class Replica:
    """One validator's PBFT state machine. See the module docstring and docs/consensus.md.

    Args:
        config: the validator set and bounds.
        signer: this validator's key; ``signer.id`` must be in ``config.validators``.
        persisted: every entry written by earlier ``Persist`` effects (empty on first start).
        committed: ``(height, digest)`` of the node's last stored block, ``(0, chain)`` when empty.
        verifiers: optional ``{id: Verifier}`` to share (e.g. a caching verifier in the simulator).
        base: ``(height, digest)`` this validator set starts after (reconfiguration, ``epochs``): the
            stable checkpoint before any is proven, accepted unsigned in VIEW-CHANGEs. ``(0, chain)``.
        first_view: the view to start in when ``persisted`` holds none (an epoch's first view).
    """

    def __init__(
        self,
        config: ReplicaConfig,
        signer: Signer,
        persisted: Mapping[bytes, bytes],
        committed: tuple[int, bytes],
        *,
        verifiers: Mapping[str, Verifier] | None = None,
        base: tuple[int, bytes] | None = None,
        first_view: int = 0,
    ) -> None:
        self.cfg = config
        self.chain = config.chain
        self.signer = signer
        self.me = signer.id
        self.ids = tuple(v for v, _ in config.validators)
        if self.me not in self.ids:
            raise ValueError(f"{self.me} is not a validator of this chain")
        self.n = len(self.ids)
        self.f = max_faulty(self.n)
        self.q = quorum_size(self.n)
        self.verifiers: Mapping[str, Verifier] = verifiers or {v: Verifier(pk) for v, pk in config.validators}
        self.base: tuple[int, bytes] = base if base is not None else (0, config.chain)
        self.end_height: int | None = None  # epochs: never accept or propose heights >= this (set_end)
        self.view = first_view
        self.mode = NORMAL
        self.committed_h, self.committed_d = committed
        self.committed_digests: dict[int, bytes] = {self.committed_h: self.committed_d}
        self.stable = CheckpointCert(self.base[0], self.base[1], ())
        self.log: dict[int, _Height] = {}
        self.checkpoints: dict[int, dict[bytes, dict[str, bytes]]] = {}
        self.my_checkpoint: Checkpoint | None = None
        self.vc_by_sender: dict[str, ViewChange] = {}
        self.vc_verified: set[tuple[str, bytes]] = set()
        self.my_vc: ViewChange | None = None
        self.new_view: NewView | None = None
        self.next_height = 0  # primary: next height to propose in this view (0: not primary / not ready)
        self.votes: dict[tuple[bytes, int, int], bytes] = {}  # (kind, height, view) -> digest signed
        self.pkeys: dict[int, set[bytes]] = {}  # height -> persisted keys to delete at GC
        self.peer_high: dict[str, int] = {}
        self.last_progress_ms: int | None = None
        self.waiting_since: int | None = None
        self.vc_attempts = 0
        self.commit_gap_ms = 0  # the slowest recent wait between commits (decaying): see _timeout
        self.vc_quorum_ms: int | None = None
        self.bad_proposal = False
        self.last_retransmit_ms: int | None = None
        self.gap_since: int | None = None
        self.fetch_until = -1
        self.nv_sent_ms: dict[str, int] = {}
        self.pending = False
        self.counters: dict[str, int] = {}
        self.revalidate: list[tuple[int, int, bytes]] = []  # restored proposals the node must see again
        # view synchronisation (docs/consensus.md): votes only in views >= fence, the highest view this
        # replica ever signed a VIEW-CHANGE for; peer_view = sender -> (highest view seen active, when)
        self.fence = 0
        self.peer_view: dict[str, tuple[int, int]] = {}
        self.vc_since_ms: int | None = None  # when the current view change began (None: restored)
        self.last_vote: Prepare | CommitVote | None = None  # our latest vote in this view (view evidence)
        self.hint_sent_ms: dict[str, int] = {}
        self._restore(persisted)

    # ------------------------------------------------------------------------------ public API

    def handle(self, message: Any, now_ms: int) -> list[Effect]:
        """Process one decoded message. Invalid, stale or duplicate messages are dropped and counted."""
        out: list[Effect] = []
        sender = getattr(message, "sender", None)
        if sender not in self.verifiers or sender == self.me:
            self._drop("unknown-sender")
            return out
        t = type(message)
        if t is Prepare:
            self._on_prepare(message, out, now_ms)
        elif t is CommitVote:
            self._on_commit(message, out, now_ms)
        elif t is PrePrepare:
            self._on_preprepare(message, out, now_ms)
        elif t is Checkpoint:
            self._on_checkpoint(message, out, now_ms)
        elif t is ViewChange:
            self._on_viewchange(message, out, now_ms)
        elif t is NewView:
            self._on_newview(message, out, now_ms)
        else:
            self._drop("unknown-type")
        return out

    def tick(self, now_ms: int, pending: bool) -> list[Effect]:
        """Advance timers: view change, retransmission, state transfer."""
        out: list[Effect] = []
        self.pending = pending
        if self.revalidate:
            # after a restart the node has forgotten in-flight blocks: show them again (ancestry for Validate)
            for _v, h, d in sorted(self.revalidate, key=lambda x: x[1]):
                H = self.log.get(h)
                if H is not None and h > self.committed_h and d in H.proposals:
                    H.asked.add((self.view, d))
                    out.append(Validate(self.view, h, H.proposals[d]))
            self.revalidate.clear()
        if self.last_progress_ms is None:
            self.last_progress_ms = now_ms
        if self.mode == VIEW_CHANGE:
            if self.vc_since_ms is None:
                self.vc_since_ms = now_ms  # restored in a view change: count from the restart
            self._sync_view(out, now_ms)
        self._view_change_timer(out, now_ms)
        if self.last_retransmit_ms is None or now_ms - self.last_retransmit_ms >= self.cfg.retransmit_ms:
            self.last_retransmit_ms = now_ms
            self._retransmit(out, now_ms)
        self._maybe_fetch(out, now_ms)
        return out

    def next_slot(self) -> Slot | None:
        """The slot this replica may propose now: only as primary in normal mode, with window room."""
        if self.mode != NORMAL or self.primary(self.view) != self.me or self.next_height == 0 \
                or self.view < self.fence:
            return None
        # never at or below the stable checkpoint: GC forgot our votes there (they are decided anyway)
        h = max(self.next_height, self.committed_h + 1, self.stable.height + 1)
        if h > self._high_watermark():
            return None
        parent = self._parent_for(self.view, h)
        if parent is None:
            return None
        return Slot(self.view, h, parent)

    def propose(self, proposal: Proposal, now_ms: int) -> list[Effect]:
        """Pre-prepare ``proposal`` for the current ``next_slot()``. Raises ``ValueError`` if it does not fit."""
        slot = self.next_slot()
        if slot is None or proposal.height != slot.height or proposal.parent != slot.parent:
            raise ValueError(f"proposal for height {proposal.height} does not fit the open slot {slot}")
        if len(proposal.digest) != 32 or len(proposal.payload) > wire.MAX_PAYLOAD_BYTES:
            raise ValueError("proposal digest must be 32 bytes and payload within MAX_PAYLOAD_BYTES")
        v, h = self.view, proposal.height
        body = preprepare_body(v, h, proposal.digest, proposal.parent)
        pp = PrePrepare(v, h, proposal.parent, proposal.digest, proposal.payload, self.me,
                        self.signer.sign(PrePrepare.KIND, self.chain, body))
        out: list[Effect] = []
        key = b"pp/" + _HV.pack(h, v)
        self.votes[(b"pp", h, v)] = proposal.digest
        self._persist(out, h, ((key, wire.encode(pp)),))
        H = self._slot(h)
        H.pp[v] = pp
        H.proposals[proposal.digest] = proposal
        H.validated[proposal.digest] = True
        self.next_height = h + 1
        out.append(Broadcast(pp))
        self._after_change(h, v, proposal.digest, out, now_ms)
        return out

    def validated(self, view: int, height: int, digest: bytes, ok: bool, now_ms: int) -> list[Effect]:
        """The node's verdict on a ``Validate`` effect."""
        out: list[Effect] = []
        H = self.log.get(height)
        if H is None or height <= self.stable.height:
            return out
        H.validated[digest] = ok
        if not ok:
            self.bad_proposal = True
            self.counters["invalid-proposal"] = self.counters.get("invalid-proposal", 0) + 1
            return out
        self._maybe_prepare(height, out)
        self._after_change(height, self.view, digest, out, now_ms)
        return out

    def state_transferred(self, height: int, digest: bytes, now_ms: int) -> list[Effect]:
        """The node fetched, verified and stored blocks up to ``height`` (digest of that block)."""
        out: list[Effect] = []
        self.fetch_until = -1
        if height <= self.committed_h:
            return out
        self.committed_h, self.committed_d = height, digest
        self.committed_digests[height] = digest
        self._progress(now_ms)
        k = self.cfg.checkpoint_interval
        if height % k == 0 and height > self.stable.height:
            self._send_checkpoint(height, digest, out)
        for h in [h for h in self.log if h <= height]:
            H = self.log[h]
            H.pp_wait.clear()
        nxt = self.log.get(height + 1)
        if nxt is not None:
            self._accept_waiting(height + 1, out)
            self._maybe_send_commit(height + 1, out)
        self._try_deliver(out, now_ms)
        if self.mode == NORMAL and self.primary(self.view) == self.me and self.next_height <= height:
            self.next_height = height + 1
        return out

    def status(self) -> dict[str, Any]:
        inflight = sorted(h for h, H in self.log.items() if h > self.committed_h and H.pp)
        return {
            "id": self.me,
            "view": self.view,
            "primary": self.primary(self.view),
            "mode": self.mode,
            "committed_height": self.committed_h,
            "committed_digest": self.committed_d.hex(),
            "stable_checkpoint": self.stable.height,
            "in_flight": inflight,
            "view_change_attempts": self.vc_attempts,
            "view_fence": self.fence,
            "dropped": dict(self.counters),
        }

    def primary(self, view: int) -> str:
        return self.ids[primary_index(view, self.n)]

    def set_end(self, end_height: int) -> None:
        """Reconfiguration barrier: this validator set governs heights below ``end_height`` only. The
        replica then never proposes, accepts, prepares or commit-votes a height >= ``end_height``, and
        never adopts a stable checkpoint there (see ``epochs`` and docs/consensus.md, Reconfiguration).
        Safe only if no height >= ``end_height`` was ever inside this replica's window: ``epochs`` checks it."""
        self.end_height = end_height

    # ------------------------------------------------------------------------------ helpers

    def _drop(self, why: str) -> None:
        self.counters[why] = self.counters.get(why, 0) + 1

    def _verify(self, m: Any) -> bool:
        ok: bool = self.verifiers[m.sender].verify(m.sig, m.KIND, self.chain, m.body())
        if not ok:
            self._drop("bad-signature")
        return ok

    def _high_watermark(self) -> int:
        high = min(self.committed_h + self.cfg.window, self.stable.height + self.cfg.log_max)
        return high if self.end_height is None else min(high, self.end_height - 1)

    def _beyond_end(self, h: int) -> bool:
        return self.end_height is not None and h >= self.end_height

    def _in_window(self, h: int) -> bool:
        return self.stable.height < h <= self._high_watermark()

    def _slot(self, h: int) -> _Height:
        H = self.log.get(h)
        if H is None:
            H = self.log[h] = _Height()
        return H

    def _persist(self, out: list[Effect], h: int, entries: tuple[tuple[bytes, bytes | None], ...]) -> None:
        if h >= 0:
            self.pkeys.setdefault(h, set()).update(k for k, v in entries if v is not None)
        out.append(Persist(entries))

    def _known_digest(self, view: int, h: int) -> bytes | None:
        """The digest this replica holds for height ``h`` in ``view``: accepted PRE-PREPARE, else committed/stable."""
        d = self.committed_digests.get(h)
        if d is not None:
            return d
        if h == self.stable.height:
            return self.stable.digest
        H = self.log.get(h)
        if H is not None:
            pp = H.pp.get(view)
            if pp is not None:
                return pp.digest
        return None

    def _parent_for(self, view: int, h: int) -> bytes | None:
        return self._known_digest(view, h - 1)

    def _progress(self, now_ms: int) -> None:
        if self.mode == NORMAL and self.waiting_since is not None and self.last_progress_ms is not None:
            # A wait while there was work to do; the allowance forgets 1/16 of itself per commit.
            gap = now_ms - max(self.last_progress_ms, self.waiting_since)
            self.commit_gap_ms = max(gap, self.commit_gap_ms - self.commit_gap_ms // 16)
        self.last_progress_ms = now_ms
        self.vc_attempts = 0
        self.bad_proposal = False
        self.gap_since = None

    def _timeout(self) -> int:
        """How long to wait for progress before suspecting the primary.

        Doubles with each failed view change (PBFT), and is never under three times the slowest
        recent wait between commits, so a network that is merely slow under load (large blocks,
        shared cores, a disk pausing to compact) is not mistaken for a faulty primary: each such
        view change would cost seconds of no commits. Capped at ``view_change_timeout_max_ms``,
        which bounds what a primary that stalls on purpose can get away with.
        """
        base = max(self.cfg.view_change_timeout_ms * (1 << min(self.vc_attempts, 30)), 3 * self.commit_gap_ms)
        return min(base, self.cfg.view_change_timeout_max_ms)

    def _note_lagging(self, sender: str, view: int, out: list[Effect], now_ms: int) -> None:
        """A message from an older view: if we are its new primary, hand the sender our NEW-VIEW."""
        if self.new_view is None or self.mode != NORMAL or self.primary(self.view) != self.me or view >= self.view:
            return
        last = self.nv_sent_ms.get(sender)
        if last is None or now_ms - last >= self.cfg.retransmit_ms:
            self.nv_sent_ms[sender] = now_ms
            out.append(Send(sender, self.new_view))

    # ------------------------------------------------------------------------------ view synchronisation

    def _note_view(self, m: Any, out: list[Effect], now_ms: int, verified: bool = False) -> None:
        """Remember that ``m.sender`` signed something in ``m.view`` outside a view change (PRE-PREPARE,
        PREPARE, COMMIT, NEW-VIEW): that view was started and the sender was working in it then.

        One signature check per sender and view (and, while in a view change, once more per sender to
        learn it is still there), so old or forged traffic costs little.
        """
        seen = self.peer_view.get(m.sender)
        if seen is not None:
            stale = self.mode == NORMAL or self.vc_since_ms is None or seen[1] >= self.vc_since_ms
            if m.view < seen[0] or m.view == seen[0] and stale:
                return
        if not verified and not self._verify(m):
            return
        self.peer_view[m.sender] = (m.view, now_ms)
        self._sync_view(out, now_ms)

    def _sync_view(self, out: list[Effect], now_ms: int) -> None:
        """Rejoin the view the others work in (docs/consensus.md, "View synchronisation").

        Up: f+1 others seen working in views above ours (so one honest replica is there, and the view
        was started by a NEW-VIEW): move to the (f+1)-th highest with a VIEW-CHANGE; its primary answers
        with its NEW-VIEW. Down: alone in a view change (no 2f+1 VIEW-CHANGEs for our view), and f+1
        others seen working, since our view change began, in a lower view: go back to it in normal mode,
        as an observer below ``fence`` (no PREPARE, COMMIT or proposal there), so the VIEW-CHANGEs we
        signed for higher views stay truthful.
        """
        others = [e for s, e in self.peer_view.items() if s != self.me]
        above = sorted((v for v, _ in others if v > self.view), reverse=True)
        if len(above) > self.f:
            self.counters["view-sync-up"] = self.counters.get("view-sync-up", 0) + 1
            self._start_view_change(above[self.f], out, now_ms)
            return
        if self.mode != VIEW_CHANGE or self.vc_quorum_ms is not None:
            return
        since = self.vc_since_ms
        below = sorted((v for v, t in others if v <= self.view and (since is None or t >= since)), reverse=True)
        if len(below) <= self.f or self.primary(below[self.f]) == self.me:
            return
        w = below[self.f]
        if w == self.view:
            # the others work in the view we wait for: give its primary's NEW-VIEW (see _hint_view) a
            # timeout to arrive (it may have restarted and lost it), then follow them without it
            if since is None or now_ms - since < self._timeout():
                return
            self.fence = max(self.fence, w + 1)
        self._rejoin(w, out, now_ms)

    def _rejoin(self, w: int, out: list[Effect], now_ms: int) -> None:
        """Leave a lone view change for view ``w`` <= ours, which f+1 others are working in."""
        self.counters["view-sync-down"] = self.counters.get("view-sync-down", 0) + 1
        self.view = w
        self.mode = NORMAL
        self.vc_quorum_ms = None
        self.vc_since_ms = None
        self.new_view = None
        self.next_height = 0
        self.waiting_since = None
        self.last_progress_ms = now_ms
        self.vc_attempts += 1  # a replica that keeps timing out alone backs off (see _timeout)
        self.last_vote = None
        self.my_vc = None
        self.vc_by_sender.clear()  # views above w: a real view change retransmits its VIEW-CHANGEs
        self.vc_verified.clear()
        self.peer_view = {s: e for s, e in self.peer_view.items() if e[0] <= w}
        for H in self.log.values():
            H.pp_wait.clear()
        out.append(Persist(((b"view", msgpack.packb([w, False, self.fence])),)))

    def _hint_view(self, sender: str, view: int, out: list[Effect], now_ms: int) -> None:
        """A VIEW-CHANGE for our view or above, while we work in our view: show the sender where we are
        (rate-limited), with a message we already signed here: our latest vote, or (primary) our
        NEW-VIEW, which is also what a replica waiting in a view change for our view needs."""
        last = self.hint_sent_ms.get(sender)
        if last is not None and now_ms - last < self.cfg.retransmit_ms:
            return
        msg: Any = None
        nv = self.new_view
        if nv is not None and nv.view == self.view and (view == self.view or self.last_vote is None):
            msg = nv
        elif self.last_vote is not None and self.last_vote.view == self.view:
            msg = self.last_vote
        if msg is not None:
            self.hint_sent_ms[sender] = now_ms
            out.append(Send(sender, msg))

    # ------------------------------------------------------------------------------ normal case

    def _on_preprepare(self, m: PrePrepare, out: list[Effect], now_ms: int) -> None:
        """PRE-PREPARE from primary(view) in our view, inside the watermarks, one per (view, height)."""
        if m.view != self.view or self.mode != NORMAL:
            if m.sender == self.primary(m.view):
                self._note_view(m, out, now_ms)
            if m.view < self.view:
                self._note_lagging(m.sender, m.view, out, now_ms)
            else:
                self._drop("future-view")
            return
        if m.sender != self.primary(m.view):
            self._drop("not-primary")
            return
        h = m.height
        if h <= self.committed_h or not self._in_window(h):
            self._drop("out-of-window")
            return
        H = self._slot(h)
        have = H.pp.get(m.view) or H.pp_wait.get(m.view)
        if have is not None:
            self._drop("duplicate" if have == m else "equivocation")
            return
        if not self._verify(m):
            return
        H.pp_wait[m.view] = m
        self._accept_waiting(h, out)

    def _accept_waiting(self, h: int, out: list[Effect]) -> None:
        """Accept the waiting PRE-PREPAREs of the current view whose parent is now known, in height order."""
        v = self.view
        while True:
            H = self.log.get(h)
            if H is None or v not in H.pp_wait:
                return
            m = H.pp_wait[v]
            parent = self._parent_for(v, h)
            if parent is None:
                return
            del H.pp_wait[v]
            if parent != m.parent or v in H.pp:
                self._drop("bad-parent")
                return
            self._install_pp(m, out)
            h += 1

    def _install_pp(self, m: PrePrepare, out: list[Effect]) -> None:
        H = self._slot(m.height)
        H.pp[m.view] = m
        prop = H.proposals.get(m.digest)
        if prop is None or (prop.parent != m.parent or prop.payload != m.payload) and not H.validated.get(m.digest):
            prop = Proposal(m.height, m.parent, m.digest, m.payload)
            H.proposals[m.digest] = prop
            H.validated.pop(m.digest, None)
        if m.height <= self.committed_h:
            return
        ok = H.validated.get(m.digest)
        # a refusal may be transient (the node did not know the ancestry yet): ask again once per view
        if not ok and (m.view, m.digest) not in H.asked:
            H.asked.add((m.view, m.digest))
            out.append(Validate(m.view, m.height, prop))
        elif ok:
            self._maybe_prepare(m.height, out)

    def _maybe_prepare(self, h: int, out: list[Effect]) -> None:
        """Backup: PREPARE the accepted, validated PRE-PREPARE of the current view (once)."""
        H = self.log.get(h)
        v = self.view
        if H is None or self.mode != NORMAL or self.primary(v) == self.me or h <= self.committed_h \
                or v < self.fence or self._beyond_end(h):
            return
        pp = H.pp.get(v)
        if pp is None or not H.validated.get(pp.digest):
            return
        key = (b"P", h, v)
        prev = self.votes.get(key)
        if prev is not None and prev != pp.digest:
            self._drop("refused-double-vote")
            return
        if H.my_prepare is not None and H.my_prepare.view == v:
            return
        sig = self.signer.sign(Prepare.KIND, self.chain, vote_body(v, h, pp.digest))
        msg = Prepare(v, h, pp.digest, self.me, sig)
        if prev is None:
            self.votes[key] = pp.digest
            self._persist(out, h, ((b"v/P" + _HV.pack(h, v), pp.digest),))
        H.my_prepare = msg
        self.last_vote = msg
        H.prepares.setdefault((v, pp.digest), {})[self.me] = sig
        out.append(Broadcast(msg))
        self._check_prepared(h, out)

    def _record_vote(self, H: _Height, table: dict[tuple[int, bytes], dict[str, bytes]], m: Any) -> bool:
        """Add a PREPARE or COMMIT to ``table`` unless it is a repeat, over the sender's cap, or forged."""
        votes = table.get((m.view, m.digest))
        if votes is not None and m.sender in votes:
            self._drop("duplicate")
            return False
        if not self._count_vote(H, m.sender, m.view) or not self._verify(m):
            return False
        table.setdefault((m.view, m.digest), {})[m.sender] = m.sig
        return True

    def _count_vote(self, H: _Height, sender: str, view: int) -> bool:
        n = H.per_sender.get((sender, view), 0)
        if n >= _MAX_VOTES_PER_SENDER:
            self._drop("vote-flood")
            return False
        H.per_sender[(sender, view)] = n + 1
        return True

    def _on_prepare(self, m: Prepare, out: list[Effect], now_ms: int) -> None:
        """PREPARE from a backup in our view, inside the watermarks."""
        if m.view != self.view or self.mode != NORMAL:
            if m.sender != self.primary(m.view):
                self._note_view(m, out, now_ms)
            if m.view < self.view:
                self._note_lagging(m.sender, m.view, out, now_ms)
            else:
                self._drop("future-view")
            return
        if m.sender == self.primary(m.view):
            self._drop("prepare-from-primary")
            return
        h = m.height
        if h <= self.committed_h or not self._in_window(h):
            self._drop("out-of-window")
            return
        H = self._slot(h)
        if not self._record_vote(H, H.prepares, m):
            return
        self._check_prepared(h, out)

    def _check_prepared(self, h: int, out: list[Effect]) -> None:
        """Prepared(v, h, d): the accepted PRE-PREPARE, our own validation, and 2f PREPAREs of distinct backups."""
        H = self.log.get(h)
        v = self.view
        if H is None or self.mode != NORMAL:
            return
        pp = H.pp.get(v)
        if pp is None or not H.validated.get(pp.digest):
            return
        if H.prepared is not None and H.prepared.view >= v:
            self._maybe_send_commit(h, out)
            return
        votes = H.prepares.get((v, pp.digest), {})
        if len(votes) < self.q - 1:
            return
        chosen = tuple(sorted(votes.items())[: self.q - 1])
        cert = PreparedCert(v, h, pp.digest, pp.parent, pp.sig, chosen)
        H.prepared = cert
        blob = msgpack.packb([cert.view, cert.height, cert.digest, cert.parent, cert.pp_sig,
                              [list(x) for x in cert.prepares], H.proposals[pp.digest].payload], use_bin_type=True)
        self._persist(out, h, ((b"pc/" + _H.pack(h), blob),))
        self._maybe_send_commit(h, out)

    def _maybe_send_commit(self, h: int, out: list[Effect]) -> None:
        """COMMIT(v, h, d) once prepared in v and we sent COMMIT(v, h-1, parent) (or h-1 is committed)."""
        H = self.log.get(h)
        v = self.view
        if H is None or self.mode != NORMAL or H.prepared is None or H.prepared.view != v or H.my_commit is not None \
                and H.my_commit.view == v or v < self.fence or self._beyond_end(h):
            return
        p = H.prepared
        below = self.committed_digests.get(h - 1)
        if below is None and h - 1 == self.stable.height:
            below = self.stable.digest
        if below is None:
            # COMMITs go out in height order within a view: a commit quorum at h then implies f+1
            # honest replicas prepared (and committed-voted) every height below it in v
            prev = self.log.get(h - 1)
            if prev is None or prev.my_commit is None or prev.my_commit.view != v:
                return
            below = prev.my_commit.digest
        if below != p.parent:
            return
        key = (b"C", h, v)
        prior = self.votes.get(key)
        if prior is not None and prior != p.digest:
            self._drop("refused-double-vote")
            return
        sig = self.signer.sign(CommitVote.KIND, self.chain, CommitVote(v, h, p.digest, self.me, b"").body())
        msg = CommitVote(v, h, p.digest, self.me, sig)
        if prior is None:
            self.votes[key] = p.digest
            self._persist(out, h, ((b"v/C" + _HV.pack(h, v), p.digest),))
        H.my_commit = msg
        self.last_vote = msg
        H.commits.setdefault((v, p.digest), {})[self.me] = sig
        out.append(Broadcast(msg))
        self._maybe_send_commit(h + 1, out)

    def _on_commit(self, m: CommitVote, out: list[Effect], now_ms: int) -> None:
        """COMMIT of any view (2f+1 signatures certify a block whatever our view), inside the watermarks."""
        h = m.height
        elsewhere = m.view != self.view or self.mode != NORMAL  # evidence for view synchronisation
        if h <= self.committed_h:
            if elsewhere:
                self._note_view(m, out, now_ms)
            if m.view < self.view:
                self._note_lagging(m.sender, m.view, out, now_ms)
            else:
                self._drop("stale")
            return
        if not self._in_window(h) or not self.view - _COMMIT_VIEWS_KEPT <= m.view <= self.view + 1:
            if h > self.peer_high.get(m.sender, 0) and self._verify(m):
                self.peer_high[m.sender] = h
                if elsewhere:
                    self._note_view(m, out, now_ms, verified=True)
            elif elsewhere:
                self._note_view(m, out, now_ms)
            self._drop("out-of-window")
            return
        H = self._slot(h)
        if not self._record_vote(H, H.commits, m):
            return
        if elsewhere:
            self._note_view(m, out, now_ms, verified=True)
        if h > self.peer_high.get(m.sender, 0):
            self.peer_high[m.sender] = h
        if m.view < self.view:
            self._note_lagging(m.sender, m.view, out, now_ms)
        self._try_deliver(out, now_ms)

    def _after_change(self, h: int, v: int, digest: bytes, out: list[Effect], now_ms: int) -> None:
        self._check_prepared(h, out)
        self._try_deliver(out, now_ms)

    def _try_deliver(self, out: list[Effect], now_ms: int) -> None:
        """Deliver committed heights strictly in order: 2f+1 COMMITs + a validated proposal linking to our tip."""
        while True:
            h = self.committed_h + 1
            H = self.log.get(h)
            if H is None or not self._in_window(h):
                return
            found = None
            for (view, digest), votes in H.commits.items():
                if len(votes) >= self.q and H.validated.get(digest):
                    found = (view, digest, votes)
                    break
            if found is None:
                return
            view, digest, votes = found
            prop = H.proposals[digest]
            if prop.parent != self.committed_d:
                raise InvariantBroken(f"certified block at height {h} does not extend our chain")
            cert = CommitCertificate(h, view, digest, tuple(sorted(votes.items())))
            out.append(Commit(prop, cert))
            self.committed_h, self.committed_d = h, digest
            self.committed_digests[h] = digest
            self._progress(now_ms)
            if h % self.cfg.checkpoint_interval == 0:
                self._send_checkpoint(h, digest, out)
            self._maybe_send_commit(h + 1, out)
            self._accept_waiting(h + 1, out)

    # ------------------------------------------------------------------------------ checkpoints

    def _send_checkpoint(self, h: int, digest: bytes, out: list[Effect]) -> None:
        sig = self.signer.sign(Checkpoint.KIND, self.chain, checkpoint_body(h, digest))
        msg = Checkpoint(h, digest, self.me, sig)
        self.my_checkpoint = msg
        self.checkpoints.setdefault(h, {}).setdefault(digest, {})[self.me] = sig
        out.append(Broadcast(msg))
        self._check_stable(h, digest, out)

    def _on_checkpoint(self, m: Checkpoint, out: list[Effect], now_ms: int) -> None:
        """CHECKPOINT(h, d): 2f+1 matching make h stable (log GC); f+1 beyond us trigger state transfer."""
        h = m.height
        if h <= self.stable.height:
            self._drop("stale")
            return
        byd = self.checkpoints.get(h, {}).get(m.digest)
        if byd is not None and m.sender in byd:
            self._drop("duplicate")
            return
        if not self._verify(m):
            return
        if h > self.peer_high.get(m.sender, 0):
            self.peer_high[m.sender] = h
        # keep at most 3 checkpoint heights per sender
        mine = sorted(x for x, ds in self.checkpoints.items() if any(m.sender in s for s in ds.values()))
        if len(mine) >= 3:
            if h < mine[0]:
                return
            for s in self.checkpoints[mine[0]].values():
                s.pop(m.sender, None)
        self.checkpoints.setdefault(h, {}).setdefault(m.digest, {})[m.sender] = m.sig
        self._check_stable(h, m.digest, out)

    def _check_stable(self, h: int, digest: bytes, out: list[Effect]) -> None:
        votes = self.checkpoints.get(h, {}).get(digest, {})
        if len(votes) < self.q or h <= self.stable.height or self._beyond_end(h):
            return
        mine = self.committed_digests.get(h)
        if mine is not None and mine != digest:
            raise InvariantBroken(f"stable checkpoint at {h} differs from our committed block")
        self._set_stable(CheckpointCert(h, digest, tuple(sorted(votes.items())[: self.q])), out)

    def _set_stable(self, cert: CheckpointCert, out: list[Effect]) -> None:
        """Adopt a proven stable checkpoint: garbage-collect the log, checkpoints and persisted votes below it."""
        h = cert.height
        self.stable = cert
        dels: list[tuple[bytes, bytes | None]] = [
            (b"stable", msgpack.packb([h, cert.digest, [list(x) for x in cert.votes]], use_bin_type=True))]
        for x in [x for x in self.log if x <= h]:
            del self.log[x]
        for x in [x for x in self.checkpoints if x <= h]:
            del self.checkpoints[x]
        for x in [x for x in self.committed_digests if x < h and x != self.committed_h]:
            del self.committed_digests[x]
        for x in [x for x in self.pkeys if x <= h]:
            dels.extend((k, None) for k in sorted(self.pkeys.pop(x)))
        for key in [k for k in self.votes if k[1] <= h]:
            del self.votes[key]
        out.append(Persist(tuple(dels)))

    # ------------------------------------------------------------------------------ view change

    def _view_change_timer(self, out: list[Effect], now_ms: int) -> None:
        if self.mode == NORMAL:
            busy = self.pending or self.bad_proposal or any(
                h > self.committed_h and H.pp for h, H in self.log.items())
            if not busy:
                self.waiting_since = None
                return
            if self.waiting_since is None:
                self.waiting_since = now_ms
            start = max(self.waiting_since, self.last_progress_ms or 0)
            if now_ms >= start + self._timeout():
                self._start_view_change(self.view + 1, out, now_ms)
        elif self.vc_quorum_ms is not None and now_ms >= self.vc_quorum_ms + self._timeout():
            self.vc_attempts += 1
            self._start_view_change(self.view + 1, out, now_ms)

    def _start_view_change(self, new_view: int, out: list[Effect], now_ms: int) -> None:
        """Move to ``new_view`` and broadcast VIEW-CHANGE(new_view, stable proof, prepared certificates)."""
        if new_view <= self.view and self.mode == VIEW_CHANGE:
            return
        while new_view < self.fence and self.primary(new_view) == self.me:
            # we would be its primary but may not send a NEW-VIEW below our fence (we may have sent one
            # for it before): that view cannot start, so ask for the next one now rather than time out
            new_view += 1
        self.view = new_view
        self.fence = max(self.fence, new_view)
        self.mode = VIEW_CHANGE
        self.vc_quorum_ms = None
        self.vc_since_ms = now_ms
        self.new_view = None
        self.next_height = 0
        self.waiting_since = None
        self.last_vote = None
        for H in self.log.values():
            H.pp_wait.clear()
        out.append(Persist(((b"view", msgpack.packb([new_view, True, self.fence])),)))
        out.append(Broadcast(self._build_view_change()))
        self._check_view_changes(out, now_ms)

    def _build_view_change(self) -> ViewChange:
        prepared = tuple(H.prepared for h, H in sorted(self.log.items()) if H.prepared is not None
                         and h > self.stable.height)
        payloads = tuple(self.log[p.height].proposals[p.digest].payload for p in prepared)
        body_vc = ViewChange(self.view, self.stable, prepared, self.me, b"")
        sig = self.signer.sign(ViewChange.KIND, self.chain, body_vc.body())
        vc = ViewChange(self.view, self.stable, prepared, self.me, sig, payloads)
        self.my_vc = vc
        self.vc_by_sender[self.me] = vc
        self.vc_verified.add((self.me, sig))
        return vc

    def _valid_view_change(self, vc: ViewChange) -> bool:
        """Signature, checkpoint proof and every prepared certificate (PBFT's VIEW-CHANGE validity)."""
        if (vc.sender, vc.sig) in self.vc_verified:
            known = self.vc_by_sender.get(vc.sender)
            if known is not None and known.stripped() == vc.stripped():
                return True
        if vc.sender not in self.verifiers or not self._verify(vc):
            return False
        s = vc.stable
        if s.height <= self.base[0]:  # the set's base (genesis for the first set) stands unsigned
            if (s.height, s.digest) != self.base or s.votes:
                return False
        elif not self._valid_votes(s.votes, Checkpoint.KIND, checkpoint_body(s.height, s.digest), self.q, None):
            return False
        last = s.height
        for p in vc.prepared:
            if p.height <= last or p.view >= vc.view or p.height > s.height + self.cfg.log_max + self.cfg.window:
                return False
            last = p.height
            prim = self.primary(p.view)
            if not self.verifiers[prim].verify(p.pp_sig, PrePrepare.KIND, self.chain,
                                               preprepare_body(p.view, p.height, p.digest, p.parent)):
                return False
            if not self._valid_votes(p.prepares, Prepare.KIND, vote_body(p.view, p.height, p.digest), self.q - 1, prim):
                return False
        self.vc_verified.add((vc.sender, vc.sig))
        return True

    def _valid_votes(self, votes: tuple[tuple[str, bytes], ...], kind: str, body: bytes, need: int,
                     exclude: str | None) -> bool:
        seen: set[str] = set()
        for vid, sig in votes:
            if vid in seen or vid == exclude or vid not in self.verifiers:
                return False
            if not self.verifiers[vid].verify(sig, kind, self.chain, body):
                return False
            seen.add(vid)
        return len(seen) >= need

    def _on_viewchange(self, m: ViewChange, out: list[Effect], now_ms: int) -> None:
        if self.mode == NORMAL and m.view >= self.view:
            self._hint_view(m.sender, m.view, out, now_ms)
        if m.view < self.view or (m.view == self.view and self.mode == NORMAL):
            self._note_lagging(m.sender, m.view, out, now_ms)
            return
        known = self.vc_by_sender.get(m.sender)
        if known is not None and known.view >= m.view:
            self._drop("duplicate" if known.view == m.view else "stale")
            return
        if len(m.payloads) not in (0, len(m.prepared)) or not self._valid_view_change(m):
            self._drop("bad-view-change")
            return
        self.vc_by_sender[m.sender] = m
        self._check_view_changes(out, now_ms)

    def _check_view_changes(self, out: list[Effect], now_ms: int) -> None:
        """f+1 VIEW-CHANGEs above our view: join. 2f+1 for our target: start its timer; if primary, NEW-VIEW."""
        views = sorted((vc.view for s, vc in self.vc_by_sender.items() if s != self.me and vc.view > self.view),
                       reverse=True)
        if len(views) >= self.f + 1:
            self._start_view_change(views[self.f], out, now_ms)
            return
        if self.mode != VIEW_CHANGE:
            return
        same = [vc for vc in self.vc_by_sender.values() if vc.view == self.view]
        if len(same) < self.q:
            return
        if self.vc_quorum_ms is None:
            self.vc_quorum_ms = now_ms
        if self.primary(self.view) == self.me and self.new_view is None and self.view >= self.fence:
            self._send_new_view(same, out, now_ms)

    def _send_new_view(self, same: list[ViewChange], out: list[Effect], now_ms: int) -> None:
        v = self.view
        chosen = sorted(same, key=lambda x: x.sender)[: self.q]
        if self.my_vc is not None and all(x.sender != self.me for x in chosen):
            chosen = sorted([self.my_vc, *chosen[: self.q - 1]], key=lambda x: x.sender)
        stable, prefix = compute_reproposals(tuple(chosen))
        pps = []
        for p in prefix:
            payload = self._find_payload(p, chosen)
            body = preprepare_body(v, p.height, p.digest, p.parent)
            pps.append(PrePrepare(v, p.height, p.parent, p.digest, payload, self.me,
                                  self.signer.sign(PrePrepare.KIND, self.chain, body)))
        vcs = tuple(x.stripped() for x in chosen)
        probe = NewView(v, vcs, tuple(pps), self.me, b"")
        nv = NewView(v, vcs, tuple(pps), self.me, self.signer.sign(NewView.KIND, self.chain, probe.body()))
        for pp in pps:
            self.votes[(b"pp", pp.height, v)] = pp.digest
        self._install_new_view(nv, stable, out, now_ms, primary=True)
        out.append(Broadcast(nv))

    def _find_payload(self, p: PreparedCert, chosen: list[ViewChange]) -> bytes:
        H = self.log.get(p.height)
        if H is not None and p.digest in H.proposals:
            return H.proposals[p.digest].payload
        for vc in chosen:
            for i, q in enumerate(vc.prepared):
                if q.height == p.height and q.digest == p.digest and vc.payloads and vc.payloads[i]:
                    return vc.payloads[i]
        return b""

    def _on_newview(self, m: NewView, out: list[Effect], now_ms: int) -> None:
        """NEW-VIEW: 2f+1 valid VIEW-CHANGEs for its view, and exactly the re-proposals we recompute."""
        if m.view < self.view or (m.view == self.view and self.mode == NORMAL):
            if m.view < self.view and m.sender == self.primary(m.view):
                self._note_view(m, out, now_ms)  # its primary started that view: evidence, nothing more
            self._drop("stale")
            return
        if m.sender != self.primary(m.view):
            self._drop("not-primary")
            return
        if not self._verify(m):
            return
        senders = {vc.sender for vc in m.view_changes}
        if len(senders) != len(m.view_changes) or len(senders) < self.q or any(
                vc.view != m.view for vc in m.view_changes):
            self._drop("bad-new-view")
            return
        for vc in m.view_changes:
            if not self._valid_view_change(vc):
                self._drop("bad-new-view")
                return
        stable, prefix = compute_reproposals(m.view_changes)
        if len(prefix) != len(m.pre_prepares):
            self._drop("bad-new-view")
            return
        for p, pp in zip(prefix, m.pre_prepares, strict=True):
            if (pp.view, pp.height, pp.digest, pp.parent, pp.sender) \
                    != (m.view, p.height, p.digest, p.parent, m.sender) \
                    or not self.verifiers[m.sender].verify(pp.sig, PrePrepare.KIND, self.chain, pp.body()):
                self._drop("bad-new-view")
                return
        self._install_new_view(m, stable, out, now_ms, primary=False)

    def _install_new_view(self, nv: NewView, stable: CheckpointCert, out: list[Effect], now_ms: int,
                          primary: bool) -> None:
        """Enter view ``nv.view`` in normal mode with its re-proposals as the accepted PRE-PREPAREs."""
        v = nv.view
        self.view = v
        self.mode = NORMAL
        self.new_view = nv if primary else None
        self.vc_quorum_ms = None
        self.vc_since_ms = None
        self.last_vote = None
        self.waiting_since = None
        self.last_progress_ms = now_ms
        self.nv_sent_ms.clear()
        for s in [s for s, vc in self.vc_by_sender.items() if vc.view <= v]:
            del self.vc_by_sender[s]
        self.vc_verified = {k for k in self.vc_verified if k[0] in self.vc_by_sender}
        self.my_vc = None
        entries: list[tuple[bytes, bytes | None]] = [(b"view", msgpack.packb([v, False, self.fence]))]
        if primary:
            entries.extend((b"pp/" + _HV.pack(pp.height, v), wire.encode(pp)) for pp in nv.pre_prepares)
        out.append(Persist(tuple(entries)))
        for pp in nv.pre_prepares:
            self.pkeys.setdefault(pp.height, set()).add(b"pp/" + _HV.pack(pp.height, v))
        if stable.height > self.stable.height:
            self._set_stable(stable, out)
        floor = v - _COMMIT_VIEWS_KEPT
        for H in self.log.values():
            H.pp_wait.clear()
            for key in [k for k in H.prepares if k[0] < v]:
                del H.prepares[key]
            for key in [k for k in H.commits if k[0] < floor]:
                del H.commits[key]
            for skey in [k for k in H.per_sender if k[1] < floor]:
                del H.per_sender[skey]
        end = stable.height
        for pp in nv.pre_prepares:
            end = pp.height
            if pp.height <= self.stable.height or self._beyond_end(pp.height):
                continue
            H = self._slot(pp.height)
            H.pp[v] = pp
            if primary:
                H.proposals.setdefault(pp.digest, Proposal(pp.height, pp.parent, pp.digest, pp.payload))
            self._install_pp(pp, out)
        self.next_height = max(end, self.committed_h) + 1 if primary else 0
        for pp in nv.pre_prepares:
            if pp.height > self.committed_h:
                self._check_prepared(pp.height, out)
        self._try_deliver(out, now_ms)

    # ------------------------------------------------------------------------------ retransmission, catch-up

    def _retransmit(self, out: list[Effect], now_ms: int) -> None:
        """Re-send what a lossy network may have eaten: our votes on unfinished heights, our VIEW-CHANGE,
        our latest checkpoint (a fresh one at our tip when idle, so laggards learn how far we are)."""
        if self.mode == VIEW_CHANGE:
            if self.my_vc is not None:
                out.append(Broadcast(self.my_vc))
        else:
            v = self.view
            for h in sorted(self.log):
                if h <= self.committed_h:
                    continue
                H = self.log[h]
                pp = H.pp.get(v)
                if pp is not None and pp.sender == self.me:
                    out.append(Broadcast(pp))
                if H.my_prepare is not None and H.my_prepare.view == v:
                    out.append(Broadcast(H.my_prepare))
                if H.my_commit is not None and H.my_commit.view == v:
                    out.append(Broadcast(H.my_commit))
        # heartbeat: a CHECKPOINT at our tip once deliveries pause, so laggards (and stability) catch up
        mine = self.my_checkpoint
        if self.committed_h > (mine.height if mine is not None else 0) and self.committed_h >= self.stable.height \
                and now_ms - (self.last_progress_ms or now_ms) >= self.cfg.retransmit_ms:
            self._send_checkpoint(self.committed_h, self.committed_d, out)
        elif mine is not None and mine.height >= self.stable.height:
            out.append(Broadcast(mine))
        # and, when idle, our latest vote: it tells a replica left in another view where we work
        vote = self.last_vote
        if self.mode == NORMAL and vote is not None and vote.view == self.view and vote.height <= self.committed_h \
                and now_ms - (self.last_progress_ms or now_ms) >= self.cfg.retransmit_ms:
            out.append(Broadcast(vote))

    def _maybe_fetch(self, out: list[Effect], now_ms: int) -> None:
        """State transfer: when f+1 peers vouch for heights above ours and we made no progress for a while
        (or they are beyond our window, or our stable checkpoint is above our tip), fetch from them."""
        highs = sorted(self.peer_high.values(), reverse=True)
        target = highs[self.f] if len(highs) > self.f else 0
        target = max(target, self.stable.height)
        if target <= self.committed_h:
            self.gap_since = None
            return
        if self.gap_since is None:
            self.gap_since = now_ms
        urgent = target > self.committed_h + self.cfg.window or self.stable.height > self.committed_h
        if not urgent and now_ms - self.gap_since < self.cfg.state_transfer_delay_ms:
            return
        if now_ms < self.fetch_until:
            return
        self.fetch_until = now_ms + self.cfg.state_transfer_timeout_ms
        peers = tuple(sorted((s for s, h in self.peer_high.items() if h >= target), key=lambda s: -self.peer_high[s]))
        if not peers:
            peers = tuple(s for s in self.ids if s != self.me)
        out.append(FetchState(self.committed_h + 1, target, peers))

    # ------------------------------------------------------------------------------ restart

    def _restore(self, persisted: Mapping[bytes, bytes]) -> None:
        """Rebuild view, mode, stable checkpoint, votes, prepared certificates and own PRE-PREPAREs."""
        raw = persisted.get(b"stable")
        if raw is not None:
            h, d, votes = msgpack.unpackb(raw, raw=False)
            self.stable = CheckpointCert(h, d, tuple((a, b) for a, b in votes))
        raw = persisted.get(b"view")
        in_vc = False
        if raw is not None:
            saved = msgpack.unpackb(raw, raw=False)
            self.view, in_vc = saved[0], saved[1]
            # older entries have no fence: views only went up then, so the view is the highest signed
            self.fence = saved[2] if len(saved) > 2 else self.view
        for key, val in persisted.items():
            if key.startswith(b"v/"):
                h, v = _HV.unpack(key[3:19])
                if h > self.stable.height:
                    self.votes[(key[2:3], h, v)] = val
                    self.pkeys.setdefault(h, set()).add(key)
            elif key.startswith(b"pc/"):
                (h,) = _H.unpack(key[3:11])
                if h <= self.stable.height:
                    continue
                v, hh, d, parent, pp_sig, prepares, payload = msgpack.unpackb(val, raw=False)
                cert = PreparedCert(v, hh, d, parent, pp_sig, tuple((a, b) for a, b in prepares))
                H = self._slot(h)
                H.prepared = cert
                H.proposals[d] = Proposal(h, parent, d, payload)
                self.revalidate.append((v, h, d))
                self.pkeys.setdefault(h, set()).add(key)
            elif key.startswith(b"pp/"):
                h, v = _HV.unpack(key[3:19])
                if h <= self.stable.height:
                    continue
                self.votes[(b"pp", h, v)] = val
                self.pkeys.setdefault(h, set()).add(key)
                pp = wire.decode(val)
                if not isinstance(pp, PrePrepare):
                    raise InvariantBroken(f"persisted entry {key!r} is not a PRE-PREPARE")
                if v == self.view and not in_vc:
                    H = self._slot(h)
                    H.pp[v] = pp
                    H.proposals[pp.digest] = Proposal(h, pp.parent, pp.digest, pp.payload)
                    H.validated[pp.digest] = True  # our own block: the node built it
                    self.revalidate.append((v, h, pp.digest))
        if in_vc:
            self.mode = VIEW_CHANGE
            self._build_view_change()  # re-broadcast by the first retransmission
        else:
            if self.primary(self.view) == self.me:
                mine = [h for (k, h, v) in self.votes if k == b"pp" and v == self.view]
                self.next_height = max([self.committed_h, *mine]) + 1
