"""An item named by 25,000 committed events, traced completely through pages (issue 14, item 3).

Goal: ``history()`` and ``rantai trace`` follow every page of ``GET /v1/items/{item}/history`` (1,000
receipts a page, pinned to the first page's height), verify each entry, and the f+1 cross-check works
across pages. Method: a real 4-validator devnet of subprocesses on loopback; the chain is built with
batched submissions (1,000 records a request, two members); then the whole history is read three ways
and compared with what was submitted. No timed assertions.
"""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from rantai.client.cli import cli
from rantai.client.http import Client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

devnet_mod = pytest.importorskip("rantai.client.devnet")

from ports import free_base_port  # noqa: E402

LOCATION = "urn:epc:id:sgln:0614141.07346.1234"  # a warehouse: every event happens there
N = 25_000


def event(i: int) -> dict:
    return {"type": "ObjectEvent", "eventTime": f"2025-{1 + i // 86400 % 12:02d}-01T"
            f"{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z", "eventTimeZoneOffset": "+00:00",
            "epcList": [f"urn:epc:id:sgtin:0614141.107346.{i}"], "action": "OBSERVE", "bizStep": "storing",
            "bizLocation": {"id": LOCATION}}


@pytest.fixture
def devnet(tmp_path):
    net = devnet_mod.Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4),
                            params={"batch_timeout_ms": 20, "view_change_timeout_ms": 5000})
    net.start()
    try:
        net.wait_ready(timeout=60)
        yield net
    finally:
        net.stop()


def test_25000_events_traced_through_pages(devnet):
    genesis, urls = devnet.genesis, devnet.urls
    submitted: list[bytes] = []
    half = N // 2
    t0 = time.perf_counter()  # figures printed for docs and reports (-s), never asserted
    for member, events in (("acme", range(half)), ("kopi-co", range(half, N))):
        with Client(genesis, urls, devnet.member_key(member), timeout=120.0, wait_timeout=300.0) as client:
            receipts = client.submit_many([event(i) for i in events], batch=1000, wait=True)
            submitted += [r.record_id for r in receipts]
    assert len(set(submitted)) == N
    t1 = time.perf_counter()

    with Client(genesis, urls, devnet.member_key("acme"), timeout=120.0) as client:  # reads are signed
        hist = client.history(LOCATION)
        t2 = time.perf_counter()
        assert len(hist) == N  # more than the 10,000 the unpaged answer stopped at
        assert sorted(r.id for r in hist) == sorted(submitted)
        assert [(r.height, r.index) for r in hist] == sorted((r.height, r.index) for r in hist)
        assert len({r.node for r in hist}) >= 1 and len({r.height for r in hist}) > 1
        t3 = time.perf_counter()
        crossed = client.history(LOCATION, cross_check=True)
        assert [r.id for r in crossed] == [r.id for r in hist]
        t4 = time.perf_counter()

    cfg = devnet.dir / "client.toml"
    cfg.write_text(f'genesis = "{devnet.genesis_path}"\nnodes = {json.dumps(urls)}\ntimeout = 120\n'
                   f'key = "{devnet.member_key_path("acme")}"\n')  # reads are signed
    result = CliRunner().invoke(cli, ["trace", LOCATION, "--cross-check", "--json", "--config", str(cfg)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)["steps"]
    assert len(steps) == N
    assert [s["record_id"] for s in steps] == [r.id.hex() for r in hist]
    print(f"\n{N} events: built in {t1 - t0:.1f} s, history() {t2 - t1:.1f} s, cross-checked {t4 - t3:.1f} s, "
          f"trace --cross-check {time.perf_counter() - t4:.1f} s")
