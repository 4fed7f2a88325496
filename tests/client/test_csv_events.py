"""The CSV template (client/csv_events.py) and `rantai import`/`submit` on CSV, XML and JSON lists.

Goal: a spreadsheet saved as CSV becomes valid events; a bad line names its line, column and rule and the
others are recorded; submit and import read files the same way and treat duplicates alike. Method: the
template's own example (docs/epcis.md §4.7) through csv_events and through the CLI against fake nodes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers_client import Net, fake_network

from rantai.client.cli import EXIT_REJECTED, cli
from rantai.client.csv_events import COLUMNS, csv_events, gs1_identifier
from rantai.client.format.epcis import event_hash_id, validate_event
from rantai.client.format.keys import save_key

DOCS = Path(__file__).resolve().parents[2] / "docs" / "epcis.md"


def template_example() -> str:
    """The CSV example of docs/epcis.md §4.7, so the documented template is the tested one."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```csv\n(.*?)```", text, re.S)
    assert block, "docs/epcis.md has no ```csv example"
    return block.group(1)


def test_the_documented_template_gives_valid_events_of_each_kind():
    rows = csv_events(template_example())
    assert all(r.error is None for r in rows), [str(r.error) for r in rows if r.error]
    kinds = [(r.event["type"], r.event.get("bizStep")) for r in rows]
    assert kinds == [("ObjectEvent", "commissioning"), ("AggregationEvent", "packing"), ("ObjectEvent", "shipping"),
                     ("ObjectEvent", "receiving"), ("TransformationEvent", "commissioning")]
    for r in rows:
        validate_event(r.event)
    ship = rows[2].event
    assert ship["epcList"] == ["https://id.gs1.org/00/189912340000000012"]
    assert ship["sourceList"][0]["source"] == "https://id.gs1.org/417/8991234000008"
    assert ship["eventTime"] == "2024-05-02T08:00:00.000+07:00"
    header = template_example().splitlines()[0].split(",")
    assert set(header) <= set(COLUMNS)


def test_times_without_offset_are_read_in_the_time_zone_given():
    text = "event,time,items,location\ncommission,2024-05-01T08:00:00,(01)08991234123455(21)9,8991234000015\n"
    assert csv_events(text)[0].event["eventTime"] == "2024-05-01T08:00:00.000+00:00"
    wib = dt.timezone(dt.timedelta(hours=7))
    assert csv_events(text, wib)[0].event["eventTime"] == "2024-05-01T08:00:00.000+07:00"


def test_bad_lines_name_line_column_and_rule_and_the_rest_still_map():
    text = ("event;time;items;location;to\n"  # semicolons, as spreadsheets in many locales save
            "commission;2024-05-01T08:00:00Z;(01)08991234123454(21)1;8991234000015;\n"
            "commission;2024-05-01T08:00:00Z;(01)08991234123455(21)1;8991234000015;\n"
            "ship;yesterday;(01)08991234123455(21)1;;\n"
            "frobnicate;2024-05-01T08:00:00Z;x;;\n"
            "ship;2024-05-01T08:00:00Z;;;\n"
            "ship;2024-05-01T08:00:00Z;(01)08991234123455(21)1;;8995678000026\n"
            "commission;2024-05-01T08:00:00Z;(01)08991234123455(21)2;;\n")
    rows = csv_events(text)
    errors = {r.line: str(r.error) for r in rows if r.error}
    assert rows[1].event is not None and rows[1].line == 3
    assert errors[2].startswith("line 2, column items: gs1: (01)08991234123454(21)1: Invalid GTIN check digit")
    assert errors[4].startswith("line 4, column time: time: 'yesterday' is not an ISO 8601 time")
    assert errors[5].startswith("line 5, column event: event type: 'frobnicate'")
    assert errors[6].startswith("line 6, column items: required")
    assert errors[7].startswith("line 7, column to: gs1: 8995678000026: Invalid GLN check digit")
    assert errors[8].startswith("line 8, column location: required")
    assert str(csv_events("event,colour\nship,red\n")[0].error).startswith("line 1, column colour: header: unknown")


