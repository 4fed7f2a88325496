"""Storage: the key layout round-trips, a block and its indexes land together, reopen keeps everything."""

from __future__ import annotations

import pytest

from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode
from rantai.client.format.epcis.items import event_identifiers as items_of
from rantai.consensus.certificate import CommitCertificate
from rantai.node.ledger import Ledger
from rantai.node.storage import Storage, StorageError


def _block(net, height, prev, records):
    return Block.build(chain=net.genesis.hash, height=height, prev_hash=prev, view=0,
                       proposer=net.validators[0].id, timestamp=1, records=records)


def _cert(block):
    return CommitCertificate(block.height, 0, block.hash, (("a" * 16, b"s" * 64),))


def test_commit_block_and_indexes(tmp_path, net):
    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    assert st.head() == (0, net.genesis.hash)
    r1, r2 = net.record(epc="urn:epc:id:sgtin:0614141.107346.1"), net.record(epc="urn:epc:id:sgtin:0614141.107346.1")
    b1 = _block(net, 1, net.genesis.hash, [r1, r2])
    ledger.apply(b1, _cert(b1))
    assert st.head() == (1, b1.hash)
    assert st.block(1) == b1.raw
    assert decode(st.certificate(1))["block_hash"] == b1.hash
    assert st.locate(r2.id) == (1, 1)
    assert st.item_locations("urn:epc:id:sgtin:0614141.107346.1") == [(1, 0), (1, 1)]
    receipt = ledger.receipt(r2.id)
    assert receipt is not None and receipt.index == 1 and receipt.record.raw == r2.raw
    # the inclusion path proves the record against the header's root
    from rantai.client.format import merkle
    merkle.verify_inclusion(1, 2, r2.id, list(receipt.path), b1.header.records_root)
    with pytest.raises(StorageError):  # not head + 1
        ledger.apply(b1, _cert(b1))
    st.close()

    st = Storage(tmp_path / "db", net.genesis.hash)
    assert st.head() == (1, b1.hash)
    assert [h for h, _, _ in st.blocks(1, 5)] == [1]
    st.close()


def test_persisted_state_and_wrong_chain(tmp_path, net):
    st = Storage(tmp_path / "db", net.genesis.hash)
    st.persist(((b"view", b"\x01"), (b"x", b"y")))
    st.persist(((b"x", None),))
    assert st.persisted() == {b"view": b"\x01"}
    st.close()
    with pytest.raises(StorageError):
        Storage(tmp_path / "db", b"\x00" * 32)


def test_items_of_names_every_identifier():
    ev = {
        "parentID": "p", "epcList": ["e1"], "childEPCs": ["c1"], "inputEPCList": ["i1"], "outputEPCList": ["o1"],
        "quantityList": [{"epcClass": "q1"}], "sourceList": [{"type": "x", "source": "s1"}],
        "destinationList": [{"type": "x", "destination": "d1"}], "readPoint": {"id": "r1"}, "bizLocation": {"id": "b1"},
    }
    assert set(items_of(ev)) == {"p", "e1", "c1", "i1", "o1", "q1", "s1", "d1", "r1", "b1"}


def _three_blocks(net):
    blocks, prev = [], net.genesis.hash
    for h in (1, 2, 3):
        b = _block(net, h, prev, [net.record()])
        blocks.append(b)
        prev = b.hash
    return blocks


