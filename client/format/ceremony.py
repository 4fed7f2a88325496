"""The key ceremony: join requests, and a genesis assembled from them, with no shared secret.

A consortium's organisations do not trust one machine with all their keys. So each organisation
makes its own key where it will be used and hands over only a **join request**: who it is, the
public key, what it asks for (a member's roles, or a validator's URL), when, and a *proof of
possession* -- the key's own signature over all of that. The proof is what stops a coordinator
(or anyone on the way) from enrolling a key whose private half belongs to someone else, or from
quietly changing the roles or URL an organisation asked for: any change breaks the signature.

A coordinator ``assemble``\\ s the genesis from the requests (every proof checked, no name, key or
URL twice); every organisation then runs ``check`` on the genesis it receives -- its own entries
exactly as it asked -- and compares the genesis hash with the others out of band before starting.

The byte rules are in docs/format.md (§3.1, "Join requests") and docs/governance.md ("Key ceremony").
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rantai.consensus.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Signer, Verifier, key_id, sha256, signing_bytes

from .consortium import DEFAULT_PARAMS, MIN_VALIDATORS, NAME, ROLES
from .encoding import encode
from .errors import InvalidGenesis
from .genesis import Genesis

__all__ = [
    "CEREMONY_RULES",
    "JOIN_CHAIN",
    "JOIN_FORMAT",
    "JOIN_KIND",
    "CeremonyError",
    "GenesisMismatch",
    "InvalidJoinRequest",
    "JoinRequest",
    "assemble",
    "check_genesis",
    "load_request",
    "member_request",
    "parse_request",
    "request_from_json",
    "summary",
    "utc_timestamp",
    "validator_request",
]

JOIN_FORMAT = "rantai-join/1"
JOIN_KIND = "join"
# No chain exists yet when a request is signed, so its signature is domain-separated by this fixed
# 32-byte value instead of a genesis hash: a join proof never verifies as anything signed on a chain.
JOIN_CHAIN = sha256(b"rantai join request")

_FIELDS = {
    "member": frozenset({"format", "type", "organisation", "name", "public_key", "roles", "created_at", "proof"}),
    "validator": frozenset({"format", "type", "organisation", "name", "public_key", "url", "created_at", "proof"}),
}
_CREATED_AT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
_LOWER_HEX = re.compile(r"^[0-9a-f]*$")
MAX_TEXT = 128
MAX_URL = 256

# rule name -> the rule in one line (the names errors carry in ``rule``; docs/governance.md lists them)
CEREMONY_RULES: dict[str, str] = {
    "join shape": "a join request is a JSON object of exactly the fields of its type, format rantai-join/1",
    "join field": "each field has its exact type and form (names, organisation, hex key, URL, created_at)",
    "unknown role": "a member requests a non-empty list of distinct roles from submitter, auditor, admin",
    "join proof": "proof is the request key's signature (kind join, chain JOIN_CHAIN) over the other fields",
    "duplicate name": "no two requests of one genesis carry the same name",
    "duplicate key": "no two requests of one genesis carry the same public key",
    "duplicate url": "no two validators of one genesis share a URL",
    "too few validators": f"a genesis has at least {MIN_VALIDATORS} validators (one fault tolerated)",
    "no admin": "a genesis has an admin, and no approvals threshold above its number of admins",
    "entry missing": "a checked key or request is in the genesis",
    "entry differs": "a checked request's entry in the genesis has exactly its name, organisation, roles or URL",
}


class InvalidJoinRequest(InvalidGenesis):
    """A join request that breaks a rule of ``CEREMONY_RULES`` (shape, a field, the proof)."""

    rule = "join shape"


class CeremonyError(InvalidGenesis):
    """Requests that cannot make one genesis together (duplicates, too few validators, no admin)."""

    rule = "duplicate name"


class GenesisMismatch(InvalidGenesis):
    """A genesis that does not hold an organisation's entries as it asked for them: do not start."""

    rule = "entry missing"


def _field(where: str, message: str) -> InvalidJoinRequest:
    return InvalidJoinRequest(f"{where}: {message}", rule="join field")


