"""Every error rantai reports, as one tree, so callers catch by meaning and the API maps each to an HTTP status.

    RantaiError                          anything rantai refuses or cannot do
    ├── InvalidEncoding                  bytes that are not canonical msgpack (400)
    ├── ConfigError                      a configuration file or setting that cannot be used
    ├── InvalidKey                       a key file that cannot be read, or a wrong passphrase (400)
    ├── InvalidGenesis                   a genesis file that breaks its rules (400)
    ├── InvalidRecord                    a record that breaks a ledger rule (400)
    │   ├── WrongChain                   signed for another chain (400)
    │   ├── UnknownMember                submitter not in the genesis (401)
    │   ├── RoleDenied                   member lacks the role for this action (403)
    │   ├── InvalidSignature             signature does not verify (401)
    │   ├── DuplicateRecord              already on the ledger or in the mempool (409)
    │   ├── DuplicateEvent               another record with the same EPCIS event hash ID is (409)
    │   └── RecordTooLarge               over the size limit (413)
    ├── Overloaded                       the node's mempool is full; retry later (429)
    ├── VerificationError                a node's answer that does not check out against genesis
    │   ├── InvalidProof                 a Merkle proof that does not lead to the root
    │   │   └── RootMismatch             ... with the expected and calculated roots
    │   ├── InvalidBlock                 a header or block that breaks a chain rule
    │   └── InvalidCertificate           fewer than 2f+1 valid validator signatures
    └── NodeError                        a node could not be reached or answered with an error

Each error carries ``status_hint``, the HTTP status that fits it (after h11's ``error_status_hint``),
and ``rule``, the stable name of the rule that failed (``rantai.client.format.validity.RULES`` lists
them all), for machines and for the API's JSON body. A class gives the default rule; a check that
knows a finer one passes ``rule=`` (``InvalidRecord(..., rule="record version")``).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DuplicateEvent",
    "DuplicateRecord",
    "InvalidBlock",
    "InvalidCertificate",
    "InvalidEncoding",
    "InvalidGenesis",
    "InvalidKey",
    "InvalidProof",
    "InvalidRecord",
    "InvalidSignature",
    "NodeError",
    "Overloaded",
    "RantaiError",
    "RecordTooLarge",
    "RoleDenied",
    "RootMismatch",
    "UnknownMember",
    "VerificationError",
    "WrongChain",
]


class RantaiError(Exception):
    status_hint: int = 400
    rule: str = "error"

    def __init__(self, message: str, *, rule: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if rule is not None:
            self.rule = rule

    def to_obj(self) -> dict[str, object]:
        return {"error": self.rule, "message": self.message, **{k: v for k, v in self.details.items() if v is not None}}


class ConfigError(RantaiError):
    rule = "config"


class InvalidEncoding(RantaiError):
    rule = "encoding"


class InvalidKey(RantaiError):
    rule = "key"


class InvalidGenesis(RantaiError):
    rule = "genesis"


class InvalidRecord(RantaiError):
    rule = "record"


class WrongChain(InvalidRecord):
    rule = "wrong chain"


class UnknownMember(InvalidRecord):
    status_hint = 401
    rule = "unknown member"


class RoleDenied(InvalidRecord):
    status_hint = 403
    rule = "role denied"


class InvalidSignature(InvalidRecord):
    status_hint = 401
    rule = "signature does not verify"


class DuplicateRecord(InvalidRecord):
    status_hint = 409
    rule = "duplicate record"


class DuplicateEvent(InvalidRecord):
    """Not a ``DuplicateRecord``: resending a record is idempotent, another record of the same event is not."""

    status_hint = 409
    rule = "duplicate event"


class RecordTooLarge(InvalidRecord):
    status_hint = 413
    rule = "too large"


class Overloaded(RantaiError):
    status_hint = 429
    rule = "overloaded"


class VerificationError(RantaiError):
    status_hint = 502
    rule = "verification"


class InvalidProof(VerificationError):
    rule = "invalid proof"


class RootMismatch(InvalidProof):
    rule = "root mismatch"

    def __init__(self, message: str, expected: bytes = b"", calculated: bytes = b"") -> None:
        super().__init__(message, expected=expected.hex(), calculated=calculated.hex())
        self.expected = expected
        self.calculated = calculated


class InvalidBlock(VerificationError):
    rule = "invalid block"


class InvalidCertificate(VerificationError):
    rule = "invalid certificate"


class NodeError(RantaiError):
    status_hint = 502
    rule = "node"
