"""Fixtures for the EPCIS tests (official GS1 schema validators, read from ../shared/epcis)."""

from __future__ import annotations

import pytest
from epcis_testdata import SKIP_REASON, official_validator, shared_available


@pytest.fixture(scope="session")
def official_event_validator():
    if not shared_available():
        pytest.skip(SKIP_REASON)
    return official_validator("event")


@pytest.fixture(scope="session")
def official_document_validator():
    if not shared_available():
        pytest.skip(SKIP_REASON)
    return official_validator("document")
