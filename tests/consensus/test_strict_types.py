"""Type confusion: ``True == 1 == 1.0`` in Python, so every decoder must check exact types and ranges.

Each decoder of a signed or received consensus structure (``CommitCertificate.from_obj`` and
``verify_certificate``, ``wire.decode``, ``ReplicaConfig``, the signed-body builders of
``messages``) is fed bools, floats, strings, negative and out-of-range integers, bytes of the
wrong length and nested wrong shapes, at every position of a valid value, and must refuse each one
with its own error. One test runs the certificate decoder under ``python -O``, where asserts vanish.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from consensus_helpers import CHAIN, signers
from test_wire import samples

from rantai.consensus import (
    CertificateError,
    CommitCertificate,
    Message,
    ProtocolViolation,
    ReplicaConfig,
    max_faulty,
    quorum_size,
    verify_certificate,
    wire,
)
from rantai.consensus.certificate import CERTIFICATE_RULES, commit_body
from rantai.consensus.crypto import Verifier
from rantai.consensus.messages import checkpoint_body, preprepare_body, vote_body

ID = "0123456789abcdef"

# ------------------------------------------------------------------------------------ generic mutation


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _replace(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    out = copy.deepcopy(root)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = new
    return out


def _confusions(value: Any, *, u64_limit: bool) -> list[Any]:
    """Values that must be refused where ``value`` stands (``value`` is valid there)."""
    t = type(value)
    if t is int:
        bad: list[Any] = [True, False, float(value), str(value), -1, -(2**63), b"\x01", None, [value]]
        if u64_limit:
            bad += [2**64, 2**70]  # msgpack cannot carry these; Python objects can
        return bad
    if t is bytes:
        if len(value) not in (32, 64):  # payloads are variable-length: only the type is fixed
            return [value.decode("latin-1"), 1, None, [value]]
        return [value[:-1], value + b"\x00", b"", value.hex(), 0, None, [value]]
    if t is str:
        return [value.encode(), 7, value.upper(), value[:-1], value + "0", "g" * len(value), None]
    if t is list:
        # a scalar instead of the array, and one element of the wrong kind appended (no array of a
        # consensus structure holds bare integers, and fixed arrays then have the wrong arity)
        return [1, b"x", value + [0], {"a": 1} if value else 0]
    if t is dict:
        return [1, [], list(value.values())]
    raise AssertionError(f"unexpected leaf {value!r}")


# ------------------------------------------------------------------------------------ certificates


@pytest.fixture(scope="module")
def quorum() -> tuple[CommitCertificate, dict[str, Verifier], bytes]:
    ss = signers(4)
    digest = bytes(range(32))
    body = commit_body(5, 2, digest)
    votes = tuple(sorted((s.id, s.sign("commit", CHAIN, body)) for s in ss[:3]))
    return CommitCertificate(5, 2, digest, votes), {s.id: Verifier(s.public_key) for s in ss}, digest


def test_certificate_round_trip(quorum) -> None:
    cert, verifiers, digest = quorum
    again = CommitCertificate.from_obj(cert.to_obj())
    assert again == cert
    verify_certificate(again, CHAIN, verifiers, height=5, block_hash=digest, min_view=2)
    tupled = {**cert.to_obj(), "votes": tuple(tuple(v) for v in cert.votes)}  # msgpack with use_list=False
    assert CommitCertificate.from_obj(tupled) == cert


def test_certificate_from_obj_refuses_every_confusion(quorum) -> None:
    cert, _, _ = quorum
    obj = cert.to_obj()
    tried = 0
    for path, value in _paths(obj):
        for bad in _confusions(value, u64_limit=True):
            mutated = _replace(obj, path, bad)
            with pytest.raises(CertificateError) as info:
                CommitCertificate.from_obj(mutated)
            assert info.value.rule == "certificate.malformed", (path, bad)
            tried += 1
    assert tried >= 90
    for bad_obj in [None, [], "cert", {**obj, "extra": 1}, {k: v for k, v in obj.items() if k != "view"},
                    {**obj, "votes": [(ID, bytes(64), b"")]}, {**obj, "votes": "ab"},
                    {**obj, "votes": {ID: bytes(64)}}]:
        with pytest.raises(CertificateError):
            CommitCertificate.from_obj(bad_obj)


@pytest.mark.parametrize("field,bad", [
    ("height", True), ("height", 5.0), ("height", "5"), ("height", -1), ("height", 2**64),
    ("view", True), ("view", 2.0), ("view", "2"), ("view", -1), ("view", 2**64),
    ("block_hash", b"\x00" * 31), ("block_hash", b"\x00" * 33), ("block_hash", "00" * 32),
    ("block_hash", bytearray(32)),
])
def test_verify_refuses_confused_fields_of_a_built_certificate(quorum, field: str, bad: Any) -> None:
    """A certificate object built in-process (not decoded) is checked too: ``True`` packs as 1 and
    would otherwise verify as the genuine certificate for height 1."""
    cert, verifiers, _ = quorum
    fields = {"height": cert.height, "view": cert.view, "block_hash": cert.block_hash, "votes": cert.votes}
    fields[field] = bad
    with pytest.raises(CertificateError) as info:
        verify_certificate(CommitCertificate(**fields), CHAIN, verifiers)
    assert info.value.rule == "certificate.malformed"


def test_a_bool_height_never_verifies_as_height_one() -> None:
    ss = signers(4)
    digest = bytes(range(32))
    body = commit_body(1, 0, digest)
    votes = tuple(sorted((s.id, s.sign("commit", CHAIN, body)) for s in ss[:3]))
    verifiers = {s.id: Verifier(s.public_key) for s in ss}
    verify_certificate(CommitCertificate(1, 0, digest, votes), CHAIN, verifiers, height=1)
    with pytest.raises(CertificateError, match="height"):
        verify_certificate(CommitCertificate(True, 0, digest, votes), CHAIN, verifiers, height=1)


def _rule(cert: CommitCertificate, verifiers: dict[str, Verifier], **kw: Any) -> str:
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, CHAIN, verifiers, **kw)
    assert str(info.value).startswith("certificate: ")
    return info.value.rule


def test_certificate_rule_names(quorum) -> None:
    cert, verifiers, digest = quorum
    h, v, votes = cert.height, cert.view, cert.votes
    stranger = signers(5)[4]
    assert _rule(cert, verifiers, height=6) == "certificate.height"
    assert _rule(cert, verifiers, block_hash=bytes(32)) == "certificate.block hash"
    assert _rule(cert, verifiers, min_view=3) == "certificate.view"
    verify_certificate(cert, CHAIN, verifiers, min_view=0)
    verify_certificate(cert, CHAIN, verifiers, min_view=2)
    assert _rule(CommitCertificate(h, v, digest, votes[::-1]), verifiers) == "certificate.unsorted"
    assert _rule(CommitCertificate(h, v, digest, (votes[0], votes[0], votes[1])), verifiers) \
        == "certificate.duplicate signer"
    assert _rule(CommitCertificate(h, v, digest, votes + votes[:1]), verifiers) == "certificate.duplicate signer"
    unknown = tuple(sorted((*votes[:2], (stranger.id, stranger.sign("commit", CHAIN, commit_body(h, v, digest))))))
    assert _rule(CommitCertificate(h, v, digest, unknown), verifiers) == "certificate.unknown validator"
    assert _rule(CommitCertificate(h, v, digest, votes[:2]), verifiers) == "certificate.quorum"
    forged = ((votes[0][0], bytes(64)), *votes[1:])
    assert _rule(CommitCertificate(h, v, digest, forged), verifiers) == "certificate.signature"
    # signed for another view: the statement differs, so a signature fails
    assert _rule(CommitCertificate(h, v + 1, digest, votes), verifiers) == "certificate.signature"
    assert _rule(CommitCertificate(h, v, digest, ((votes[0][0], b"short"),)), verifiers) == "certificate.malformed"


def test_rule_names_are_listed_and_survive_pickling() -> None:
    import pickle

    assert len(set(CERTIFICATE_RULES)) == len(CERTIFICATE_RULES) == 9
    assert all(r.startswith("certificate.") for r in CERTIFICATE_RULES)
    err = pickle.loads(pickle.dumps(CertificateError("certificate: x", "certificate.quorum")))
    assert err.rule == "certificate.quorum" and str(err) == "certificate: x"
    assert CertificateError("certificate: y").rule == "certificate.malformed"


def test_certificate_decoder_refuses_a_string_height_under_python_O() -> None:
    """Under ``python -O`` asserts vanish: validation must not be built from them."""
    code = textwrap.dedent("""
        import sys
        assert False, "asserts must be disabled for this test to mean anything"
        from rantai.consensus.certificate import CertificateError, CommitCertificate
        obj = {"block_hash": bytes(32), "height": "1", "view": 0, "votes": [["0123456789abcdef", bytes(64)]]}
        try:
            CommitCertificate.from_obj(obj)
        except CertificateError as exc:
            print("refused", exc.rule)
            sys.exit(0)
        print("accepted")
        sys.exit(1)
    """)
    res = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "refused certificate.malformed"


def test_quorum_and_max_faulty() -> None:
    assert [max_faulty(n) for n in range(1, 11)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert all(quorum_size(n) == n - max_faulty(n) for n in range(1, 50))
    assert all(2 * quorum_size(n) - n > max_faulty(n) for n in range(1, 50))  # two quorums share an honest node


# ------------------------------------------------------------------------------------ wire


@pytest.mark.parametrize("m", samples(), ids=lambda m: type(m).__name__)
def test_wire_decode_refuses_every_confusion(m: Message) -> None:
    obj = msgpack.unpackb(wire.encode(m), raw=False, use_list=True)
    tried = 0
    for path, value in _paths(obj):
        if path in ((), (0,)):  # the tagged array itself and its tag: covered by test_wire
            continue
        for bad in _confusions(value, u64_limit=False):
            data = msgpack.packb(_replace(obj, path, bad), use_bin_type=True)
            with pytest.raises(ProtocolViolation):
                wire.decode(data)
            tried += 1
    assert tried >= 30


@pytest.mark.parametrize("tag", [True, 2.0, "2", -2, 2**64 - 1, None, [2]])
def test_wire_decode_refuses_confused_tags(tag: Any) -> None:
    obj = msgpack.unpackb(wire.encode(samples()[1]), raw=False, use_list=True)
    obj[0] = tag
    with pytest.raises(ProtocolViolation):
        wire.decode(msgpack.packb(obj, use_bin_type=True))


def test_wire_u64_bounds() -> None:
    obj = msgpack.unpackb(wire.encode(samples()[1]), raw=False, use_list=True)
    obj[1] = 2**64 - 1
    assert wire.decode(msgpack.packb(obj, use_bin_type=True)).view == 2**64 - 1
    obj[1] = -1
    with pytest.raises(ProtocolViolation):
        wire.decode(msgpack.packb(obj, use_bin_type=True))


# ------------------------------------------------------------------------------------ config


def _validators() -> tuple[tuple[str, bytes], ...]:
    return tuple((s.id, s.public_key) for s in signers(4))


@pytest.mark.parametrize("field", ["checkpoint_interval", "window", "view_change_timeout_ms",
                                   "view_change_timeout_max_ms", "retransmit_ms", "state_transfer_delay_ms",
                                   "state_transfer_timeout_ms", "log_max"])
@pytest.mark.parametrize("bad", [True, 4.0, "4", -1, 2**64, None])
def test_config_refuses_confused_integers(field: str, bad: Any) -> None:
    with pytest.raises(ValueError):
        ReplicaConfig(CHAIN, _validators(), **{field: bad})


def test_config_refuses_confused_chain_and_validators() -> None:
    vals = _validators()
    (vid, pk) = vals[0]
    for chain in [CHAIN.hex()[:32], CHAIN[:31], CHAIN + b"\x00", bytearray(CHAIN), None]:
        with pytest.raises(ValueError):
            ReplicaConfig(chain, vals)
    for validators in [list(vals), (), ((vid,),), ((vid, pk, b""),), ((vid, pk.hex()),), ((vid.encode(), pk),),
                       ((vid.upper(), pk),), ([vid, pk],), (vals[0], vals[0]), ((vid, pk[:31]),), "ab"]:
        with pytest.raises(ValueError):
            ReplicaConfig(CHAIN, validators)
    cfg = ReplicaConfig(CHAIN, vals)
    assert cfg.f == 1 and cfg.log_max == 2 * cfg.checkpoint_interval + cfg.window


# ------------------------------------------------------------------------------------ signed bodies


def test_signed_bodies_refuse_confused_fields() -> None:
    d = bytes(32)
    assert vote_body(1, 2, d) == (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + d
    for args in [(True, 2, d), (1, 2.0, d), (1, -1, d), (2**64, 1, d), (1, 2, d[:31]), (1, 2, d.hex())]:
        with pytest.raises(ValueError):
            vote_body(*args)
    with pytest.raises(ValueError):  # a 33-byte digest and a 31-byte parent: the same 64 bytes as a valid pair
        preprepare_body(1, 2, d + b"\x00", d[:31])
    with pytest.raises(ValueError):
        checkpoint_body(False, d)
    with pytest.raises(ValueError):
        commit_body(1, True, d)
