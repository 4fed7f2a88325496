"""Every rule a valid rantai chain obeys, in one place, called by every path that checks one.

The validator checking a proposal, the node's catch-up, the auditor (from a node or from a data
directory) and a receipt check all call these functions, so "valid" means one thing. What a check
needs to know about the rest of the chain ("was this record, or this event, seen before?") is a
parameter (``ChainMemory``): the node answers from its index, the auditor from its own memory.

Each rule has a stable name (``RULES``; docs/format.md §10 states each one, and ``tests/vectors/``
holds a valid and an invalid example of each). A failure raises the ``RantaiError`` subclass that
fits (``InvalidRecord``, ``InvalidBlock``, ``InvalidCertificate`` …) with ``rule`` set to that name,
and ``height`` and ``index`` (the record's position in its block) where they apply.

Signature checks are separate functions (``check_record``, ``check_certificate``) from the cheap,
ordered block rules (``check_block``): signatures are nearly all of the cost, so callers run them
in parallel, while the block rules run in height order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableSet, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rantai.consensus.certificate import CertificateError, CommitCertificate, primary_index, verify_certificate

from . import merkle
from .blocks import Block, BlockHeader
from .consortium import Consortium
from .encoding import encode
from .epcis.event_hash import uniqueness_digest
from .epcis.validate import validate_event
from .errors import (
    InvalidBlock,
    InvalidCertificate,
    InvalidRecord,
    InvalidSignature,
    RecordTooLarge,
    RoleDenied,
    UnknownMember,
    WrongChain,
)
from .genesis import Genesis
from .governance import Governance, check_change
from .records import SignedRecord

__all__ = [
    "RULES",
    "ChainMemory",
    "Parent",
    "check_block",
    "certificate_of",
    "check_certificate",
    "check_head",
    "check_receipt",
    "check_record",
    "replay_changes",
    "rule_of",
    "event_digests",
    "primary_of",
    "same_value",
]

# name -> the rule, in one line. docs/format.md §10 says each in full; tests/vectors/ has examples.
RULES: dict[str, str] = {
    # bytes
    "encoding": "every signed or hashed structure is canonical msgpack (format.md §2), exact types included",
    # records (format.md §4)
    "record shape": "a signed record is a map of exactly chain, event (or change), nonce, signature, submitted_at, "
                    "submitter, version",
    "record version": "version is the integer 1 (not true, not 1.0)",
    "record field": "chain 32 bytes, submitter 16 lower-case hex digits, nonce 16 bytes, submitted_at an integer "
                    "in [0, 2^63), event a map, signature 64 bytes",
    "too large": "a signed record's canonical bytes are at most params.max_record_bytes long",
    "wrong chain": "a record, header or receipt names the genesis hash of this chain",
    "unknown member": "the submitter is a member of the consortium in force at the record's height",
    "role denied": "the submitter holds the submitter role",
    "signature does not verify": "the member's Ed25519 signature over the record (format.md §3) verifies",
    "schema": "the event passes rantai's EPCIS 2.0 rules (docs/epcis.md)",
    "duplicate record": "no record id appears twice in the chain",
    "duplicate event": "no EPCIS event hash ID appears twice in the chain; an error declaration of an event "
                       "(same hash ID) may appear once besides it",
    "member suspended": "the submitter is not suspended at the record's height",
    "member removed": "the submitter's key was not removed or rotated away before the record's height",
    # governance entries (docs/governance.md)
    "change shape": "a change is a map of a known op and exactly its fields, each of its exact type",
    "not an admin": "a change is signed by an active member holding the admin role at its height",
    "unknown proposal": "an approval names a proposal entry already on the chain",
    "proposal closed": "an approval names a proposal that is not yet approved",
    "approved twice": "an admin approves a proposal once (proposing counts as approving)",
    "change refused": "a change applies to the latest consortium, proves any new key, and leaves at least four "
                      "validators, an active admin and a reachable threshold",
    # blocks (format.md §6)
    "block shape": "a block is a map of exactly header and records; records is an array of byte strings",
    "header field": "a header is a map of exactly its eight fields, each of its exact type and range",
    "height": "block h says height h; heights start at 1 and rise by one",
    "hash link": "prev_hash is the hash of block h-1's header (the genesis hash for h = 1)",
    "record count": "record_count is the number of records",
    "records root": "records_root is the RFC 9162 Merkle root of the record ids, in block order",
    "block too large": "a block's bytes are at most params.max_block_bytes long and it holds at most "
                       "params.max_block_records records",
    "proposer": "the proposer is the validator that is primary of the header's view (validators[view mod n])",
    "timestamp": "a block's timestamp is not below its parent's; when proposed, it is at most "
                 "params.max_clock_skew_ms ahead of the validating validator's clock",
    # certificates (format.md §7)
    "certificate shape": "a certificate is a map of exactly block_hash, height, view, votes with exact types",
    "certificate height": "the certificate is for the block's height",
    "certificate block hash": "the certificate is for the block's hash",
    "certificate view": "the certificate's view is not below the header's view",
    "certificate votes": "votes are sorted by validator id, each validator at most once, each a validator in force "
                         "at the block's height",
    "certificate signature": "every vote's signature over the commit statement verifies",
    "certificate quorum": "at least 2f+1 votes, n = 3f+1 the number of validators",
    "missing certificate": "every stored or served block comes with its commit certificate",
    # receipts and served answers (format.md §8, api.md)
    "receipt shape": "a receipt file is the JSON object of format.md §8, lower-case hex, nothing else",
    "receipt event": "the readable event of a receipt file is exactly the signed one, types included",
    "inclusion proof": "the Merkle path leads from the record id to the header's records_root",
    "missing block": "a chain has every height from 1 to its head",
    "head": "a node's head names the hash of the header it serves at that height",
}

_RECORD_RULES = frozenset({"record shape", "record version", "record field", "encoding"})


def rule_of(exc: BaseException, default: str) -> str:
    """The stable rule name an error carries (``default`` when it carries none of ``RULES``)."""
    rule = getattr(exc, "rule", None)
    return rule if isinstance(rule, str) and rule in RULES else default


def same_value(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down: ``1``, ``1.0`` and ``True`` differ here.

    Python's ``==`` says ``True == 1 == 1.0``; the canonical encoding does not, and it is the encoding
    that is signed. Values with no canonical encoding are never the same as anything.
    """
    try:
        return encode(a) == encode(b)
    except Exception:  # noqa: BLE001 - no canonical form: not a ledger value at all
        return False


