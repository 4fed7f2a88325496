"""The record: one EPCIS event, signed by the member who submits it.

A record is the canonical map ``{chain, event, nonce, submitted_at, submitter, version}``; the
submitter signs ``signing_bytes("record", chain, encode(record))``, and the signed record is the
same map plus ``signature``. Its id is SHA-256 of the signed record's canonical bytes, so the id
is known before the record is sent: retries and fail-over to another node are idempotent.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from rantai.consensus.crypto import HASH_SIZE, SIGNATURE_SIZE, Signer, sha256

from .consortium import Consortium
from .encoding import decode, encode
from .errors import InvalidRecord, RecordTooLarge

__all__ = ["CHANGE_KIND", "RECORD_KIND", "RECORD_VERSION", "SignedRecord", "sign_change", "sign_event"]

RECORD_KIND = "record"  # an EPCIS event; signed as this kind
CHANGE_KIND = "change"  # a governance entry (docs/governance.md); signed as this kind, so neither passes for the other
RECORD_VERSION = 1
NONCE_SIZE = 16
_SIGNATURE_KEY = b"\xa9signature\xc4\x40"  # msgpack: str "signature", then bin8 of 64 bytes
_SIGNATURE_ENTRY = len(_SIGNATURE_KEY) + SIGNATURE_SIZE
# the encoded keys after it, and the values but submitted_at's: str "submitted_at", str "submitter"
# and a 16-character str, str "version" and the integer 1
_TAIL = 13 + 10 + 17 + 8 + 1
_COMMON = frozenset({"version", "chain", "submitter", "nonce", "submitted_at", "signature"})
_FIELDS = _COMMON | {"event"}
_CHANGE_FIELDS = _COMMON | {"change"}


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A signed record, kept with its canonical bytes (``raw``) and id so neither is recomputed."""

    raw: bytes
    id: bytes
    fields: dict[str, Any]

    @property
    def kind(self) -> str:
        """``record`` for an EPCIS event, ``change`` for a governance entry (what the signature covers)."""
        return CHANGE_KIND if "change" in self.fields else RECORD_KIND

    @property
    def is_change(self) -> bool:
        return "change" in self.fields

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = self.fields["event"]  # its type checked by _check_shape
        return event

    @property
    def change(self) -> dict[str, Any]:
        change: dict[str, Any] = self.fields["change"]  # its type checked by _check_shape
        return change

    @property
    def submitter(self) -> str:
        submitter: str = self.fields["submitter"]  # its type checked by _check_shape
        return submitter

    @property
    def chain(self) -> bytes:
        chain: bytes = self.fields["chain"]  # its type checked by _check_shape
        return chain

    @property
    def signature(self) -> bytes:
        signature: bytes = self.fields["signature"]  # its type checked by _check_shape
        return signature

    @property
    def submitted_at(self) -> int:
        submitted_at: int = self.fields["submitted_at"]  # its type checked by _check_shape
        return submitted_at

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "SignedRecord":
        _check_shape(fields)
        raw = encode(fields)
        return cls(raw, sha256(raw), fields)

    @classmethod
    def from_bytes(cls, raw: bytes, *, max_size: int | None = None, record_id: bytes | None = None) -> "SignedRecord":
        """Parse canonical bytes. Structure only: signature and membership are ``verify``'s job.

        ``record_id``: SHA-256 of ``raw`` when the caller computed it already (``Block.from_bytes``)."""
        if max_size is not None and len(raw) > max_size:
            raise RecordTooLarge(f"record: {len(raw)} bytes, the limit is {max_size}", limit=max_size)
        if type(raw) is not bytes:
            raw = bytes(raw)
        fields = decode(raw)
        if type(fields) is not dict:
            raise InvalidRecord("record: a map expected", rule="record shape")
        _check_shape(fields)
        return cls(raw, sha256(raw) if record_id is None else record_id, fields)

    def unsigned_bytes(self) -> bytes:
        """The canonical bytes the submitter signed: the signed record without its signature.

        Cut from ``raw`` rather than re-encoded (the verification hot path): the signed map has
        seven keys in a fixed order, so the ``signature`` entry sits just before the encoded
        ``submitted_at, submitter, version`` tail, and the map header drops from 7 to 6 entries.
        """
        f = self.fields
        raw = self.raw
        # the tail's length: its three keys and values (submitter 16 characters, version 1), plus
        # the shortest msgpack form of submitted_at, an integer in [0, 2^63) (_check_shape)
        at = f["submitted_at"]
        tail = _TAIL + (1 if at < 0x80 else 2 if at < 0x100 else 3 if at < 0x10000 else 5 if at < 0x100000000 else 9)
        cut = len(raw) - tail - _SIGNATURE_ENTRY
        # from_bytes guarantees that layout; re-encode should it ever differ
        layout = raw[cut : cut + _SIGNATURE_ENTRY + 13] == _SIGNATURE_KEY + f["signature"] + b"\xacsubmitted_at"
        if raw[0] != 0x87 or not layout:  # pragma: no cover
            return encode({k: v for k, v in f.items() if k != "signature"})
        return b"\x86" + raw[1:cut] + raw[cut + _SIGNATURE_ENTRY :]

    # -- checking ------------------------------------------------------------------------
    def verify(self, genesis: Consortium, *, role: str = "submitter", schema: bool = True) -> None:
        """Every rule of this record in the consortium ``genesis`` (``validity.check_record``)."""
        from .validity import check_record

        check_record(self, genesis, role=role, schema=schema)


