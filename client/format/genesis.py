"""The genesis file: who validates, who may submit, and the protocol's parameters.

It is JSON so that people can read and edit it before a network starts; its hash (SHA-256 of
its canonical msgpack encoding) names the chain and is part of every signature, so once the
network runs, any change to it makes a different chain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rantai.consensus.crypto import PUBLIC_KEY_SIZE, key_id, sha256

from .consortium import (
    DEFAULT_PARAMS,
    DEFAULT_READ_POLICY,
    NAME,
    READ_POLICIES,
    ROLES,
    Consortium,
    Member,
    Validator,
    company_prefix_problem,
    prefix_clash,
)
from .encoding import encode
from .errors import InvalidEncoding, InvalidGenesis

__all__ = ["DEFAULT_PARAMS", "ROLES", "Genesis", "Member", "Validator"]

_NAME = NAME


def _fail(message: str) -> InvalidGenesis:
    return InvalidGenesis(f"genesis: {message}")


def _public_key(entry: dict[str, Any], where: str) -> bytes:
    raw = entry.get("public_key")
    try:
        key = bytes.fromhex(raw) if isinstance(raw, str) else b""
    except ValueError:
        key = b""
    if len(key) != PUBLIC_KEY_SIZE:
        raise _fail(f"{where}.public_key: 64 hex digits (a raw Ed25519 public key) expected")
    if entry.get("id") != key_id(key):
        raise _fail(f"{where}.id: must be {key_id(key)}, derived from its public key")
    return key


class Genesis(Consortium):
    """A parsed, checked genesis file: the consortium at height 0. ``hash`` names the chain in every signature."""

    def __init__(self, doc: dict[str, Any]) -> None:
        if not isinstance(doc, dict):
            raise _fail("top level must be a JSON object")
        unknown = set(doc) - {"chain_id", "created_at", "validators", "members", "params", "governance", "read_policy"}
        if unknown:
            raise _fail(f"unknown field(s) {sorted(unknown)}")
        chain_id = doc.get("chain_id")
        if not isinstance(chain_id, str) or not _NAME.match(chain_id):
            raise _fail("chain_id: lowercase letters, digits, '.', '_' or '-' (1-64) expected")
        self.doc = doc
        try:
            self.canonical = encode(doc)
        except InvalidEncoding as exc:
            raise _fail(str(exc)) from exc
        validators = tuple(self._validators(doc.get("validators")))
        members = {m.id: m for m in self._members(doc.get("members"))}
        if set(members) & {v.id for v in validators}:
            raise _fail("a key is both a member's and a validator's: each role gets its own key")
        params = doc.get("params", {})
        if not isinstance(params, dict):
            raise _fail("params must be an object")
        for k, v in params.items():
            if k not in DEFAULT_PARAMS:
                raise _fail(f"params.{k}: unknown parameter (known: {', '.join(sorted(DEFAULT_PARAMS))})")
            if type(v) is not int or v <= 0:
                raise _fail(f"params.{k}: a positive integer expected")
        read_policy = doc.get("read_policy", DEFAULT_READ_POLICY)
        if read_policy not in READ_POLICIES:
            raise _fail(f"read_policy: one of {', '.join(READ_POLICIES)} expected")
        super().__init__(chain=sha256(self.canonical), chain_id=chain_id, validators=validators, members=members,
                         params={**DEFAULT_PARAMS, **params}, approvals=self._approvals(doc.get("governance")),
                         read_policy=read_policy)

    @staticmethod
    def _approvals(governance: Any) -> int | None:
        """``{"approvals": k}`` (k distinct admins) or ``{"approvals": "majority"}``; absent: majority."""
        if governance is None:
            return None
        if type(governance) is not dict or set(governance) != {"approvals"}:
            raise _fail('governance: {"approvals": N} or {"approvals": "majority"} expected')
        k = governance["approvals"]
        if k == "majority":
            return None
        if type(k) is not int or k < 1:
            raise _fail("governance.approvals: a positive integer or \"majority\" expected")
        return k

    @staticmethod
    def _validators(entries: Any) -> list[Validator]:
        if not isinstance(entries, list) or len(entries) < 1:
            raise _fail("validators: a non-empty list expected")
        out: list[Validator] = []
        for i, e in enumerate(entries):
            where = f"validators[{i}]"
            if not isinstance(e, dict):
                raise _fail(f"{where}: an object expected")
            key = _public_key(e, where)
            name, url = e.get("name", e.get("id")), e.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise _fail(f"{where}.url: an http(s) URL expected")
            out.append(Validator.of(key, str(name), url))  # e["id"] was checked to be key_id(key)
        if len({v.id for v in out}) != len(out):
            raise _fail("validators: the same key appears twice")
        return out

    @staticmethod
    def _members(entries: Any) -> list[Member]:
        if not isinstance(entries, list):
            raise _fail("members: a list expected")
        out: list[Member] = []
        for i, e in enumerate(entries):
            where = f"members[{i}]"
            if not isinstance(e, dict):
                raise _fail(f"{where}: an object expected")
            key = _public_key(e, where)
            name = e.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise _fail(f"{where}.name: lowercase letters, digits, '.', '_' or '-' expected")
            roles = e.get("roles")
            if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
                raise _fail(f"{where}.roles: a non-empty list of {sorted(ROLES)} expected")
            org = e.get("organisation", name)
            if not isinstance(org, str):
                raise _fail(f"{where}.organisation: a string expected")
            prefixes = e.get("company_prefixes", [])
            problem = company_prefix_problem(prefixes)
            if problem:
                raise _fail(f"{where}.company_prefixes: {problem}")
            out.append(Member.of(key, name, org, set(roles), prefixes))  # e["id"] was checked to be key_id(key)
        if len({m.id for m in out}) != len(out):
            raise _fail("members: the same key appears twice")
        if len({m.name for m in out}) != len(out):
            raise _fail("members: two members share a name")
        clash = prefix_clash(out)
        if clash:
            raise _fail(f"members: {clash}")
        return out

    @classmethod
    def build(
        cls,
        chain_id: str,
        validators: list[tuple[bytes, str, str]],
        members: list[tuple[bytes, str, str, list[str]]],
        params: dict[str, int] | None = None,
        created_at: str | None = None,
        approvals: int | str | None = None,
        read_policy: str | None = None,
        company_prefixes: dict[str, list[str]] | None = None,
    ) -> "Genesis":
        """A genesis from (public key, name, url) validators and (public key, name, organisation, roles) members;
        ``company_prefixes`` by member name, ``read_policy`` written only when given (absent means "members")."""
        doc: dict[str, Any] = {"chain_id": chain_id}
        if created_at:
            doc["created_at"] = created_at
        doc["validators"] = [
            {"id": key_id(pk), "name": name, "public_key": pk.hex(), "url": url} for pk, name, url in validators
        ]
        doc["members"] = [
            {"id": key_id(pk), "name": name, "organisation": org, "public_key": pk.hex(), "roles": list(roles)}
            for pk, name, org, roles in members
        ]
        for m in doc["members"]:
            if (company_prefixes or {}).get(m["name"]):
                m["company_prefixes"] = list((company_prefixes or {})[m["name"]])
        doc["params"] = dict(params or {})
        if approvals is not None:
            doc["governance"] = {"approvals": approvals}
        if read_policy is not None:
            doc["read_policy"] = read_policy
        return cls(doc)

    # -- files ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Genesis":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidGenesis(f"genesis: cannot read {path}: {exc.strerror}") from exc
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Genesis":
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidGenesis(f"genesis: not valid JSON: {exc}") from exc
        return cls(doc)

    def to_json(self) -> str:
        return json.dumps(self.doc, indent=2, ensure_ascii=False) + "\n"

    def __repr__(self) -> str:
        return (f"Genesis({self.chain_id!r}, hash={self.hash.hex()[:16]}…, validators={len(self.validators)}, "
                f"members={len(self.members)})")