# -- records --------------------------------------------------------------------------------------


def check_record(record: SignedRecord, consortium: Consortium, *, role: str | None = None,
                 schema: bool = True, signature: bool = True) -> None:
    """The rules of one signed entry in ``consortium`` (the one in force at its height), beyond its shape.

    Shape (``record shape``, ``record version``, ``record field``) was checked when the record was
    parsed (``SignedRecord.from_bytes``). Raises the first failure in the order a person would want
    to hear it: size, wrong chain, unknown member, suspended, role, signature, event (or change shape).
    The role is ``submitter`` for an EPCIS record and ``admin`` for a governance change.
    """
    limit = consortium.params["max_record_bytes"]
    if len(record.raw) > limit:
        raise RecordTooLarge(f"record: {len(record.raw)} bytes, the limit is {limit}", limit=limit)
    if record.chain != consortium.hash:
        raise WrongChain("record: signed for another chain", chain=record.chain.hex())
    member = consortium.members.get(record.submitter)
    if member is None:
        if record.submitter in consortium.retired:
            raise RoleDenied(f"record: key {record.submitter} was removed or rotated away by governance",
                             rule="member removed", submitter=record.submitter)
        raise UnknownMember(f"record: unknown member {record.submitter}", submitter=record.submitter)
    if not member.active:
        raise RoleDenied(f"record: member {member.name} is suspended", rule="member suspended",
                         submitter=record.submitter)
    need = role or ("admin" if record.is_change else "submitter")
    if need not in member.roles:
        raise RoleDenied(f"record: member {member.name} lacks the {need!r} role", submitter=record.submitter,
                         rule="not an admin" if record.is_change else None)
    # ``signature=False``: a record whose signature this caller already verified (it cannot change),
    # re-checked only for what can: membership and roles at this height, and the size limit.
    if signature and not member.verifier.verify(record.signature, record.kind, record.chain, record.unsigned_bytes()):
        raise InvalidSignature(f"record: signature does not verify for member {member.name}",
                               submitter=record.submitter)
    if record.is_change:
        check_change(record.change)
    elif schema:
        validate_event(record.event)


