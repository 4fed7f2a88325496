"""Client and AsyncClient against fake nodes: every answer is verified, and a lying or dead node
is named in a precise error while the client gets its answer from the next node.

Methodology: a chain is built in memory with the format modules and real validator keys
(helpers_client.Net); FakeNode serves it over httpx.MockTransport, each with one way to lie.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from helpers_client import ITEM, FakeNode, Net, fake_network, object_event, transport

from rantai.client.format.errors import InvalidCertificate, InvalidSignature, RantaiError, RoleDenied, UnknownMember
from rantai.client.format.receipts import Receipt
from rantai.client.http import (
    AsyncClient,
    Client,
    NoNodeAvailable,
    NodeVerificationError,
    NotFound,
    StaleAnswer,
    SubmitTimeout,
    verify_receipt,
)


def make(net: Net, lies: dict[int, str] | None = None, commit: str = "now", who: str = "acme", **kw):
    nodes, tx = fake_network(net, lies, commit)
    seen: list[tuple[str, RantaiError]] = []
    identity = net.outsider if who == "outsider" else net.members[who]
    client = Client(net.genesis, net.urls, identity, transport=tx, on_failure=lambda n, e: seen.append((n, e)), **kw)
    return client, nodes, seen


def test_submit_get_history_head_round_trip():
    net = Net()
    client, nodes, seen = make(net)
    receipt = client.submit(object_event(1, [ITEM]))
    assert isinstance(receipt, Receipt) and receipt.height == 1
    got = client.get(receipt.record_id)
    assert got.id == receipt.record_id and got.event["epcList"] == [ITEM] and got.node == net.urls[0]
    assert client.get(receipt.record_id.hex()).height == 1
    client.submit(object_event(2, ["urn:epc:id:sgtin:0614141.107346.9"]))
    client.submit(object_event(3, [ITEM], step="receiving"))
    hist = client.history(ITEM)
    assert [h.event["bizStep"] for h in hist] == ["shipping", "receiving"]
    head = client.head()
    assert head.height == 3 and head.hash == net.blocks[-1].hash
    assert seen == []


def test_receipt_json_round_trip_verifies_offline():
    net = Net()
    client, _, _ = make(net)
    receipt = client.submit(object_event(1))
    again = Receipt.from_json(receipt.to_json())
    verify_receipt(again, net.genesis)
    assert again.record_id == receipt.record_id


@pytest.mark.parametrize(
    "lie, rule",
    [
        ("alter-record", "verification"),  # the id no longer matches what was asked
        ("alter-proof", "inclusion proof"),  # validity.RULES; the error is still a RootMismatch
        ("forge-cert", "certificate signature"),
        ("few-votes", "certificate quorum"),
        ("wrong-record", "verification"),
        ("garbage", "encoding"),
        ("down", "node"),
        ("error500", "node"),
    ],
)
def test_get_fails_over_from_a_lying_or_dead_node(lie, rule):
    net = Net()
    net.build_chain(2, 3)
    rid = net.blocks[1].records[1].id
    client, nodes, seen = make(net, {0: lie})
    got = client.get(rid)
    assert got.id == rid and got.node == net.urls[1]
    assert len(seen) == 1 and seen[0][0] == net.urls[0]
    err = seen[0][1]
    assert err.rule == rule, err
    assert net.urls[0] in str(err)
    if lie not in ("down", "error500"):
        assert isinstance(err, NodeVerificationError)
    # the next call starts at the node that answered
    client.get(rid)
    assert len(seen) == 1


def test_altered_record_in_history_names_the_signature_rule():
    net = Net()
    net.commit([net.sign(object_event(1, [ITEM])), net.sign(object_event(2, [ITEM]))])
    client, _, seen = make(net, {0: "alter-record"})
    hist = client.history(ITEM)
    assert len(hist) == 2
    (node, err), = seen
    assert node == net.urls[0] and err.rule == "signature does not verify"
    assert str(err).startswith(f"node {net.urls[0]}: record: signature does not verify for member acme")


def test_history_with_a_record_that_does_not_name_the_item_is_refused():
    net = Net()
    net.commit([net.sign(object_event(1, [ITEM])), net.sign(object_event(2))])
    client, _, seen = make(net, {0: "foreign-history"})
    assert len(client.history(ITEM)) == 1
    assert "does not name" in str(seen[0][1])


def test_cross_checked_history_finds_what_one_node_omits():
    net = Net()
    net.commit([net.sign(object_event(1, [ITEM]))])
    net.commit([net.sign(object_event(2, [ITEM]))])
    client, _, _ = make(net, {0: "omit-history"})
    assert len(client.history(ITEM)) == 1  # one node's word: the omission is invisible
    full = client.history(ITEM, cross_check=True)  # f+1 = 2 nodes
    assert [r.height for r in full] == [1, 2]
    client, _, _ = make(net, {0: "down", 1: "down", 2: "down"})
    with pytest.raises(NoNodeAvailable, match="from 2 nodes"):
        client.history(ITEM, cross_check=True)


def test_history_of_unknown_item_is_empty():
    net = Net()
    client, _, _ = make(net)
    assert client.history("urn:epc:id:sgtin:0614141.107346.404") == []


def test_all_nodes_lying_raises_a_precise_error_naming_each():
    net = Net()
    net.build_chain(1, 2)
    rid = net.blocks[0].records[0].id
    client, _, _ = make(net, {0: "forge-cert", 1: "alter-proof", 2: "down", 3: "forge-cert"})
    with pytest.raises(NoNodeAvailable) as info:
        client.get(rid)
    text = str(info.value)
    for url in net.urls:
        assert url in text
    assert "certificate: signature of validator" in text and "Merkle path" in text


def test_stale_head_is_refused_after_a_newer_height_was_verified():
    net = Net()
    net.build_chain(3, 1)
    client, _, seen = make(net, {0: "stale-head"})
    client.get(net.blocks[2].records[0].id)  # verifies height 3 (served by node0: receipts are honest)
    head = client.head()
    assert head.height == 3 and head.node == net.urls[1]
    assert isinstance(seen[0][1], NodeVerificationError) and isinstance(seen[0][1].cause, StaleAnswer)


def test_empty_chain_head():
    net = Net()
    client, _, _ = make(net)
    head = client.head()
    assert head.height == 0 and head.header is None and head.hash == net.genesis.hash


def test_not_found_when_every_node_says_so():
    net = Net()
    client, _, seen = make(net)
    with pytest.raises(NotFound):
        client.get(b"\x01" * 32)
    assert seen == []


def test_one_node_hiding_a_record_does_not_hide_it():
    net = Net()
    net.build_chain(1, 1)
    client, _, _ = make(net, {0: "not-found"})
    assert client.get(net.blocks[0].records[0].id).node == net.urls[1]


def test_submit_fails_over_when_a_node_is_down_or_rejects_falsely():
    net = Net()
    client, nodes, seen = make(net, {0: "down", 1: "reject"})
    receipt = client.submit(object_event(7))
    assert receipt.height == 1 and len(net.blocks) == 1
    assert [n for n, _ in seen] == [net.urls[0]]  # a rejection is an answer, not a fault


def test_submit_is_idempotent_duplicate_means_success():
    net = Net()
    client, nodes, _ = make(net)
    record = client.sign(object_event(3))
    first = client.submit_record(record)
    second = client.submit_record(record)
    assert first.record_id == second.record_id == record.id and net.height == 1


def test_submit_waits_by_polling_when_commit_is_later():
    net = Net()
    client, nodes, _ = make(net, commit="later")
    receipt = client.submit(object_event(4))
    assert receipt.height == 1
    assert any(r.startswith("GET /v1/records/") for r in nodes[0].requests)


def test_submit_without_wait_returns_the_signed_record():
    net = Net()
    client, _, _ = make(net, commit="later")
    rec = client.submit(object_event(5), wait=False)
    assert client.get(rec.id).id == rec.id


def test_submit_timeout_names_the_records():
    net = Net()
    nodes = [FakeNode(net, url, commit="later") for url in net.urls]
    tx = transport(nodes)

    def never_commit(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"error": "not found", "message": "no"})
        return tx.handle_request(request)

    client = Client(net.genesis, net.urls, net.members["acme"], transport=httpx.MockTransport(never_commit))
    with pytest.raises(SubmitTimeout) as info:
        client.submit(object_event(6), timeout=0.2)
    assert len(info.value.record_ids) == 1


def test_submit_refuses_locally_before_sending():
    net = Net()
    client, nodes, _ = make(net, who="outsider")
    with pytest.raises(UnknownMember):
        client.submit(object_event(1))
    client, nodes, _ = make(net, who="audit")
    with pytest.raises(RoleDenied, match="lacks the 'submitter' role"):
        client.submit(object_event(1))
    assert all(n.requests == [] for n in nodes)


def test_rejection_by_every_node_is_raised_as_that_rule():
    net = Net()
    client, _, _ = make(net, {0: "reject", 1: "reject", 2: "reject", 3: "reject"})
    with pytest.raises(InvalidSignature):
        client.submit(object_event(1))


def test_submit_many_in_batches():
    net = Net()
    client, nodes, _ = make(net)
    receipts = client.submit_many([object_event(i) for i in range(10)], batch=4)
    assert [r.height for r in receipts] == [1] * 4 + [2] * 4 + [3] * 2
    assert len({r.record_id for r in receipts}) == 10


def test_submit_many_names_the_bad_event():
    net = Net()
    client, _, _ = make(net)
    events = [object_event(0), {"type": "ObjectEvent"}]
    with pytest.raises(RantaiError, match="event 1"):
        client.submit_many(events)


def test_receipt_from_a_forged_certificate_is_rejected_by_submit():
    net = Net()
    client, _, seen = make(net, {0: "forge-cert"})
    receipt = client.submit(object_event(1))
    verify_receipt(receipt, net.genesis)
    assert isinstance(seen[0][1], NodeVerificationError)
    assert isinstance(seen[0][1].cause, InvalidCertificate)


def test_async_client_same_behaviour():
    net = Net()
    nodes, tx = fake_network(net, {0: "alter-proof"})

    async def run():
        seen = []
        async with AsyncClient(net.genesis, net.urls, net.members["acme"], transport=tx,
                               on_failure=lambda n, e: seen.append(n)) as client:
            receipt = await client.submit(object_event(1, [ITEM]))
            got = await client.get(receipt.record_id)
            many = await client.submit_many([object_event(i) for i in range(3)])
            hist = await client.history(ITEM)
            head = await client.head()
            return receipt, got, many, hist, head, seen

    receipt, got, many, hist, head, seen = asyncio.run(run())
    assert got.id == receipt.record_id and len(many) == 3 and len(hist) == 1 and head.height == 2
    assert seen and set(seen) == {net.urls[0]}


# -- paged history (node/history.py): every page followed, pinned to one height, cross-checked ----------------

def _history_chain(net: Net, n: int) -> None:
    for i in range(n):  # one record naming ITEM and one that does not, per block
        net.commit([net.sign(object_event(2 * i, [ITEM])), net.sign(object_event(2 * i + 1))])


def _history_requests(nodes: list[FakeNode]) -> list[int]:
    return [sum(1 for r in node.requests if r.endswith("/history")) for node in nodes]


def test_history_follows_every_page_in_chain_order():
    net = Net()
    _history_chain(net, 7)
    client, nodes, seen = make(net)
    hist = client.history(ITEM, page_size=2)
    assert [r.height for r in hist] == [1, 2, 3, 4, 5, 6, 7]
    assert _history_requests(nodes) == [4, 0, 0, 0] and seen == []
    assert [r.height for r in client.history(ITEM)] == [1, 2, 3, 4, 5, 6, 7]  # the default page holds them all


def test_history_pages_continue_on_another_node():
    """A page token means the same on every node at its height: when the first node fails mid-way,
    the next one continues the same answer."""
    net = Net()
    _history_chain(net, 5)
    client, nodes, seen = make(net, {0: "flaky-pages"})
    assert [r.height for r in client.history(ITEM, page_size=2)] == [1, 2, 3, 4, 5]
    assert _history_requests(nodes)[:2] == [2, 2] and seen and seen[0][0] == net.urls[0]


def test_history_pages_stay_at_the_first_pages_height():
    net = Net()
    _history_chain(net, 3)
    client, nodes, _ = make(net)
    flow = client.history_pages_flow(ITEM, page_size=2)
    first = client._call(next(flow))[0]  # noqa: SLF001 - drive the flow by hand to grow the chain between pages
    _history_chain(net, 2)
    records, height = client._run(_resume(flow, first))  # noqa: SLF001
    assert height == 3 and [r.height for r in records] == [1, 2, 3]


def _resume(flow, value):
    """The rest of ``flow`` after it was sent ``value`` (errors are not thrown in: none is expected)."""
    while True:
        try:
            step = flow.send(value)
        except StopIteration as stop:
            return stop.value
        value = yield step


def test_cross_checked_history_across_pages_finds_what_one_node_omits():
    net = Net()
    _history_chain(net, 5)
    client, nodes, _ = make(net, {0: "omit-history"})
    assert len(client.history(ITEM, page_size=2)) == 4
    full = client.history(ITEM, cross_check=True, page_size=2)
    assert [r.height for r in full] == [1, 2, 3, 4, 5]


def test_cross_check_asks_every_node_as_of_one_height():
    """A node behind the first answer's height answers 503 and another is asked; one that ignores the
    pin and answers as of another height is refused."""
    net = Net()
    _history_chain(net, 4)
    client, nodes, seen = make(net, {1: "behind", 2: "ignore-pin"})
    # node 0 answers as of height 4; node 1 is at 3 (503); node 2 answers as of its head, which is 4: accepted
    assert [r.height for r in client.history(ITEM, cross_check=True, page_size=3)] == [1, 2, 3, 4]
    assert _history_requests(nodes) == [2, 1, 2, 0]
    net.commit([net.sign(object_event(100, [ITEM]))])
    client, nodes, seen = make(net, {0: "behind", 2: "ignore-pin"})
    # node 0 answers as of 4 (it is behind), node 1 as of 4 (pinned); node 2 would say 5: refused as a lie
    got = client.history(ITEM, cross_check=True)
    assert [r.height for r in got] == [1, 2, 3, 4]
    client, nodes, seen = make(net, {0: "behind", 1: "ignore-pin", 2: "down", 3: "down"})
    with pytest.raises(NoNodeAvailable, match="from 2 nodes") as info:
        client.history(ITEM, cross_check=True)
    assert "asked as of height 4, answered as of 5" in str(info.value)


def test_history_page_with_a_forged_pinned_head_is_refused():
    net = Net()
    _history_chain(net, 2)
    client, nodes, seen = make(net, {0: "forge-cert"})
    assert [r.height for r in client.history(ITEM)] == [1, 2]
    assert seen and seen[0][0] == net.urls[0]


def test_a_verified_certificate_is_remembered_as_exactly_that_certificate():
    """The client checks a block's certificate once for the many receipts of one history page; a receipt of the
    same block with another certificate (forged, or fewer votes) is still checked, and refused."""
    net = Net()
    records = [net.sign(object_event(i, [ITEM])) for i in range(3)]
    net.commit(records)
    certified: set[bytes] = set()
    for r in records:
        verify_receipt(net.receipt(r.id), net.genesis, None, certified)
    assert len(certified) == 1  # one block, one certificate
    for lie in ("forge-cert", "few-votes"):
        forged = Receipt.from_obj(FakeNode(net, "http://liar", lie)._receipt_obj(records[0].id))
        with pytest.raises(InvalidCertificate):
            verify_receipt(forged, net.genesis, None, certified)
    assert len(certified) == 1
