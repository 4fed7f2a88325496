"""Fail-over rules the client must keep against fake nodes (issue 15): a cross-checked history asks
each node at most once, a record a node accepted but never got committed is resent to the next
node, and ``rantai verify`` calls every broken receipt file a failed verification (exit 1).

Methodology as in test_http.py: an in-memory chain (helpers_client.Net) served by FakeNodes over
httpx.MockTransport; each FakeNode logs the requests it saw, which is what these tests check.
"""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner
from helpers_client import ITEM, FakeNode, Net, _resp, fake_network, object_event, transport

from rantai.client.cli import EXIT_FAILED, cli
from rantai.client.format.encoding import decode
from rantai.client.format.records import SignedRecord
from rantai.client.http import AsyncClient, Client, SubmitTimeout


def _history_requests(node: FakeNode) -> int:
    return sum(1 for r in node.requests if r.endswith("/history"))


@pytest.mark.parametrize("lie", ["alter-record", "down", "error500"])
def test_cross_check_asks_each_node_once_and_succeeds_with_two_good_of_three(lie):
    net = Net()
    net.commit([net.sign(object_event(1, [ITEM]))])
    nodes, tx = fake_network(net, {0: lie})
    client = Client(net.genesis, net.urls[:3], net.members["acme"], transport=tx)  # [bad, good, good]; f+1 = 2
    got = client.history(ITEM, cross_check=True)
    assert [r.height for r in got] == [1]
    assert [_history_requests(n) for n in nodes[:3]] == [1, 1, 1]


def test_cross_check_starting_from_a_preferred_node_still_asks_each_once():
    net = Net()
    net.commit([net.sign(object_event(1, [ITEM]))])
    nodes, tx = fake_network(net, {2: "alter-record"})
    client = Client(net.genesis, net.urls[:3], net.members["acme"], transport=tx)
    client._preferred = 1  # what an earlier answer from node 1 leaves behind
    assert len(client.history(ITEM, cross_check=True)) == 1
    assert [_history_requests(n) for n in nodes[:3]] == [1, 1, 1]


class Censor(FakeNode):
    """Accepts every record and never gets it committed (it forwards nothing): the others never hear of it."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path == "/v1/records":
            ids = [SignedRecord.from_bytes(raw).id for raw in decode(request.content)["records"]]
            return _resp(202, {"results": [{"id": rid, "status": "accepted"} for rid in ids]})
        return _resp(404, {"error": "not found", "message": "no such record"})


def _censored_network(net: Net) -> tuple[list[FakeNode], httpx.MockTransport]:
    nodes = [Censor(net, net.urls[0])] + [FakeNode(net, url) for url in net.urls[1:]]
    return nodes, transport(nodes)


def test_accepted_but_never_committed_is_resent_to_the_next_node():
    net = Net()
    nodes, tx = _censored_network(net)
    client = Client(net.genesis, net.urls, net.members["acme"], transport=tx)
    receipt = client.submit(object_event(9), timeout=3.0)  # a node's share: 1 s
    assert receipt.height == 1
    assert nodes[0].requests[0] == "POST /v1/records"
    assert nodes[1].requests.count("POST /v1/records") == 1  # the same bytes, to the next node


def test_resending_is_bounded_by_the_overall_wait():
    net = Net()
    nodes = [Censor(net, url) for url in net.urls]
    client = Client(net.genesis, net.urls, net.members["acme"], transport=transport(nodes))
    with pytest.raises(SubmitTimeout):
        client.submit(object_event(9), timeout=2.5)
    posts = [n.requests.count("POST /v1/records") for n in nodes]
    assert 2 <= sum(posts) <= 3 and max(posts) == 1  # one share per second of the wait, never a node twice in a row


def test_async_client_resends_too():
    import asyncio

    net = Net()
    nodes, _ = _censored_network(net)

    def route(request: httpx.Request) -> httpx.Response:
        return {httpx.URL(n.url).host: n for n in nodes}[request.url.host].handle(request)

    async def main():
        async with AsyncClient(net.genesis, net.urls, net.members["acme"], transport=httpx.MockTransport(route)) as c:
            return await c.submit(object_event(10), timeout=3.0)

    assert asyncio.run(main()).height == 1


# -- rantai verify: a broken file is a failed verification --------------------------------------------


@pytest.fixture
def receipt_file(tmp_path, monkeypatch):
    net = Net()
    nodes, tx = fake_network(net)
    client = Client(net.genesis, net.urls, net.members["acme"], transport=tx)
    receipt = client.submit(object_event(3))
    (tmp_path / "genesis.json").write_text(net.genesis.to_json())
    monkeypatch.chdir(tmp_path)
    for k in ("RANTAI_NODES", "RANTAI_KEY", "RANTAI_CONFIG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("RANTAI_GENESIS", str(tmp_path / "genesis.json"))
    return json.loads(receipt.to_json())


def _mutants(doc: dict) -> dict[str, str]:
    out = {
        "not json": "{",
        "a list": "[]",
        "nested": "[" * 100_000 + "]" * 100_000,
        "null": "null",
    }
    for key, value in (("record", "zz"), ("record", 7), ("record", "00"), ("path", [1]), ("path", "ab"),
                       ("index", "0"), ("index", -1), ("header", []), ("certificate", None), ("record_id", 5),
                       ("event", None)):
        if key in doc:
            out[f"{key}={value!r}"] = json.dumps({**doc, key: value})
    if isinstance(doc.get("header"), dict):
        for hk in list(doc["header"])[:4]:
            out[f"header.{hk}=list"] = json.dumps({**doc, "header": {**doc["header"], hk: [1, 2]}})
    if isinstance(doc.get("certificate"), dict):
        out["votes=str"] = json.dumps({**doc, "certificate": {**doc["certificate"], "votes": "x"}})
        out["votes=[[1]]"] = json.dumps({**doc, "certificate": {**doc["certificate"], "votes": [[1]]}})
    return out


def test_verify_of_any_broken_receipt_file_exits_1_never_70(receipt_file, tmp_path):
    for name, text in _mutants(receipt_file).items():
        (tmp_path / "bad.json").write_text(text)
        result = CliRunner().invoke(cli, ["verify", "bad.json"], catch_exceptions=False)
        assert result.exit_code == EXIT_FAILED, (name, result.exit_code, result.output)
        assert "Traceback" not in result.output and "internal" not in result.output, (name, result.output)
