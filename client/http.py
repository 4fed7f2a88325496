"""The client library's network side: ``Client`` (sync) and ``AsyncClient`` over httpx.

Trust model: no node is trusted. Every answer is checked against the genesis file before it is
returned — the record's signature and membership, its Merkle inclusion path, the header hash and
the commit certificate (≥ 2f+1 distinct validators of the genesis). A node whose answer does not
check out is reported (``Client.failures``, the ``on_failure`` callback, the ``rantai.client``
logger) as a ``NodeVerificationError`` naming it, and the client asks the next node.

Layout (sans-I/O in the middle, after h11): each operation is a *flow*, a generator that yields
``_Call`` (one HTTP request, answered by the first node whose answer verifies) or ``_Sleep``, and
returns the result. ``Client`` and ``AsyncClient`` only differ in the driver that runs the flows,
so the verification and fail-over rules exist once.

Fail-over rules for one ``_Call``:

- a transport error, a 5xx, or an answer that fails verification is a *fault* of that node:
  it is recorded, and the next node is asked;
- a well-formed negative answer (404, a record rejected with a rule, 429) is an *answer*: the
  other nodes are still asked (one node could lie), and when no node gives a positive answer and
  all the answers agree, that answer's error is raised (``NotFound``, ``InvalidSignature`` …);
- otherwise ``NoNodeAvailable`` lists what every node said.

Idempotency: a record's id is SHA-256 of its signed bytes, known before sending, so a retry or a
fail-over resends the very same bytes; ``duplicate`` for that id means success, and the receipt is
fetched and verified like any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from rantai.consensus.certificate import CommitCertificate
from rantai.consensus.crypto import HASH_SIZE, Signer

from .format import errors as _errors
from .format import merkle
from .format.blocks import BlockHeader
from .format.encoding import decode, encode
from .format.errors import (
    InvalidProof,
    NodeError,
    Overloaded,
    RantaiError,
    RootMismatch,
    VerificationError,
)
from .format.genesis import Genesis
from .format.governance import Governance
from .format.receipts import Receipt
from .format.records import SignedRecord, sign_event
from .format.validity import check_head, replay_changes
from .tls import verify_option

__all__ = [
    "AsyncClient",
    "Client",
    "ForkDetected",
    "NoNodeAvailable",
    "NodeVerificationError",
    "NotFound",
    "StaleAnswer",
    "SubmitTimeout",
    "VerifiedHeader",
    "VerifiedRecord",
    "verify_receipt",
]

log = logging.getLogger("rantai.client")
log.addHandler(logging.NullHandler())  # a library logs only where the application configured logging

MSGPACK = "application/msgpack"
DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT = 30.0
_POLL_FIRST, _POLL_MAX = 0.05, 1.0


# -- errors this module adds (subclasses of the tree in errors.py) ------------------------------


class NodeVerificationError(VerificationError):
    """A node's answer that does not check out against the genesis; names the node and the rule."""

    def __init__(self, node: str, cause: BaseException) -> None:
        super().__init__(f"node {node}: {cause}", node=node)
        self.node = node
        self.cause = cause
        self.rule = getattr(cause, "rule", VerificationError.rule)


class StaleAnswer(VerificationError):
    """A verified answer older than what this client already verified (a lagging or lying node)."""

    rule = "stale"


class ForkDetected(VerificationError):
    """Two valid certificates for different blocks at one height: more than f validators are faulty."""

    rule = "fork"


class NotFound(RantaiError):
    status_hint = 404
    rule = "not found"


class NoNodeAvailable(NodeError):
    """No node gave a verifiable answer; ``failures`` holds what each one did."""

    def __init__(self, what: str, failures: Sequence[tuple[str, BaseException]]) -> None:
        said = "; ".join(f"{n}: {_strip_node(n, e)}" for n, e in failures) or "no node configured"
        super().__init__(f"{what}: no node gave a verifiable answer ({said})")
        self.failures = list(failures)


class SubmitTimeout(NodeError):
    """Records were accepted but not seen committed before the deadline (they may still commit)."""

    rule = "timeout"

    def __init__(self, message: str, record_ids: Sequence[bytes]) -> None:
        super().__init__(message, records=[r.hex() for r in record_ids])
        self.record_ids = list(record_ids)


def _strip_node(node: str, exc: BaseException) -> str:
    text = str(exc)
    prefix = f"node {node}: "
    return text[len(prefix):] if text.startswith(prefix) else text


