"""Keys and a genesis for the EPCIS API tests (seeded, so every run signs the same bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import Signer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "epcis"
EXAMPLES = SHARED / "examples"
SCHEMA_PATH = SHARED / "schema" / "EPCIS-JSON-Schema.json"


@dataclass
class Net:
    genesis: Genesis
    validators: list[Signer]
    acme: Signer  # a member with the submitter role


def make_net(n: int = 4, params: dict | None = None, base_port: int = 7100, read_policy: str | None = None) -> Net:
    validators = [Signer.from_seed(bytes([i + 61]) * 32) for i in range(n)]
    acme = Signer.from_seed(bytes([161]) * 32)
    genesis = Genesis.build(
        "epcis-test",
        [(v.public_key, f"v{i}", f"http://127.0.0.1:{base_port + i}") for i, v in enumerate(validators)],
        [(acme.public_key, "acme", "acme", ["submitter"])],
        params=params,
        read_policy=read_policy,
    )
    return Net(genesis, validators, acme)


def official_validator():
    """GS1's official EPCIS 2.0 JSON schema (draft-07, with format checks), read from ../shared/epcis."""
    import json

    from jsonschema import Draft7Validator, FormatChecker

    return Draft7Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")), format_checker=FormatChecker())


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".json", ".jsonld")) if EXAMPLES.is_dir() else []
