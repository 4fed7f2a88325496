"""Receipts: a record with everything needed to prove, offline, that the chain committed it.

A receipt holds the signed record, its Merkle inclusion path in its block, the block header and
the block's commit certificate. With the genesis file alone, anyone can check that 2f+1 of the
chain's validators committed a block whose records root includes exactly this record — without
trusting the node that handed the receipt out. The JSON file form writes byte strings as hex.
"""

from __future__ import annotations

import json
import re
from collections.abc import MutableSet
from dataclasses import dataclass
from typing import Any

from rantai.consensus.certificate import CommitCertificate
from rantai.consensus.crypto import HASH_SIZE, SIGNATURE_SIZE

from .blocks import BlockHeader
from .encoding import hexify
from .errors import InvalidProof, VerificationError
from .genesis import Genesis
from .governance import Governance
from .records import SignedRecord
from .validity import certificate_of, same_value

__all__ = ["RECEIPT_FORMAT", "Receipt"]

RECEIPT_FORMAT = "rantai-receipt/1"


@dataclass(frozen=True, slots=True)
class Receipt:
    record: SignedRecord
    index: int
    path: tuple[bytes, ...]
    header: BlockHeader
    certificate: CommitCertificate
    # Receipts of the change entries that shaped the consortium up to this height (docs/governance.md):
    # with them, the genesis file alone still verifies a record after any number of changes.
    changes: tuple["Receipt", ...] = ()

    @property
    def record_id(self) -> bytes:
        return self.record.id

    @property
    def height(self) -> int:
        return self.header.height

    def verify(self, genesis: Genesis, governance: Governance | None = None,
               certified: MutableSet[bytes] | None = None) -> None:
        """Raise a ``VerificationError`` (or the record's own error) unless this receipt proves its record,
        checked against the consortium in force at its height: replayed from ``changes``, or taken from
        ``governance`` when the caller has already replayed (and verified) them."""
        from .validity import check_receipt, replay_changes

        if governance is None and self.changes:
            governance = replay_changes(genesis, self.changes)
        consortium = governance.at(self.height) if governance is not None else genesis
        check_receipt(self.record, self.index, self.path, self.header, self.certificate, consortium, certified)

    def with_changes(self, changes: tuple["Receipt", ...]) -> "Receipt":
        """This receipt carrying the change entries (in chain order) that precede its block."""
        return Receipt(self.record, self.index, self.path, self.header, self.certificate,
                       tuple(c for c in changes if c.height < self.height))

    # -- wire form (msgpack objects) -----------------------------------------------------
    def to_obj(self) -> dict[str, Any]:
        return {  # keys in canonical order, so encoding needs no re-sorting
            "certificate": self.certificate.to_obj(),
            "header": self.header.to_obj(),
            "index": self.index,
            "path": list(self.path),
            "record": self.record.raw,
        }

    @classmethod
    def from_obj(cls, obj: Any) -> "Receipt":
        """A receipt from its wire map (exact keys and types; rule ``receipt shape``)."""
        if type(obj) is not dict or set(obj) != _OBJ_KEYS:
            raise VerificationError(f"receipt: exactly {sorted(_OBJ_KEYS)} expected", rule="receipt shape")
        if type(obj["record"]) is not bytes:
            raise VerificationError("receipt: record must be the signed record's bytes", rule="receipt shape")
        index, path = obj["index"], obj["path"]
        if type(index) is not int or index < 0 or type(path) is not list:
            raise InvalidProof("receipt: index must be a non-negative integer and path a list", rule="receipt shape")
        if not all(type(p) is bytes and len(p) == HASH_SIZE for p in path):
            raise InvalidProof("receipt: every path entry must be a 32-byte hash", rule="receipt shape")
        header = BlockHeader.from_obj(obj["header"])
        return cls(
            record=SignedRecord.from_bytes(obj["record"]),
            index=index,
            path=tuple(path),
            header=header,
            certificate=certificate_of(obj["certificate"], header.height),
        )

    # -- file form (JSON, hex for bytes) -------------------------------------------------
    def to_json(self, genesis_hash: bytes | None = None) -> str:
        return json.dumps(self._doc(genesis_hash), indent=2, ensure_ascii=False) + "\n"

    def _doc(self, genesis_hash: bytes | None = None) -> dict[str, Any]:
        doc = {
            "format": RECEIPT_FORMAT,
            "genesis_hash": (genesis_hash or self.header.chain).hex(),
            "record_id": self.record.id.hex(),
            **hexify(self.to_obj()),
            **({"change": hexify(self.record.change)} if self.record.is_change else {"event": self.record.event}),
        }
        if self.changes:
            doc["changes"] = [c._doc(genesis_hash) for c in self.changes]
        return doc

    @classmethod
    def from_json(cls, text: str | bytes) -> "Receipt":
        """A receipt file (docs/format.md §8): exactly its keys, lower-case hex of the right lengths, and a
        readable event that is the signed one, types included (``1`` is not ``1.0`` nor ``true``)."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VerificationError(f"receipt: not valid JSON: {exc}", rule="receipt shape") from exc
        return cls._from_doc(doc)

    @classmethod
    def _from_doc(cls, doc: Any, nested: bool = False) -> "Receipt":
        if type(doc) is not dict or doc.get("format") != RECEIPT_FORMAT:
            raise VerificationError(f"receipt: not a {RECEIPT_FORMAT} file", rule="receipt shape")
        want = _FILE_KEYS - {"event"} | {"change"} if "change" in doc else _FILE_KEYS
        changes: tuple[Receipt, ...] = ()
        if "changes" in doc and not nested:
            if type(doc["changes"]) is not list or not doc["changes"]:
                raise VerificationError("receipt: changes must be a non-empty list", rule="receipt shape")
            changes = tuple(cls._from_doc(c, nested=True) for c in doc["changes"])
            want = want | {"changes"}
        if set(doc) != want:
            raise VerificationError(f"receipt: exactly the keys {sorted(want)} expected", rule="receipt shape")
        header, cert = doc["header"], doc["certificate"]
        if type(header) is not dict or type(cert) is not dict or type(cert.get("votes")) is not list:
            raise VerificationError("receipt: header and certificate must be objects", rule="receipt shape")
        if type(doc["path"]) is not list:
            raise VerificationError("receipt: path must be a list", rule="receipt shape")
        header = {**header, **{k: _unhex(header.get(k), f"header.{k}", HASH_SIZE)
                               for k in ("chain", "prev_hash", "records_root")}}
        votes = []
        for n, vote in enumerate(cert["votes"]):
            if type(vote) is not list or len(vote) != 2:
                raise VerificationError(f"receipt: certificate.votes[{n}] must be [validator id, signature]",
                                        rule="receipt shape")
            votes.append([vote[0], _unhex(vote[1], f"certificate.votes[{n}]", SIGNATURE_SIZE)])
        obj = {
            "record": _unhex(doc["record"], "record"),
            "index": doc["index"],
            "path": [_unhex(p, f"path[{n}]", HASH_SIZE) for n, p in enumerate(doc["path"])],
            "header": header,
            "certificate": {**cert, "block_hash": _unhex(cert.get("block_hash"), "certificate.block_hash", HASH_SIZE),
                            "votes": votes},
        }
        receipt = cls.from_obj(obj)
        if doc["record_id"] != receipt.record.id.hex():
            raise VerificationError("receipt: record_id does not match the record's bytes", rule="receipt shape")
        if doc["genesis_hash"] != receipt.header.chain.hex():
            raise VerificationError("receipt: genesis_hash does not match the header's chain", rule="receipt shape")
        if ("change" in doc) != receipt.record.is_change:  # a change entry's file says change, an event's event
            raise VerificationError("receipt: a change file for a record that is not a change, or an event file "
                                    "for a change entry", rule="receipt shape")
        readable, signed = ((doc["change"], hexify(receipt.record.change)) if receipt.record.is_change
                            else (doc["event"], receipt.record.event))
        if not same_value(readable, signed):
            # The readable copy of the event must say what the signed bytes say, in the same types.
            raise VerificationError("receipt: the readable event differs from the signed record", rule="receipt event")
        return receipt.with_changes(changes) if changes else receipt


_OBJ_KEYS = frozenset({"record", "index", "path", "header", "certificate"})
_FILE_KEYS = _OBJ_KEYS | {"format", "genesis_hash", "record_id", "event"}
_LOWER_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _unhex(value: Any, where: str, size: int | None = None) -> bytes:
    """Lower-case hex of an exact length: the only form a receipt file writes, so the only one it reads."""
    if type(value) is not str or not _LOWER_HEX.fullmatch(value) or (size is not None and len(value) != 2 * size):
        want = f"{2 * size} lower-case hex digits" if size is not None else "lower-case hex digits (even count)"
        raise VerificationError(f"receipt: {where} must be {want}", rule="receipt shape")
    return bytes.fromhex(value)


