"""The browser's EPCIS rules (node/explorer/epcis_rules.js) give validate.py's verdict on every event.

Differential: the same events go to ``validate_event`` in Python and to ``validateEvent`` in headless
Chromium, and the verdicts must be equal: both accept, or both refuse with the same
``schema: <path>: <reason>`` text. The events are every event of GS1's EPCIS 2.0 examples (read from
../shared/epcis at test time; that part skips, saying so, where the folder is absent), the project's own
(the demo's journey and the conformance vectors' events) and a few
thousand seeded mutations of them: fields dropped or added, wrong JSON types, unknown or URN-form
vocabulary terms, broken check digits and EPC URIs, bad date-times and time zones, strings and lists
past their bounds, repeated EPCs, deep nesting, numbers out of range or not finite, non-ASCII text.
Each event travels as JSON text (read on both sides so that integers stay integers and floats floats,
with keys in the same order); NaN and infinities, which JSON cannot carry, travel as marked strings.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from rantai.client.format.epcis import digital_link, validate
from rantai.client.format.epcis.validate import EventInvalid, validate_event
from rantai.client.format.records import SignedRecord

from .test_words import fixtures

SHARED = Path(__file__).resolve().parents[3] / "shared" / "epcis" / "examples"
VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SEED = 20261202
MUTANTS = 4000
NONFINITE = "\x00float:"  # a non-finite float, marked for the trip through JSON


def gs1_events() -> list[dict]:
    out: list[dict] = []
    for path in sorted(p for p in SHARED.rglob("*") if p.suffix in (".json", ".jsonld")) if SHARED.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        body = doc.get("epcisBody", {}) if isinstance(doc, dict) else {}
        events = body.get("eventList")
        if events is None and isinstance(body.get("queryResults"), dict):
            events = body["queryResults"].get("resultsBody", {}).get("eventList")
        out += [e for e in events or [] if isinstance(e, dict)]
        if isinstance(body.get("event"), dict):
            out.append(body["event"])
    return out


def own_events() -> list[dict]:
    """The demo's journey (written with client/format/epcis/builders.py) and the vectors' events
    (test_words.fixtures), and each of them again with its EPC URIs as GS1 Digital Link URIs."""
    events = fixtures()

    def linked(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: linked(x) for k, x in v.items()}
        if isinstance(v, list):
            return [linked(x) for x in v]
        if isinstance(v, str) and v.startswith("urn:epc:"):
            try:
                return digital_link(v)
            except ValueError:
                return v
        return v

    return events + [linked(e) for e in events]


# -- mutations ------------------------------------------------------------------------------------
EPC = "urn:epc:id:sgtin:0614141.107346.2017"
DL = "https://id.gs1.org/01/09520123456788/21/1"
TIMES = ["2024-05-01T08:30:00+07:00", "2024-05-01T08:30:00Z", "2024-05-01t08:30:00z", "2024-02-29T00:00:00Z",
         "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00+01:00", "0000-01-01T00:00:00Z",
         "2024-04-31T00:00:00Z", "2024-13-01T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T23:60:00Z",
         "2024-05-01T23:59:60Z", "2024-05-01T08:30:00.123456789Z", "2024-05-01T08:30:00.1234567890Z",
         "2024-05-01T08:30:00+23:59", "2024-05-01T08:30:00+24:00", "2024-05-01T08:30:00+05:75",
         "2024-05-01T08:30:00-23:99", "2024-05-01T08:30:00", "2024-05-01T08:30:00+0\u0663:00",
         "\u0662\u0660\u0662\u0664-05-01T08:30:00Z", "2024-05-01 08:30:00Z", "2024-05-01T08:30:00+07:00\n"]
OFFSETS = ["+07:00", "+14:00", "-14:00", "+14:01", "-13:59", "+13:60", "+7:00", "07:00", "Z", "+0\u0663:00",
           "+07:00\n", "", "+1\u0664:00"]
TERMS = ["shipping", "in_transit", "urn:epcglobal:cbv:bizstep:shipping", "https://ns.gs1.org/cbv/Disp-in_transit",
         "http://gs1.org/voc/Temperature", "Temperature", "ALARM_CONDITION", "po", "owning_party", "location",
         "did_not_occur", "x", "example:step", "urn:example:step", "not a term", "sh\u00efpping", "it's", 'say "hi"',
         "tab\there", "\x7f\x80\u00a0\u00ad\u200b\u2028", "\U0001f600", "a" * 100, "ADD", "OBSERVE", "add",
         "ObjectEvent", "TransformationEvent", "AssociationEvent", "AggregationEvent", "TransactionEvent", "latitude",
         "KGM", "kg", "ABCD", "00ff", "xyz", "https://example.com/%zz", "https://example.com/%2F"]
IDS = [EPC, DL, "urn:epc:id:sscc:0614141.1234567890", "urn:epc:id:sgln:0614141.00777.0",
       "urn:epc:class:lgtin:4012345.012345.998877",
       "urn:epc:idpat:sgtin:4012345.*.*", "urn:epc:id:bic:CSQU3054383", "urn:epc:id:foo:1.2", "urn:epc:class:foo:1",
       "urn:epc:idpat:sgtin:", "urn:epc:raw:96.x3A", "urn:epc:other", "urn:epc:id:sgtin:0614141.107346.20%21",
       "urn:epc:id:sgtin:\u0660\u0666\u0661\u0664\u0661\u0664\u0661.\u0661\u0660\u0667\u0663\u0664\u0666.1",
       "urn:epc:id:sgtin:0614141.107346." + "9" * 240, "https://id.gs1.org/01/09520123456789",
       "https://id.gs1.org/00/106141412345678908", "https://id.gs1.org/414/9520123456788", "https://id.gs1.org/8006/123456789012345678",
       "https://id.gs1.org/8010/ABC%2F1", "https://id.gs1.org/foo", "https://example.com/01/09520123456788",
       "http://id.gs1.org/253/9520123456788abc", "https://id.gs1.org/417/0614141000005", "urn:uuid:1", "nouri", ""]
PRINTABLE = "0123456789.:%#/ A\u0663x-"
DL_KEY = r"/(00|01|253|255|402|414|417|8003|8006|8017|8018)/(\d+)"


def pool_value(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, 1, -1, 1.5, -2.5, 1.0, -0.0, 10**29, 10**30, -(10**30), 10**31, 2**64, 1e308,
        float("nan"), float("inf"), float("-inf"), "", "x", rng.choice(TERMS), rng.choice(IDS), rng.choice(TIMES),
        rng.choice(OFFSETS), [], [1], [EPC], [EPC, EPC], {}, {"id": "urn:epc:id:sgln:0614141.00777.0"}, {"a": 1},
        {"ex:a": [1, {"b": None}]}, "x" * (validate.MAX_TEXT_LENGTH + 1),
        "\U0001f600" * (validate.MAX_TEXT_LENGTH // 2 + 1), "\U0001f600" * (validate.MAX_TEXT_LENGTH + 1),
        "urn:x:" + "a" * validate.MAX_URI_LENGTH, {"epcClass": EPC, "quantity": -1},
        {"type": "Temperature", "value": 3},
    ])


def string_variant(rng: random.Random, s: str) -> str:
    """A character-level change: a digit replaced, a character removed or inserted, a piece repeated."""
    if not s:
        return rng.choice(PRINTABLE)
    i = rng.randrange(len(s))
    op = rng.randrange(4)
    if op == 0:
        digits = [j for j, c in enumerate(s) if c.isdigit()]
        if digits:
            j = rng.choice(digits)
            return s[:j] + str((int(s[j]) + rng.randrange(1, 10)) % 10) + s[j + 1:]
    if op == 1:
        return s[:i] + s[i + 1:]
    if op == 2:
        return s[:i] + rng.choice(PRINTABLE) + s[i:]
    return s + s[i:]


def slots(v: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) inside v."""
    if isinstance(v, dict):
        for k, x in v.items():
            out.append((v, k))
            slots(x, out)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out.append((v, i))
            slots(x, out)
    return out


