"""GS1's official examples through a real 4-validator devnet: `rantai import`, query back, `rantai export`.

Goal (issue 6, "done when"): every event of the official examples that the official schema accepts
is imported, found again by its hash ID and by its own eventID on every node, returned identically
by every node's query, and exported as an EPCISDocument the official schema accepts, with proofs
that verify offline; re-running the import records nothing twice. Method: real node processes on
127.0.0.1 (ports 7600-7999), the `rantai` CLI in-process (click's runner), the official schema and
examples read from ../shared/epcis. Waits are bounded polls.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from rantai.client import documents  # noqa: F401 - registers `rantai import` / `rantai export`
from rantai.client.cli import cli
from rantai.client.documents import prepare_events, served_event
from rantai.client.format.encoding import decode
from rantai.client.format.epcis import event_hash_id
from rantai.client.format.receipts import Receipt
from rantai.client.http import SignedReads, verify_receipt

from .helpers import EXAMPLES, example_files, official_validator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240),
              pytest.mark.skipif(not EXAMPLES.is_dir(), reason="GS1 examples not found at ../shared/epcis")]

devnet_mod = pytest.importorskip("rantai.client.devnet")

from ports import free_base_port as _free_base_port  # noqa: E402


def free_base_port(n: int) -> int:
    return _free_base_port(n, 7600, 8000)


def wait_for(what: str, fn, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_official_examples_import_query_export(tmp_path):
    schema = official_validator()
    files = [p for p in example_files() if schema.is_valid(json.loads(p.read_text(encoding="utf-8")))]
    assert len(files) >= 40
    expected: dict[str, dict] = {}  # hash ID -> event as prepared (context embedded)
    own_ids: dict[str, str] = {}
    for p in files:
        for prep in prepare_events(json.loads(p.read_text(encoding="utf-8"))):
            assert prep.event is not None, (p, prep.error)
            expected.setdefault(prep.hash_id, prep.event)
            if "eventID" in prep.event:
                own_ids.setdefault(prep.event["eventID"], prep.hash_id)

    assert len(expected) >= 40  # 56 events in 47 documents, 46 distinct events
    net = devnet_mod.Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4),
                            params={"batch_timeout_ms": 5, "view_change_timeout_ms": 1000})
    try:
        net.start()
        net.wait_ready(timeout=60)
        env = {"RANTAI_GENESIS": str(net.genesis_path), "RANTAI_NODES": ",".join(net.urls),
               "RANTAI_KEY": str(net.dir / "members" / "acme.pem")}
        runner = CliRunner(env=env)

        res = runner.invoke(cli, ["import", *map(str, files), "--batch", "16", "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        statuses = [e["status"] for e in out["events"]]
        assert set(statuses) <= {"recorded", "duplicate"}, [
            e for e in out["events"] if e["status"] not in ("recorded", "duplicate")]
        recorded = {e["eventID"] for e in out["events"] if e["status"] == "recorded"}
        assert recorded == set(expected)  # each distinct event once; repeats across documents are duplicates
        assert len(statuses) == sum(len(prepare_events(json.loads(p.read_text()))) for p in files)

        again = runner.invoke(cli, ["import", *map(str, files), "--json"], catch_exceptions=False)
        assert again.exit_code == 0, again.output
        assert {e["status"] for e in json.loads(again.stdout)["events"]} == {"duplicate"}  # nothing recorded twice
        text = runner.invoke(cli, ["import", str(files[0])], catch_exceptions=False)  # people's output, progress bar
        assert text.exit_code == 0, text.output
        assert "duplicate " in text.stdout and "already recorded as" in text.stdout, text.output

        genesis = net.genesis
        with httpx.Client(timeout=30, auth=SignedReads(net.member_key("acme"))) as http:  # reads are signed
            def heights() -> list[int]:
                return [http.get(u + "/v1/head", headers={"accept": "application/json"}).json()["height"]
                        for u in net.urls]


            wait_for("every node at the same height", lambda: len(set(heights())) == 1)
            # every event by its hash ID, on every node; the own eventIDs resolve too
            for url in net.urls:
                for hid, event in expected.items():
                    r = http.get(f"{url}/v1/events/{quote(hid, safe='')}", headers={"accept": "application/msgpack"})
                    assert r.status_code == 200, (url, hid)
                    receipt = Receipt.from_obj(decode(r.content))
                    verify_receipt(receipt, genesis)
                    assert receipt.record.event == event and event_hash_id(receipt.record.event) == hid
            for own, hid in list(own_ids.items())[:5]:
                r = http.get(f"{net.urls[2]}/v1/events/{quote(own, safe='')}",
                             headers={"accept": "application/msgpack"})
                assert r.status_code == 200
                assert event_hash_id(Receipt.from_obj(decode(r.content)).record.event) == hid, own
            # the same query answered identically by every node (certificates aside)
            for params in ([("eventType", "ObjectEvent"), ("perPage", "7")], [("EQ_bizStep", "shipping")],
                           [("GE_eventTime", "2019-01-01T00:00:00Z"), ("LT_eventTime", "2020-01-01T00:00:00+01:00")]):
                answers = []
                for url in net.urls:
                    pages, token = [], None
                    while True:
                        q = [*params, ("proofs", "true")] + ([("nextPageToken", token)] if token else [])
                        r = http.get(f"{url}/epcis/events", params=q)
                        assert r.status_code == 200, r.text
                        doc = r.json()
                        assert schema.is_valid(doc), list(schema.iter_errors(doc))[:3]
                        for ev, proof in zip(doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"],
                                             doc["rantai:proofs"], strict=True):
                            receipt = Receipt.from_json(json.dumps(proof["receipt"]))
                            verify_receipt(receipt, genesis)
                            assert served_event(receipt) == ev
                            proof["receipt"]["certificate"].pop("votes")
                        pages.append(doc)
                        token = r.headers.get("gs1-next-page-token")
                        if not token:
                            break
                    answers.append(pages)
                assert all(a == answers[0] for a in answers), params

        # export: everything, then one item and a time window; the schema accepts the documents
        proofs = tmp_path / "proofs"
        res = runner.invoke(cli, ["export", "--with-proofs", str(proofs), "-o", str(tmp_path / "all.jsonld")],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
        doc = json.loads((tmp_path / "all.jsonld").read_text())
        assert schema.is_valid(doc), [e.message for e in list(schema.iter_errors(doc))[:5]]
        events = doc["epcisBody"]["eventList"]
        assert {event_hash_id(e) for e in events} == set(expected)  # eventID/recordTime are not hashed
        index = json.loads((proofs / "index.json").read_text())
        assert len(index["events"]) == len(events)
        for entry in index["events"][:10]:  # offline: the genesis file in the proofs directory is enough
            res = runner.invoke(cli, ["verify", str(proofs / entry["receipt"]), "-g", str(proofs / "genesis.json")],
                                catch_exceptions=False)
            assert res.exit_code == 0, res.output
        item = "urn:epc:id:sgtin:0614141.107346.2018"
        res = runner.invoke(cli, ["export", "--item", item, "--from", "2005-01-01T00:00:00Z"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        part = json.loads(res.stdout)
        assert schema.is_valid(part)
        assert part["epcisBody"]["eventList"] and all(
            item in json.dumps(e) for e in part["epcisBody"]["eventList"])
    finally:
        net.stop()