def event_digests(records: Sequence[SignedRecord]) -> list[bytes | None]:
    """Each record's key for the ``duplicate event`` rule (``epcis.event_hash.uniqueness_digest``: the
    digest inside its event hash ID, or a distinct one for an error declaration); None for a change."""
    return [None if r.is_change else uniqueness_digest(r.event) for r in records]


# -- blocks ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parent:
    """What block h is checked against: block h-1 (or the genesis, as height 0 at time 0)."""

    height: int
    hash: bytes
    timestamp: int

    @classmethod
    def genesis(cls, genesis: Genesis) -> "Parent":
        return cls(0, genesis.hash, 0)

    @classmethod
    def of(cls, header: BlockHeader) -> "Parent":
        return cls(header.height, header.hash, header.timestamp)


class ChainMemory(Protocol):
    """What the chain below a block already holds; each caller answers from its own store."""

    def record_height(self, record_id: bytes) -> int | None:
        """The height of the block holding this record id, or None."""

    def event_height(self, digest: bytes) -> int | None:
        """The height of the block holding an event with this hash digest, or None."""


def primary_of(consortium: Consortium, view: int) -> str:
    """The id of the validator that leads ``view``: validators[view mod n], in the consortium's order."""
    return consortium.validators[primary_index(view, len(consortium.validators))].id