def test_blocks_live_in_their_own_database_and_a_crash_leftover_is_never_served(tmp_path, net):
    import plyvel

    from rantai.client.format.encoding import encode

    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    b1, b2, b3 = _three_blocks(net)
    ledger.apply(b1, _cert(b1))
    ledger.apply(b2, _cert(b2))
    assert st.db.get(b"b" + (1).to_bytes(8, "big")) is None  # not in the index database
    assert [h for h, _, _ in st.blocks(1, 10)] == [1, 2]
    # A crash between the two synced batches leaves block 3 above the head: never served...
    st.chain_db.put((3).to_bytes(8, "big") + b"b", b"leftover")
    st.chain_db.put((3).to_bytes(8, "big") + b"c", encode(_cert(b3).to_obj()))
    assert st.block(3) is None and st.certificate(3) is None
    assert [h for h, _, _ in st.blocks(1, 10)] == [1, 2]
    st.close()
    st = Storage(tmp_path / "db", net.genesis.hash)
    assert st.head()[0] == 2 and st.block(3) is None
    # ...and overwritten when height 3 is stored.
    Ledger(net.genesis, st).apply(b3, _cert(b3))
    assert st.block(3) == b3.raw and [h for h, _, _ in st.blocks(2, 3)] == [2, 3]
    st.close()
    db = plyvel.DB(str(tmp_path / "db"))
    assert db.get(b"mformat") == b"rantai-node/2"
    db.close()


def test_format_1_store_is_migrated_on_open(tmp_path, net):
    """A store written before blocks had their own database opens, with every block where it was."""
    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    blocks = _three_blocks(net)
    for b in blocks:
        ledger.apply(b, _cert(b))
    rid = blocks[1].records[0].id
    st.close()
    # Rewrite it as format 1: blocks and certificates back under b"b"/b"c" + u64 height, no blocks/.
    import shutil

    import plyvel

    chain = plyvel.DB(str(tmp_path / "db" / "blocks"))
    old = list(chain.iterator())
    chain.close()
    shutil.rmtree(tmp_path / "db" / "blocks")
    db = plyvel.DB(str(tmp_path / "db"))
    for key, value in old:
        db.put(key[8:] + key[:8], value)
    db.put(b"mformat", b"rantai-node/1")
    db.close()

    from rantai.client.format.audit import Auditor
    from rantai.node.audit import DataDirSource

    src = DataDirSource(tmp_path / "db")  # an auditor reads format 1 as it is
    with Auditor(net.genesis, workers=0) as auditor:
        rep = auditor.run(src)
    src.close()
    assert rep.blocks == 3 and rep.failures and all("certificate" in str(f) for f in rep.failures), rep.failures

    st = Storage(tmp_path / "db", net.genesis.hash)
    assert st.head() == (3, blocks[2].hash)
    assert [raw for _, raw, _ in st.blocks(1, 3)] == [b.raw for b in blocks]
    assert decode(st.certificate(2))["block_hash"] == blocks[1].hash
    assert st.locate(rid) == (2, 0)
    assert st.db.get(b"b" + (1).to_bytes(8, "big")) is None and st.db.get(b"mformat") == b"rantai-node/2"
    st.close()
    st = Storage(tmp_path / "db", net.genesis.hash)  # and opens again, already migrated
    assert st.block(3) == blocks[2].raw
    st.close()


def test_a_round_is_one_synced_batch_and_a_lost_block_batch_is_repaired(tmp_path, net):
    """The consensus round's write (node/driver.py ``_run``): the votes join the batch with the block's
    indexes and head, the block's own batch is synced by ``sync_chain`` (before a CHECKPOINT). If a
    power loss took that batch, the start-up check lowers the head and keeps the votes (docs/storage.md)."""
    from rantai.consensus.certificate import COMMIT_KIND, commit_body
    from rantai.node.storage import BLOCK, CERT, _U64
    from rantai.node.storecheck import check_store

    def _cert(block):  # a real one: the start-up check verifies the tail's certificates
        body = commit_body(block.height, 0, block.hash)
        votes = sorted((s.id, s.sign(COMMIT_KIND, net.genesis.hash, body)) for s in net.validators[:3])
        return CommitCertificate(block.height, 0, block.hash, tuple(votes))

    def _block(net, height, prev, records):  # proposer of view 0, timestamps the validity rules accept
        return Block.build(chain=net.genesis.hash, height=height, prev_hash=prev, view=0,
                           proposer=net.validators[0].id, timestamp=1_772_326_900_000 + height, records=records)

    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    b1 = _block(net, 1, net.genesis.hash, [net.record()])
    ledger.apply(b1, _cert(b1))
    assert not st.unsynced_from  # an apply without votes (catch-up): two synced batches, as before
    b2 = _block(net, 2, b1.hash, [net.record()])
    ledger.apply_run([(b2, _cert(b2), None)], [(b"v/C-2", b2.hash), (b"old", None)])
    assert st.head() == (2, b2.hash) and st.block(2) == b2.raw
    assert st.persisted() == {b"v/C-2": b2.hash}
    assert st.unsynced_from == 2
    st.sync_chain()
    assert not st.unsynced_from
    b3 = _block(net, 3, b2.hash, [net.record()])
    ledger.apply_run([(b3, _cert(b3), None)], [])
    assert st.unsynced_from == 3 and st.head() == (3, b3.hash)
    # what a power loss may do to the unsynced batch: block 3 and its certificate gone, head and index kept
    st.chain_db.delete(_U64.pack(3) + BLOCK)
    st.chain_db.delete(_U64.pack(3) + CERT)
    st.close()
    st = Storage(tmp_path / "db", net.genesis.hash)
    note = check_store(st, net.genesis)
    assert note is not None and "head lowered to 2" in note
    assert st.head() == (2, b2.hash) and st.locate(b3.records[0].id) is None
    assert st.persisted() == {b"v/C-2": b2.hash}  # the votes stay: the node never votes twice
    st.close()


