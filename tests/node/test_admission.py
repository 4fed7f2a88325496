"""Admission control (node/admission.py): per-member and per-address token buckets answer 429 with
``Retry-After``; records a non-member sends are refused without one signature check; a source whose
records keep failing their checks stops costing verifications; peer endpoints refuse a caller that
names no validator before reading its body.

Methodology: one node of a 4-validator chain, in-process behind ``httpx.ASGITransport`` (whose
``client`` sets the source address), with small limits so a few requests reach them. Verifications
are counted by wrapping ``Verifier.verify`` (the one call every record and vote signature goes
through); ``verify_workers=0`` keeps them on the test's thread. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from rantai.client.format.encoding import encode
from rantai.client.format.records import SignedRecord
from rantai.consensus import crypto
from rantai.node.admission import Admission, AdmissionConfig, Bucket
from rantai.node.app import create_app
from rantai.node.config import ConfigError, NodeConfig
from rantai.node.driver import Node
from rantai.node.transport import STREAM_PATH
from rantai.node.validation import peek_submitter

from .conftest import make_net

pytestmark = pytest.mark.timeout(120)
MP = {"content-type": "application/msgpack"}


@contextlib.asynccontextmanager
async def serving(tmp_path, net, **limits):
    node = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "v1", verify_workers=0)
    app = create_app(node, manage_lifecycle=False, admission=AdmissionConfig(**limits))
    await node.start()
    try:
        yield node, app
    finally:
        await node.stop()


def client(app, address: str = "10.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 4000)), base_url="http://n")


@pytest.fixture
def verifications(monkeypatch):
    counted = {"n": 0}
    real = crypto.Verifier.verify

    def counting(self, *args, **kw):
        counted["n"] += 1
        return real(self, *args, **kw)

    monkeypatch.setattr(crypto.Verifier, "verify", counting)
    return counted


def forged(net, n: int) -> list[bytes]:
    """Records in acme's name (a member) whose signatures do not verify: each costs a verification."""
    return [SignedRecord.from_fields({**net.record().fields, "signature": bytes(64)}).raw for _ in range(n)]


def test_member_bucket_answers_429_with_retry_after(tmp_path):
    net = make_net()

    async def main():
        async with serving(tmp_path, net, member_records_per_s=0.01, member_burst=2) as (node, app):
            async with client(app) as c:
                for _ in range(2):
                    r = await c.post("/v1/records", content=encode({"records": [net.record().raw]}), headers=MP)
                    assert r.status_code == 202, r.text
                r = await c.post("/v1/records", content=encode({"records": [net.record().raw]}), headers=MP)
                assert r.status_code == 429
                assert r.json()["error"] == "overloaded" and "member" in r.json()["message"]
                assert int(r.headers["retry-after"]) >= 1
                # another member is not held back by acme's budget
                r = await c.post("/v1/records", content=encode({"records": [net.record(net.auditor).raw]}),
                                 headers=MP)
                assert r.status_code == 403  # its own verdict (role denied), not 429
            assert node.admission.counters["refused-member-volume"] == 1

    asyncio.run(main())


def test_forged_records_do_not_use_up_the_members_budget(tmp_path):
    net = make_net()

    async def main():
        async with serving(tmp_path, net, member_records_per_s=0.01, member_burst=2) as (_, app):
            async with client(app, "10.6.6.6") as bad, client(app) as good:
                r = await bad.post("/v1/records", content=encode({"records": forged(net, 20)}), headers=MP)
                assert {e["error"]["error"] for e in r.json()["results"]} == {"signature does not verify"}
                r = await good.post("/v1/records", content=encode({"records": [net.record().raw]}), headers=MP)
                assert r.status_code == 202

    asyncio.run(main())


def test_address_bucket_answers_429_before_reading_the_body(tmp_path):
    net = make_net()

    async def main():
        async with serving(tmp_path, net, address_records_per_s=0.01, address_burst=3) as (node, app):
            async with client(app, "10.0.0.7") as c, client(app, "10.0.0.8") as other:
                r = await c.post("/v1/records", content=encode({"records": [net.record().raw for _ in range(3)]}),
                                 headers=MP)
                assert r.status_code == 202
                read = []

                async def body():
                    read.append(True)
                    yield encode({"records": [net.record().raw]})

                r = await c.post("/v1/records", content=body(), headers=MP)
                assert r.status_code == 429 and r.json()["error"] == "overloaded"
                assert int(r.headers["retry-after"]) >= 1 and read == []
                r = await other.post("/v1/records", content=encode({"records": [net.record().raw]}), headers=MP)
                assert r.status_code == 202  # another address has its own bucket
            assert node.admission.counters["refused-address-volume"] == 1

    asyncio.run(main())


def test_non_members_batch_is_refused_without_a_signature_check(tmp_path, verifications):
    net = make_net()

    async def main():
        async with serving(tmp_path, net, refused_burst=100_000) as (_, app):
            async with client(app) as c:
                batch = [net.record(net.stranger).raw for _ in range(2000)]
                before = verifications["n"]
                r = await c.post("/v1/records", content=encode({"records": batch}), headers=MP)
                assert r.status_code == 202
                assert {e["error"]["error"] for e in r.json()["results"]} == {"unknown member"}
                assert verifications["n"] == before  # membership is checked before any signature

    asyncio.run(main())


