"""SMEs' files through a real 4-validator devnet: GS1's EPCIS XML examples (validated against GS1's XSDs), a CSV
with one bad line, receipts on request, and `submit`/`import` alike on lists and duplicates (issue 14, item 5).

Method: `rantai import` / `rantai submit` (CliRunner, real HTTP to subprocess validators on loopback); the
ledger's events are read back by hash ID and compared with the JSON twins GS1 publishes. No timed assertions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rantai.client import documents  # noqa: F401 - registers `rantai import`
from rantai.client.cli import cli
from rantai.client.documents import embed_context, load_events
from rantai.client.format.epcis import event_hash_id
from rantai.client.format.receipts import Receipt
from rantai.client.http import Client, verify_receipt

from .helpers import SHARED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(not (SHARED / "xml").is_dir(), reason="GS1 XML examples not found at ../shared")]

devnet_mod = pytest.importorskip("rantai.client.devnet")

from ports import free_base_port  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "epcis.md"


def test_xml_csv_receipts_and_duplicates(tmp_path):
    xml_files = [p for p in sorted((SHARED / "xml").rglob("*.xml")) if "masterData" not in p.name]
    net = devnet_mod.Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4, 7600, 8000),
                            params={"batch_timeout_ms": 5, "view_change_timeout_ms": 1000})
    try:
        net.start()
        net.wait_ready(timeout=60)
        env = {"RANTAI_GENESIS": str(net.genesis_path), "RANTAI_NODES": ",".join(net.urls),
               "RANTAI_KEY": str(net.dir / "members" / "acme.pem")}
        runner = CliRunner(env=env)

        # -- XML: every example, validated against GS1's XSDs, imported; receipts for every event that has a form
        res = runner.invoke(cli, ["import", *map(str, xml_files), "--xsd", str(SHARED / "schema" / "xsd"),
                                  "--receipts", str(tmp_path / "xml-proofs"), "--json"], catch_exceptions=False)
        out = json.loads(res.stdout)
        assert res.exit_code == 3, res.output  # three events the JSON binding cannot express (docs/epcis.md §4.8)
        rejected = [e for e in out["events"] if e["status"] == "rejected"]
        assert len(rejected) == 3 and all("schema:" in e["reason"] for e in rejected)
        assert out["counts"]["recorded"] + out["counts"].get("duplicate", 0) == 57
        # each recorded event has the hash ID its JSON twin has (the twins of test_xml.py)
        twin = json.loads((SHARED / "examples" / "WithEventHashID" / "event_with_identical_hash_id_7.json").read_text())
        want = event_hash_id(embed_context(twin["epcisBody"]["eventList"][0], twin["@context"]))
        ours = {e["eventID"] for e in out["events"] if e["file"].endswith("event_with_identical_hash_id_1.xml")}
        assert ours == {want}
        index = json.loads((tmp_path / "xml-proofs" / "index.json").read_text())["events"]
        assert len(index) == 57  # recorded and duplicates alike carry a verified receipt
        genesis = net.genesis
        for entry in index[:10]:
            receipt = Receipt.from_json((tmp_path / "xml-proofs" / entry["receipt"]).read_text())
            verify_receipt(receipt, genesis)
            assert event_hash_id(receipt.record.event) == entry["eventHashID"]
        again = runner.invoke(cli, ["import", str(xml_files[0]), "--json"], catch_exceptions=False)
        assert {e["status"] for e in json.loads(again.stdout)["events"]} == {"duplicate"}

        # -- CSV: the documented template with one bad line: that line is reported, the rest recorded
        lines = DOCS.read_text(encoding="utf-8").split("```csv\n", 1)[1].split("```", 1)[0].splitlines()
        lines.insert(3, "ship,2024-05-02T08:00:00+07:00,(01)08991234123454(21)1,,,,,,,,,,")
        (tmp_path / "sme.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        res = runner.invoke(cli, ["import", str(tmp_path / "sme.csv"), "-q"], catch_exceptions=False)
        assert res.exit_code == 3, res.output
        assert "sme.csv line 4, column items: gs1:" in res.stdout and "5 recorded, 1 rejected" in res.stdout

        # -- submit and import alike: a JSON list, then the same events again (duplicates, exit 0, receipts)
        events = [p.event for p in load_events(tmp_path / "sme.csv") if p.event is not None]
        shifted = [{**e, "eventTime": e["eventTime"].replace("2024-05", "2025-05")} for e in events]
        (tmp_path / "list.json").write_text(json.dumps(shifted))
        res = runner.invoke(cli, ["submit", str(tmp_path / "list.json"), "--json"], catch_exceptions=False)
        assert res.exit_code == 0 and {o["status"] for o in json.loads(res.stdout)} == {"committed"}, res.output
        res = runner.invoke(cli, ["import", str(tmp_path / "list.json"), "--json"], catch_exceptions=False)
        assert res.exit_code == 0 and {o["status"] for o in json.loads(res.stdout)["events"]} == {"duplicate"}
        res = runner.invoke(cli, ["submit", str(tmp_path / "list.json"), "--receipt", str(tmp_path / "dup"),
                                  "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        dups = json.loads(res.stdout)
        assert {o["status"] for o in dups} == {"duplicate"} and all(o.get("receipt") for o in dups)
        with Client(genesis, net.urls) as client:
            for o in dups:
                receipt = Receipt.from_json(Path(o["receipt"]).read_text())
                verify_receipt(receipt, genesis)
                assert receipt.record.id.hex() == o["existing"] == client.get(o["existing"]).id.hex()
        single = tmp_path / "one.json"
        single.write_text(json.dumps(shifted[0]))
        res = runner.invoke(cli, ["submit", str(single)], catch_exceptions=False)
        assert res.exit_code == 0 and res.stdout.startswith("duplicate ni:///sha-256;"), res.output
    finally:
        net.stop()