def check_block(
    block: Block,
    consortium: Consortium,
    parent: Parent,
    *,
    memory: ChainMemory | None = None,
    digests: Sequence[bytes | None] | None = None,
    governance: Governance | None = None,
    now_ms: int | None = None,
) -> None:
    """Every rule of ``block`` as the child of ``parent``, except the records' own signatures.

    ``memory`` answers for the chain below ``parent`` (None: the caller checks repeats across
    blocks itself, as the auditor does by merging sorted runs); ``digests`` are the records' event
    hash digests when the caller has them (None: the ``duplicate event`` rule is the caller's);
    ``governance`` is the governance state after block h-1: the block's change entries are checked
    and applied to it in order (pass a ``fork()`` when the block may yet be refused; None: the
    caller replays changes itself). ``consortium`` is the one governing height h (``Governance.at``).
    ``now_ms`` is the validator's clock when it validates a proposal (None in catch-up and audit,
    where blocks are old). The records' signatures are ``check_record``'s job, run in parallel.
    """
    h = block.header
    height = parent.height + 1
    where = f"block {height}"

    def fail(rule: str, message: str, index: int | None = None) -> InvalidBlock:
        return InvalidBlock(f"{where}: {message}", rule=rule, height=height, index=index)

    if h.chain != consortium.hash:
        raise fail("wrong chain", "belongs to another chain")
    if h.height != height:
        raise fail("height", f"header says height {h.height}")
    if h.prev_hash != parent.hash:
        raise fail("hash link", f"prev_hash does not match the hash of block {parent.height}")
    params = consortium.params
    if len(block.raw) > params["max_block_bytes"] or len(block.records) > params["max_block_records"]:
        raise fail("block too large", f"{len(block.raw)} bytes and {len(block.records)} records; the limits are "
                                      f"{params['max_block_bytes']} bytes and {params['max_block_records']} records")
    if h.record_count != len(block.records):
        raise fail("record count", f"record_count {h.record_count} but {len(block.records)} records")
    ids = block.record_ids()
    if merkle.root(ids) != h.records_root:
        raise fail("records root", "records_root does not match its records")
    if h.proposer != primary_of(consortium, h.view):
        raise fail("proposer", f"proposer {h.proposer} is not the primary of view {h.view}")
    if h.timestamp < parent.timestamp:
        raise fail("timestamp", f"timestamp {h.timestamp} is below its parent's ({parent.timestamp})")
    if now_ms is not None and h.timestamp > now_ms + params["max_clock_skew_ms"]:
        raise fail("timestamp", f"timestamp {h.timestamp} is {h.timestamp - now_ms} ms ahead of this validator's "
                                f"clock (at most {params['max_clock_skew_ms']})")
    limit = params["max_record_bytes"]
    seen: dict[bytes, int] = {}
    for i, r in enumerate(block.records):
        if len(r.raw) > limit:
            raise fail("too large", f"record {i} is {len(r.raw)} bytes, over {limit}", i)
        if r.id in seen:
            raise fail("duplicate record", f"record {i} repeats record {seen[r.id]} ({r.id.hex()})", i)
        seen[r.id] = i
        if memory is not None and (at := memory.record_height(r.id)) is not None:
            raise fail("duplicate record", f"record {i} ({r.id.hex()}) is already in block {at}", i)
    if digests is not None:
        events: dict[bytes, int] = {}
        for i, d in enumerate(digests):
            if d is None:  # a governance change: no event
                continue
            if d in events:
                raise fail("duplicate event", f"record {i} repeats the event of record {events[d]} "
                                              f"(ni:///sha-256;{d.hex()})", i)
            events[d] = i
            if memory is not None and (at := memory.event_height(d)) is not None:
                raise fail("duplicate event", f"record {i}: event ni:///sha-256;{d.hex()} is already in block {at}", i)
    if governance is not None:
        changes = block.change_entries()
        if changes:
            try:
                governance.apply(height, changes)
            except InvalidRecord as exc:
                raise fail(rule_of(exc, "change refused"), str(exc)) from exc
        else:
            governance.height = height


# -- certificates ---------------------------------------------------------------------------------


def check_certificate(cert: CommitCertificate, consortium: Consortium, header: BlockHeader) -> None:
    """The block's commit certificate: for its height and hash, a view not below the header's, and
    2f+1 valid signatures of distinct genesis validators in validator-id order.

    The signatures are checked by the consensus layer's own verifier, the code replicas use.
    """
    height = header.height

    def fail(rule: str, message: str) -> InvalidCertificate:
        return InvalidCertificate(f"block {height}: {message}", rule=rule, height=height)

    try:
        verify_certificate(cert, consortium.hash, consortium.validator_verifiers, height=height, block_hash=header.hash,
                           min_view=header.view)
    except CertificateError as exc:
        raise fail(_CERTIFICATE_RULES.get(exc.rule, "certificate shape"), str(exc)) from exc


# The consensus layer's names for what its certificate verifier refuses, as this module names them.
_CERTIFICATE_RULES = {
    "certificate.malformed": "certificate shape",
    "certificate.height": "certificate height",
    "certificate.block hash": "certificate block hash",
    "certificate.view": "certificate view",
    "certificate.unsorted": "certificate votes",
    "certificate.duplicate signer": "certificate votes",
    "certificate.unknown validator": "certificate votes",
    "certificate.signature": "certificate signature",
    "certificate.quorum": "certificate quorum",
}


def certificate_of(obj: Any, height: int) -> CommitCertificate:
    """A certificate from its decoded map, or ``InvalidCertificate`` (``certificate shape``/``missing``)."""
    if obj is None:
        raise InvalidCertificate(f"block {height}: no commit certificate", rule="missing certificate", height=height)
    try:
        return CommitCertificate.from_obj(obj)
    except CertificateError as exc:
        raise InvalidCertificate(f"block {height}: {exc}", rule="certificate shape", height=height) from exc


