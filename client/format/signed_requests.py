"""Signed reads: RFC 9421 HTTP Message Signatures over a read request, Ed25519, one profile.

A member (or validator) proves who reads by signing the request's method, authority, path and query
with the key the consortium knows it by; the node checks the signature and the clock window, then asks
the read policy (``read_access``) what that reader may see. docs/api.md, "Signed reads", gives the
bytes; this module is those bytes and nothing else (no clock, no I/O: callers pass ``now``).

Why a fixed profile rather than the whole of RFC 9421: a verifier that accepts any component list,
any parameter order and any algorithm is a large parser guarding every read. Ours accepts exactly one
shape, which any RFC 9421 implementation produces when asked for these components and parameters
(tested against the RFC's own Ed25519 example, Appendix B.2.6, and against the ``http-message-signatures``
library). A signature base starts with ``"@method"`` (byte 0x22), every other statement rantai signs
with ``rantai/1\\0`` (``consensus.crypto.signing_bytes``): neither can ever pass for the other.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import nacl.bindings
from nacl.exceptions import BadSignatureError, CryptoError

from rantai.consensus.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Signer

from .errors import RantaiError

__all__ = [
    "ALG",
    "CLOCK_WINDOW_S",
    "COMPONENTS",
    "LABEL",
    "READ_RULES",
    "ReadRefused",
    "SignedRead",
    "authority",
    "is_signed_request",
    "parse",
    "sign",
    "sign_request",
    "signature_base",
    "signature_params",
    "verify",
]

LABEL = "rantai"
ALG = "ed25519"
COMPONENTS = ("@method", "@authority", "@path", "@query")
CLOCK_WINDOW_S = 300  # |node clock - created| at most this: a captured signature replays for minutes, not forever

# rule -> (HTTP status, the rule in one line). docs/api.md "Signed reads" says each in full.
READ_RULES: dict[str, tuple[int, str]] = {
    "read.unsigned": (401, "this node's read policy is not public: sign the request (RFC 9421, docs/api.md)"),
    "read.signature": (401, "Signature-Input and Signature carry one well-formed `rantai` signature that verifies "
                            "with its keyid over the request's signature base"),
    "read.stale": (401, f"the signature's created time is within {CLOCK_WINDOW_S} s of the node's clock"),
    "read.not-member": (403, "keyid is the key of a validator or of an active member in force"),
    "read.not-allowed": (403, "the read policy in force lets this reader see what it asked for"),
}

_PARAMS = re.compile(
    r'\("@method" "@authority" "@path" "@query"\);created=(0|[1-9][0-9]{0,15});keyid="([0-9a-f]{64})";alg="ed25519"\Z'
)
_SIGNATURE = re.compile(r":([A-Za-z0-9+/]{86}==):\Z")  # 64 bytes in standard base64, padded: 88 characters
_LABEL = re.compile(r"[a-z*][a-z0-9_.*-]*\Z")  # an RFC 8941 key


class ReadRefused(RantaiError):
    """A read the node will not answer; ``rule`` is one of ``READ_RULES``, the HTTP status follows from it."""

    def __init__(self, rule: str, message: str, **details: object) -> None:
        super().__init__(message, rule=rule, **details)
        self.status_hint = READ_RULES[rule][0]


@dataclass(frozen=True)
class SignedRead:
    """A signature that verified: who signed (``public_key``) and when it says it was made."""

    public_key: bytes
    created: int


# Writes that open a channel of reads (a named query, a subscription that will deliver records) are signed
# and judged like reads; the signature does not cover their body (docs/api.md, "Signed reads").
READ_CHANNEL_PREFIX = "/epcis/queries"


def is_signed_request(method: str, path: str) -> bool:
    """Whether a request is a read the read policy judges (so clients sign it): every GET and HEAD, and any
    method on the named queries and subscriptions. Node and client both ask here."""
    return method in ("GET", "HEAD") or path == READ_CHANNEL_PREFIX or path.startswith(READ_CHANNEL_PREFIX + "/")


def authority(host: str, scheme: str) -> str:
    """``@authority`` (RFC 9421 §2.2.3): the Host as sent, lower-cased, without the scheme's default port."""
    host = host.strip().lower()
    default = {"http": ":80", "https": ":443", "ws": ":80", "wss": ":443"}.get(scheme.lower())
    if default and host.endswith(default):
        host = host[: -len(default)]
    return host


