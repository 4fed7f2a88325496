"""Who may read what: the read policy of the consortium in force, applied to a reader and a record.

Three policies (docs/governance.md, "Read policy"): ``public`` (anyone reads everything), ``members``
(every active member and every validator reads everything; the default) and ``parties`` (a member reads
the records it submitted and the events naming an identifier under one of its GS1 Company Prefixes;
auditors and validators read everything). The signature that says who reads is checked first
(``signed_requests``); this module only answers "who is this key here" and "may it see that record".

Ownership of an identifier is verifiable from the chain alone: a member's GS1 Company Prefixes are in the
genesis or in an approved ``set_company_prefixes`` change, no two members' prefixes begin one another
(``consortium.prefix_clash``), and an identifier's company prefix is read from the identifier itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rantai.consensus.crypto import key_id

from .consortium import Consortium
from .epcis.event_hash import normalise_identifier
from .epcis.items import event_identifiers
from .records import SignedRecord
from .signed_requests import ReadRefused

__all__ = ["ANONYMOUS", "Reader", "may_read", "owner_prefix_match", "reader_of"]

# Digital Link primary keys whose digits start with an indicator or extension digit before the company prefix
# (GTIN-14, SSCC, GRAI with its leading 0, ITIP); every other GS1 key starts with the prefix itself.
_DL_AFTER_ONE_DIGIT = frozenset({"01", "00", "8003", "8006"})
_DL_PREFIX_FIRST = frozenset({"414", "417", "253", "255", "401", "402", "8004", "8010", "8017", "8018"})
_DL_ROOT = "https://id.gs1.org/"


@dataclass(frozen=True)
class Reader:
    """Who a read request is from, as the consortium in force sees it."""

    kind: str  # "anonymous" | "member" | "validator"
    name: str
    sees_all: bool  # every record, every block: the policy is not "parties", or an auditor, or a validator
    ids: frozenset[str] = frozenset()  # member key ids, current and former: its own records
    company_prefixes: tuple[str, ...] = ()


ANONYMOUS = Reader("anonymous", "anonymous", sees_all=True)  # only ever returned under "public"


def reader_of(consortium: Consortium, public_key: bytes | None, latest: Consortium | None = None) -> Reader:
    """The reader a verified signature's key (None: no signature) is under ``consortium``'s read policy.

    ``latest`` (the consortium with every approved change applied, not all in force yet) admits a validator
    whose addition is approved but not yet in force: it must catch up before the height it votes at.

    Raises ``ReadRefused``: ``read.unsigned`` for an anonymous read unless the policy is public;
    ``read.not-member`` for a key that is no validator's and no active member's (under ``public``
    such a key reads as anonymous).
    """
    policy = consortium.read_policy
    if public_key is None:
        if policy == "public":
            return ANONYMOUS
        raise ReadRefused("read.unsigned", f"this chain's read policy is {policy!r}: reads must be signed by a member "
                          "or validator key (RFC 9421, docs/api.md \"Signed reads\")", read_policy=policy)
    kid = key_id(public_key)
    validator = consortium.validator_by_id.get(kid) or (latest.validator_by_id.get(kid) if latest else None)
    if validator is not None and validator.public_key == public_key:
        return Reader("validator", validator.name, sees_all=True)
    member = consortium.members.get(kid)
    if member is not None and member.public_key == public_key and member.active:
        return Reader("member", member.name, sees_all=policy != "parties" or "auditor" in member.roles,
                      ids=member.former_ids | {member.id}, company_prefixes=member.company_prefixes)
    if policy == "public":
        return ANONYMOUS
    if member is not None and member.public_key == public_key:
        why = f"member {member.name} is suspended"
    elif kid in consortium.retired:
        why = f"key {kid} belonged to a member that was removed or has rotated its key"
    else:
        why = f"key {kid} is no validator's and no member's"
    raise ReadRefused("read.not-member", f"{why} in the consortium in force", keyid=public_key.hex())


def owner_prefix_match(identifier: str, prefixes: Iterable[str]) -> bool:
    """Whether a GS1 identifier (EPC URI or Digital Link) lies under one of ``prefixes`` (GS1 Company Prefixes).

    An EPC URI (``urn:epc:id|class|idpat:SCHEME:PREFIX.…``) names its company prefix exactly. A Digital Link
    key does not mark where the prefix ends: it matches when its digits, after the indicator or extension
    digit of the keys that have one, begin with the prefix (prefixes of one chain never begin one another, so
    at most one member matches). Anything else (a private URI) belongs to no one.
    """
    prefixes = tuple(prefixes)
    if not prefixes:
        return False
    if identifier.startswith("urn:epc:"):
        parts = identifier.split(":", 4)
        if len(parts) == 5 and parts[2] in ("id", "class", "idpat"):
            return parts[4].split(".", 1)[0] in prefixes
        return False
    dl = normalise_identifier(identifier) if identifier.startswith("http") else identifier
    if not dl.startswith(_DL_ROOT):
        return False
    segments = dl[len(_DL_ROOT):].split("/")
    if len(segments) < 2:
        return False
    ai, key = segments[0], segments[1]
    if ai in _DL_AFTER_ONE_DIGIT:
        key = key[1:]
    elif ai not in _DL_PREFIX_FIRST:
        return False
    return any(key.startswith(p) for p in prefixes)


def may_read(reader: Reader, record: SignedRecord) -> bool:
    """Whether ``reader`` may see ``record`` (its receipt, its event in a query or a history).

    Change entries are every reader's: they are the consortium's own record, and a verifier needs them
    to check any receipt (docs/governance.md, "Light verification")."""
    if reader.sees_all or record.is_change or record.submitter in reader.ids:
        return True
    event: Any = record.fields.get("event")
    return any(owner_prefix_match(i, reader.company_prefixes) for i in event_identifiers(event))
