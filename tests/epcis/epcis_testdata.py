"""Where the GS1 official EPCIS 2.0 test data lies, and helpers to read it.

GS1's official EPCIS 2.0 JSON schema and examples are test data only: they are
read from ``../shared/epcis`` next to the repository (never copied into it).
Tests that need them are skipped, with the reason, when that folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "epcis"
SCHEMA_PATH = SHARED / "schema" / "EPCIS-JSON-Schema.json"
EXAMPLES = SHARED / "examples"
URN_CBV_EXAMPLE = "WithEventHashID/event_with_identical_hash_id_7.json"

SKIP_REASON = f"GS1 official EPCIS 2.0 schema/examples not found at {SHARED} (test data kept outside the repo)"


def shared_available() -> bool:
    return SCHEMA_PATH.is_file() and EXAMPLES.is_dir()


requires_shared = pytest.mark.skipif(not shared_available(), reason=SKIP_REASON)


def example_files() -> list[Path]:
    if not shared_available():
        return []
    return sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".json", ".jsonld"))


def events_of(doc: dict) -> list[dict]:
    body = doc.get("epcisBody", {})
    if "eventList" in body:
        return body["eventList"]
    if "queryResults" in body:
        return body["queryResults"]["resultsBody"]["eventList"]
    return []


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_validators: dict = {}


def official_validator(kind: str = "document"):
    """A jsonschema Draft7Validator (with format checks) for the official schema.

    kind="document": the whole schema (documents); kind="event": one event as
    it appears in a document's eventList (``#/definitions/EPCIS-Document-Event``).
    """
    if kind in _validators:
        return _validators[kind]
    from jsonschema import Draft7Validator, FormatChecker

    schema = load(SCHEMA_PATH)
    if kind == "event":
        schema = {"$ref": "#/definitions/EPCIS-Document-Event", "definitions": schema["definitions"]}
    v = Draft7Validator(schema, format_checker=FormatChecker())
    _validators[kind] = v
    return v


