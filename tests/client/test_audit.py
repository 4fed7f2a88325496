"""The full-chain auditor: a clean chain passes; every tamper case fails at the right height with
the right rule; network, LevelDB and in-memory sources agree; --compare finds the divergence.

Methodology: chains are built in memory with real keys (helpers_client.Net). Tampered blocks are
re-certified by the validators when the test is about a rule *other* than the certificate, so the
auditor must catch the rule itself, not just a bad certificate.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from helpers_client import Net, fake_network, object_event

from rantai.client.audit import NodeSource, audit
from rantai.client.format.audit import Auditor, MemorySource, _IdIndex, compare
from rantai.client.format.blocks import Block
from rantai.client.format.encoding import encode
from rantai.node.audit import DataDirSource


def audit_dir(genesis, path, **kw):
    src = DataDirSource(path)
    try:
        return audit(genesis, src, **kw)
    finally:
        src.close()

U64 = struct.Struct(">Q")


def items(net: Net) -> list:
    return [(b.raw, c.to_obj()) for b, c in zip(net.blocks, net.certs, strict=True)]


def chain(blocks: int = 4, per_block: int = 3) -> Net:
    net = Net()
    net.build_chain(blocks, per_block)
    return net


def flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def commit_raw(net: Net, records, prev_hash: bytes | None = None, height: int | None = None) -> None:
    """Commit a block that may break a rule, with a *valid* certificate for it."""
    h = net.height + 1 if height is None else height
    prev = prev_hash if prev_hash is not None else (net.blocks[-1].hash if net.blocks else net.genesis.hash)
    block = Block.build(chain=net.genesis.hash, height=h, prev_hash=prev, view=0,
                        proposer=net.validators[0].id, records=records,
                        timestamp=net.blocks[-1].header.timestamp if net.blocks else 1)
    net.blocks.append(block)
    net.certs.append(net.certify(h, 0, block.hash))


def rules_at(report) -> list[tuple[int, str]]:
    return [(f.height, f.rule) for f in report.failures]


@pytest.mark.parametrize("workers", [0, 2])
def test_clean_chain_passes(workers):
    net = chain(5, 4)
    rep = audit(net.genesis, MemorySource(items(net)), workers=workers)
    assert rep.ok, rep.failures
    assert (rep.blocks, rep.records, rep.height, rep.head_hash) == (5, 20, 5, net.blocks[-1].hash.hex())
    assert rep.to_obj()["ok"] is True


def test_flipped_signature_byte_fails_at_that_height():
    net = chain(2, 3)
    rec = net.sign(object_event(50))
    fields = dict(rec.fields)
    fields["signature"] = flip(fields["signature"], 5)
    from rantai.client.format.records import SignedRecord

    bad = SignedRecord.from_fields(fields)
    commit_raw(net, [net.sign(object_event(51)), bad])
    rep = audit(net.genesis, MemorySource(items(net)), workers=0)
    (f,) = rep.failures
    assert (f.height, f.rule, f.index, f.record) == (3, "signature does not verify", 1, bad.id.hex())
    assert "member acme" in f.message


def test_unknown_member_and_role_denied():
    net = chain(1, 1)
    commit_raw(net, [net.sign(object_event(60), "outsider")])
    commit_raw(net, [net.sign(object_event(61), "audit")])
    rep = audit(net.genesis, MemorySource(items(net)), workers=0)
    assert rules_at(rep) == [(2, "unknown member"), (3, "role denied")]


def test_forged_certificate():
    net = chain(3, 2)
    forger = Net(chain_id="other-chain")
    cert = net.certs[1]
    forged = tuple((vid, forger.validators[0].sign("commit", net.genesis.hash, b"x")) for vid, _ in cert.votes)
    net.certs[1] = type(cert)(cert.height, cert.view, cert.block_hash, forged)
    rep = audit(net.genesis, MemorySource(items(net)), workers=2)
    assert rules_at(rep) == [(2, "certificate signature")]


def test_certificate_with_too_few_votes():
    net = chain(2, 1)
    net.certs[0] = net.certify(1, 0, net.blocks[0].hash, net.validators[:2])
    rep = audit(net.genesis, MemorySource(items(net)), workers=0)
    assert rules_at(rep) == [(1, "certificate quorum")]
    assert "2 signatures, 3 needed" in rep.failures[0].message


def test_broken_hash_link_and_wrong_height():
    net = chain(2, 1)
    commit_raw(net, [net.sign(object_event(70))], prev_hash=b"\x07" * 32)
    commit_raw(net, [net.sign(object_event(71))], height=9)
    rep = audit(net.genesis, MemorySource(items(net)), workers=0)
    assert rules_at(rep) == [(3, "hash link"), (4, "height")]  # its certificate is valid, for height 9


def test_duplicate_record_across_blocks():
    net = chain(2, 2)
    again = net.blocks[0].records[1]
    commit_raw(net, [net.sign(object_event(80)), again])
    rep = audit(net.genesis, MemorySource(items(net)), workers=0)
    f, g = rep.failures  # the same record is the same event too: both rules speak
    assert (f.height, f.rule, f.record, f.index) == (3, "duplicate record", again.id.hex(), 1)
    assert "already in block 1" in f.message
    assert (g.height, g.rule, g.index) == (3, "duplicate event", 1) and "in block 1 (record 1)" in g.message


def test_id_index_merges_runs(monkeypatch):
    monkeypatch.setattr(_IdIndex, "RUN", 4)
    idx = _IdIndex()
    ids = [bytes([i]) * 32 for i in range(20)]
    for h in range(5):
        idx.add(ids[h * 4:(h + 1) * 4], h + 1)
    idx.add([ids[3]], 7)
    assert idx.duplicates() == [(ids[3], 1, 7)]


def test_tampered_record_bytes_fail_the_merkle_root():
    net = chain(3, 3)
    raw = net.blocks[1].raw
    at = raw.index(b"shipping")  # inside a record's event: still decodes, but the record id changes
    src = MemorySource([(b.raw if i != 1 else flip(raw, at), c.to_obj())
                        for i, (b, c) in enumerate(zip(net.blocks, net.certs, strict=True))])
    rep = audit(net.genesis, src, workers=0)
    assert rules_at(rep)[0] == (2, "records root")


def test_missing_block_and_short_source():
    net = chain(4, 1)
    its = items(net)

    class Gappy(MemorySource):
        def blocks(self, start, end):
            for h, raw, cert in super().blocks(start, end):
                if h != 2:
                    yield h, raw, cert

    rep = audit(net.genesis, Gappy(its), workers=0)
    assert rules_at(rep)[0] == (2, "missing block")
    rep = audit(net.genesis, MemorySource(its[:2]), end=4, workers=0)
    assert rules_at(rep) == [(3, "missing block")]


def test_node_source_streams_and_catches_an_altered_block():
    net = chain(5, 2)
    nodes, tx = fake_network(net, {1: "alter-block"})
    good = NodeSource(net.urls[0], transport=tx, chunk=2)
    rep = audit(net.genesis, good, workers=0)
    assert rep.ok and rep.blocks == 5 and rep.records == 10
    bad = NodeSource(net.urls[1], transport=tx, chunk=2)
    rep = audit(net.genesis, bad, workers=0)
    assert rep.failures and rep.failures[0].height == 2


def write_datadir(net: Net, path: Path) -> None:
    import plyvel

    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(b"mformat", b"rantai-node/1")
    for b, c in zip(net.blocks, net.certs, strict=True):
        db.put(b"b" + U64.pack(b.height), b.raw)
        db.put(b"c" + U64.pack(b.height), encode(c.to_obj()))
    db.put(b"h", U64.pack(net.height) + net.blocks[-1].hash)
    db.close()


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_data_dir_is_read_without_writing_and_a_flipped_byte_is_found(tmp_path):
    net = chain(4, 3)
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_datadir(net, good)
    before = snapshot(good)
    rep = audit_dir(net.genesis, good, workers=0)
    assert rep.ok and rep.blocks == 4 and rep.records == 12
    assert snapshot(good) == before  # nothing written, nothing added

    import plyvel

    write_datadir(net, bad)
    db = plyvel.DB(str(bad))
    key = b"b" + U64.pack(3)
    raw = db.get(key)
    db.put(key, flip(raw, raw.index(b"shipping")))
    db.close()
    rep = audit_dir(net.genesis, bad, workers=2)
    assert not rep.ok and rep.failures[0].height == 3

    src_good, src_bad = DataDirSource(good), DataDirSource(bad)
    try:
        cmp = compare(net.genesis, [src_good, src_bad])
    finally:
        src_good.close()
        src_bad.close()
    assert not cmp.ok and cmp.divergence["height"] == 3
    verdicts = {e["source"]: e["verdict"] for e in cmp.divergence["entries"]}
    assert verdicts[str(good)] == "valid" and "records_root" in verdicts[str(bad)]


def test_compare_agreeing_and_lagging_nodes():
    net = chain(3, 1)
    nodes, tx = fake_network(net, {2: "stale-head"})
    srcs = [NodeSource(u, transport=tx) for u in net.urls[:3]]
    cmp = compare(net.genesis, srcs)
    assert cmp.ok and cmp.heads == [3, 3, 2] and cmp.common == 2 and cmp.compared == 2


def test_compare_reports_an_unreachable_node():
    net = chain(2, 1)
    nodes, tx = fake_network(net, {1: "down"})
    cmp = compare(net.genesis, [NodeSource(u, transport=tx) for u in net.urls[:2]])
    assert not cmp.ok and net.urls[1] in cmp.errors[0]


def test_auditor_reuses_its_pool_and_stops_after_max_failures():
    net = chain(6, 1)
    its = [(b"\xc0", cert) for _, cert in items(net)]  # nil: not a block
    with Auditor(net.genesis, workers=2, max_failures=3) as auditor:
        rep = auditor.run(MemorySource(its))
        assert rep.truncated and rules_at(rep) == [(1, "block shape"), (2, "block shape"), (3, "block shape")]
        assert auditor.run(MemorySource(items(net))).ok


def test_data_dir_of_another_chain(tmp_path):
    net = chain(1, 1)
    write_datadir(net, tmp_path / "db")
    import plyvel

    db = plyvel.DB(str(tmp_path / "db"))
    db.put(b"mchain", b"\x09" * 32)
    db.close()
    rep = audit_dir(net.genesis, tmp_path / "db", workers=0)
    assert rules_at(rep) == [(0, "wrong chain")]
