"""The consortium at a height: its members and their roles, its validators, its governance rule and limits.

The genesis file gives the consortium at height 0 (``Genesis`` is a ``Consortium``); every change the
members' admins approve on the ledger gives the next one (``Consortium.changed``), in effect from a
height every node computes the same way (``governance``). Every validity rule is checked against the
consortium *in force at the record's or block's height*, so a record signed before a member left
stays valid forever, and one signed after is refused.

A ``Consortium`` is immutable: a change returns a new one. The rules that keep a network usable
live here, in ``changed``: a change never leaves fewer than ``MIN_VALIDATORS`` validators, never an
unreachable governance threshold, never two members with one name or one key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rantai.consensus.certificate import max_faulty
from rantai.consensus.crypto import Verifier, key_id

from .errors import InvalidRecord

__all__ = ["DEFAULT_PARAMS", "CHANGEABLE_PARAMS", "MIN_VALIDATORS", "READ_POLICIES", "ROLES", "Consortium", "Member",
           "Validator", "company_prefix_problem", "prefix_clash"]

ROLES = frozenset({"submitter", "auditor", "admin"})
MIN_VALIDATORS = 4  # n = 3f+1 with f >= 1: below this, one fault stops or forks the chain

DEFAULT_PARAMS: dict[str, int] = {
    "max_block_records": 2048,
    "max_block_bytes": 8 * 1024 * 1024,
    "max_record_bytes": 64 * 1024,
    "checkpoint_interval": 16,
    "window": 8,
    "batch_timeout_ms": 2,
    "view_change_timeout_ms": 2000,
    "view_change_timeout_max_ms": 30000,
    "max_clock_skew_ms": 15000,
}
# The limits governance may change on a running chain; the consensus timing parameters are fixed at genesis.
CHANGEABLE_PARAMS = frozenset({"max_block_records", "max_block_bytes", "max_record_bytes", "max_clock_skew_ms"})

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

# Who may read what (docs/governance.md, "Read policy"): "members" unless the genesis or governance says otherwise.
READ_POLICIES = ("members", "public", "parties")
DEFAULT_READ_POLICY = "members"
MAX_COMPANY_PREFIXES = 64  # per member: a large brand owner holds a handful; the limit keeps entries small
_COMPANY_PREFIX = re.compile(r"[0-9]{4,12}\Z")  # a GS1 Company Prefix: 4 to 12 digits (GS1 General Specifications)


def company_prefix_problem(prefixes: object) -> str | None:
    """Why ``prefixes`` is not a member's list of GS1 Company Prefixes (None when it is one): distinct
    strings of 4 to 12 digits, at most ``MAX_COMPANY_PREFIXES``."""
    if type(prefixes) is not list or len(prefixes) > MAX_COMPANY_PREFIXES:
        return f"a list of at most {MAX_COMPANY_PREFIXES} GS1 Company Prefixes expected"
    if not all(type(p) is str and _COMPANY_PREFIX.match(p) for p in prefixes):
        return "each GS1 Company Prefix is a string of 4 to 12 digits"
    if len(set(prefixes)) != len(prefixes):
        return "a GS1 Company Prefix appears twice"
    return None


def prefix_clash(members: Iterable["Member"]) -> str | None:
    """Two members' GS1 Company Prefixes where one begins the other (or they are equal), in words; None when
    every identifier has at most one owner. GS1 allocates prefixes that way (no prefix begins another), and
    a Digital Link key carries no separator, so an identifier must never match two members."""
    owned = sorted((p, m.name) for m in members for p in m.company_prefixes)
    for (p, a), (q, b) in zip(owned, owned[1:], strict=False):
        if q.startswith(p):
            return f"GS1 Company Prefix {q} ({b}) begins with {p} ({a}): an identifier would belong to both"
    return None


@dataclass(frozen=True)
class Validator:
    id: str
    name: str
    public_key: bytes
    url: str
    verifier: Verifier = field(repr=False, compare=False)

    @classmethod
    def of(cls, public_key: bytes, name: str, url: str) -> "Validator":
        return cls(key_id(public_key), name, public_key, url.rstrip("/"), Verifier(public_key))


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    organisation: str
    public_key: bytes
    roles: frozenset[str]
    verifier: Verifier = field(repr=False, compare=False)
    active: bool = True  # False while suspended: its records are refused, its approvals do not count
    # Under the "parties" read policy the member reads events naming an identifier under one of these
    # (docs/governance.md, "Read policy"), and the records of every key it has held (``former_ids``).
    company_prefixes: tuple[str, ...] = ()
    former_ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, public_key: bytes, name: str, organisation: str, roles: frozenset[str] | set[str],
           company_prefixes: Iterable[str] = ()) -> "Member":
        return cls(key_id(public_key), name, organisation, public_key, frozenset(roles), Verifier(public_key),
                   company_prefixes=tuple(company_prefixes))


def refused(message: str) -> InvalidRecord:
    """A change that would break the consortium (rule ``change refused``)."""
    return InvalidRecord(f"change: {message}", rule="change refused")


class Consortium:
    """Members, validators, governance rule and limits in force from ``since`` (a height) on."""

    def __init__(
        self,
        *,
        chain: bytes,
        chain_id: str,
        validators: tuple[Validator, ...],
        members: Mapping[str, Member],
        params: Mapping[str, int],
        approvals: int | None,
        since: int = 0,
        version: int = 0,
        retired: frozenset[str] = frozenset(),
        read_policy: str = DEFAULT_READ_POLICY,
    ) -> None:
        self.hash = chain  # the genesis hash: the chain's name in every signature
        self.chain_id = chain_id
        self.validators = validators
        self.members: dict[str, Member] = dict(members)  # by key id; a rotated key is a new id
        self.params: dict[str, int] = dict(params)
        self.approvals = approvals  # None: a majority of the active admins
        self.since = since
        self.version = version  # how many changes are applied since genesis
        self.retired = retired  # key ids of removed members and of rotated-away keys: refused with their reason
        self.read_policy = read_policy  # one of READ_POLICIES: who may read what (client/format/read_access.py)
        self.validator_by_id = {v.id: v for v in validators}
        self.validator_verifiers = {v.id: v.verifier for v in validators}

    # -- derived views -------------------------------------------------------------------
    @property
    def f(self) -> int:
        return max_faulty(len(self.validators))

    @property
    def quorum(self) -> int:
        return len(self.validators) - self.f

    def member_by_name(self, name: str) -> Member | None:
        for m in self.members.values():
            if m.name == name:
                return m
        return None

    def validator_by_name(self, name: str) -> Validator | None:
        for v in self.validators:
            if v.name == name:
                return v
        return None

    def admins(self) -> list[Member]:
        """The active members holding the admin role, in name order."""
        return sorted((m for m in self.members.values() if m.active and "admin" in m.roles), key=lambda m: m.name)

    def approvals_needed(self) -> int:
        """How many distinct active admins must approve a change (the governance rule in force)."""
        if self.approvals is not None:
            return self.approvals
        return len(self.admins()) // 2 + 1

    def describe(self) -> dict[str, Any]:
        """The consortium as JSON-able data (``GET /v1/config``, ``rantai members``)."""
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.hash.hex(),
            "since": self.since,
            "version": self.version,
            "governance": {"approvals": self.approvals if self.approvals is not None else "majority",
                           "needed": self.approvals_needed(), "admins": [m.name for m in self.admins()]},
            "validators": [{"id": v.id, "name": v.name, "public_key": v.public_key.hex(), "url": v.url}
                           for v in self.validators],
            "members": [{"id": m.id, "name": m.name, "organisation": m.organisation, "public_key": m.public_key.hex(),
                         "roles": sorted(m.roles), "active": m.active, "company_prefixes": list(m.company_prefixes)}
                        for m in sorted(self.members.values(), key=lambda m: m.name)],
            "params": dict(sorted(self.params.items())),
            "read_policy": self.read_policy,
        }

    # -- changes -------------------------------------------------------------------------
    def _copy(self, **kw: Any) -> "Consortium":
        args: dict[str, Any] = {"chain": self.hash, "chain_id": self.chain_id, "validators": self.validators,
                                "members": self.members, "params": self.params, "approvals": self.approvals,
                                "since": self.since, "version": self.version + 1, "retired": self.retired,
                                "read_policy": self.read_policy}
        args.update(kw)
        return Consortium(**args)

    def _member(self, name: str) -> Member:
        m = self.member_by_name(name)
        if m is None:
            raise refused(f"no member named {name!r}")
        return m

    def _validator(self, name: str) -> Validator:
        v = self.validator_by_name(name)
        if v is None:
            raise refused(f"no validator named {name!r}")
        return v

    def _key_is_new(self, public_key: bytes) -> None:
        kid = key_id(public_key)
        if kid in self.members or kid in self.validator_by_id or kid in self.retired:
            raise refused(f"key {kid} is already in use")

    def changed(self, change: Mapping[str, Any]) -> "Consortium":
        """The consortium after ``change`` (a checked change map, ``governance.check_change``).

        Raises ``InvalidRecord`` (rule ``change refused``) when the change cannot apply here or would
        leave the network unable to run or to govern itself.
        """
        op = change["op"]
        members = dict(self.members)
        retired = set(self.retired)
        validators = list(self.validators)
        if op == "add_member":
            if self.member_by_name(change["name"]) is not None:
                raise refused(f"a member named {change['name']!r} exists")
            self._key_is_new(change["public_key"])
            m = Member.of(change["public_key"], change["name"], change["organisation"], set(change["roles"]))
            members[m.id] = m
        elif op in ("set_roles", "suspend_member", "reinstate_member", "remove_member", "rotate_key",
                    "set_company_prefixes"):
            m = self._member(change["member"])
            if op == "set_roles":
                members[m.id] = replace(m, roles=frozenset(change["roles"]))
            elif op == "suspend_member":
                if not m.active:
                    raise refused(f"member {m.name} is already suspended")
                members[m.id] = replace(m, active=False)
            elif op == "reinstate_member":
                if m.active:
                    raise refused(f"member {m.name} is not suspended")
                members[m.id] = replace(m, active=True)
            elif op == "remove_member":
                del members[m.id]
                retired.add(m.id)
            elif op == "set_company_prefixes":
                if list(m.company_prefixes) == change["company_prefixes"]:
                    raise refused(f"member {m.name} already has these GS1 Company Prefixes")
                members[m.id] = replace(m, company_prefixes=tuple(change["company_prefixes"]))
                clash = prefix_clash(members.values())
                if clash:
                    raise refused(clash)
            else:  # rotate_key: same member, new key (and so a new id); the old key signs nothing more
                self._key_is_new(change["public_key"])
                del members[m.id]
                retired.add(m.id)
                new = Member.of(change["public_key"], m.name, m.organisation, m.roles, m.company_prefixes)
                members[new.id] = replace(new, active=m.active, former_ids=m.former_ids | {m.id})
        elif op == "add_validator":
            if self.validator_by_name(change["name"]) is not None:
                raise refused(f"a validator named {change['name']!r} exists")
            self._key_is_new(change["public_key"])
            validators.append(Validator.of(change["public_key"], change["name"], change["url"]))
        elif op in ("remove_validator", "rekey_validator", "set_validator_url"):
            v = self._validator(change["validator"])
            at = validators.index(v)
            if op == "remove_validator":
                del validators[at]
            elif op == "rekey_validator":
                self._key_is_new(change["public_key"])
                validators[at] = Validator.of(change["public_key"], v.name, v.url)
            else:
                validators[at] = Validator.of(v.public_key, v.name, change["url"])
        elif op == "set_governance":
            pass
        elif op == "set_params":
            pass
        elif op == "set_read_policy":
            if change["read_policy"] == self.read_policy:
                raise refused(f"the read policy is already {self.read_policy!r}")
        else:  # pragma: no cover - check_change admits only the ops above
            raise refused(f"unknown op {op!r}")
        approvals = self.approvals
        if op == "set_governance":  # "majority" is stored as None, as in the genesis (``approvals_needed``)
            approvals = None if change["approvals"] == "majority" else change["approvals"]
        params = {**self.params, **change["params"]} if op == "set_params" else self.params
        read_policy = change["read_policy"] if op == "set_read_policy" else self.read_policy
        after = self._copy(validators=tuple(validators), members=members, approvals=approvals, params=params,
                           retired=frozenset(retired), read_policy=read_policy)
        after._check_usable(removes_validator=op == "remove_validator")
        return after

    def _check_usable(self, *, removes_validator: bool) -> None:
        """The rules a changed consortium meets; a change that breaks one is refused."""
        if removes_validator and len(self.validators) < MIN_VALIDATORS:
            raise refused(f"it would leave {len(self.validators)} validators; at least {MIN_VALIDATORS} are needed "
                          "to tolerate one fault")
        admins = len(self.admins())
        if admins == 0:
            raise refused("it would leave no active admin: nobody could change the configuration again")
        if self.approvals is not None and self.approvals > admins:
            raise refused(f"it would need {self.approvals} approvals with only {admins} active admins: "
                          "governance would be locked out")
        if self.params["max_record_bytes"] > self.params["max_block_bytes"]:
            raise refused("max_record_bytes above max_block_bytes: a record could never fit in a block")
