"""Receipts: a record with everything needed to prove, offline, that the chain committed it.

A receipt holds the signed record, its Merkle inclusion path in its block, the block header and
the block's commit certificate. With the genesis file alone, anyone can check that 2f+1 of the
chain's validators committed a block whose records root includes exactly this record — without
trusting the node that handed the receipt out. The JSON file form writes byte strings as hex.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rantai.consensus.crypto import HASH_SIZE

from . import merkle
from .blocks import BlockHeader
from .certificates import CommitCertificate, certificate_from_obj, verify_certificate
from .errors import InvalidBlock, InvalidProof, RantaiError, VerificationError
from .genesis import Genesis
from .records import SignedRecord

__all__ = ["RECEIPT_FORMAT", "Receipt"]

RECEIPT_FORMAT = "rantai-receipt/1"


@dataclass(frozen=True, slots=True)
class Receipt:
    record: SignedRecord
    index: int
    path: tuple[bytes, ...]
    header: BlockHeader
    certificate: CommitCertificate

    @property
    def record_id(self) -> bytes:
        return self.record.id

    @property
    def height(self) -> int:
        return self.header.height

    def verify(self, genesis: Genesis) -> None:
        """Raise a ``VerificationError`` (or the record's own error) unless this receipt proves its record."""
        h = self.header
        if h.chain != genesis.hash:
            raise InvalidBlock("receipt: the header belongs to another chain")
        self.record.verify(genesis, schema=False)
        merkle.verify_inclusion(self.index, h.record_count, self.record.id, list(self.path), h.records_root)
        verify_certificate(self.certificate, genesis, height=h.height, block_hash=h.hash, min_view=h.view)

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
        if not isinstance(obj, dict) or not {"record", "index", "path", "header", "certificate"} <= set(obj):
            raise VerificationError("receipt: record, index, path, header and certificate expected")
        if not isinstance(obj["record"], bytes):
            raise VerificationError("receipt: record must be the signed record's bytes")
        if type(obj["index"]) is not int or not isinstance(obj["path"], list):
            raise InvalidProof("receipt: index must be an integer and path a list")
        if not all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in obj["path"]):
            raise InvalidProof("receipt: every path entry must be a 32-byte hash")
        return cls(
            record=SignedRecord.from_bytes(obj["record"]),
            index=obj["index"],
            path=tuple(obj["path"]),
            header=BlockHeader.from_obj(obj["header"]),
            certificate=certificate_from_obj(obj["certificate"]),
        )

    # -- file form (JSON, hex for bytes) -------------------------------------------------
    def to_json(self, genesis_hash: bytes | None = None) -> str:
        doc = {
            "format": RECEIPT_FORMAT,
            "genesis_hash": (genesis_hash or self.header.chain).hex(),
            "record_id": self.record.id.hex(),
            **_hexify(self.to_obj()),
            "event": self.record.event,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "Receipt":
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VerificationError(f"receipt: not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != RECEIPT_FORMAT:
            raise VerificationError(f"receipt: not a {RECEIPT_FORMAT} file")
        try:
            header = dict(doc["header"])
            for k in ("chain", "prev_hash", "records_root"):
                header[k] = bytes.fromhex(header[k])
            cert = dict(doc["certificate"])
            cert["block_hash"] = bytes.fromhex(cert["block_hash"])
            cert["votes"] = [[v, bytes.fromhex(s)] for v, s in cert["votes"]]
            obj = {
                "record": bytes.fromhex(doc["record"]),
                "index": doc["index"],
                "path": [bytes.fromhex(p) for p in doc["path"]],
                "header": header,
                "certificate": cert,
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise VerificationError(f"receipt: malformed field ({exc})") from exc
        receipt = cls.from_obj(obj)
        if doc.get("record_id") != receipt.record.id.hex():
            raise VerificationError("receipt: record_id does not match the record's bytes")
        if doc.get("genesis_hash") != receipt.header.chain.hex():
            raise VerificationError("receipt: genesis_hash does not match the header's chain")
        if "event" in doc and doc["event"] != receipt.record.event:
            # The readable copy of the event must say what the signed bytes say.
            raise VerificationError("receipt: the readable event differs from the signed record")
        return receipt


def _hexify(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hexify(v) for v in value]
    return value

