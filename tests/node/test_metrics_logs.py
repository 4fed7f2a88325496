"""/metrics (prometheus-client, a registry per app) and the structured log, in one process (issue 13, item 3)."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rantai.client.format.encoding import encode
from rantai.node import logs
from rantai.node.app import create_app
from rantai.node.config import ConfigError, NodeConfig
from rantai.node.driver import Node
from rantai.node.metrics import version

from .conftest import make_net


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_two_nodes_in_one_process_each_expose_their_own_metrics(tmp_path):
    net = make_net(1)  # one validator: it commits alone

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[0], data_dir=tmp_path / "a", tick_ms=5)
        other = Node(genesis=make_net().genesis, signer=make_net().validators[1], data_dir=tmp_path / "b")
        app, app2 = create_app(node, manage_lifecycle=False), create_app(other, manage_lifecycle=False)
        await node.start()
        await other.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
                ok = encode({"records": [net.record().raw, net.record().raw]})
                r = await c.post("/v1/records?wait=commit", content=ok,
                                 headers={"content-type": "application/msgpack"})
                assert r.status_code == 200
                forged = net.record(net.stranger).raw  # not a member: refused by rule
                r = await c.post("/v1/records", content=encode({"records": [forged]}),
                                 headers={"content-type": "application/msgpack"})
                assert r.status_code == 401
                r = await c.get("/metrics")
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
                mine = samples(r.text)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app2), base_url="http://n") as c:
                theirs = samples((await c.get("/metrics")).text)
        finally:
            await node.stop()
            await other.stop()
        height = mine[("rantai_height", ())]
        assert height >= 1 and mine[("rantai_commits_total", ())] == height
        assert mine[("rantai_records_admitted_total", ())] == 2
        assert mine[("rantai_records_refused_total", (("rule", "unknown member"),))] == 1
        assert 1 <= mine[("rantai_disk_sync_seconds_count", (("kind", "block"),))] <= height  # runs of blocks
        route = (("method", "POST"), ("route", "/v1/records"))
        assert mine[("rantai_http_request_seconds_count", route)] == 2
        assert mine[("process_resident_memory_bytes", ())] > 0
        info = [dict(labels) for name, labels in mine if name == "rantai_build_info"]
        assert info == [{"chain_id": "test-chain", "name": "v0", "node": net.validators[0].id,
                         "version": version()}]
        # the other app's registry saw none of this
        assert theirs[("rantai_height", ())] == 0 and theirs[("rantai_commits_total", ())] == 0
        assert ("rantai_http_request_seconds_count", route) not in theirs
        assert theirs[("rantai_peers", ())] == 3 and theirs[("rantai_view", ())] == 0

    asyncio.run(main())


def test_json_lines_carry_the_event_and_its_fields():
    record = logging.LogRecord("rantai.node.events", logging.WARNING, __file__, 1, "view change %d -> %d: %s",
                               (0, 1, "timeout: x"), None)
    record.event, record.fields = "view-change", {"view": 1, "reason": "timeout: x"}
    line = logs.JsonFormatter("v2").format(record)
    obj = json.loads(line)
    assert "\n" not in line
    assert obj["msg"] == "view change 0 -> 1: timeout: x" and obj["node"] == "v2" and obj["level"] == "warning"
    assert obj["event"] == "view-change" and obj["reason"] == "timeout: x" and obj["ts"].endswith("Z")


def test_refused_records_are_logged_once_per_rule_per_window(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    watch = logs.Watch.__new__(logs.Watch)
    watch._refused_window = {}
    caplog.set_level(logging.INFO, logger="rantai.node.events")
    for _ in range(50):
        watch._refused_line("signature does not verify", "record: bad")
    watch._refused_line("unknown member", "record: who")
    assert [r.fields["rule"] for r in caplog.records] == ["signature does not verify", "unknown member"]
    now[0] += logs.REFUSED_LOG_S
    watch._refused_line("signature does not verify", "record: bad again")
    last = caplog.records[-1]
    assert last.fields["suppressed"] == 49 and "49 more" in last.getMessage()


def test_log_table_in_the_config():
    base = {"id": "x", "key": "k", "genesis": "g", "data_dir": "d"}
    cfg = NodeConfig.from_obj({**base, "log": {"level": "debug", "format": "json"}})
    assert (cfg.log_level, cfg.log_format) == ("debug", "json")
    assert NodeConfig.from_obj(cfg.to_obj()).log_format == "json"
    assert NodeConfig.from_obj(base).log_level == "info"
    with pytest.raises(ConfigError, match="log.format"):
        NodeConfig.from_obj({**base, "log": {"format": "xml"}})
    with pytest.raises(ConfigError, match="log.level"):
        NodeConfig.from_obj({**base, "log": {"level": "loud"}})


def test_a_failed_disk_write_is_logged_once_and_counted(tmp_path, caplog):
    net = make_net(1)

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[0], data_dir=tmp_path / "a")
        app = create_app(node, manage_lifecycle=False)
        await node.start()
        try:
            def persist(entries):  # a write the disk refuses, as a full one does
                raise OSError(28, "No space left on device")

            caplog.set_level(logging.INFO, logger="rantai.node.events")
            with pytest.raises(OSError):
                await node._on_disk(persist, [])
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
                text = (await c.get("/metrics")).text
                status = (await c.get("/v1/status")).json()
        finally:
            await node.stop()
        lines = [r for r in caplog.records if getattr(r, "event", None) == "storage-error"]
        assert len(lines) == 1 and "No space left on device" in lines[0].getMessage()
        assert samples(text)[("rantai_storage_errors_total", ())] == 1
        assert samples(text)[("rantai_disk_sync_seconds_count", (("kind", "votes"),))] >= 1
        assert status["storage_errors"] == 1

    asyncio.run(main())


def test_doctor_names_a_full_disk_and_a_skewed_clock(tmp_path):
    """``diagnose`` on what a real node answers, with the disk and clock an unlucky host would report."""
    from rantai.node.doctor import Observation, diagnose

    net = make_net(1)

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[0], data_dir=tmp_path / "a")
        app = create_app(node, manage_lifecycle=False)
        await node.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
                return (await c.get("/v1/status")).json(), (await c.get("/v1/config")).json()
        finally:
            await node.stop()

    status, config = asyncio.run(main())
    healthy = diagnose(Observation("http://n", status, config))
    assert [f.cause for f in healthy] == ["idle"] and not healthy[0].blocking
    full = {**status, "disk": {"free_bytes": 10 * 2**20, "total_bytes": 100 * 2**30}}
    found = diagnose(Observation("http://n", full, config))
    assert found[0].cause == "disk-full" and "10 MiB free" in found[0].text
    # four validators: this one's clock 20 s ahead of the three others' (max_clock_skew_ms is 15 s)
    four = make_net(4)
    cfg4 = {**config, "validators": [{"id": v.id, "name": f"v{i}", "url": f"http://v{i}"}
                                     for i, v in enumerate(four.validators)]}
    me = {**status, "node": four.validators[0].id, "peers": []}
    peers = {v.id: {**status, "node": v.id} for v in four.validators[1:]}
    for ahead, blocking in ((20_000.0, True), (-9_000.0, False), (1_000.0, None)):
        offsets = {four.validators[0].id: ahead, **{v.id: 0.0 for v in four.validators[1:]}}
        found = diagnose(Observation("http://n", me, cfg4, peers=peers, offsets_ms=offsets))
        skew = [f for f in found if f.cause == "clock-skew"]
        if blocking is None:
            assert not skew, found  # a second apart: nothing to say
        else:
            assert skew and skew[0].blocking is blocking, found
            assert f"{abs(ahead) / 1000:.1f} s {'ahead of' if ahead > 0 else 'behind'}" in skew[0].text
