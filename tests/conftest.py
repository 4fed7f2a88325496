"""Shared fixtures: small deterministic networks of keys and a genesis to sign against."""

from __future__ import annotations

import hashlib

import pytest

from rantai.client.format.genesis import Genesis
from rantai.consensus.crypto import Signer


def seeded_signer(label: str) -> Signer:
    """A repeatable key: tests and worked examples need the same bytes every run."""
    return Signer.from_seed(hashlib.sha256(label.encode()).digest())


class Net:
    """Four validators and three members, all with seeded keys."""

    def __init__(self, n_validators: int = 4) -> None:
        self.validators = [seeded_signer(f"validator-{i}") for i in range(n_validators)]
        self.members = {
            "gayo-coop": seeded_signer("member-gayo-coop"),
            "kopi-roastery": seeded_signer("member-kopi-roastery"),
            "auditor": seeded_signer("member-auditor"),
        }
        roles = {"gayo-coop": ["submitter"], "kopi-roastery": ["submitter", "admin"], "auditor": ["auditor"]}
        self.genesis = Genesis.build(
            "rantai-test",
            [(v.public_key, f"validator-{i}", f"http://127.0.0.1:{7100 + i}") for i, v in enumerate(self.validators)],
            [(s.public_key, name, name.replace("-", " ").title(), roles[name]) for name, s in self.members.items()],
        )


@pytest.fixture(scope="session")
def net() -> Net:
    return Net()


@pytest.fixture
def free_base_port():
    from ports import free_base_port

    return free_base_port