def test_a_source_of_bad_signatures_stops_costing_verifications(tmp_path, verifications):
    net = make_net()

    async def main():
        async with serving(tmp_path, net, refused_per_s=0.1, refused_burst=20, verify_round=8) as (node, app):
            async with client(app, "10.6.6.6") as bad, client(app) as good:
                before = verifications["n"]
                r = await bad.post("/v1/records", content=encode({"records": forged(net, 500)}), headers=MP)
                spent = verifications["n"] - before
                results = r.json()["results"]
                checked = [e for e in results if e["error"]["error"] == "signature does not verify"]
                unchecked = [e for e in results if e["error"]["error"] == "overloaded"]
                assert len(checked) == spent and 20 <= spent <= 20 + 8  # the budget, plus one round
                assert len(unchecked) == 500 - spent and "not checked" in unchecked[0]["error"]["message"]
                # the next request from that address is refused before its body is read
                r = await bad.post("/v1/records", content=encode({"records": forged(net, 500)}), headers=MP)
                assert r.status_code == 429 and int(r.headers["retry-after"]) > 1
                assert verifications["n"] - before == spent
                # an honest client elsewhere is served as usual
                r = await good.post("/v1/records", content=encode({"records": [net.record().raw]}), headers=MP)
                assert r.status_code == 202
            assert node.admission.counters["refused-address-refusals"] == 1

    asyncio.run(main())


def test_a_body_announcing_too_many_records_is_refused_from_its_first_bytes(tmp_path):
    net = make_net(params={"max_block_records": 100})

    async def main():
        async with serving(tmp_path, net) as (_, app):
            async with client(app) as c:
                read = []
                head = encode({"records": [net.record().raw for _ in range(101)]})

                async def body():
                    yield head[:64]
                    read.append(True)  # asked for more: the refusal came too late
                    yield head[64:]

                r = await c.post("/v1/records", content=body(), headers=MP)
                assert r.status_code == 413 and r.json()["error"] == "too large" and read == []

    asyncio.run(main())


def test_peer_endpoints_refuse_a_caller_that_names_no_validator_before_its_body(tmp_path):
    net = make_net()

    async def main():
        async with serving(tmp_path, net) as (node, app):
            async with client(app) as c:
                for path, headers in ((STREAM_PATH, {"x-rantai-lane": "records"}), ("/v1/peer/records", MP),
                                      ("/v1/peer/messages", MP)):
                    for sender in (None, net.stranger.id, net.validators[1].id):  # none, a stranger, itself
                        read = []

                        async def body(read=read):
                            read.append(True)
                            yield encode({"records": [net.record().raw]})

                        h = dict(headers) if sender is None else {**headers, "x-rantai-sender": sender}
                        r = await c.post(path, content=body(), headers=h)
                        assert r.status_code == 403 and r.json()["error"] == "not a validator", (path, sender)
                        assert read == [], (path, sender)
                # a validator is heard
                r = await c.post("/v1/peer/records", content=encode({"records": [net.record().raw]}),
                                 headers={**MP, "x-rantai-sender": net.validators[0].id})
                assert r.status_code == 202 and r.json()["accepted"] == 1
            assert node.counters["peer-not-validator"] == 9

    asyncio.run(main())


def test_peek_submitter_reads_the_canonical_tail_only():
    net = make_net()
    rec = net.record()
    assert peek_submitter(rec.raw) == rec.submitter
    assert peek_submitter(rec.raw[:-1]) is None and peek_submitter(b"\x01" * 50) is None


def test_bucket_runs_a_deficit_and_says_when_to_retry():
    b = Bucket(rate=2.0, burst=4.0, now=0.0)
    assert b.ok(0.0)
    b.take(10, 0.0)  # one request is never split: it may leave a debt
    assert not b.ok(0.0) and b.retry_after(0.0) == 4  # (1 - -6) / 2 = 3.5 -> 4
    assert not b.ok(3.4) and b.ok(3.6)
    a = Admission(AdmissionConfig(max_tracked=2), clock=lambda: 0.0)
    for addr in ("a", "b", "c"):
        a.charge_address(addr, 1)
    assert len(a.addresses._by_key) == 2  # the least recently seen is forgotten


def test_config_reads_and_checks_the_admission_table(tmp_path):
    base = {"id": "x", "key": "k.pem", "genesis": "g.json", "data_dir": "d"}
    cfg = NodeConfig.from_obj({**base, "admission": {"member_records_per_s": 50, "refused_burst": 64}})
    assert cfg.admission.member_records_per_s == 50.0 and cfg.admission.refused_burst == 64.0
    assert cfg.admission.address_burst == AdmissionConfig().address_burst
    path = cfg.save(tmp_path / "v.toml")
    assert NodeConfig.load(path).admission == cfg.admission
    for bad in ({"member_records_per_s": 0}, {"nope": 1}, {"verify_round": 1.5}, {"refused_burst": True}):
        with pytest.raises(ConfigError):
            NodeConfig.from_obj({**base, "admission": bad})