def check_receipt(record: SignedRecord, index: int, path: Sequence[bytes], header: BlockHeader,
                  cert: CommitCertificate, consortium: Consortium,
                  certified: MutableSet[bytes] | None = None) -> None:
    """A receipt proves its record: the record's rules (not the EPCIS schema: the chain already took
    it), its Merkle path to the header's records root, and the header's commit certificate.

    ``certified`` (a verifier's memory, e.g. a client reading a thousand receipts of one block) holds
    the digests of (header, certificate) pairs already checked against this consortium: the very same
    pair is not checked again, any other one is, and is added once it passes.
    """
    if header.chain != consortium.hash:
        raise InvalidBlock("receipt: the header belongs to another chain", rule="wrong chain")
    check_record(record, consortium, schema=False)
    try:
        merkle.verify_inclusion(index, header.record_count, record.id, list(path), header.records_root)
    except merkle.InvalidProof as exc:  # RootMismatch included: both break the ``inclusion proof`` rule
        exc.rule = "inclusion proof"
        raise
    if certified is None:
        check_certificate(cert, consortium, header)
        return
    key = hashlib.sha256(header.hash + encode(cert.to_obj())).digest()
    if key not in certified:
        check_certificate(cert, consortium, header)
        certified.add(key)


class ReceiptLike(Protocol):  # read-only members, so a frozen dataclass (``Receipt``) fits
    @property
    def record(self) -> SignedRecord: ...
    @property
    def index(self) -> int: ...
    @property
    def path(self) -> tuple[bytes, ...]: ...
    @property
    def header(self) -> BlockHeader: ...
    @property
    def certificate(self) -> CommitCertificate: ...


def replay_changes(genesis: Genesis, receipts: Sequence[ReceiptLike]) -> Governance:
    """The governance state proven by receipts of change entries (``Governance.change_entries``),
    each checked against the consortium in force at its own height before it is applied: the chain of
    configurations a light client follows from the genesis alone (docs/governance.md)."""
    gov = Governance(genesis)
    last = (0, -1)
    group: list[ReceiptLike] = []

    def flush() -> None:
        if group:
            height = group[0].header.height
            consortium = gov.at(height)
            for r in group:
                check_receipt(r.record, r.index, r.path, r.header, r.certificate, consortium)
            gov.apply(height, [(r.index, r.record) for r in group])
            group.clear()

    for r in receipts:
        at = (r.header.height, r.index)
        if at <= last or not r.record.is_change:
            raise InvalidBlock("changes: change entries in chain order expected", rule="change shape")
        if group and at[0] != last[0]:
            flush()
        group.append(r)
        last = at
    flush()
    return gov


def check_head(obj: Mapping[str, Any],
               consortium: Consortium) -> tuple[int, bytes, BlockHeader | None, CommitCertificate | None]:
    """A node's ``GET /v1/head`` answer: height, block hash, header and certificate, all consistent.

    Height 0 is the empty chain (``block_hash`` the genesis hash, no header, no certificate).
    """
    height = obj.get("height")
    if type(height) is not int or height < 0:
        raise InvalidBlock("head: a map with a non-negative integer height expected", rule="head")
    if height == 0:
        if (obj.get("block_hash") != consortium.hash or obj.get("header") is not None
                or obj.get("certificate") is not None):
            raise InvalidBlock("head: an empty chain names the genesis hash, no header, no certificate", rule="head")
        return 0, consortium.hash, None, None
    header = BlockHeader.from_obj(obj.get("header"))
    if header.chain != consortium.hash:
        raise InvalidBlock("head: header of another chain", rule="wrong chain", height=height)
    if header.height != height:
        raise InvalidBlock(f"head: height {height} but the header says {header.height}", rule="head", height=height)
    if obj.get("block_hash") != header.hash:
        raise InvalidBlock(f"head: block_hash is not the hash of the header at height {height}", rule="head",
                           height=height)
    cert = certificate_of(obj.get("certificate"), height)
    check_certificate(cert, consortium, header)
    return height, header.hash, header, cert