_HEX16 = frozenset("0123456789abcdef")


def _check_shape(fields: dict[str, Any]) -> None:
    """The record's shape: exact fields, exact types (``True`` and ``1.0`` are not the integer 1)."""
    want = _CHANGE_FIELDS if "change" in fields else _FIELDS
    if fields.keys() != want:  # compared as sets, none built
        missing, extra = want - set(fields), set(fields) - want
        detail = f"missing {sorted(missing)}" if missing else f"unknown {sorted(extra)}"
        raise InvalidRecord(f"record: fields {detail}", rule="record shape")
    version = fields["version"]
    if type(version) is not int or version != RECORD_VERSION:
        raise InvalidRecord(f"record: version {version!r} is not supported (the integer {RECORD_VERSION} expected)",
                            rule="record version")

    def bad(message: str) -> InvalidRecord:
        return InvalidRecord(f"record: {message}", rule="record field")

    if type(fields["chain"]) is not bytes or len(fields["chain"]) != HASH_SIZE:
        raise bad("chain must be the 32-byte genesis hash")
    submitter = fields["submitter"]
    if type(submitter) is not str or len(submitter) != 16 or not set(submitter) <= _HEX16:
        raise bad("submitter must be a member id: 16 lower-case hex digits")
    if type(fields["nonce"]) is not bytes or len(fields["nonce"]) != NONCE_SIZE:
        raise bad(f"nonce must be {NONCE_SIZE} bytes")
    at = fields["submitted_at"]
    if type(at) is not int or not 0 <= at < 2**63:
        raise bad("submitted_at must be an integer of milliseconds since the epoch, in [0, 2^63)")
    if type(fields.get("event", fields.get("change"))) is not dict:
        raise bad("event must be a map (an EPCIS event); change a map (a governance change)")
    if type(fields["signature"]) is not bytes or len(fields["signature"]) != SIGNATURE_SIZE:
        raise bad(f"signature must be {SIGNATURE_SIZE} bytes")


def sign_event(
    signer: Signer,
    genesis: Consortium | bytes,
    event: dict[str, Any],
    *,
    nonce: bytes | None = None,
    submitted_at: int | None = None,
) -> SignedRecord:
    """Sign ``event`` as a record of ``signer`` for the chain ``genesis`` (a Genesis or its hash)."""
    return _sign(signer, genesis, "event", event, nonce, submitted_at)


def sign_change(
    signer: Signer,
    genesis: Consortium | bytes,
    change: dict[str, Any],
    *,
    nonce: bytes | None = None,
    submitted_at: int | None = None,
) -> SignedRecord:
    """Sign a governance ``change`` (a proposal or an approval, docs/governance.md) as an entry of ``signer``."""
    return _sign(signer, genesis, "change", change, nonce, submitted_at)


def _sign(signer: Signer, genesis: Consortium | bytes, key: str, body: dict[str, Any], nonce: bytes | None,
          submitted_at: int | None) -> SignedRecord:
    chain = genesis.hash if isinstance(genesis, Consortium) else genesis
    fields: dict[str, Any] = {
        "version": RECORD_VERSION,
        "chain": chain,
        "submitter": signer.id,
        "nonce": os.urandom(NONCE_SIZE) if nonce is None else nonce,
        "submitted_at": int(time.time() * 1000) if submitted_at is None else submitted_at,
        key: body,
    }
    fields["signature"] = signer.sign(CHANGE_KIND if key == "change" else RECORD_KIND, chain, encode(fields))
    return SignedRecord.from_fields(fields)