@dataclass(frozen=True)
class JoinRequest:
    """One signed join request. ``roles`` is set for members, ``url`` for validators."""

    type: str  # "member" or "validator"
    organisation: str
    name: str
    public_key: bytes
    created_at: str
    proof: bytes
    roles: tuple[str, ...] = ()
    url: str | None = None

    @property
    def id(self) -> str:
        return key_id(self.public_key)

    def body(self) -> dict[str, Any]:
        """The request's fields but the proof, as JSON values: what the proof signs (canonically encoded)."""
        doc: dict[str, Any] = {
            "format": JOIN_FORMAT,
            "type": self.type,
            "organisation": self.organisation,
            "name": self.name,
            "public_key": self.public_key.hex(),
            "created_at": self.created_at,
        }
        if self.type == "member":
            doc["roles"] = list(self.roles)
        else:
            doc["url"] = self.url
        return doc

    def signed_bytes(self) -> bytes:
        return signing_bytes(JOIN_KIND, JOIN_CHAIN, encode(self.body()))

    def verify(self) -> None:
        """Raise ``InvalidJoinRequest`` (rule ``join proof``) unless the key signed exactly these fields."""
        if not Verifier(self.public_key).verify(self.proof, JOIN_KIND, JOIN_CHAIN, encode(self.body())):
            raise InvalidJoinRequest(f"join request {self.name!r}: the proof of possession does not verify "
                                     "(the request was changed after signing, or signed by another key)",
                                     rule="join proof")

    def to_obj(self) -> dict[str, Any]:
        return {**self.body(), "proof": self.proof.hex()}

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), indent=2, ensure_ascii=False) + "\n"

    def describe(self) -> str:
        what = f"roles {','.join(sorted(self.roles))}" if self.type == "member" else f"url {self.url}"
        return f"{self.type} {self.name} ({self.organisation}) id {self.id} {what}"


# -- building ------------------------------------------------------------------------------------


def _sign(signer: Signer, unsigned: JoinRequest) -> JoinRequest:
    _check_fields(unsigned.body(), "join request")  # never sign what a parser would refuse
    proof = signer.sign(JOIN_KIND, JOIN_CHAIN, encode(unsigned.body()))
    return JoinRequest(unsigned.type, unsigned.organisation, unsigned.name, unsigned.public_key,
                       unsigned.created_at, proof, unsigned.roles, unsigned.url)


def member_request(signer: Signer, *, organisation: str, name: str, roles: Iterable[str],
                   created_at: str) -> JoinRequest:
    """A member's signed request; roles are stored sorted, so one set of roles has one encoding."""
    return _sign(signer, JoinRequest("member", organisation, name, signer.public_key, created_at, b"",
                                     roles=tuple(sorted(roles))))


def validator_request(signer: Signer, *, organisation: str, name: str, url: str, created_at: str) -> JoinRequest:
    """A validator's signed request; ``url`` is where the other validators and clients reach it."""
    return _sign(signer, JoinRequest("validator", organisation, name, signer.public_key, created_at, b"",
                                     url=url))


def utc_timestamp(when: _dt.datetime) -> str:
    """``created_at`` form of a time: RFC 3339 UTC to the second (``2026-03-01T08:00:00Z``)."""
    if when.tzinfo is None:
        raise ValueError("created_at: an aware datetime is needed (UTC is assumed nowhere)")
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- parsing -------------------------------------------------------------------------------------


def _check_fields(doc: Mapping[str, Any], where: str) -> None:
    """Every field's exact type and form (the proof aside); raise naming the field and the rule."""
    if doc.get("format") != JOIN_FORMAT:
        raise InvalidJoinRequest(f"{where}: format must be {JOIN_FORMAT!r}", rule="join shape")
    kind = doc.get("type")
    if type(kind) is not str or kind not in _FIELDS:
        raise InvalidJoinRequest(f"{where}: type must be 'member' or 'validator'", rule="join shape")
    fields = _FIELDS[kind] - {"proof"}
    if set(doc) - {"proof"} != fields:
        missing, extra = sorted(fields - set(doc)), sorted(set(doc) - fields - {"proof"})
        detail = "; ".join(x for x in (missing and f"missing {missing}", extra and f"unknown {extra}") if x)
        raise InvalidJoinRequest(f"{where}: a {kind} request has exactly the fields {sorted(_FIELDS[kind])} "
                                 f"({detail})", rule="join shape")
    org = doc["organisation"]
    if (type(org) is not str or not 0 < len(org) <= MAX_TEXT or org != org.strip()
            or any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in org)):
        raise _field(where, f"organisation: 1-{MAX_TEXT} characters, no control characters or surrounding spaces")
    name = doc["name"]
    if type(name) is not str or NAME.fullmatch(name) is None:
        raise _field(where, "name: lowercase letters, digits, '.', '_' or '-' (1-64, starting with a letter or digit)")
    pk = doc["public_key"]
    if type(pk) is not str or len(pk) != 2 * PUBLIC_KEY_SIZE or _LOWER_HEX.fullmatch(pk) is None:
        raise _field(where, "public_key: 64 lowercase hex digits (a raw Ed25519 public key)")
    created = doc["created_at"]
    ok_time = type(created) is str and _CREATED_AT.fullmatch(created) is not None
    if ok_time:
        try:
            _dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            ok_time = False
    if not ok_time:
        raise _field(where, "created_at: a UTC time as YYYY-MM-DDTHH:MM:SSZ")
    if kind == "member":
        roles = doc["roles"]
        if type(roles) is not list or not roles or not all(type(r) is str for r in roles):
            raise InvalidJoinRequest(f"{where}: roles: a non-empty list of {sorted(ROLES)} expected",
                                     rule="unknown role")
        unknown = sorted(set(roles) - ROLES)
        if unknown:
            raise InvalidJoinRequest(f"{where}: unknown role(s) {unknown} (known: {', '.join(sorted(ROLES))})",
                                     rule="unknown role")
        if len(set(roles)) != len(roles):
            raise InvalidJoinRequest(f"{where}: roles: a role is listed twice", rule="unknown role")
    else:
        url = doc["url"]
        parts = urlsplit(url) if type(url) is str else None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL
                or url.endswith("/") or any(c.isspace() for c in url) or parts.query or parts.fragment):
            raise _field(where, f"url: an http(s) URL with a host, no trailing '/', query or fragment, "
                                f"at most {MAX_URL} characters")
        try:
            parts.port  # noqa: B018 - urllib checks the port only when asked
        except ValueError as exc:
            raise _field(where, f"url: {exc}") from exc