# -- verified results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """A record with the receipt that proves it is committed; ``node`` is who served it."""

    receipt: Receipt
    node: str

    @property
    def record(self) -> SignedRecord:
        return self.receipt.record

    @property
    def id(self) -> bytes:
        return self.receipt.record.id

    @property
    def event(self) -> dict[str, Any]:
        return self.receipt.record.event

    @property
    def submitter(self) -> str:
        return self.receipt.record.submitter

    @property
    def submitted_at(self) -> int:
        return self.receipt.record.submitted_at

    @property
    def height(self) -> int:
        return self.receipt.header.height

    @property
    def index(self) -> int:
        return self.receipt.index

    @property
    def header(self) -> BlockHeader:
        return self.receipt.header

    def to_json(self) -> str:
        return self.receipt.to_json()


@dataclass(frozen=True, slots=True)
class VerifiedHeader:
    """The head a node reported, with its certificate checked; height 0 is the empty chain."""

    height: int
    hash: bytes  # the block hash, or the genesis hash for the empty chain
    header: BlockHeader | None
    certificate: CommitCertificate | None
    node: str


def verify_receipt(receipt: Receipt, genesis: Genesis, governance: Governance | None = None,
                   certified: set[bytes] | None = None) -> None:
    """``Receipt.verify`` with every failure as a ``RantaiError`` (merkle's own errors mapped to errors.py);
    ``certified``: (header, certificate) pairs already checked, as ``validity.check_receipt`` says."""
    try:
        receipt.verify(genesis, governance, certified)
    except merkle.RootMismatch as exc:
        err = RootMismatch(f"receipt: Merkle path of record {receipt.record.id.hex()} does not lead to the "
                           f"records root of block {receipt.header.height}", exc.expected, exc.calculated)
        err.rule = exc.rule  # validity's rule name ("inclusion proof")
        raise err from exc
    except merkle.InvalidProof as exc:
        raise InvalidProof(f"receipt: {exc}", rule=exc.rule) from exc
    except (ValueError, TypeError) as exc:
        if isinstance(exc, RantaiError):
            raise
        raise VerificationError(f"receipt: {exc}") from exc


# -- the sans-I/O core ---------------------------------------------------------------------------


class _NeedChanges(Exception):
    """An answer at a height beyond the configuration changes this client has verified: fetch them first."""

    def __init__(self, height: int) -> None:
        super().__init__(f"configuration changes up to height {height} are needed")
        self.height = height


