"""A real round trip: a 4-validator devnet of subprocesses on 127.0.0.1, the client library and the
`rantai` CLI against it, then one node's LevelDB tampered with and caught by the auditor.

Goal: the client, receipts and auditor agree with the node that actually ships. Method: start a
devnet on free ports; submit → get → history → head; submit a batch; audit every node by network
and compare them; stop one node, audit its data directory, flip one byte of a stored block, and
check that the audit fails at that height and `--compare` names the divergence. Waits are bounded
by polling, never by timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import time

import pytest
from click.testing import CliRunner
from helpers_client import ITEM, object_event

from rantai.client.audit import NodeSource, audit
from rantai.client.cli import EXIT_FAILED, cli
from rantai.client.format.audit import compare
from rantai.client.format.receipts import Receipt
from rantai.client.http import AsyncClient, Client, verify_receipt

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

devnet_mod = pytest.importorskip("rantai.client.devnet")

from ports import free_base_port  # noqa: E402


def wait_for(what: str, fn, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def devnet(tmp_path):
    net = devnet_mod.Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4),
                            params={"batch_timeout_ms": 5, "view_change_timeout_ms": 1000})
    net.start()
    try:
        net.wait_ready(timeout=60)
        yield net
    finally:
        net.stop()


def cli_run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def node_run(*args: str):
    from rantai.node.cli import cli as node_cli

    return CliRunner().invoke(node_cli, list(args), catch_exceptions=False)


def test_round_trip_audit_and_tamper(devnet, tmp_path):
    genesis = devnet.genesis
    urls = devnet.urls
    acme = devnet.member_key("acme")
    with Client(genesis, urls, acme, timeout=30.0) as client:
        receipt = client.submit(object_event(1, [ITEM]))
        verify_receipt(Receipt.from_json(receipt.to_json()), genesis)
        got = client.get(receipt.record_id)
        assert got.id == receipt.record_id and got.event["epcList"] == [ITEM]
        receipts = client.submit_many([object_event(10 + i) for i in range(40)], batch=16)
        assert len({r.record_id for r in receipts}) == 40
        second = client.submit(object_event(2, [ITEM], step="receiving"))
        hist = client.history(ITEM)
        assert [h.id for h in hist] == [receipt.record_id, second.record_id]
        head = client.head()
        assert head.height >= second.height
        assert client.failures == type(client.failures)()  # no node lied or was down

    # the async client and the CLI against the same network
    async def async_round() -> tuple[int, int]:
        async with AsyncClient(genesis, urls, acme, timeout=30.0) as ac:
            r = await ac.submit(object_event(3, [ITEM], step="storing"))
            return (await ac.get(r.record_id)).height, len(await ac.history(ITEM))

    _, n_hist = asyncio.run(async_round())
    assert n_hist == 3
    env = {"RANTAI_GENESIS": str(devnet.genesis_path), "RANTAI_NODES": ",".join(urls),
           "RANTAI_KEY": str(devnet.dir / "members" / "acme.pem")}
    res = CliRunner(env=env).invoke(cli, ["submit", "--receive", ITEM, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = CliRunner(env=env).invoke(cli, ["trace", ITEM, "--json"], catch_exceptions=False)
    steps = json.loads(res.output)["steps"]
    assert [s["event"]["bizStep"] for s in steps] == ["shipping", "receiving", "storing", "receiving"]
    with Client(genesis, urls, acme) as client:
        head = client.head()

    top = head.height
    srcs = [NodeSource(u, key=acme) for u in urls]  # acme audits: submitter and auditor
    wait_for("all nodes at the same height", lambda: min(s.head_height() for s in srcs) >= top)
    rep = audit(genesis, srcs[0], end=top)
    assert rep.ok, rep.failures
    assert rep.records == 44 and rep.height == top
    cmp = compare(genesis, srcs, end=top)
    for s in srcs:
        s.close()
    assert cmp.ok and cmp.compared == top

    # receipts on disk verify offline through the CLI
    (tmp_path / "r.json").write_text(second.to_json())
    res = cli_run("verify", str(tmp_path / "r.json"), "--genesis", str(devnet.genesis_path))
    assert res.exit_code == 0 and res.output.startswith("ok: record"), res.output

    # stop node 3 and read its data directory directly
    devnet.stop_node(3)
    data = devnet.dir / "data" / "v3"
    res = node_run("audit", "--genesis", str(devnet.genesis_path), "--data-dir", str(data), "--to", str(top),
                   "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["records"] == 44
    pristine = tmp_path / "v3-copy"
    shutil.copytree(data, pristine)

    # with node 3 down, the client fails over
    with Client(genesis, [urls[3]] + urls[:3], acme, timeout=5.0) as client:
        assert client.get(receipt.record_id).node == urls[0]
        assert client.failures and client.failures[0][0] == urls[3]

    # flip one byte of the stored block that holds the first record
    import plyvel

    h = receipt.height
    db = plyvel.DB(str(data / "blocks"))  # the chain's own database (docs/storage.md)
    key = struct.pack(">Q", h) + b"b"
    raw = db.get(key)
    at = raw.index(b"shipping")
    db.put(key, raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:])
    db.close()

    res = node_run("audit", "--genesis", str(devnet.genesis_path), "--data-dir", str(data), "--to", str(top),
                   "--json")
    assert res.exit_code == EXIT_FAILED, res.output
    failures = json.loads(res.output)["failures"]
    assert failures[0]["height"] == h

    res = node_run("audit", "--genesis", str(devnet.genesis_path), "--compare", "--data-dir", str(pristine),
                   "--data-dir", str(data), "--to", str(top))
    assert res.exit_code == EXIT_FAILED
    assert f"DIVERGENCE at height {h}" in res.output and str(data) in res.output

    from rantai.node.audit import DataDirSource

    src = DataDirSource(data)
    try:
        assert src.head_height() >= top
    finally:
        src.close()