def parse_request(doc: Any, where: str = "join request") -> JoinRequest:
    """A checked join request from its JSON value: exact fields and types, then the proof."""
    if type(doc) is not dict:
        raise InvalidJoinRequest(f"{where}: a JSON object expected", rule="join shape")
    _check_fields(doc, where)
    proof = doc.get("proof")
    if type(proof) is not str or len(proof) != 2 * SIGNATURE_SIZE or _LOWER_HEX.fullmatch(proof) is None:
        raise InvalidJoinRequest(f"{where}: proof: 128 lowercase hex digits (an Ed25519 signature) expected",
                                 rule="join shape" if "proof" not in doc else "join field")
    req = JoinRequest(
        type=doc["type"],
        organisation=doc["organisation"],
        name=doc["name"],
        public_key=bytes.fromhex(doc["public_key"]),
        created_at=doc["created_at"],
        proof=bytes.fromhex(proof),
        roles=tuple(doc["roles"]) if doc["type"] == "member" else (),
        url=doc["url"] if doc["type"] == "validator" else None,
    )
    req.verify()
    return req


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidJoinRequest(f"join request: the field {k!r} appears twice", rule="join shape")
        out[k] = v
    return out


def request_from_json(text: str | bytes, where: str = "join request") -> JoinRequest:
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJoinRequest(f"{where}: not valid JSON: {exc}", rule="join shape") from exc
    except InvalidJoinRequest as exc:
        raise InvalidJoinRequest(f"{where}: {exc.message.removeprefix('join request: ')}", rule=exc.rule) from exc
    return parse_request(doc, where)


def load_request(path: str | os.PathLike[str]) -> JoinRequest:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidJoinRequest(f"join request: cannot read {path}: {exc.strerror}", rule="join shape") from exc
    return request_from_json(text, where=str(path))


# -- assembling ----------------------------------------------------------------------------------


def assemble(
    chain_id: str,
    requests: Sequence[JoinRequest],
    *,
    approvals: int | str = "majority",
    params: Mapping[str, int] | None = None,
    created_at: str | None = None,
    read_policy: str | None = None,
) -> Genesis:
    """The genesis of ``requests``: each proof checked, names, keys and validator URLs unique.
    ``read_policy`` (docs/governance.md "Read policy") is written only when given: absent means ``members``.

    Entries are sorted by name, so the same requests (and arguments) give the same genesis bytes
    whatever order they were handed in: anyone holding them can re-assemble and compare hashes.
    """
    for r in requests:
        r.verify()
    by_name: dict[str, JoinRequest] = {}
    by_key: dict[bytes, JoinRequest] = {}
    by_url: dict[str, JoinRequest] = {}
    for r in requests:
        if r.name in by_name:
            raise CeremonyError(f"assemble: two requests are named {r.name!r} "
                                f"({by_name[r.name].organisation} and {r.organisation})", rule="duplicate name")
        if r.public_key in by_key:
            raise CeremonyError(f"assemble: {by_key[r.public_key].name!r} and {r.name!r} carry the same public key "
                                f"(id {r.id}); each entry needs its own key", rule="duplicate key")
        if r.url is not None and r.url in by_url:
            raise CeremonyError(f"assemble: validators {by_url[r.url].name!r} and {r.name!r} share the URL {r.url}",
                                rule="duplicate url")
        by_name[r.name], by_key[r.public_key] = r, r
        if r.url is not None:
            by_url[r.url] = r
    validators = sorted((r for r in requests if r.type == "validator"), key=lambda r: r.name)
    members = sorted((r for r in requests if r.type == "member"), key=lambda r: r.name)
    if len(validators) < MIN_VALIDATORS:
        raise CeremonyError(f"assemble: {len(validators)} validator request(s); at least {MIN_VALIDATORS} are needed "
                            "to tolerate one faulty validator", rule="too few validators")
    admins = sum("admin" in r.roles for r in members)
    if admins == 0:
        raise CeremonyError("assemble: no member requests the admin role: nobody could ever change the "
                            "configuration", rule="no admin")
    if approvals != "majority" and (type(approvals) is not int or not 1 <= approvals <= admins):
        raise CeremonyError(f"assemble: approvals must be 'majority' or 1..{admins} (the number of admins), "
                            f"not {approvals!r}", rule="no admin")
    # The genesis's own rules (chain_id, params) raise InvalidGenesis, rule "genesis".
    return Genesis.build(
        chain_id,
        [(r.public_key, r.name, str(r.url)) for r in validators],
        [(r.public_key, r.name, r.organisation, list(r.roles)) for r in members],
        params=dict(params or {}),
        created_at=created_at,
        approvals=approvals,
        read_policy=read_policy,
    )


