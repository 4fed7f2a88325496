"""Admission control: how much work one client can make a node do, before and while it is done.

A record costs a node an Ed25519 verification (~100 µs of CPU, more than the rest of its
admission together), so a client that is not a member, or that sends records whose signatures
do not verify, must be refused before it costs many of them. Three kinds of token bucket, each
refilled continuously, sized in the node's TOML config (``[admission]``, docs/operations.md):

- per source address, in records (a request costs its record count, at least 1): a bound on the
  volume one machine can push, whoever it claims to be;
- per member (the records' ``submitter``), in admitted records: one member cannot fill the
  mempool for everyone. Only records that passed every rule are charged, so records forged in a
  member's name do not use up that member's budget;
- per source address (and per peer validator for gossiped records), in *refused* records
  (unknown member, role, signature, schema, shape): honest clients are almost never refused, so
  this budget is small, and a client that spends it is stopped before its next request is read
  and, within a request, before its next round of verifications.

Buckets run a deficit: a request is let in while its bucket holds a token and is then charged in
full, so one request is never split by a bucket, and the debt it leaves sets ``Retry-After``.
Buckets of addresses and members that were not seen for a while are forgotten (an LRU bounded by
``max_tracked``), so a scan of many addresses costs memory only up to that bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any

from rantai.client.format.errors import ConfigError, Overloaded

__all__ = ["CURRENT_TICKET", "Admission", "AdmissionConfig", "Bucket", "Ticket"]


@dataclass(frozen=True)
class AdmissionConfig:
    """Per-node limits (``[admission]`` in the node config). Rates are per second; bursts are bucket sizes."""

    address_records_per_s: float = 10_000.0
    address_burst: float = 20_000.0
    member_records_per_s: float = 2_000.0
    member_burst: float = 10_000.0
    refused_per_s: float = 20.0
    refused_burst: float = 512.0
    verify_round: int = 64  # records verified between two looks at the refusal budget
    max_tracked: int = 10_000  # addresses, members and peers whose buckets are remembered

    @classmethod
    def from_obj(cls, doc: Any) -> "AdmissionConfig":
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ConfigError("config: [admission] must be a table")
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in doc.items():
            if key not in known:
                raise ConfigError(f"config: admission.{key}: unknown setting (known: {', '.join(sorted(known))})")
            integral = key in ("verify_round", "max_tracked")
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)) or value <= 0:
                kind = "a positive integer" if integral else "a positive number"
                raise ConfigError(f"config: admission.{key} must be {kind}")
            values[key] = value if integral else float(value)
        return cls(**values)

    def to_obj(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Bucket:
    """A token bucket that may run into debt: ``ok()`` while it holds a token, ``take(n)`` charges ``n``."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ok(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1

    def take(self, n: float, now: float) -> None:
        self._refill(now)
        self.tokens -= n

    def give(self, n: float) -> None:
        self.tokens = min(self.burst, self.tokens + n)

    def retry_after(self, now: float) -> int:
        """Whole seconds until the bucket holds a token again (at least 1)."""
        self._refill(now)
        return max(1, math.ceil((1 - self.tokens) / self.rate))


class _Buckets:
    """Buckets by key, least recently used forgotten first."""

    def __init__(self, rate: float, burst: float, size: int) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self._by_key: OrderedDict[str, Bucket] = OrderedDict()

    def get(self, key: str, now: float) -> Bucket:
        b = self._by_key.get(key)
        if b is None:
            b = self._by_key[key] = Bucket(self.rate, self.burst, now)
            if len(self._by_key) > self.size:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        return b


class Admission:
    """The node's buckets, and the refusals they make (``Overloaded``, 429, with ``retry_after``)."""

    def __init__(self, config: AdmissionConfig | None = None, clock: Any = time.monotonic) -> None:
        self.config = c = config or AdmissionConfig()
        self.clock = clock
        self.addresses = _Buckets(c.address_records_per_s, c.address_burst, c.max_tracked)
        self.members = _Buckets(c.member_records_per_s, c.member_burst, c.max_tracked)
        self.refusals = _Buckets(c.refused_per_s, c.refused_burst, c.max_tracked)
        self.counters: dict[str, int] = {}

    def _count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    def _refuse(self, what: str, bucket: Bucket, now: float, message: str) -> Overloaded:
        self._count(what)
        seconds = bucket.retry_after(now)
        return Overloaded(f"{message}; retry in {seconds} s", retry_after=seconds)

    def before_body(self, address: str) -> Overloaded | None:
        """Refuse a client whose address is out of records or of refusals, before its body is read."""
        now = self.clock()
        refused = self.refusals.get(address, now)
        if not refused.ok(now):
            return self._refuse("refused-address-refusals", refused, now,
                                f"admission: too many refused records from {address}")
        volume = self.addresses.get(address, now)
        if not volume.ok(now):
            return self._refuse("refused-address-volume", volume, now,
                                f"admission: address {address} is over its rate of "
                                f"{self.config.address_records_per_s:g} records/s")
        return None

    def charge_address(self, address: str, records: int) -> None:
        now = self.clock()
        self.addresses.get(address, now).take(max(records, 1), now)

    def refused(self, key: str, n: int = 1) -> None:
        """Charge ``key``'s refusal budget for a request refused whole (a malformed or oversized body)."""
        now = self.clock()
        self._count("records-refused", n)
        self.refusals.get(key, now).take(n, now)

    def ticket(self, key: str) -> "Ticket":
        """What one request from ``key`` (an address, or ``peer:<id>``) may still cost."""
        return Ticket(self, key)


class Ticket:
    """One request's view of the buckets, used by ``RecordValidator.admit`` between rounds of work."""

    def __init__(self, admission: Admission, key: str) -> None:
        self.admission = admission
        self.key = key
        self.refused = 0

    def member_refusal(self, submitter: str) -> Overloaded | None:
        """An ``Overloaded`` when the member (by the submitter id a record claims) is out of records."""
        a = self.admission
        now = a.clock()
        bucket = a.members.get(submitter, now)
        if bucket.ok(now):
            return None
        return a._refuse("refused-member-volume", bucket, now,
                         f"admission: member {submitter} is over its rate of {a.config.member_records_per_s:g} "
                         "records/s")

    def admitted(self, submitter: str) -> None:
        a = self.admission
        now = a.clock()
        a.members.get(submitter, now).take(1, now)

    def failed(self, n: int) -> None:
        if n:
            self.refused += n
            self.admission.refused(self.key, n)

    def may_continue(self) -> Overloaded | None:
        """None while this request's source may still cost verifications; else why not."""
        a = self.admission
        now = a.clock()
        bucket = a.refusals.get(self.key, now)
        if bucket.ok(now):
            return None
        return a._refuse("refused-unchecked", bucket, now,
                         f"admission: not checked, too many refused records from {self.key}")


# The ticket of the request being served, for ``RecordValidator.admit``: set by the API around its
# call to ``Node.submit``, so admission control reaches the validator without the driver carrying it.
CURRENT_TICKET: ContextVar[Ticket | None] = ContextVar("rantai_admission_ticket", default=None)