def nested(depth: int) -> Any:
    v: Any = 1
    for n in range(depth):
        v = [v] if n % 2 else {"ex:n": v}
    return v


def mutate(rng: random.Random, ev: dict) -> dict:
    e = copy.deepcopy(ev)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        all_slots = slots(e, [])
        strings = [(c, k) for c, k in all_slots if isinstance(c[k], str)]
        lists = [(c, k) for c, k in all_slots if isinstance(c[k], list)]
        dicts = [e] + [c[k] for c, k in all_slots if isinstance(c[k], dict)]
        op = rng.randrange(14)
        if op == 0 and all_slots:  # drop
            c, k = rng.choice(all_slots)
            del c[k]
        elif op == 1 and all_slots:  # wrong type or value
            c, k = rng.choice(all_slots)
            c[k] = pool_value(rng)
        elif op == 2 and strings:  # another known-hard string
            c, k = rng.choice(strings)
            c[k] = rng.choice(rng.choice([TIMES, OFFSETS, TERMS, IDS]))
        elif op in (3, 4) and strings:  # a character changed: check digits, EPC forms, times
            c, k = rng.choice(strings)
            c[k] = string_variant(rng, c[k])
        elif op == 5 and lists:  # an item repeated (duplicate EPCs)
            c, k = rng.choice(lists)
            if c[k]:
                c[k].append(copy.deepcopy(rng.choice(c[k])))
        elif op == 6:  # a field added, known or not
            key = rng.choice(["foo", "ex:foo", "type", "action", "ilmd", "parentID", "epcList", "quantityList",
                              "transformationID", "readPoint", "sensorElementList", "persistentDisposition", "id",
                              "set", "unset", "quantity", "uom", "http://example.com/x", "ex:" + "a" * 2050, "bad key:",
                              "errorDeclaration", "childEPCs", "inputEPCList", "outputQuantityList", "value"])
            rng.choice(dicts)[key] = pool_value(rng)
        elif op == 7:  # nesting at the bound
            rng.choice(dicts)[rng.choice(["ex:deep", "cbvmda:x"])] = nested(rng.choice([13, 14, 15, 16, 17]))
        elif op == 8:  # another event type or action
            e[rng.choice(["type", "action"])] = rng.choice(["ObjectEvent", "AggregationEvent", "TransactionEvent",
                                                            "TransformationEvent", "AssociationEvent", "ADD",
                                                            "OBSERVE", "DELETE"])
        elif op == 9 and lists:  # a list emptied or a first item made odd
            c, k = rng.choice(lists)
            c[k] = [] if rng.random() < 0.5 else [pool_value(rng)] + c[k]
        elif op == 10:  # a GS1 Digital Link key's check digit (or another digit) changed
            links = [(c, k) for c, k in strings if re.search(DL_KEY, c[k])]
            if links:
                c, k = rng.choice(links)
                m = re.search(DL_KEY, c[k])
                assert m is not None
                j = rng.choice([m.end(2) - 1, m.start(2) + rng.randrange(len(m.group(2)))])
                c[k] = c[k][:j] + str((int(c[k][j]) + rng.randrange(1, 10)) % 10) + c[k][j + 1:]
        elif op == 11:  # a number (a quantity, a sensor value) at and past its bounds
            numeric = [(c, k) for c, k in all_slots if k in ("quantity", "value", "minValue", "sDev")
                       or type(c[k]) in (int, float)]
            if numeric:
                c, k = rng.choice(numeric)
                c[k] = rng.choice([-1, -0.5, -0.0, 0, 10**30 - 1, 10**30, -(10**30) + 1, float("nan"), float("inf"),
                                   1e308, True, "5", None])
        elif op == 12:  # rules between fields: ILMD and action, persistentDisposition, @context, errorDeclaration
            key, value = rng.choice([
                ("ilmd", {"cbvmda:lotNumber": "L1"}), ("ilmd", {"lotNumber": "L1"}), ("ilmd", {}),
                ("persistentDisposition", {}), ("persistentDisposition", {"set": []}),
                ("persistentDisposition", {"set": ["recalled", "recalled"]}),
                ("persistentDisposition", {"unset": ["completeness_inferred"], "x": 1}),
                ("@context", ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"] * 2),
                ("@context", ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld", {"ex": "https://e.com/"}, 3]),
                ("errorDeclaration", {"declarationTime": rng.choice(TIMES), "reason": rng.choice(TERMS)}),
                ("errorDeclaration", {"reason": "did_not_occur", "correctiveEventIDs": ["urn:uuid:1", "nouri"]}),
                ("certificationInfo", ["https://example.com/cert", rng.choice(IDS)]),
                ("eventTimeZoneOffset", rng.choice(OFFSETS)), ("eventTime", rng.choice(TIMES)),
                ("recordTime", rng.choice(TIMES)),
            ])
            e[key] = value
            if rng.random() < 0.5:
                e["action"] = rng.choice(["ADD", "OBSERVE", "DELETE"])
        elif op == 13:  # an identifier swapped for a hard one
            ids = [(c, k) for c, k in strings if c[k].startswith(("urn:", "http"))]
            if ids:
                c, k = rng.choice(ids)
                c[k] = rng.choice(IDS)
    return e


# text as Python's repr() spells it in messages: quotes, escapes, what str.isprintable() says
REPR = ["it's", 'say "hi"', "both ' and \"", "back\\slash", "\xff\u0100", "\ud7ff\ue000", "\U000e0001", "\u0378",
        "\U0010ffff", "e\u0301", "\U0001f600" * 81, "\x00\x1f", "\u3000\u2029\u061c"]


def mutants(bases: list[dict]) -> list[dict]:
    rng = random.Random(SEED)
    out = [mutate(rng, rng.choice(bases)) for _ in range(MUTANTS)]
    base = next(b for b in bases if b.get("type") == "ObjectEvent" and "epcList" in b)
    for key, values in (("bizStep", TERMS + REPR), ("disposition", IDS), ("eventTime", TIMES),
                        ("eventTimeZoneOffset", OFFSETS), ("epcList", [[i] for i in IDS] + [[t, t] for t in REPR])):
        for value in values:
            e = copy.deepcopy(base)
            e[key] = value
            out.append(e)
    big = copy.deepcopy(base)
    big["epcList"] = [f"urn:epc:id:sgtin:0614141.107346.{n}" for n in range(validate.MAX_LIST_ITEMS + 1)]
    out.append(big)
    big = copy.deepcopy(big)
    big["epcList"] = big["epcList"][: validate.MAX_LIST_ITEMS - 1] + [big["epcList"][5]]
    out.append(big)
    return out


# -- running both sides ---------------------------------------------------------------------------
def marked(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return NONFINITE + repr(v)
    if isinstance(v, dict):
        return {k: marked(x) for k, x in v.items()}
    if isinstance(v, list):
        return [marked(x) for x in v]
    return v


def python_verdict(ev: Any) -> str | None:
    try:
        validate_event(ev)
    except EventInvalid as e:
        return str(e)
    return None


JS = """async ([texts, mark]) => {
  const c = await import('/explorer/canonical.js');
  const r = await import('/explorer/epcis_rules.js');
  const floats = { nan: NaN, inf: Infinity, '-inf': -Infinity };
  const unmark = (v) => {
    if (typeof v === 'string' && v.startsWith(mark)) return new c.F64(floats[v.slice(mark.length)]);
    if (v instanceof Map) { for (const [k, x] of v) v.set(k, unmark(x)); return v; }
    if (Array.isArray(v)) return v.map(unmark);
    return v;
  };
  return texts.map((t) => {
    try { r.validateEvent(unmark(c.parseJson(t))); return null; }
    catch (e) { return e.rule === 'schema' ? e.message : `not an EventInvalid: ${e.name}: ${e.message}`; }
  });
}"""


def browser_verdicts(page: Any, events: list[Any]) -> list[str | None]:
    texts = [json.dumps(marked(e)) for e in events]
    out: list[str | None] = []
    for i in range(0, len(texts), 500):
        out += page.evaluate(JS, [texts[i:i + 500], NONFINITE])
    return out


def disagreements(page: Any, events: list[Any]) -> list[str]:
    events = [json.loads(json.dumps(e)) for e in events]  # what the browser reads: JSON's view of the event
    got = browser_verdicts(page, events)
    wrong = []
    for e, g in zip(events, got, strict=True):
        w = python_verdict(e)
        if w != g:
            wrong.append(f"python {w!r}, browser {g!r}: {json.dumps(e)[:600]}")
    return wrong


def test_gs1_examples(page):
    events = gs1_events()
    if not events:
        pytest.skip(f"GS1's EPCIS 2.0 examples are not at {SHARED} (test data kept outside the repo)")
    assert len(events) > 30
    wrong = disagreements(page, events)
    assert not wrong, "\n".join(wrong[:5])
    assert any(python_verdict(e) is None for e in events)


def test_own_events(page):
    events = own_events()
    assert len(events) > 20
    wrong = disagreements(page, events)
    assert not wrong, "\n".join(wrong[:5])


def test_mutations(page):
    bases = own_events() + gs1_events()
    events = mutants(bases)
    wrong = disagreements(page, events)
    verdicts = [python_verdict(json.loads(json.dumps(e))) for e in events]
    refused = [v for v in verdicts if v is not None]
    # the mutations reach many rules, not one: both verdicts, and many distinct reasons
    assert len(refused) > MUTANTS // 2 and len(events) - len(refused) > 50
    assert len({v.split(": ", 2)[-1] for v in refused}) > 60
    assert not wrong, f"{len(wrong)} of {len(events)} differ:\n" + "\n".join(wrong[:8])


def test_schema_vectors_fail_with_the_references_text(page, static_url):
    """A record whose event breaks a rule fails in verify.js naming `schema` and the path, word for word."""
    doc = json.loads((VECTORS / "records.json").read_text(encoding="utf-8"))
    genesis_text = (VECTORS / doc["genesis"]).read_text(encoding="utf-8")
    got = page.evaluate("async ([doc, g]) => (await import('/tests/explorer/vectors.mjs')).runFile('records', doc, g)",
                        [doc, genesis_text])
    cases = [c for c in doc["cases"] if c.get("rule") == "schema"]
    assert len(cases) >= 2
    for case in cases:
        record = SignedRecord.from_bytes(bytes.fromhex(case["record"]))
        want = python_verdict(record.event)
        assert want is not None and got[case["name"]]["message"] == want