# -- checking ------------------------------------------------------------------------------------


def _differs(what: str, field: str, asked: object, found: object) -> GenesisMismatch:
    return GenesisMismatch(f"{what}: {field} is {found!r} in the genesis, but {asked!r} was requested",
                           rule="entry differs")


def check_genesis(genesis: Genesis, expected: Sequence[JoinRequest | bytes]) -> list[str]:
    """Check that each expected entry is in ``genesis`` exactly as requested; one line per entry.

    An entry is a ``JoinRequest`` (its name, organisation, roles or URL must match) or a bare public
    key (it must be there, as a member or a validator). Raises ``GenesisMismatch`` at the first entry
    that is missing or differs, so nobody starts a node on a genesis that misstates them.
    """
    lines: list[str] = []
    for e in expected:
        if isinstance(e, bytes):
            kid = key_id(e)
            v = genesis.validator_by_id.get(kid)
            m = genesis.members.get(kid)
            if v is not None:
                lines.append(f"ok: validator {v.name} id {kid} url {v.url}")
            elif m is not None:
                lines.append(f"ok: member {m.name} ({m.organisation}) id {kid} roles {','.join(sorted(m.roles))}")
            else:
                raise GenesisMismatch(f"key {kid} is not in the genesis, neither as a member nor as a validator",
                                      rule="entry missing")
            continue
        e.verify()
        what = f"{e.type} {e.name}"
        if e.type == "validator":
            v = genesis.validator_by_id.get(e.id)
            if v is None:
                other = genesis.validator_by_name(e.name)
                hint = f" (a validator {e.name} is there with key {other.id})" if other else ""
                raise GenesisMismatch(f"{what}: key {e.id} is not a validator of the genesis{hint}",
                                      rule="entry missing")
            if v.name != e.name:
                raise _differs(what, "the name", e.name, v.name)
            if v.url != e.url:
                raise _differs(what, "the url", e.url, v.url)
        else:
            m = genesis.members.get(e.id)
            if m is None:
                other_m = genesis.member_by_name(e.name)
                hint = f" (a member {e.name} is there with key {other_m.id})" if other_m else ""
                raise GenesisMismatch(f"{what}: key {e.id} is not a member of the genesis{hint}",
                                      rule="entry missing")
            if m.name != e.name:
                raise _differs(what, "the name", e.name, m.name)
            if m.organisation != e.organisation:
                raise _differs(what, "the organisation", e.organisation, m.organisation)
            if m.roles != frozenset(e.roles):
                raise _differs(what, "roles", ",".join(sorted(e.roles)), ",".join(sorted(m.roles)))
        lines.append(f"ok: {e.describe()}")
    return lines


def summary(genesis: Genesis) -> list[str]:
    """What each organisation reads aloud (or pastes) to the others, besides the hash, before starting."""
    g = genesis
    approvals = (f"{g.approvals} of {len(g.admins())} admins" if g.approvals is not None
                 else f"majority of {len(g.admins())} admins ({g.approvals_needed()})")
    lines = [
        f"chain_id     {g.chain_id}",
        f"genesis hash {g.hash.hex()}",
        f"created_at   {g.doc.get('created_at', '-')}",
        f"validators   {len(g.validators)} (tolerates f={g.f} faulty, quorum {g.quorum})",
    ]
    lines += [f"  {v.name:<16} {v.id}  {v.url}" for v in g.validators]
    lines.append(f"members      {len(g.members)}")
    lines += [f"  {m.name:<16} {m.id}  {','.join(sorted(m.roles)):<24} {m.organisation}"
              for m in sorted(g.members.values(), key=lambda m: m.name)]
    lines.append(f"governance   changes need {approvals}")
    changed = {k: v for k, v in g.params.items() if DEFAULT_PARAMS.get(k) != v}
    lines.append("params       " + (", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "defaults"))
    lines.append(f"read policy  {g.read_policy}")
    return lines
