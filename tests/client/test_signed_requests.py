"""Signed reads (docs/api.md "Signed reads"): the RFC 9421 profile, byte for byte, and who may read what."""

from __future__ import annotations

import base64
import datetime

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from rantai.client.format import signed_requests as sr
from rantai.client.format.consortium import prefix_clash
from rantai.client.format.errors import InvalidGenesis, InvalidRecord
from rantai.client.format.genesis import Genesis
from rantai.client.format.governance import check_change
from rantai.client.format.read_access import ANONYMOUS, may_read, owner_prefix_match, reader_of
from rantai.client.format.records import sign_change, sign_event
from rantai.client.format.signed_requests import ReadRefused
from rantai.consensus.crypto import Signer

# RFC 9421 Appendix B.1.4, test-key-ed25519
RFC_KEY = Signer(load_pem_private_key(b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
""", None))
CREATED = 1796202000  # 2026-12-02T09:00:00Z, docs/api.md's worked example


def test_rfc9421_b26_ed25519_vector():
    """RFC 9421 Appendix B.2.6: the same base and key give the RFC's published signature (Ed25519 is
    deterministic), and the RFC's signature verifies over that base with the RFC's public key."""
    base = ('"date": Tue, 20 Apr 2021 02:07:55 GMT\n"@method": POST\n"@path": /foo\n"@authority": example.com\n'
            '"content-type": application/json\n"content-length": 18\n"@signature-params": ("date" "@method" "@path" '
            '"@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"').encode()
    published = ("wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==")
    assert base64.b64encode(RFC_KEY.private_key.sign(base)).decode() == published
    assert RFC_KEY.public_key.hex() == "26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb"
    RFC_KEY.private_key.public_key().verify(base64.b64decode(published), base)


def test_worked_example_of_the_docs():
    headers = sr.sign(RFC_KEY, "GET", "127.0.0.1:8001", "/epcis/events", "?EQ_bizStep=shipping&perPage=2", CREATED)
    assert headers["Signature-Input"] == (
        'rantai=("@method" "@authority" "@path" "@query");created=1796202000;'
        'keyid="26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb";alg="ed25519"')
    assert headers["Signature"] == ("rantai=:tFNMuQuKCnp+pVJ+Lwow0dyrtwEdJ8YOFwCVxEvxxALk2DPsykoOAT1C0V4Zqfm1J0l49XDE"
                                    "DeaWeqi61DMgAg==:")
    assert sr.signature_base("GET", "127.0.0.1:8001", "/epcis/events", "?EQ_bizStep=shipping&perPage=2",
                             sr.signature_params(CREATED, RFC_KEY.public_key)) == (
        b'"@method": GET\n"@authority": 127.0.0.1:8001\n"@path": /epcis/events\n'
        b'"@query": ?EQ_bizStep=shipping&perPage=2\n'
        b'"@signature-params": ("@method" "@authority" "@path" "@query");created=1796202000;'
        b'keyid="26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb";alg="ed25519"')
    no_query = sr.sign(RFC_KEY, "GET", "node.example", "/v1/records/" + "ab" * 32, "", CREATED)
    assert no_query["Signature"] == ("rantai=:CUdQnPN+AwVTOjlwaY5Z2ebd6YRVcvMK0dU1HBG5ciRQZKMelR2yoecRN29Fb8GTnBaQ+1bJX"
                                     "JmzV6NDGqu9Bg==:")


def test_an_independent_rfc9421_implementation_agrees():
    """The http-message-signatures library (pyauth), asked for our components and parameters, writes the
    very headers we write; and our verifier accepts what it signs."""
    hms = pytest.importorskip("http_message_signatures")
    kid = RFC_KEY.public_key.hex()
    resolver = hms.MappingKeyResolver(public_keys={kid: RFC_KEY.private_key.public_key()},
                                      private_keys={kid: RFC_KEY.private_key})
    for url in ("http://127.0.0.1:8001/epcis/events?EQ_bizStep=shipping&perPage=2",
                "https://node.example/v1/items/urn:epc:id:sgtin:0614141.107346.2017/history",
                "http://node.example:8080/v1/head"):
        req = httpx.Request("GET", url)
        hms.HTTPMessageSigner(signature_algorithm=hms.algorithms.ED25519, key_resolver=resolver).sign(
            req, key_id=kid, created=datetime.datetime.fromtimestamp(CREATED, datetime.UTC), label="rantai",
            covered_component_ids=("@method", "@authority", "@path", "@query"))
        ours = sr.sign_request(RFC_KEY, "GET", req.headers["host"], req.url.scheme, req.url.raw_path.decode(), CREATED)
        assert ours == {"Signature-Input": req.headers["signature-input"], "Signature": req.headers["signature"]}
        path, _, query = req.url.raw_path.decode().partition("?")
        got = sr.verify(req.headers["signature-input"], req.headers["signature"], method="GET",
                        authority=sr.authority(req.headers["host"], req.url.scheme), path=path, query="?" + query,
                        now=CREATED)
        assert got == sr.SignedRead(RFC_KEY.public_key, CREATED)


def _check(headers, *, method="GET", authority="127.0.0.1:8001", path="/v1/head", query="?", now=CREATED):
    return sr.verify(headers.get("Signature-Input"), headers.get("Signature"), method=method, authority=authority,
                     path=path, query=query, now=now)


def test_refusals_name_their_rule():
    good = sr.sign(RFC_KEY, "GET", "127.0.0.1:8001", "/v1/head", "", CREATED)
    assert _check({}) is None  # anonymous: the policy decides
    assert _check(good) == sr.SignedRead(RFC_KEY.public_key, CREATED)
    assert _check(good, now=CREATED + 300) and _check(good, now=CREATED - 300)

    def rule(headers, **kw):
        with pytest.raises(ReadRefused) as info:
            _check(headers, **kw)
        return info.value.rule, info.value.status_hint

    assert rule(good, now=CREATED + 301) == ("read.stale", 401)
    assert rule(good, now=CREATED - 301) == ("read.stale", 401)
    assert rule(good, path="/v1/blocks/1") == ("read.signature", 401)  # signed for another path
    assert rule(good, query="?x=1") == ("read.signature", 401)
    assert rule(good, authority="other.example") == ("read.signature", 401)
    assert rule(good, method="HEAD") == ("read.signature", 401)
    assert rule({"Signature": good["Signature"]}) == ("read.signature", 401)
    other = sr.sign(Signer.from_seed(bytes(32)), "GET", "127.0.0.1:8001", "/v1/head", "", CREATED)
    assert rule({"Signature-Input": good["Signature-Input"], "Signature": other["Signature"]}) == \
        ("read.signature", 401)
    reordered = good["Signature-Input"].replace(';alg="ed25519"', "").replace("created=", 'alg="ed25519";created=')
    assert rule({**good, "Signature-Input": reordered}) == ("read.signature", 401)
    assert rule({**good, "Signature-Input": good["Signature-Input"] + ';expires=1796203000'}) == ("read.signature", 401)
    assert rule({**good, "Signature-Input": good["Signature-Input"].replace("rantai=", "sig1=")}) == \
        ("read.signature", 401)
    twice = {"Signature-Input": good["Signature-Input"] + ", " + good["Signature-Input"],
             "Signature": good["Signature"]}
    assert rule(twice) == ("read.signature", 401)
    # another label beside ours (a proxy's own signature) is ignored
    proxy = {"Signature-Input": 'proxy=("@method");created=1;keyid="a,b", ' + good["Signature-Input"],
             "Signature": "proxy=:AAAA:, " + good["Signature"]}
    assert _check(proxy) == sr.SignedRead(RFC_KEY.public_key, CREATED)


def test_authority_drops_only_the_default_port():
    assert sr.authority("Node.Example:443", "https") == "node.example"
    assert sr.authority("node.example:80", "http") == "node.example"
    assert sr.authority("node.example:443", "http") == "node.example:443"
    assert sr.authority("127.0.0.1:8001", "http") == "127.0.0.1:8001"


# -- the read policy --------------------------------------------------------------------------------


def _genesis(policy, prefixes=None):
    v = [Signer.from_seed(bytes([i + 1]) * 32) for i in range(4)]
    acme, kopi, watch = (Signer.from_seed(bytes([50 + i]) * 32) for i in range(3))
    g = Genesis.build("read-test", [(s.public_key, f"v{i}", f"http://127.0.0.1:{7100 + i}") for i, s in enumerate(v)],
                      [(acme.public_key, "acme", "Acme", ["submitter", "admin"]),
                       (kopi.public_key, "kopi", "Kopi", ["submitter"]),
                       (watch.public_key, "watchdog", "Watchdog", ["auditor"])],
                      read_policy=policy, company_prefixes=prefixes)
    return g, v, acme, kopi, watch


def _event(epc, location="urn:epc:id:sgln:9999999.00001.0"):
    return {"type": "ObjectEvent", "eventTime": "2026-03-01T08:00:00.000+07:00", "eventTimeZoneOffset": "+07:00",
            "epcList": [epc], "action": "OBSERVE", "bizStep": "shipping", "readPoint": {"id": location}}


def test_readers_under_each_policy():
    for policy in ("members", "parties"):
        g, v, acme, kopi, watch = _genesis(policy)
        with pytest.raises(ReadRefused) as info:
            reader_of(g, None)
        assert info.value.rule == "read.unsigned" and info.value.status_hint == 401
        with pytest.raises(ReadRefused) as info:
            reader_of(g, Signer.from_seed(bytes(32)).public_key)
        assert info.value.rule == "read.not-member" and info.value.status_hint == 403
        assert reader_of(g, v[0].public_key).kind == "validator" and reader_of(g, v[0].public_key).sees_all
        assert reader_of(g, watch.public_key).sees_all  # the auditor role
        assert reader_of(g, kopi.public_key).sees_all is (policy == "members")
    joiner = Signer.from_seed(bytes([88]) * 32)
    latest = g.changed({"op": "add_validator", "name": "v4", "public_key": joiner.public_key,
                        "url": "http://127.0.0.1:7104", "proof": bytes(64)})
    with pytest.raises(ReadRefused):
        reader_of(g, joiner.public_key)
    assert reader_of(g, joiner.public_key, latest).kind == "validator"  # approved, not yet in force: catches up
    g, v, acme, kopi, watch = _genesis("public")
    assert reader_of(g, None) is ANONYMOUS and reader_of(g, Signer.from_seed(bytes(32)).public_key) is ANONYMOUS


def test_removed_suspended_and_rotated_readers():
    g, v, acme, kopi, watch = _genesis("members")
    suspended = g.changed({"op": "suspend_member", "member": "kopi"})
    removed = g.changed({"op": "remove_member", "member": "kopi"})
    new = Signer.from_seed(bytes([77]) * 32)
    rotated = g.changed({"op": "rotate_key", "member": "kopi", "public_key": new.public_key, "proof": bytes(64)})
    for c, words in ((suspended, "suspended"), (removed, "removed"), (rotated, "rotated")):
        with pytest.raises(ReadRefused, match=words) as info:
            reader_of(c, kopi.public_key)
        assert info.value.rule == "read.not-member"
    me = reader_of(rotated.changed({"op": "set_read_policy", "read_policy": "parties"}), new.public_key)
    assert me.ids == {rotated.member_by_name("kopi").id, g.member_by_name("kopi").id}
    old_record = sign_event(kopi, g, _event("urn:epc:id:sgtin:1111111.107346.1"))
    assert may_read(me, old_record)  # a rotated key keeps its history


def test_parties_sees_own_records_and_identifiers():
    g, v, acme, kopi, watch = _genesis("parties", {"acme": ["0614141"], "kopi": ["8991234"]})
    acme_r, kopi_r, watch_r = (reader_of(g, s.public_key) for s in (acme, kopi, watch))
    mine = sign_event(acme, g, _event("urn:epc:id:sgtin:5555555.107346.1"))  # acme submitted it
    naming_kopi = sign_event(acme, g, _event("https://id.gs1.org/01/08991234000017/21/9"))
    kopi_location = sign_event(acme, g, _event("urn:epc:id:sgtin:5555555.1.2", "urn:epc:id:sgln:8991234.00001.0"))
    assert may_read(acme_r, mine) and not may_read(kopi_r, mine) and may_read(watch_r, mine)
    assert may_read(kopi_r, naming_kopi) and may_read(kopi_r, kopi_location)
    assert may_read(acme_r, naming_kopi)  # acme submitted it
    # change entries are every member's: a verifier needs them for any receipt
    change = sign_change(acme, g, {"op": "set_read_policy", "read_policy": "members"})
    assert may_read(kopi_r, change)


def test_identifier_ownership():
    p = ["0614141"]
    for owned in ("urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgln:0614141.00777.0",
                  "urn:epc:class:lgtin:0614141.107346.L1", "urn:epc:id:sscc:0614141.1234567890",
                  "urn:epc:idpat:sgtin:0614141.*.*", "https://id.gs1.org/01/10614141073467/21/2017",
                  "https://brand.example/01/00614141073460/10/L1", "https://id.gs1.org/414/0614141007770",
                  "https://id.gs1.org/00/106141411234567895"):
        assert owner_prefix_match(owned, p), owned
    for other in ("urn:epc:id:sgtin:0614142.107346.2017", "urn:epc:id:sgtin:06141410.1.1", "urn:x:0614141",
                  "https://id.gs1.org/01/00614142073467", "https://example.com/0614141", ""):
        assert not owner_prefix_match(other, p), other
    assert not owner_prefix_match("urn:epc:id:sgtin:0614141.107346.2017", [])


def test_prefixes_never_overlap_and_are_checked():
    with pytest.raises(InvalidGenesis, match="begins with"):
        _genesis("parties", {"acme": ["0614141"], "kopi": ["061414"]})
    with pytest.raises(InvalidGenesis, match="4 to 12 digits"):
        _genesis("parties", {"acme": ["061"]})
    with pytest.raises(InvalidGenesis, match="read_policy"):
        Genesis({**_genesis("members")[0].doc, "read_policy": "secret"})
    g = _genesis("members", {"acme": ["0614141"]})[0]
    assert g.describe()["read_policy"] == "members"
    assert [m["company_prefixes"] for m in g.describe()["members"]] == [["0614141"], [], []]
    with pytest.raises(InvalidRecord, match="begins with") as info:
        g.changed({"op": "set_company_prefixes", "member": "kopi", "company_prefixes": ["06141415"]})
    assert info.value.rule == "change refused"
    with pytest.raises(InvalidRecord, match="already") as info:
        g.changed({"op": "set_read_policy", "read_policy": "members"})
    assert g.changed({"op": "set_read_policy", "read_policy": "parties"}).read_policy == "parties"
    for bad in ({"op": "set_read_policy", "read_policy": "all"},
                {"op": "set_company_prefixes", "member": "acme", "company_prefixes": "0614141"},
                {"op": "set_company_prefixes", "member": "acme", "company_prefixes": ["0614141"] * 2}):
        with pytest.raises(InvalidRecord) as info:
            check_change(bad)
        assert info.value.rule == "change shape"
    assert prefix_clash([]) is None