def signature_params(created: int, public_key: bytes) -> str:
    """The ``rantai`` member of ``Signature-Input`` and the ``@signature-params`` value: one exact string."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
    if type(created) is not int or not 0 <= created < 10**16:
        raise ValueError("created: a non-negative integer of at most 16 digits (unix seconds)")
    components = " ".join(f'"{c}"' for c in COMPONENTS)
    return f'({components});created={created};keyid="{public_key.hex()}";alg="{ALG}"'


def signature_base(method: str, authority: str, path: str, query: str, params: str) -> bytes:
    """The RFC 9421 §2.5 signature base of a read: five lines, LF-separated, no final LF.

    ``path`` and ``query`` are as sent on the wire (percent-encoding untouched); an empty path is ``/``,
    an absent query ``?`` (RFC 9421 §2.2.6, §2.2.7). Raises ``ReadRefused`` (``read.signature``) for a
    value that cannot be in a base (a control character or a non-ASCII byte).
    """
    query = query if query.startswith("?") else "?" + query
    values = (method.upper(), authority, path or "/", query)
    for name, value in zip(COMPONENTS, values, strict=True):
        if not value.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ReadRefused("read.signature", f"{name} holds a byte that cannot be signed: {value!r}")
    lines = [f'"{name}": {value}' for name, value in zip(COMPONENTS, values, strict=True)]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("ascii")


def sign(signer: Signer, method: str, authority: str, path: str, query: str, created: int) -> dict[str, str]:
    """The two headers that sign a read as ``signer`` at ``created`` (unix seconds)."""
    params = signature_params(created, signer.public_key)
    signature = signer.private_key.sign(signature_base(method, authority, path, query, params))
    return {"Signature-Input": f"{LABEL}={params}",
            "Signature": f"{LABEL}=:{base64.b64encode(signature).decode('ascii')}:"}


def sign_request(signer: Signer, method: str, host: str, scheme: str, target: str, created: int) -> dict[str, str]:
    """``sign`` for a request as an HTTP client holds it: its ``Host`` header, its URL's scheme and its
    request target (``/path?query`` as sent)."""
    path, _, query = target.partition("?")
    return sign(signer, method, authority(host, scheme), path, "?" + query, created)


def _members(header: str) -> dict[str, str]:
    """An RFC 8941 dictionary split into its members' raw values (strings, inner lists and byte
    sequences may hold commas). A label given twice is ambiguous, so it is refused."""
    out: dict[str, str] = {}
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " \t":
            i += 1
        start, depth, quoted = i, 0, False
        while i < n:
            c = header[i]
            if quoted:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quoted = False
            elif c == '"':
                quoted = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 0:
                break
            i += 1
        member = header[start:i].strip(" \t")
        i += 1
        if not member:
            raise ReadRefused("read.signature", "an empty member in a signature header")
        label, eq, value = member.partition("=")
        if not eq or not _LABEL.match(label):
            raise ReadRefused("read.signature", f"not a dictionary member: {member[:80]!r}")
        if label in out:
            raise ReadRefused("read.signature", f"the label {label!r} appears twice")
        out[label] = value
    return out


def parse(signature_input: str | None, signature: str | None) -> tuple[str, bytes, bytes] | None:
    """The ``rantai`` signature of a request's headers: (params, public key, signature), or None when
    the request carries neither header (an anonymous read). Other labels are ignored (a proxy may add
    its own). Raises ``ReadRefused`` (``read.signature``) for anything but the one exact profile."""
    if signature_input is None and signature is None:
        return None
    if signature_input is None or signature is None:
        raise ReadRefused("read.signature", "Signature-Input and Signature come together")
    params = _members(signature_input).get(LABEL)
    value = _members(signature).get(LABEL)
    if params is None or value is None:
        raise ReadRefused("read.signature", f"no signature labelled {LABEL!r} in both headers")
    m = _PARAMS.match(params)
    if m is None:
        raise ReadRefused("read.signature", f"Signature-Input must be exactly {LABEL}={signature_params(0, bytes(32))}"
                          " with your created and keyid", got=params[:300])
    s = _SIGNATURE.match(value)
    if s is None:
        raise ReadRefused("read.signature", "Signature: :<base64 of 64 bytes>: expected")
    try:
        raw = base64.b64decode(s.group(1), validate=True)
    except binascii.Error:  # pragma: no cover - the pattern admits only valid base64
        raise ReadRefused("read.signature", "Signature: not base64") from None
    if len(raw) != SIGNATURE_SIZE:  # pragma: no cover - 86 characters and == are 64 bytes
        raise ReadRefused("read.signature", f"Signature: {SIGNATURE_SIZE} bytes expected")
    return params, bytes.fromhex(m.group(2)), raw


def verify(signature_input: str | None, signature: str | None, *, method: str, authority: str, path: str,
           query: str, now: int) -> SignedRead | None:
    """Check a read's signature headers; None for an anonymous read. Order: the profile and the
    signature (``read.signature``), then the clock window (``read.stale``). Who the key belongs to is
    the read policy's question (``read_access``)."""
    parsed = parse(signature_input, signature)
    if parsed is None:
        return None
    params, public_key, raw = parsed
    base = signature_base(method, authority, path, query, params)
    try:
        nacl.bindings.crypto_sign_open(raw + base, public_key)
    except (BadSignatureError, CryptoError, ValueError):
        raise ReadRefused("read.signature", "the signature does not verify with its keyid over this request's "
                          "signature base (method, authority, path and query as received)",
                          signature_base=base.decode("ascii")) from None
    created = int(_PARAMS.match(params).group(1))  # type: ignore[union-attr]  # parse matched it
    if abs(now - created) > CLOCK_WINDOW_S:
        raise ReadRefused("read.stale", f"created={created} is {now - created:+d} s from this node's clock "
                          f"({now}); at most {CLOCK_WINDOW_S} s either way", created=created, now=now)
    return SignedRead(public_key, created)