def test_gs1_identifiers_as_people_have_them():
    assert gs1_identifier("(01)08991234123455(21)1001") == "https://id.gs1.org/01/08991234123455/21/1001"
    assert gs1_identifier("0108991234123455211001") == "https://id.gs1.org/01/08991234123455/21/1001"  # scanned
    assert gs1_identifier("189912340000000012") == "https://id.gs1.org/00/189912340000000012"
    assert gs1_identifier("8991234000015", "location") == "https://id.gs1.org/414/8991234000015"
    assert gs1_identifier("8991234000015", "party") == "https://id.gs1.org/417/8991234000015"
    assert gs1_identifier("urn:epc:id:sgtin:8991234.012345.1") == "urn:epc:id:sgtin:8991234.012345.1"
    dl = "https://brand.example.com/01/08991234123455/21/7"
    assert gs1_identifier(dl) == dl
    for bad in ("https://id.gs1.org/01/08991234123454/21/7", "189912340000000013", "(01)089912341234"):
        with pytest.raises(ValueError):
            gs1_identifier(bad)


# -- the CLI --------------------------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    net = Net()
    nodes, tx = fake_network(net)
    (tmp_path / "genesis.json").write_text(net.genesis.to_json())
    save_key(net.members["acme"], tmp_path / "acme.pem")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for k in ("RANTAI_NODES", "RANTAI_CONFIG", "RANTAI_PASSPHRASE", "RANTAI_TZ"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RANTAI_GENESIS", str(tmp_path / "genesis.json"))
    monkeypatch.setenv("RANTAI_KEY", str(tmp_path / "acme.pem"))
    return net, tx, tmp_path


def run(tx, *args, code=0):
    res = CliRunner().invoke(cli, list(args), obj={"transport": tx}, catch_exceptions=False)
    assert res.exit_code == code, (res.exit_code, res.output)
    return res


def test_import_csv_with_one_bad_line_records_the_rest_and_writes_receipts(env):
    net, tx, tmp = env
    lines = template_example().splitlines()
    bad = lines[:3] + ["ship,2024-05-02T08:00:00+07:00,(01)08991234123454(21)1,,,,,,,,,,"] + lines[3:]
    (tmp / "sme.csv").write_text("\n".join(bad) + "\n", encoding="utf-8")
    res = run(tx, "import", "sme.csv", "--receipts", "proofs", "-q", code=EXIT_REJECTED)
    out = res.stdout
    assert "rejected   sme.csv line 4, column items: gs1: (01)08991234123454(21)1: Invalid GTIN" in out
    assert out.count("recorded   sme.csv line") == 5 and "5 recorded, 1 rejected" in out
    index = json.loads((tmp / "proofs" / "index.json").read_text())["events"]
    assert len(index) == 5 and (tmp / "proofs" / "genesis.json").is_file()
    rid = index[0]["record"]
    assert run(tx, "verify", f"proofs/receipts/{rid}.json", "-g", "proofs/genesis.json").exit_code == 0
    as_json = run(tx, "import", "sme.csv", "--json", code=EXIT_REJECTED)
    events = json.loads(as_json.stdout)["events"]
    assert [e.get("line") for e in events] == [2, 3, 4, 5, 6, 7]


def test_submit_and_import_read_a_json_list_alike(env):
    net, tx, tmp = env
    rows = csv_events(template_example())
    (tmp / "list.json").write_text(json.dumps([r.event for r in rows[:2]]))
    res = run(tx, "import", "list.json", "--json")
    assert [e["status"] for e in json.loads(res.stdout)["events"]] == ["recorded", "recorded"]
    (tmp / "more.json").write_text(json.dumps([r.event for r in rows[2:4]]))
    res = run(tx, "submit", "more.json", "--json")
    assert [e["status"] for e in json.loads(res.stdout)] == ["committed", "committed"]
    assert all(bytes.fromhex(e["record_id"]) in net.where for e in json.loads(res.stdout))
    (tmp / "one.csv").write_text(template_example().splitlines()[0] + "\n" + template_example().splitlines()[5] + "\n")
    res = run(tx, "submit", "one.csv", "--json")
    assert json.loads(res.stdout)["status"] == "committed"
    got = net.receipt(bytes.fromhex(json.loads(res.stdout)["record_id"])).record.event
    assert event_hash_id(got) == event_hash_id(rows[4].event)  # the CSV line's event, as csv_events maps it
