"""The logic behind ``rantai gov …`` and ``rantai members``: building changes, reading governance, and words.

Kept out of cli.py so each command stays a few lines, and so the demo (client/demo.py) tells the
same story in the same words as the commands.

Trust: what a command *asserts* comes from what the client verified itself -- the change entries of
``GET /v1/changes``, replayed from the genesis (``Client.governance``). A node's ``GET /v1/config``
is used for what cannot be proven that way (open proposals, whose approvals are not yet a change)
and is cross-checked wherever it can be: ``members`` says so when a node disagrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .format.consortium import CHANGEABLE_PARAMS
from .format.errors import InvalidKey, InvalidRecord, RantaiError, VerificationError
from .format.governance import OPS, POSSESSION_KIND, Governance, Proposal, check_change, possession_body
from .format.records import SignedRecord, sign_change

__all__ = [
    "GOVERNANCE_RULES",
    "GovView",
    "build_change",
    "describe_change",
    "differences",
    "make_proof",
    "refusal",
    "status_words",
    "submit_change",
]

# The node's refusals of a change entry (``Governance`` and ``Consortium.changed``), named by rule.
GOVERNANCE_RULES = frozenset({"change shape", "not an admin", "unknown proposal", "proposal closed", "approved twice",
                              "change refused"})

# CLI op name (dashes, as people type them) -> the ledger's op
CLI_OPS = {op.replace("_", "-"): op for op in OPS if op != "approve"}


# -- building changes -------------------------------------------------------------------------------


def make_proof(signer: Any, chain: bytes, name: str) -> bytes:
    """The proof of possession a new key gives (``gov prove``): it signs the name it will carry and
    itself for this chain, so no admin can enrol a key whose private half belongs to someone else."""
    return signer.sign(POSSESSION_KIND, chain, possession_body(chain, name, signer.public_key))


def _hex(value: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value.strip())
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise InvalidRecord(f"{what}: {2 * size} hex digits expected", rule="change shape")
    return raw


def new_key(name: str, chain: bytes, public_key: str | None, key_file: str | None,
            proof: str | None) -> dict[str, bytes]:
    """``public_key`` and ``proof`` of a change that brings in a key.

    The key comes as hex (``--public-key``) or a file (``--key-file``: a PEM private key, or a file
    holding the public key's hex). When the file is the private key, whoever runs this holds it, and
    the proof is made here; otherwise the key's holder made it with ``rantai gov prove``.
    """
    from .format.keys import load_key

    if (public_key is None) == (key_file is None):
        raise InvalidRecord("give the new key as exactly one of --public-key HEX or --key-file FILE",
                            rule="change shape")
    made: bytes | None = None
    if key_file is not None:
        text = Path(key_file).read_text(encoding="utf-8", errors="replace") if Path(key_file).exists() else None
        if text is None:
            raise InvalidKey(f"key: cannot read {key_file}")
        if "PRIVATE KEY" in text:
            signer = load_key(key_file)
            pk, made = signer.public_key, make_proof(signer, chain, name)
        else:
            pk = _hex(text, 32, f"{key_file}: a public key")
    else:
        pk = _hex(public_key or "", 32, "--public-key")
    if proof is not None:
        return {"public_key": pk, "proof": _hex(proof, 64, "--proof")}
    if made is None:
        raise InvalidRecord(f"the new key's proof of possession is missing: its holder runs `rantai gov prove --key "
                            f"KEY.pem --name {name}` and sends you the proof (pass it as --proof HEX)",
                            rule="change shape")
    return {"public_key": pk, "proof": made}


def build_change(op: str, opts: Mapping[str, Any], chain: bytes) -> dict[str, Any]:
    """The change map of ``rantai gov propose OP`` from its flags, checked for shape before anything is signed."""
    o = CLI_OPS.get(op, op)
    change: dict[str, Any] = {"op": o}
    if o in ("add_member", "add_validator"):
        change["name"] = opts["name"]
    if o in ("set_roles", "suspend_member", "reinstate_member", "remove_member", "rotate_key", "set_company_prefixes"):
        change["member"] = opts["member"]
    if o in ("remove_validator", "rekey_validator", "set_validator_url"):
        change["validator"] = opts["validator"]
    if o == "add_member":
        change["organisation"] = opts["org"]
    if o in ("add_member", "set_roles"):
        change["roles"] = [r.strip() for r in str(opts["roles"]).split(",") if r.strip()]
    if o in ("add_validator", "set_validator_url"):
        change["url"] = opts["url"]
    if o in ("add_member", "rotate_key", "add_validator", "rekey_validator"):
        who = change.get("name") or change.get("member") or change.get("validator")
        change.update(new_key(str(who), chain, opts.get("public_key"), opts.get("key_file"), opts.get("proof")))
    if o == "set_governance":
        text = str(opts["approvals"])
        change["approvals"] = "majority" if text == "majority" else int(text) if text.isdigit() else text
    if o == "set_params":
        params: dict[str, int] = {}
        for item in opts["params"]:
            key, eq, value = item.partition("=")
            if not eq or not value.strip().lstrip("-").isdigit():
                raise InvalidRecord(f"set-params: KEY=INTEGER expected, got {item!r}", rule="change shape")
            params[key.strip()] = int(value)
        fixed = sorted(set(params) - CHANGEABLE_PARAMS)
        if fixed:
            raise InvalidRecord(f"change shape: {', '.join(fixed)} cannot change on a running chain (changeable: "
                                f"{', '.join(sorted(CHANGEABLE_PARAMS))})", rule="change shape")
        change["params"] = params
    if o == "set_read_policy":
        change["read_policy"] = opts["read_policy"]
    if o == "set_company_prefixes":
        change["company_prefixes"] = list(opts.get("company_prefixes") or ())
    try:
        check_change(change)
    except RantaiError as exc:  # the same one line the node would answer
        raise refusal(exc) from exc
    return change


def describe_change(change: Mapping[str, Any]) -> str:
    """A change in a few words ("add_member cafe (Kafe Senja) as submitter")."""
    c = dict(change)
    op = c.get("op", "?")
    if op == "add_member":
        return f"add member {c['name']} ({c['organisation']}) as {', '.join(c['roles'])}"
    if op == "set_roles":
        return f"set {c['member']}'s roles to {', '.join(c['roles'])}"
    if op in ("suspend_member", "reinstate_member", "remove_member"):
        return f"{op.split('_')[0]} member {c['member']}"
    if op == "rotate_key":
        return f"rotate {c['member']}'s key"
    if op == "add_validator":
        return f"add validator {c['name']} at {c['url']}"
    if op in ("remove_validator", "rekey_validator"):
        return f"{op.split('_')[0]} validator {c['validator']}"
    if op == "set_validator_url":
        return f"move validator {c['validator']} to {c['url']}"
    if op == "set_governance":
        return f"require {c['approvals']} admin approvals per change"
    if op == "set_params":
        return "set " + ", ".join(f"{k}={v}" for k, v in sorted(c["params"].items()))
    if op == "set_read_policy":
        return f"set the read policy to {c['read_policy']}"
    if op == "set_company_prefixes":
        return f"set {c['member']}'s GS1 Company Prefixes to {', '.join(c['company_prefixes']) or 'none'}"
    return str(op)


# -- talking to nodes -----------------------------------------------------------------------------


def refusal(exc: RantaiError) -> RantaiError:
    """A node's refusal as one line that names its rule first ("approved twice: tani already …").

    Rules the client has no class for (every governance rule) arrive as ``RemoteError``, which is not
    an ``InvalidRecord``; re-raised as one, the CLI exits with the "refused" code like any record.
    """
    if isinstance(exc, VerificationError) or exc.rule in ("node", "timeout", "error", "config", "key"):
        return exc
    message = exc.message if hasattr(exc, "message") else str(exc)
    message = message.removeprefix("change: ").removeprefix("record: ")
    if not message.startswith(exc.rule):
        message = f"{exc.rule}: {message}"
    return InvalidRecord(message, rule=exc.rule)


def fetch_config(client: Any, height: int | None = None) -> tuple[str, dict[str, Any]]:
    """``GET /v1/config`` through the client's fail-over (the first node with a well-formed answer):
    (node, answer). Nothing in it is verified here; ``GovView`` checks what can be checked."""
    from .http import _Call

    def parse(node: str, resp: httpx.Response) -> tuple[str, dict[str, Any]]:
        client._check_status(resp, (200,))
        obj = client._decode_body(resp)
        if type(obj) is not dict or type(obj.get("head")) is not int or type(obj.get("proposals")) is not list:
            raise VerificationError("config: a map with head and proposals expected")
        return node, obj

    def flow() -> Any:
        return (yield _Call("GET", "/v1/config", parse, "configuration",
                            params=None if height is None else {"height": height}))

    return client._run(flow())


def refresh_changes(client: Any, to: int | None = None) -> None:
    """Fetch and verify the change entries up to ``to`` (default: a node's head), once per call."""
    client._run(client.changes_flow(to))


_NODE_ONLY = ("height", "head", "proposals")


def differences(node_view: Mapping[str, Any], verified: Mapping[str, Any]) -> list[str]:
    """Where a node's ``/v1/config`` differs from the consortium the client replayed, in words."""
    out: list[str] = []
    for key in sorted(set(node_view) | set(verified)):
        if key in _NODE_ONLY or node_view.get(key) == verified.get(key):
            continue
        if key in ("members", "validators"):
            mine = {m["name"]: m for m in verified.get(key) or []}
            theirs = {m["name"]: m for m in node_view.get(key) or []}
            names = sorted(n for n in set(mine) | set(theirs) if mine.get(n) != theirs.get(n))
            out.append(f"{key} ({', '.join(names)})")
        else:
            out.append(key)
    return out


@dataclass
class GovView:
    """Governance as this client sees it: verified changes (``gov``) and one node's report (``config``)."""

    node: str
    config: dict[str, Any]
    gov: Governance

    @classmethod
    def load(cls, client: Any, height: int | None = None) -> "GovView":
        node, config = fetch_config(client, height)
        refresh_changes(client, config["head"] + 1)  # a node at least as far as the one that reported
        return cls(node, config, client.governance)

    @property
    def head(self) -> int:
        return int(self.config["head"])

    def proposals(self) -> list[dict[str, Any]]:
        """Every proposal the node reports; an approved one replaced by what the client verified."""
        out = []
        for p in self.config["proposals"]:
            mine = self.gov.proposals.get(bytes.fromhex(p["id"]))
            if mine is not None:
                p = {**mine.describe(), "verified": True}
            else:
                p = {**p, "verified": False}
            out.append(p)
        return out

    def find(self, prefix: str) -> dict[str, Any]:
        """A proposal by id or a unique prefix of it (at least 6 hex digits)."""
        prefix = prefix.lower().strip()
        hits = [p for p in self.proposals() if p["id"].startswith(prefix)] if len(prefix) >= 6 else []
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InvalidRecord(f"proposal {prefix!r} is ambiguous ({len(hits)} match); give more digits",
                                rule="unknown proposal")
        raise InvalidRecord(f"unknown proposal: no proposal {prefix!r} on the chain as of height {self.head} "
                            "(`rantai gov list` shows them)", rule="unknown proposal")

    def needed(self, p: Mapping[str, Any]) -> str:
        """``Governance.needed``'s words for an open proposal, with the rule in force at the next block."""
        at_head = self.gov.fork()
        at_head.height = max(at_head.height, self.head)  # needed() reads the rule governing height + 1
        return at_head.needed(Proposal(bytes.fromhex(p["id"]), p["height"], p["index"], p["proposer"],
                                       dict(p["change"]), list(p["approvals"])))

    def status_words(self, p: Mapping[str, Any]) -> str:
        return status_words(p, self.needed(p) if p["approved_at"] is None else "",
                            self.gov.at(self.head + 1).approvals_needed(), self.head)


def status_words(p: Mapping[str, Any], needed: str, threshold: int, head: int) -> str:
    """A proposal's status in words: "approved by 1 of 2 needed: tani" while open; once approved,
    the height it is in force from and whether that height is reached."""
    who = ", ".join(p["approvals"])
    if p["approved_at"] is None:
        return f"open: approved by {len(p['approvals'])} of {threshold} needed: {who} ({needed})"
    eff = p["effective"]
    when = "in force now" if head + 1 >= eff else f"{eff - head - 1} more block(s) until then"
    return f"approved by {who} at height {p['approved_at']}; in force from height {eff} ({when})"


def submit_change(client: Any, change: dict[str, Any], *, wait_timeout: float = 30.0) -> tuple[SignedRecord, Any]:
    """Sign ``change`` with the client's identity, submit it and wait for its verified receipt.

    A refusal is raised as one line naming the node's rule (``refusal``)."""
    if client.identity is None:
        raise InvalidKey("gov: no admin key (use --key or RANTAI_KEY)")
    record = sign_change(client.identity, client.genesis, change)
    try:
        receipt = client.submit_record(record, True, timeout=wait_timeout)
    except RantaiError as exc:
        raise refusal(exc) from exc
    return record, receipt


def proposal_after(client: Any, proposal_id: bytes, receipt: Any) -> tuple[GovView, dict[str, Any]]:
    """The proposal's state just after an entry of it committed (a proposal or an approval)."""
    view = GovView.load(client)
    hexid = proposal_id.hex()
    for p in view.proposals():
        if p["id"] == hexid:
            return view, p
    # The node answering /v1/config has not applied that block yet: the entry itself is all we know.
    me = client.genesis.members.get(receipt.record.submitter) or client.governance.latest.members.get(
        receipt.record.submitter)
    return view, {"id": hexid, "height": receipt.height, "index": receipt.index,
                  "proposer": me.name if me else receipt.record.submitter, "change": {}, "approvals": [],
                  "approved_at": None, "effective": None, "verified": False}
