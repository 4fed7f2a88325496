"""Shared fixtures for the node tests: a small in-memory network (keys + genesis) and record factories."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import Signer
from rantai.client.format.records import SignedRecord, sign_event

_counter = itertools.count()


def event(serial: int | None = None, epc: str | None = None) -> dict:
    serial = next(_counter) if serial is None else serial
    return {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": [epc or f"urn:epc:id:sgtin:0614141.107346.{serial}"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }


@dataclass
class Net:
    genesis: Genesis
    validators: list[Signer]
    acme: Signer  # submitter
    auditor: Signer  # member without the submitter role
    stranger: Signer  # not a member

    def record(self, signer: Signer | None = None, **kw) -> SignedRecord:
        return sign_event(signer or self.acme, self.genesis, event(**kw))


def make_net(n: int = 4, params: dict | None = None, base_port: int = 7100, read_policy: str | None = None) -> Net:
    validators = [Signer.from_seed(bytes([i + 1]) * 32) for i in range(n)]
    acme, auditor, stranger = (Signer.from_seed(bytes([100 + i]) * 32) for i in range(3))
    genesis = Genesis.build(
        "test-chain",
        [(v.public_key, f"v{i}", f"http://127.0.0.1:{base_port + i}") for i, v in enumerate(validators)],
        [
            (acme.public_key, "acme", "acme", ["submitter"]),
            (auditor.public_key, "watchdog", "watchdog", ["auditor"]),
        ],
        params=params,
        read_policy=read_policy,
    )
    return Net(genesis, validators, acme, auditor, stranger)


@pytest.fixture
def net() -> Net:
    return make_net()
