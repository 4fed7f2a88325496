"""Storage: the key layout round-trips, a block and its indexes land together, reopen keeps everything."""

from __future__ import annotations

import pytest

from rantai.client.blocks import Block
from rantai.client.certificates import CommitCertificate
from rantai.client.encoding import decode
from rantai.node.ledger import Ledger, items_of
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
    from rantai.client import merkle
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
