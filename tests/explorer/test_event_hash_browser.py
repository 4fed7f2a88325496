"""The browser's CBV 2.0 event hash (node/explorer/event_hash.js) is the Python's (client/format/epcis/event_hash.py).

Both compute the pre-hash string of the same events: the demo's journey, every event in the conformance
vectors, and every event of the GS1 EPCIS 2.0 examples in ../shared/epcis/examples (when present). The
vocabulary the browser expands bare terms from (node/explorer/vocabulary.js) must be validate.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

from rantai.client.format.epcis import validate
from rantai.client.format.epcis.event_hash import event_prehash, uniqueness_digest

from .test_words import fixtures

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "epcis" / "examples"
VOCABULARY = {"bizStep": "BIZ_STEPS", "disposition": "DISPOSITIONS", "bizTransactionType": "BIZ_TRANSACTION_TYPES",
              "sourceDestType": "SOURCE_DEST_TYPES", "component": "COMPONENTS", "measurementType": "MEASUREMENT_TYPES",
              "exception": "SENSOR_ALERT_TYPES", "errorReason": "ERROR_REASONS", "eventType": "EVENT_TYPES",
              "action": "ACTIONS"}


def events() -> list[dict]:
    out = fixtures()
    for path in sorted(EXAMPLES.glob("*.json*")) if EXAMPLES.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        body = doc.get("epcisBody", {}) if isinstance(doc, dict) else {}
        out += [e for e in body.get("eventList", []) if isinstance(e, dict)]
        if isinstance(body.get("event"), dict):
            out.append(body["event"])
    return out


def test_the_browser_vocabulary_is_validate_pys(browser, static_url):
    page = browser.new_page()
    try:
        page.goto(f"{static_url}/tests/vectors/README.md")
        got = page.evaluate("""async () => Object.fromEntries(
            Object.entries((await import('/explorer/vocabulary.js')).TERMS).map(([k, s]) => [k, [...s].sort()]))""")
    finally:
        page.close()
    assert got == {k: sorted(getattr(validate, name)) for k, name in VOCABULARY.items()}


def test_the_browser_event_hash_is_the_pythons(browser, static_url):
    evs = events()
    texts = [json.dumps(e, ensure_ascii=False) for e in evs]
    page = browser.new_page()
    try:
        page.goto(f"{static_url}/tests/vectors/README.md")
        got = page.evaluate("""async (texts) => {
            const h = await import('/explorer/event_hash.js');
            const c = await import('/explorer/canonical.js');
            const out = [];
            for (const t of texts) {
              const e = c.parseJson(t);
              try { out.push([h.eventPrehash(e), c.hex(await h.uniquenessDigest(e))]); }
              catch (err) { out.push(['unhashable: ' + err.message, '']); }
            }
            return out;
        }""", texts)
    finally:
        page.close()
    assert len(evs) > 30
    want = [[event_prehash(e), uniqueness_digest(e).hex()] for e in evs]
    wrong = [(w, g) for w, g in zip(want, got, strict=True) if w != g]
    assert not wrong, wrong[:3]