def _table_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.ldb"))


def test_index_tables_are_uncompressed_and_a_snappy_store_reads_on(tmp_path, net, monkeypatch):
    """The index database writes its tables without snappy (its keys are hashes: compressing them cost
    compaction CPU at every level, docs/performance.md); a store written with snappy before opens and
    reads on beside the new uncompressed tables (LevelDB marks each block), with nothing to migrate."""
    import rantai.node.storage as storage_mod

    assert storage_mod.INDEX_OPTIONS["compression"] is None
    state = [(b"x/%04d" % i, b"x" * 2000) for i in range(500)]  # 1 MB that snappy shrinks ~20x
    monkeypatch.setitem(storage_mod.INDEX_OPTIONS, "compression", "snappy")
    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    r1 = net.record()
    b1 = _block(net, 1, net.genesis.hash, [r1])
    ledger.apply(b1, _cert(b1))
    st.persist(state)
    st.db.compact_range()
    assert _table_bytes(tmp_path / "db") < 500 * 2000 // 4  # snappy did shrink them
    st.close()
    monkeypatch.undo()

    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    assert st.head() == (1, b1.hash) and st.locate(r1.id) == (1, 0)
    assert st.persisted() == dict(state)
    r2 = net.record()
    b2 = _block(net, 2, b1.hash, [r2])
    ledger.apply(b2, _cert(b2))
    more = [(b"y/%04d" % i, b"y" * 2000) for i in range(500)]
    st.persist(more)
    st.db.compact_range()
    assert _table_bytes(tmp_path / "db") >= 500 * 2000  # the new tables are written without compression
    assert st.persisted() == dict(state + more) and st.locate(r1.id) == (1, 0) and st.locate(r2.id) == (2, 0)
    st.close()


def test_the_ledger_caches_a_bounded_number_of_blocks(tmp_path, net):
    """Receipts are served from a cache of recent blocks that stays at CACHE_BLOCKS (its size is RSS: ~0.38 MB
    per 570-record block); a receipt of a block that left the cache is rebuilt from the store."""
    from rantai.node.ledger import CACHE_BLOCKS

    st = Storage(tmp_path / "db", net.genesis.hash)
    ledger = Ledger(net.genesis, st)
    prev, first = net.genesis.hash, None
    for height in range(1, CACHE_BLOCKS + 5):
        r = net.record()
        first = first or r
        b = _block(net, height, prev, [r])
        ledger.apply(b, _cert(b))
        assert ledger.receipt_obj_at(height, 0)["record"] == r.raw
        prev = b.hash
    assert len(ledger._cache) == CACHE_BLOCKS == 16
    receipt = ledger.receipt(first.id)
    assert receipt is not None and receipt.record.raw == first.raw and receipt.header.height == 1
    st.close()