class _Negative(Exception):
    """Raised by a parser for a well-formed negative answer (not a fault of the node)."""

    def __init__(self, error: RantaiError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Call:
    method: str
    path: str
    parse: Callable[[str, httpx.Response], Any]
    what: str
    params: dict[str, Any] | None = None
    body: bytes | None = None
    timeout: float | None = None
    first_answer: bool = False  # a negative answer ends the call (polling: a lie only delays)
    rotate: int = 0  # start this many nodes after the preferred one
    only: int | None = None  # ask this node (index) alone


@dataclass
class _HistoryPage:
    records: list["VerifiedRecord"]
    height: int
    next: str | None


@dataclass
class _Sleep:
    seconds: float


_Flow = Generator["_Call | _Sleep", Any, Any]

_PENDING = object()


def _error_classes() -> dict[str, type[RantaiError]]:
    table: dict[str, type[RantaiError]] = {}
    todo: list[type[RantaiError]] = [RantaiError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__init__ is RantaiError.__init__ and cls.rule not in table:
            table[cls.rule] = cls
    return table


_ERRORS_BY_RULE = _error_classes()


class RemoteError(RantaiError):
    """A node's error whose rule this client does not know; ``rule`` is the node's."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def _error_from_body(obj: Any, status: int) -> RantaiError:
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        rule = obj["error"]
        message: str = obj["message"] if isinstance(obj.get("message"), str) else rule
        cls = _ERRORS_BY_RULE.get(rule)
        if cls is not None and cls not in (VerificationError, NodeError) and not issubclass(cls, VerificationError):
            # the node's details (e.g. a duplicate event's ``existing`` record) stay with the error
            return cls(message, **{k: v for k, v in obj.items() if k not in ("error", "message", "rule")})
        return RemoteError(rule, message)
    return RemoteError("http", f"HTTP {status}")


class _Core:
    """Everything but the I/O: request building, answer verification, node order, reporting."""

    def __init__(
        self,
        genesis: Genesis | str | os.PathLike[str],
        nodes: Sequence[str] | None,
        identity: Signer | None,
        timeout: float,
        wait_timeout: float,
        on_failure: Callable[[str, RantaiError], None] | None,
    ) -> None:
        self.genesis = genesis if isinstance(genesis, Genesis) else Genesis.load(genesis)
        urls = list(nodes) if nodes else [v.url for v in self.genesis.validators]
        self.nodes = [u.rstrip("/") for u in urls]
        if not self.nodes:
            raise NodeError("client: no node URL given and the genesis names none")
        self.identity = identity
        self.timeout = timeout
        self.wait_timeout = wait_timeout
        self.on_failure = on_failure
        self.failures: deque[tuple[str, RantaiError]] = deque(maxlen=256)
        self.known_height = 0
        self._hashes: dict[int, bytes] = {}
        self._certified: set[bytes] = set()  # (header, certificate) pairs verified (validity.check_receipt)
        self._preferred = 0
        # The configuration changes verified so far (docs/governance.md): they decide who may sign
        # and which validators certify at each height; receipts carry them for offline checks.
        self.changes: tuple[Receipt, ...] = ()
        self.changes_to = 0
        self.governance = Governance(self.genesis)

    # -- node order and reporting ----------------------------------------------------------------
    def _order(self, call: _Call) -> list[int]:
        n = len(self.nodes)
        if call.only is not None:
            return [call.only % n]
        start = (self._preferred + call.rotate) % n
        return [(start + k) % n for k in range(n)]

    def _fault(self, node: str, exc: RantaiError) -> None:
        self.failures.append((node, exc))
        log.warning("%s", exc)
        if self.on_failure is not None:
            self.on_failure(node, exc)

    def _settle(self, call: _Call, failures: list[tuple[str, BaseException]]) -> RantaiError:
        answers = [e.error for _, e in failures if isinstance(e, _Negative)]
        if answers and len({a.rule for a in answers}) == 1:
            return answers[0]
        return NoNodeAvailable(call.what, [(n, e.error if isinstance(e, _Negative) else e) for n, e in failures])

    def _classify(self, node: str, exc: BaseException) -> BaseException:
        """A parser's exception as a recorded fault or a negative answer."""
        if isinstance(exc, _Negative):
            return exc
        if isinstance(exc, NodeError):
            wrapped: RantaiError = NodeError(f"node {node}: {exc}", node=node)
        else:
            wrapped = NodeVerificationError(node, exc)
        self._fault(node, wrapped)
        return wrapped

    def _transport_fault(self, node: str, exc: httpx.HTTPError) -> NodeError:
        kind = type(exc).__name__
        detail = str(exc) or kind
        err = NodeError(f"node {node}: unreachable ({kind}: {detail})" if isinstance(exc, httpx.TransportError)
                        else f"node {node}: {detail}", node=node)
        self._fault(node, err)
        return err

    def _request_kwargs(self, call: _Call) -> dict[str, Any]:
        headers = {"accept": MSGPACK}
        if call.body is not None:
            headers["content-type"] = MSGPACK
        kw: dict[str, Any] = {"params": call.params, "content": call.body, "headers": headers}
        if call.timeout is not None:
            kw["timeout"] = call.timeout
        return kw

    # -- answer checking ------------------------------------------------------------------------
    def _observe(self, header: BlockHeader) -> None:
        h = header.height
        digest = header.hash
        seen = self._hashes.get(h)
        if seen is not None and seen != digest:
            raise ForkDetected(f"height {h}: two validly certified blocks ({seen.hex()[:16]}…, {digest.hex()[:16]}…)")
        if len(self._hashes) > 100_000:
            self._hashes.clear()
        self._hashes[h] = digest
        if h > self.known_height:
            self.known_height = h

    def _decode_body(self, resp: httpx.Response) -> Any:
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        if ctype != MSGPACK:
            raise VerificationError(f"expected {MSGPACK}, got {ctype or 'no content type'} (HTTP {resp.status_code})")
        return decode(resp.content)

    def _check_status(self, resp: httpx.Response, ok: Iterable[int]) -> None:
        status = resp.status_code
        if status in ok:
            return
        if status >= 500:
            raise NodeError(f"HTTP {status}")
        obj: Any = None
        try:
            ctype = resp.headers.get("content-type", "")
            obj = decode(resp.content) if ctype.startswith(MSGPACK) else resp.json()
        except Exception:
            obj = None
        error = NotFound("not found") if status == 404 and not isinstance(obj, dict) else _error_from_body(obj, status)
        if status == 404 and error.rule != "not found":
            error = NotFound(error.message)
        if status == 429:
            error = Overloaded(error.message if isinstance(error, RemoteError) else str(error))
        raise _Negative(error)

    def _receipt(self, node: str, obj: Any, expected_id: bytes | None) -> Receipt:
        receipt = Receipt.from_obj(obj)
        if expected_id is not None and receipt.record.id != expected_id:
            raise VerificationError(f"asked for record {expected_id.hex()}, "
                                    f"got a receipt for {receipt.record.id.hex()}")
        if receipt.height > self.changes_to + 1:  # the consortium at that height is not known yet
            raise _NeedChanges(receipt.height)
        receipt = receipt.with_changes(self.changes)
        if len(self._certified) > 100_000:
            self._certified.clear()
        # a history page holds up to 1000 receipts of few blocks: each block's certificate is checked once
        verify_receipt(receipt, self.genesis, self.governance, self._certified)
        self._observe(receipt.header)
        return receipt

    def changes_flow(self, to: int | None) -> _Flow:
        """Fetch and verify the configuration changes up to height ``to`` (each against the consortium
        in force at its own height, from the genesis on), and keep them."""

        def parse(node: str, resp: httpx.Response) -> tuple[int, tuple[Receipt, ...], Governance]:
            self._check_status(resp, (200,))
            obj = self._decode_body(resp)
            if type(obj) is not dict or type(obj.get("to")) is not int or type(obj.get("changes")) is not list:
                raise VerificationError("changes: a map of to and changes expected")
            if to is not None and obj["to"] < to - 1:
                raise NodeError(f"changes: the node is at height {obj['to']}, behind {to - 1}")
            receipts = tuple(Receipt.from_obj(r) for r in obj["changes"])
            if any(r.height > obj["to"] for r in receipts):
                raise VerificationError("changes: an entry above the height the node says it answers for")
            return obj["to"], receipts, replay_changes(self.genesis, receipts)

        got_to, receipts, gov = yield _Call("GET", "/v1/changes", parse, f"changes to {to or 'the head'}",
                                            params=None if to is None else {"to": to})
        if got_to > self.changes_to:
            self.changes_to, self.changes, self.governance = got_to, receipts, gov
        return self.changes

    # -- operations as flows --------------------------------------------------------------------
    def sign(self, event: dict[str, Any]) -> SignedRecord:
        """The record this client would submit for ``event``, checked locally first."""
        if self.identity is None:
            raise _errors.InvalidKey("client: no identity (signing key) given; submitting needs one")
        record = sign_event(self.identity, self.genesis, event)
        record.verify(self.governance.latest)  # our own mistakes are reported before any node is asked
        return record

    def _get_call(self, record_id: bytes, *, first_answer: bool = False, rotate: int = 0) -> _Call:
        def parse(node: str, resp: httpx.Response) -> VerifiedRecord:
            self._check_status(resp, (200,))
            return VerifiedRecord(self._receipt(node, self._decode_body(resp), record_id), node)

        return _Call("GET", f"/v1/records/{record_id.hex()}", parse, f"record {record_id.hex()}",
                     first_answer=first_answer, rotate=rotate)

    def get_flow(self, record_id: bytes | str) -> _Flow:
        rid = _record_id(record_id)
        try:
            return (yield self._get_call(rid))
        except NotFound as exc:
            raise NotFound(f"record {rid.hex()}: not found (asked {_plural(len(self.nodes), 'node')})") from exc

    def head_flow(self) -> _Flow:
        def parse(node: str, resp: httpx.Response) -> VerifiedHeader:
            self._check_status(resp, (200,))
            obj = self._decode_body(resp)
            if type(obj) is not dict:
                raise VerificationError("head: a map expected", rule="head")
            height, _, header, cert = check_head(obj, self.genesis)
            if header is None or cert is None:
                if self.known_height > 0:
                    raise StaleAnswer(f"head: empty chain, but height {self.known_height} is already verified")
                return VerifiedHeader(0, self.genesis.hash, None, None, node)
            if height < self.known_height:
                raise StaleAnswer(f"head: height {height}, but height {self.known_height} is already verified")
            self._observe(header)
            return VerifiedHeader(height, header.hash, header, cert, node)

        return (yield _Call("GET", "/v1/head", parse, "head"))

    def _history_call(self, item_id: str, params: dict[str, Any], last: tuple[int, int], pinned: int | None,
                      only: int | None) -> _Call:
        """One page of ``GET /v1/items/{item}/history``, verified: the pinned height's certificate, every
        receipt (at or below that height, naming the item, after ``last`` in chain order), and the paging fields."""
        from .trace import identifiers

        def parse(node: str, resp: httpx.Response) -> _HistoryPage:
            self._check_status(resp, (200,))
            obj = self._decode_body(resp)
            if (not isinstance(obj, dict) or obj.get("item") != item_id or not isinstance(obj.get("receipts"), list)
                    or type(obj.get("height")) is not int or type(obj.get("complete")) is not bool
                    or not isinstance(obj.get("next"), (str, type(None))) or obj["complete"] != (obj["next"] is None)):
                raise VerificationError(f"history: a map with item {item_id!r}, height, receipts, complete and next "
                                        "expected")
            height = obj["height"]
            if pinned is not None and height != pinned:
                raise VerificationError(f"history: asked as of height {pinned}, answered as of {height}")
            if height > 0:  # the height the pages are pinned to is a certified block, not a claim
                head = obj.get("head")
                if type(head) is not dict:
                    raise VerificationError("history: the header and certificate of the pinned height expected")
                if height > self.changes_to + 1:
                    raise _NeedChanges(height)
                _, _, header, _ = check_head(head, self.governance.at(height))
                if header is not None:
                    self._observe(header)
            out: list[VerifiedRecord] = []
            pos = last
            for i, r in enumerate(obj["receipts"]):
                receipt = self._receipt(node, r, None)
                if receipt.header.height > height:
                    raise VerificationError(f"history: record {receipt.record.id.hex()} is at height "
                                            f"{receipt.header.height}, above the answer's height {height}")
                if item_id not in identifiers(receipt.record.event):
                    raise VerificationError(f"history: record {receipt.record.id.hex()} does not name {item_id}")
                here = (receipt.header.height, receipt.index)
                if here <= pos:
                    raise VerificationError(f"history: receipt {i} is out of chain order or repeated")
                pos = here
                out.append(VerifiedRecord(receipt, node))
            if obj["next"] is not None and not out:
                raise VerificationError("history: an empty page that says more follow")
            return _HistoryPage(out, height, obj["next"])

        return _Call("GET", f"/v1/items/{quote(item_id, safe='')}/history", parse, f"history of {item_id}",
                     params=params, only=only)

    def history_pages_flow(self, item_id: str, *, only: int | None = None, pin: int | None = None,
                           page_size: int | None = None) -> _Flow:
        """Every page of an item's history as of one height: (verified records in chain order, that height).

        Later pages may come from another node (``only`` None): a page token means the same on every
        validator at or past its height, and each page is verified on its own.
        """
        size = {} if page_size is None else {"limit": page_size}
        params: dict[str, Any] = {**size, **({} if pin is None else {"height": pin})}
        records: list[VerifiedRecord] = []
        last, pinned = (0, -1), pin
        while True:
            page = yield self._history_call(item_id, params, last, pinned, only)
            records.extend(page.records)
            if page.next is None:
                return records, page.height
            last, pinned = (records[-1].height, records[-1].index), page.height
            params = {**size, "page": page.next}

    def history_flow(self, item_id: str, cross_check: bool = False, page_size: int | None = None) -> _Flow:
        if not cross_check:
            try:
                records, _ = yield from self.history_pages_flow(item_id, page_size=page_size)
            except NotFound:
                return []
            return records
        # Completeness: a node can leave records out, and nothing in a receipt shows it. The union of
        # f+1 verified answers from distinct nodes includes at least one honest node's history. Every
        # node after the first is asked as of the first one's (certified) height, all pages from itself.
        need = self.genesis.f + 1
        merged: dict[bytes, VerifiedRecord] = {}
        answered = 0
        pin: int | None = None
        problems: list[tuple[str, BaseException]] = []
        first = self._preferred  # read once: every answer moves the preference, and each node is asked once
        for k in range(len(self.nodes)):
            if answered >= need:
                break
            try:
                got, height = yield from self.history_pages_flow(item_id, only=first + k, pin=pin,
                                                                 page_size=page_size)
            except NotFound:
                got, height = [], pin
            except RantaiError as exc:  # this node could not give its whole answer: ask the next one
                problems.extend(exc.failures if isinstance(exc, NoNodeAvailable)
                                else [(self.nodes[(first + k) % len(self.nodes)], exc)])
                continue
            answered += 1
            pin = height if pin is None else pin
            for vr in got:
                merged.setdefault(vr.id, vr)
        if answered < need:
            raise NoNodeAvailable(f"history of {item_id} from {need} nodes", problems)
        return sorted(merged.values(), key=lambda vr: (vr.height, vr.index))

    def submit_flow(self, records: Sequence[SignedRecord], wait: bool, timeout: float | None) -> _Flow:
        """Submit ``records`` as one request; returns a list of Receipt (wait) or SignedRecord, or errors.

        With ``wait``, each node gets a share of the wait (``_attempt_s``): a node can accept
        records and never get them committed (it is cut off, or it drops them), and nothing any
        other node says shows that, because the others never heard of them. So records still not
        committed when a node's share is over are sent again, the same bytes (ids are content
        hashes: resending is idempotent), to the next node, until the overall deadline.
        """
        wait_s = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait_s
        ids = [r.id for r in records]
        attempt_s = self._attempt_s(wait_s)
        attempt_end = time.monotonic() + attempt_s
        outcomes = yield from self._post_flow(records, wait, attempt_s, deadline)

        results: list[Any] = list(outcomes)
        for i, o in enumerate(results):
            if isinstance(o, RantaiError) and len(records) > 1:
                # A node rejected one record of a batch that passed our own checks: ask the others.
                try:
                    again = yield from self.submit_flow([records[i]], wait, max(0.0, deadline - time.monotonic()))
                    results[i] = again[0]
                except RantaiError as exc:
                    results[i] = exc
            elif isinstance(o, RantaiError):
                raise o
        if not wait:
            return [r if isinstance(r, RantaiError) else records[i] for i, r in enumerate(results)]

        pending = [i for i, o in enumerate(results) if o is _PENDING]
        delay, round_ = _POLL_FIRST, 0
        while pending:
            still: list[int] = []
            for i in pending:
                try:
                    vr = yield self._get_call(ids[i], first_answer=True, rotate=round_)
                    results[i] = vr.receipt
                except NotFound:
                    still.append(i)
            pending = still
            if not pending:
                break
            now = time.monotonic()
            if now >= deadline:
                raise SubmitTimeout(
                    f"submit: {_plural(len(pending), 'record')} accepted but not committed within {wait_s:g} s "
                    f"(first: {ids[pending[0]].hex()}); they may still commit", [ids[i] for i in pending])
            if now >= attempt_end and len(self.nodes) > 1:
                share = min(attempt_s, deadline - now)
                attempt_end = now + share
                try:
                    again = yield from self._post_flow([records[i] for i in pending], True, share, deadline, rotate=1)
                except RantaiError:
                    again = [_PENDING] * len(pending)  # no other node took them: keep polling until the deadline
                for i, o in zip(pending, again, strict=True):
                    if isinstance(o, Receipt):
                        results[i] = o
                pending = [i for i in pending if results[i] is _PENDING]
                delay = _POLL_FIRST
                continue
            yield _Sleep(min(delay, max(0.0, min(deadline, attempt_end) - time.monotonic())))
            delay = min(delay * 2, _POLL_MAX)
            round_ += 1
        return results

    def _attempt_s(self, wait_s: float) -> float:
        """One node's share of a commit wait: an equal part, but at least a second (or all of a shorter wait)."""
        return max(wait_s / len(self.nodes), min(wait_s, 1.0))

    def _post_flow(self, records: Sequence[SignedRecord], wait: bool, wait_s: float, deadline: float,
                   rotate: int = 0) -> _Flow:
        """One ``POST /v1/records`` (answered by the first node whose answer verifies), retried while
        nodes say ``overloaded`` until ``deadline``: per record, a Receipt, ``_PENDING`` or an error."""
        ids = [r.id for r in records]
        body = encode({"records": [r.raw for r in records]})
        params = {"wait": "commit", "timeout_ms": int(wait_s * 1000)} if wait else None
        call_timeout = self.timeout + (wait_s if wait else 0.0)

        def parse(node: str, resp: httpx.Response) -> list[Any]:
            if resp.status_code == 409 and len(records) == 1 and b"duplicate event" not in resp.content:
                return [_PENDING]  # duplicate: committed or pending; the receipt is fetched below
            # (a "duplicate event" is another record of an event already on the ledger: an error, raised below)
            self._check_status(resp, (200, 202))
            obj = self._decode_body(resp)
            results = obj.get("results") if isinstance(obj, dict) else None
            if not isinstance(results, list) or len(results) != len(records):
                raise VerificationError(f"submit: {len(records)} results expected")
            out: list[Any] = []
            for i, res in enumerate(results):
                if not isinstance(res, dict) or _record_id(res.get("id"), strict=False) != ids[i]:
                    raise VerificationError(f"submit: result {i} is not about record {ids[i].hex()}")
                status = res.get("status")
                if status == "committed" and wait:
                    out.append(self._receipt(node, res.get("receipt"), ids[i]))
                elif status in ("accepted", "duplicate", "committed"):
                    out.append(_PENDING)
                elif status == "rejected":
                    out.append(_error_from_body(res.get("error"), 400))
                else:
                    raise VerificationError(f"submit: result {i} has unknown status {status!r}")
            return out

        while True:
            try:
                return (yield _Call("POST", "/v1/records", parse, _plural(len(records), "record submission"),
                                    params=params, body=body, timeout=call_timeout, rotate=rotate))
            except Overloaded:
                if time.monotonic() > deadline:
                    raise
                yield _Sleep(0.5)


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _record_id(value: Any, *, strict: bool = True) -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == HASH_SIZE:
        return bytes(value)
    if isinstance(value, str) and len(value) == 2 * HASH_SIZE:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    if strict:
        raise _errors.InvalidRecord(f"record id: 64 hex digits expected, got {value!r}")
    return b""


def _prefixed(exc: RantaiError, prefix: str) -> RantaiError:
    """The same error with ``prefix`` in front of its message (which event of a batch failed)."""
    if type(exc).__init__ is RantaiError.__init__:
        new = type(exc)(f"{prefix}: {exc}", rule=exc.rule, **exc.details)
    elif hasattr(exc, "path") and hasattr(exc, "reason"):  # epcis.EventInvalid(path, reason)
        new = type(exc)(f"{prefix}: {exc.path}", exc.reason)  # type: ignore[call-arg]  # EventInvalid's own signature
    else:
        return exc
    new.__cause__ = exc
    return new


def _sign_all(core: "_Core", events: Iterable[dict[str, Any]]) -> list[SignedRecord]:
    records = []
    for i, event in enumerate(events):
        try:
            records.append(core.sign(event))
        except RantaiError as exc:
            raise _prefixed(exc, f"event {i}") from exc
    return records


def _check_many(results: list[Any], raise_on_error: bool) -> list[Any]:
    if raise_on_error:
        for i, r in enumerate(results):
            if isinstance(r, RantaiError):
                raise _prefixed(r, f"event {i}")
    return results


# -- drivers --------------------------------------------------------------------------------------


def _httpx_timeout(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout, connect=min(timeout, 5.0))


class Client(_Core):
    """A verifying client for a rantai network (synchronous).

    Args:
        genesis: the ``Genesis`` (or the path of its JSON file): the only thing trusted.
        nodes: node base URLs, tried in order (default: the validators' URLs in the genesis).
        identity: the member's ``Signer``; needed only to submit.
        timeout: seconds for one HTTP request (connection reuse: one httpx client per Client).
        wait_timeout: how long ``submit(wait=True)`` waits for the commit, by default.
        on_failure: called with (node, error) whenever a node is down or its answer fails verification.
        transport: an httpx transport (tests pass ``httpx.MockTransport`` or ``httpx.ASGITransport``).
        verify: for https:// nodes: a CA file (or a node's self-signed certificate) to trust, an
            ``ssl.SSLContext`` from ``rantai.client.tls.context`` (CA, pinned certificates, a client
            certificate), or ``True`` for the default CAs.
    """

    def __init__(
        self,
        genesis: Genesis | str | os.PathLike[str],
        nodes: Sequence[str] | None = None,
        identity: Signer | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        wait_timeout: float = DEFAULT_WAIT,
        on_failure: Callable[[str, RantaiError], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | str | os.PathLike[str] | bool = True,
    ) -> None:
        super().__init__(genesis, nodes, identity, timeout, wait_timeout, on_failure)
        self._http = httpx.Client(timeout=_httpx_timeout(timeout), transport=transport, verify=verify_option(verify))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- driver --------------------------------------------------------------------------------
    def _run(self, flow: _Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
            else:
                value, error = self._call(step)

    def _call(self, call: _Call) -> tuple[Any, BaseException | None]:
        failures: list[tuple[str, BaseException]] = []
        for i in self._order(call):
            node = self.nodes[i]
            try:
                resp = self._http.request(call.method, node + call.path, **self._request_kwargs(call))
            except httpx.HTTPError as exc:
                failures.append((node, self._transport_fault(node, exc)))
                continue
            try:
                try:
                    result = call.parse(node, resp)
                except _NeedChanges:
                    self._preferred = i  # ask the node that answered first: it has that height
                    self._run(self.changes_flow(None))  # up to the head: one fetch serves every later answer
                    result = call.parse(node, resp)
            except Exception as exc:  # noqa: BLE001 - every parser failure is classified, none escapes
                failures.append((node, self._classify(node, exc)))
                if call.first_answer and isinstance(exc, _Negative):
                    break
                continue
            self._preferred = i
            return result, None
        return None, self._settle(call, failures)

    # -- the API -------------------------------------------------------------------------------
    def submit(self, event: dict[str, Any], wait: bool = True, *,
               timeout: float | None = None) -> Receipt | SignedRecord:
        """Sign ``event`` with the identity and submit it.

        Returns the verified ``Receipt`` once committed (``wait=True``), or the ``SignedRecord``
        once a node accepted it (``wait=False``; its ``id`` finds the receipt later with ``get``).
        Raises the record's own error (``InvalidSignature``, ``EventInvalid`` …) before sending
        when it would be refused, ``SubmitTimeout``, or ``NoNodeAvailable``.
        """
        if self.identity is not None and self.identity.id not in self.governance.latest.members:
            self._run(self.changes_flow(None))  # a member who joined after the genesis: learn of it first
        return self.submit_record(self.sign(event), wait, timeout=timeout)

    def submit_record(self, record: SignedRecord, wait: bool = True, *,
                      timeout: float | None = None) -> Receipt | SignedRecord:
        """Submit an already signed record (resending the same record is always safe)."""
        result = self._run(self.submit_flow([record], wait, timeout))[0]
        if isinstance(result, RantaiError):
            raise result
        return result

    def submit_many(
        self, events: Iterable[dict[str, Any]], batch: int = 256, wait: bool = True, *,
        timeout: float | None = None, raise_on_error: bool = True,
    ) -> list[Any]:
        """Sign and submit many events, ``batch`` records per request; results in order.

        Every event is signed and checked locally before the first request. With
        ``raise_on_error=False`` an entry is the error for a record every node refused.
        """
        records = _sign_all(self, events)
        results: list[Any] = []
        for k in range(0, len(records), batch):
            results.extend(self._run(self.submit_flow(records[k:k + batch], wait, timeout)))
        return _check_many(results, raise_on_error)

    def get(self, record_id: bytes | str) -> VerifiedRecord:
        """The record with this id and its verified receipt. Raises ``NotFound`` when no node has it."""
        return self._run(self.get_flow(record_id))

    def history(self, item_id: str, *, cross_check: bool = False,
                page_size: int | None = None) -> list[VerifiedRecord]:
        """Every committed record naming the GS1 identifier ``item_id``, in chain order, each verified.

        The node answers in pages (at most 1000 records, ``page_size`` fewer) pinned to the first
        page's height; every page is fetched, so the list is the whole history as of that height.
        One node can omit records without breaking any proof; ``cross_check=True`` asks f+1 distinct
        nodes (each as of the same height) and returns the union, which holds every record at least
        one honest node has.
        """
        return self._run(self.history_flow(item_id, cross_check, page_size))

    def head(self) -> VerifiedHeader:
        """The latest certified block header a node reports, never older than one already verified."""
        return self._run(self.head_flow())


class AsyncClient(_Core):
    """The same API as ``Client``, with ``async`` methods (use ``async with`` or ``await aclose()``)."""

    def __init__(
        self,
        genesis: Genesis | str | os.PathLike[str],
        nodes: Sequence[str] | None = None,
        identity: Signer | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        wait_timeout: float = DEFAULT_WAIT,
        on_failure: Callable[[str, RantaiError], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | os.PathLike[str] | bool = True,
    ) -> None:
        super().__init__(genesis, nodes, identity, timeout, wait_timeout, on_failure)
        self._http = httpx.AsyncClient(timeout=_httpx_timeout(timeout), transport=transport,
                                       verify=verify_option(verify))

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, flow: _Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
            else:
                value, error = await self._call(step)

    async def _call(self, call: _Call) -> tuple[Any, BaseException | None]:
        failures: list[tuple[str, BaseException]] = []
        for i in self._order(call):
            node = self.nodes[i]
            try:
                resp = await self._http.request(call.method, node + call.path, **self._request_kwargs(call))
            except httpx.HTTPError as exc:
                failures.append((node, self._transport_fault(node, exc)))
                continue
            try:
                try:
                    result = call.parse(node, resp)
                except _NeedChanges:
                    self._preferred = i
                    await self._run(self.changes_flow(None))
                    result = call.parse(node, resp)
            except Exception as exc:  # noqa: BLE001
                failures.append((node, self._classify(node, exc)))
                if call.first_answer and isinstance(exc, _Negative):
                    break
                continue
            self._preferred = i
            return result, None
        return None, self._settle(call, failures)

    async def submit(self, event: dict[str, Any], wait: bool = True, *,
                     timeout: float | None = None) -> Receipt | SignedRecord:
        if self.identity is not None and self.identity.id not in self.governance.latest.members:
            await self._run(self.changes_flow(None))  # a member who joined after the genesis: learn of it first
        return await self.submit_record(self.sign(event), wait, timeout=timeout)

    async def submit_record(self, record: SignedRecord, wait: bool = True, *,
                            timeout: float | None = None) -> Receipt | SignedRecord:
        result = (await self._run(self.submit_flow([record], wait, timeout)))[0]
        if isinstance(result, RantaiError):
            raise result
        return result

    async def submit_many(
        self, events: Iterable[dict[str, Any]], batch: int = 256, wait: bool = True, *,
        timeout: float | None = None, raise_on_error: bool = True,
    ) -> list[Any]:
        records = _sign_all(self, events)
        results: list[Any] = []
        for k in range(0, len(records), batch):
            results.extend(await self._run(self.submit_flow(records[k:k + batch], wait, timeout)))
        return _check_many(results, raise_on_error)

    async def get(self, record_id: bytes | str) -> VerifiedRecord:
        return await self._run(self.get_flow(record_id))

    async def history(self, item_id: str, *, cross_check: bool = False,
                      page_size: int | None = None) -> list[VerifiedRecord]:
        return await self._run(self.history_flow(item_id, cross_check, page_size))

    async def head(self) -> VerifiedHeader:
        return await self._run(self.head_flow())

