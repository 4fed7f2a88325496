"""The explorer's wording (node/explorer/words.js) is client/trace.py's: both run on the same events.

The events are the demo's whole coffee journey (client/demo.py) and the events of the conformance
vectors, each described from the point of view of no item and of every item it names.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rantai.client import trace
from rantai.client.demo import journey, last_mile
from rantai.client.format.blocks import Block
from rantai.client.format.records import SignedRecord

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def fixtures() -> list[dict]:
    start = datetime(2026, 1, 5, 8, 0, tzinfo=timezone(timedelta(hours=7)))
    steps, bag, pallet, _sacks = journey("4242", start)
    more, sale = last_mile("kafe-senja", bag, pallet, start + timedelta(days=30))
    events = [s.event for s in [*steps, *more, sale]]
    doc = json.loads((VECTORS / "records.json").read_text(encoding="utf-8"))
    for case in doc["cases"]:
        try:
            events.append(SignedRecord.from_bytes(bytes.fromhex(case["record"])).event)
        except Exception:  # noqa: BLE001 - malformed vectors carry no event to describe
            continue
    for case in json.loads((VECTORS / "blocks.json").read_text(encoding="utf-8"))["cases"]:
        try:
            events += [r.event for r in Block.from_bytes(bytes.fromhex(case["block"])).records if not r.is_change]
        except Exception:  # noqa: BLE001
            continue
    return events


def test_explorer_words_are_the_trace_words(browser, static_url):
    events = fixtures()
    want = [{"items": {i: trace.describe(e, i) for i in trace.identifiers(e)}, "none": trace.describe(e),
             "identifiers": sorted(trace.identifiers(e)),
             "where": trace._where(e)} for e in events]
    page = browser.new_page()
    try:
        page.goto(f"{static_url}/tests/vectors/README.md")
        got = page.evaluate("""async (events) => {
            const w = await import('/explorer/words.js');
            return events.map((e) => ({
              items: Object.fromEntries(w.identifiers(e).map((i) => [i, w.describe(e, i)])),
              none: w.describe(e), identifiers: w.identifiers(e).sort(), where: w.where(e)}));
        }""", events)
    finally:
        page.close()
    assert len(events) > 20
    assert got == want
