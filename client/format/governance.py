"""Governance: configuration changes as ledger entries, approved by the consortium's admins.

A change is a signed entry of its own kind (``SignedRecord`` with a ``change`` map instead of an
EPCIS ``event``, signed as kind ``"change"``; docs/governance.md and docs/format.md §11 give the
bytes). Two shapes:

- a **proposal** ``{"op": OP, ...fields}``: signed by an active admin, which counts as its first approval;
- an **approval** ``{"op": "approve", "proposal": <32-byte id of the proposal entry>}``: by another admin.

A proposal is *approved* by the entry that brings its distinct active admins to the threshold in
force (``Consortium.approvals_needed``); the change then applies to the latest consortium at once
(so later proposals are checked against it) and is **in force from height H + window + 1**, H the
height of the approving block. That delay is what makes reconfiguration safe: no honest validator
has a block above H + window in flight before it has committed H, so every validator knows a
change before the first height it governs (docs/governance.md, "When a change takes effect").

``Governance`` replays entries block by block; validators, catch-up, the auditor and receipt checks
use it alike. Its rules: ``change shape``, ``not an admin``, ``unknown proposal``, ``proposal closed``,
``approved twice``, ``change refused`` (``validity.RULES``).
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rantai.consensus.crypto import HASH_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Verifier

from .consortium import CHANGEABLE_PARAMS, NAME, READ_POLICIES, ROLES, Consortium, company_prefix_problem
from .encoding import hexify
from .errors import InvalidRecord
from .records import SignedRecord

__all__ = ["OPS", "POSSESSION_KIND", "Governance", "Proposal", "check_change", "possession_body"]

POSSESSION_KIND = "possession"  # a new key signs this to prove its holder asked for it

# op -> its fields besides "op", each with its kind (checked by _check_field)
OPS: dict[str, dict[str, str]] = {
    "add_member": {"name": "name", "organisation": "text", "public_key": "key", "roles": "roles", "proof": "signature"},
    "set_roles": {"member": "name", "roles": "roles"},
    "suspend_member": {"member": "name"},
    "reinstate_member": {"member": "name"},
    "remove_member": {"member": "name"},
    "rotate_key": {"member": "name", "public_key": "key", "proof": "signature"},
    "add_validator": {"name": "name", "public_key": "key", "url": "url", "proof": "signature"},
    "remove_validator": {"validator": "name"},
    "rekey_validator": {"validator": "name", "public_key": "key", "proof": "signature"},
    "set_validator_url": {"validator": "name", "url": "url"},
    "set_governance": {"approvals": "approvals"},
    "set_params": {"params": "params"},
    "set_read_policy": {"read_policy": "read_policy"},
    "set_company_prefixes": {"member": "name", "company_prefixes": "company_prefixes"},
    "approve": {"proposal": "hash"},
}


def shape_error(message: str) -> InvalidRecord:
    return InvalidRecord(f"change: {message}", rule="change shape")


def _check_field(kind: str, name: str, value: Any) -> None:
    ok: bool
    if kind == "name":
        ok = type(value) is str and NAME.fullmatch(value) is not None
    elif kind == "text":
        ok = type(value) is str and 0 < len(value) <= 128
    elif kind == "key":
        ok = type(value) is bytes and len(value) == PUBLIC_KEY_SIZE
    elif kind == "signature":
        ok = type(value) is bytes and len(value) == SIGNATURE_SIZE
    elif kind == "hash":
        ok = type(value) is bytes and len(value) == HASH_SIZE
    elif kind == "url":
        ok = type(value) is str and value.startswith(("http://", "https://")) and len(value) <= 256
    elif kind == "roles":
        ok = (type(value) is list and bool(value) and all(type(r) is str and r in ROLES for r in value)
              and len(set(value)) == len(value))
    elif kind == "approvals":
        ok = value == "majority" if type(value) is str else (type(value) is int and 1 <= value <= 1000)
    elif kind == "read_policy":
        ok = type(value) is str and value in READ_POLICIES
    elif kind == "company_prefixes":
        ok = company_prefix_problem(value) is None
    elif kind == "params":
        ok = (type(value) is dict and bool(value) and set(value) <= CHANGEABLE_PARAMS
              and all(type(v) is int and 0 < v < 2**63 for v in value.values()))
    else:  # pragma: no cover
        ok = False
    if not ok:
        raise shape_error(f"{name} is not a valid {kind}")


def check_change(change: Any) -> None:
    """The shape of a change map: a known op, exactly its fields, each of its exact type."""
    if type(change) is not dict or type(change.get("op")) is not str or change["op"] not in OPS:
        raise shape_error(f"a map with an op of {sorted(OPS)} expected")
    fields = OPS[change["op"]]
    if set(change) != {"op", *fields}:
        raise shape_error(f"{change['op']} takes exactly {sorted(fields)}")
    for name, kind in fields.items():
        _check_field(kind, name, change[name])


def possession_body(chain: bytes, name: str, public_key: bytes) -> bytes:
    """What a new key signs (kind ``possession``) to prove its holder asked to join or rotate: the
    name it will carry, a zero byte, and the key itself. Without it an admin could enrol a key whose
    private half belongs to someone else."""
    return name.encode("utf-8") + b"\x00" + public_key


def _check_possession(chain: bytes, change: Mapping[str, Any], name: str) -> None:
    body = possession_body(chain, name, change["public_key"])
    if not Verifier(change["public_key"]).verify(change["proof"], POSSESSION_KIND, chain, body):
        raise InvalidRecord(f"change: the new key's proof of possession does not verify (for {name!r})",
                            rule="change refused")


@dataclass
class Proposal:
    """A proposed change, its approvals so far and, once approved, the height it is in force from."""

    id: bytes
    height: int
    index: int
    proposer: str  # member name
    change: dict[str, Any]
    approvals: list[str] = field(default_factory=list)  # member names, in ledger order
    entries: list[tuple[int, int]] = field(default_factory=list)  # (height, index) of the proposal and approvals
    approved_at: int | None = None  # height of the approving block
    effective: int | None = None  # first height the change governs

    def describe(self) -> dict[str, Any]:
        return {"id": self.id.hex(), "height": self.height, "index": self.index, "proposer": self.proposer,
                "change": hexify(self.change), "approvals": list(self.approvals),
                "status": "open" if self.approved_at is None else "approved",
                "approved_at": self.approved_at, "effective": self.effective}


class Governance:
    """The consortium at every height, replayed from genesis one block at a time.

    ``at(h)`` is the consortium that governs block h; ``latest`` has every approved change applied,
    even those not yet in force (new proposals are checked against it). ``apply`` checks each change
    entry of a block against the state before it and applies it; a failing entry raises with its
    rule and changes nothing after it (callers apply on a ``fork()`` when the block may be refused).
    """

    def __init__(self, genesis: Consortium) -> None:
        self.genesis = genesis
        self.heights: list[int] = [0]  # heights[i]: first height governed by configs[i]
        self.configs: list[Consortium] = [genesis]
        self.latest = genesis
        self.proposals: dict[bytes, Proposal] = {}
        self.height = 0  # the last block applied
        self.delay = genesis.params["window"] + 1

    def fork(self) -> "Governance":
        """A copy to try blocks on (the proposals' approval lists are copied; consortia are immutable)."""
        other = copy.copy(self)
        other.heights, other.configs = list(self.heights), list(self.configs)
        other.proposals = {k: copy.copy(p) for k, p in self.proposals.items()}
        for p in other.proposals.values():
            p.approvals, p.entries = list(p.approvals), list(p.entries)
        return other

    def at(self, height: int) -> Consortium:
        """The consortium governing block ``height``."""
        return self.configs[bisect.bisect_right(self.heights, height) - 1]

    def changes(self) -> list[Proposal]:
        """Approved proposals in the order they were approved."""
        return sorted((p for p in self.proposals.values() if p.approved_at is not None),
                      key=lambda p: (p.approved_at or 0, p.effective or 0, p.height, p.index))

    def change_entries(self, to: int) -> list[tuple[int, int]]:
        """(height, index) of every entry of the proposals approved at or below ``to``, in chain order:
        what a verifier replays to know the consortium at any height up to ``to`` (``replay``)."""
        return sorted(e for p in self.changes() if (p.approved_at or 0) <= to for e in p.entries)

    # -- checking and applying -----------------------------------------------------------------
    def apply(self, height: int, entries: Iterable[tuple[int, SignedRecord]]) -> list[Proposal]:
        """Check and apply the change entries ``(index, record)`` of block ``height``, in block order.

        Each entry's signer must be an active admin of the consortium governing ``height``; returns
        the proposals this block approved. Raises ``InvalidRecord`` naming the rule.
        """
        if height <= self.height:
            raise ValueError(f"block {height} is already applied (at {self.height})")
        governing = self.at(height)
        approved: list[Proposal] = []
        for index, record in entries:
            p = self._apply_entry(governing, height, index, record)
            if p is not None:
                approved.append(p)
        self.height = height
        return approved

    def try_entry(self, height: int, index: int, record: SignedRecord) -> None:
        """Apply one entry of a block still being assembled (a primary choosing its records): on a
        refusal nothing changes. ``height`` stays where it is; ``apply`` completes blocks."""
        trial = self.fork()
        trial._apply_entry(trial.at(height), height, index, record)
        self.__dict__.update(trial.__dict__)

    def check_entry(self, record: SignedRecord, height: int) -> None:
        """Would ``record`` be accepted in block ``height`` on top of this state? (admission)"""
        self.fork()._apply_entry(self.at(height), height, 0, record)

    def _apply_entry(self, governing: Consortium, height: int, index: int, record: SignedRecord) -> Proposal | None:
        change = record.fields["change"]
        check_change(change)
        signer = governing.members.get(record.submitter)
        if signer is None or not signer.active or "admin" not in signer.roles:
            who = signer.name if signer is not None else record.submitter
            raise InvalidRecord(f"change: {who} is not an active admin at height {height}", rule="not an admin",
                                submitter=record.submitter)
        if change["op"] == "approve":
            p = self.proposals.get(change["proposal"])
            if p is None:
                raise InvalidRecord(f"change: no proposal {change['proposal'].hex()} on the chain",
                                    rule="unknown proposal")
            if p.approved_at is not None:
                raise InvalidRecord(f"change: proposal {p.id.hex()[:16]} was approved at height {p.approved_at}",
                                    rule="proposal closed")
            if signer.name in p.approvals:
                raise InvalidRecord(f"change: {signer.name} already approved proposal {p.id.hex()[:16]}",
                                    rule="approved twice")
        else:
            self._precheck(change, governing)
            p = Proposal(record.id, height, index, signer.name, change)
            if p.id in self.proposals:  # pragma: no cover - a record id is on the chain once
                raise InvalidRecord("change: proposal already on the chain", rule="duplicate record")
            self.proposals[p.id] = p
        p.approvals.append(signer.name)
        p.entries.append((height, index))
        admins = {m.name for m in governing.admins()}
        have = [a for a in p.approvals if a in admins]
        if len(have) < governing.approvals_needed():
            return None
        # Approved: the change applies to the latest consortium now, and governs from height + delay.
        self.latest = self.latest.changed(p.change)
        p.approved_at, p.effective = height, height + self.delay
        self.latest = _since(self.latest, p.effective)
        if self.heights[-1] == p.effective:
            self.configs[-1] = self.latest
        else:
            self.heights.append(p.effective)
            self.configs.append(self.latest)
        return p

    def _precheck(self, change: Mapping[str, Any], governing: Consortium) -> None:
        """A proposal must apply to the latest consortium (and prove its new key) when it is made."""
        if "proof" in change:
            name = change.get("name") or change.get("member") or change.get("validator")
            _check_possession(self.genesis.hash, change, str(name))
        self.latest.changed(change)  # raises ``change refused`` if it cannot apply now

    def needed(self, proposal: Proposal) -> str:
        """Why a proposal is still open, in words: "needs 3 of 5 admins, has 2: acme, tani"."""
        governing = self.at(self.height + 1)
        admins = governing.admins()
        have = [a for a in proposal.approvals if a in {m.name for m in admins}]
        return (f"needs {governing.approvals_needed()} of {len(admins)} admins, has {len(have)}: "
                + ", ".join(have))


def _since(c: Consortium, height: int) -> Consortium:
    c.since = height
    return c
