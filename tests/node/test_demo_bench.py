"""Smoke runs of `rantai demo` on real local validators (`rantai bench`: tests/client/test_bench_smoke.py).

Goal: the newcomer's first command keeps working. Method: run it small,
on free loopback ports in a temporary directory, and check what they report — never how fast
(the figures belong in docs/performance.md, measured by the real `rantai bench`).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from rich.console import Console

from rantai.client.cli import cli
from rantai.client.demo import MEMBERS, run_demo
from rantai.client.format.genesis import Genesis
from rantai.client.format.receipts import Receipt

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_journey_is_committed_verified_and_traced(tmp_path, free_base_port):
    console = Console(record=True, width=160)
    out = run_demo(tmp_path / "demo", base_port=free_base_port(4), console=console)
    assert [s["member"] for s in out["steps"]] == [*MEMBERS, "rotterdam-import", "rotterdam-import", "kafe-senja"]
    # The café joined during the run: refused before, its sale in force from the change's height on.
    join = out["join"]
    assert join["cafe"] == "kafe-senja" and join["refused"].startswith("unknown member")
    assert join["sale_height"] >= join["effective"]
    genesis = Genesis.load(tmp_path / "demo" / "genesis.json")
    for step in out["steps"]:
        name = step["receipt"].rsplit("/", 1)[-1]
        receipt = Receipt.from_json((tmp_path / "demo" / "receipts" / name).read_text())
        receipt.verify(genesis)
        assert receipt.record_id.hex() == step["record_id"]
    # The bag's lineage: commission of its sacks, roasting, packing, shipping and receiving of its pallet,
    # unpacking, shipping to the café, the sale.
    assert out["traced"] == 8
    text = console.export_text()
    assert "journey of" in text and "explore further" in text and "validators stopped" in text
    assert "refused — unknown member" in text and "is a member from now on" in text
    # The café's receipt verifies offline, with the genesis file only (`rantai verify`).
    res = CliRunner().invoke(cli, ["verify", out["steps"][-1]["receipt"],
                                   "--genesis", str(tmp_path / "demo" / "genesis.json")])
    assert res.exit_code == 0 and "submitted by kafe-senja" in res.output, res.output


def test_demo_reuses_its_network(tmp_path, free_base_port):
    port = free_base_port(4)
    run_demo(tmp_path / "demo", base_port=port, console=Console(file=open("/dev/null", "w")))
    again = run_demo(tmp_path / "demo", base_port=port, console=Console(file=open("/dev/null", "w")))
    assert again["steps"][0]["height"] > 10  # the same chain, grown
    assert again["join"]["cafe"] == "kafe-senja-2"  # a second café joins: every run shows a join


def test_demo_recreates_a_network_of_the_older_demo(tmp_path, free_base_port):
    from rantai.client.devnet import Devnet

    port = free_base_port(4)
    Devnet(tmp_path / "demo", base_port=port, members=(*MEMBERS, "kafe-senja")).init()  # as before: no admins
    console = Console(record=True, width=160)
    out = run_demo(tmp_path / "demo", base_port=port, console=console)
    assert "made by an older demo" in console.export_text() and out["join"]["cafe"] == "kafe-senja"
