"""Smoke runs of ``rantai bench`` in each shape, tiny, on real local validators.

Goal: the benchmark keeps working and its JSON stays complete and self-consistent (every figure there,
the records asked for committed, the chain it leaves auditing clean, the figures agreeing with each
other). Method: run each shape once, small, on free loopback ports in a temporary directory, and check
what it reports — never how fast (the figures belong in docs/performance.md, measured by the real
``rantai bench``).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rantai.client.cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def bench(tmp_path, port: int, *args: str) -> tuple[dict, str]:
    out = tmp_path / "out.json"
    res = CliRunner().invoke(cli, ["bench", *args, "--dir", str(tmp_path / "bench"), "--base-port", str(port),
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text()), res.output


def check_load_generator(lg: dict, committed: int, seconds: float, processes: int) -> None:
    assert lg["processes"] == processes and lg["http"].startswith("leanhttp")
    assert lg["cpu_s"] >= 0
    assert lg["cpu_ms_per_record"] == pytest.approx(1000 * lg["cpu_s"] / committed, abs=0.01 * 1000 / committed + 1e-3)
    assert lg["cores"] == pytest.approx(lg["cpu_s"] / seconds, abs=0.02)


def test_batched_reports_every_figure_consistently(tmp_path, free_base_port):
    out, _ = bench(tmp_path, free_base_port(4), "--records", "2000", "--batch", "200", "--clients", "4")
    assert out["shape"] == "batched" and out["records_committed"] == 2000
    for key in ("records_per_s", "throughput_over_ceiling", "latency_ms", "node_cpu_ms_per_record", "load_generator",
                "rss_mb_per_node", "disk", "audit", "verify_ceiling", "signing", "blocks", "records_per_block"):
        assert out[key] is not None, key
    assert out["audit"]["ok"] and out["audit"]["records"] == 2000 and out["audit"]["blocks"] == out["blocks"]
    assert out["records_per_block"] == round(2000 / out["blocks"], 1)
    assert out["records_per_s"] == pytest.approx(2000 / out["seconds"], rel=0.01)
    lat = out["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert out["node_cpu_ms_per_record"] > 0 and len(out["rss_mb_per_node"]) == 4
    assert len(out["disk"]["bytes_per_node"]) == 4 and all(b > 0 for b in out["disk"]["bytes_per_node"])
    check_load_generator(out["load_generator"], 2000, out["seconds"], processes=1)


def test_closed_loop_prints_the_peers_line(tmp_path, free_base_port):
    out, output = bench(tmp_path, free_base_port(4), "--shape", "closed-loop", "--records", "400", "--clients", "2",
                        "--inflight", "4", "--seconds", "3", "--no-audit")
    line = json.loads(output.strip().splitlines()[-1])
    assert set(line) == {"system", "nodes", "payload_bytes", "ops", "seconds", "ops_per_s", "p50_ms", "p99_ms", "notes"}
    assert line["nodes"] == 4 and line["payload_bytes"] == 300 and 0 < line["ops"] <= 400
    assert line["ops"] == out["records_committed"] and line["p50_ms"] == out["latency_ms"]["p50"]
    assert out["node_cpu_ms_per_record"] > 0 and isinstance(out["client_errors"], dict)
    check_load_generator(out["load_generator"], out["records_committed"], out["seconds"], processes=2)


def test_validator_shape_resyncs_the_chain_and_reuses_it(tmp_path, free_base_port):
    port = free_base_port(4)
    out, _ = bench(tmp_path, port, "--shape", "validator", "--records", "2000", "--clients", "4", "--batch", "250")
    assert out["shape"] == "validator" and out["records"] == 2000 and out["blocks"] >= 1
    resync, live = out["resync"], out["live_path"]
    for key in ("records_per_s", "records_per_s_incl_start", "cpu_us_per_record", "cores_used",
                "records_per_s_if_all_cores", "serving_validators_cpu_s"):
        assert resync[key] is not None and resync[key] > 0, key
    assert resync["cpu_s"] >= resync["cpu_s_start_up"] >= 0
    assert resync["cpu_us_per_record"] == pytest.approx(1e6 * (resync["cpu_s"] - resync["cpu_s_start_up"]) / 2000,
                                                        rel=0.05)
    assert resync["catch_up"]["records"] > 0  # the node's own count (its catch-up may come in more than one run)
    # the live path replays v0's whole chain (the records a second added during the resync included)
    assert live["records"] >= 2000 and live["blocks"] >= out["blocks"] and live["verify_workers"] >= 1
    for key in ("records_per_s", "cpu_us_per_record", "records_per_s_if_all_cores"):
        assert live[key] is not None and live[key] > 0, key
    assert sum(w["records"] for w in live["windows"]) == live["records"]  # CPU per record per window of height
    # the resynced validator's own store audits clean (a record a second was added meanwhile)
    assert out["audit"]["ok"] and out["audit"]["records"] >= 2000 and out["audit"]["blocks"] >= out["blocks"]
    again, _ = bench(tmp_path, port, "--shape", "validator", "--records", "2000", "--no-audit")
    assert again["records"] >= 2000 and again["blocks"] >= out["blocks"] and "audit" not in again
    assert again["live_path"]["records"] >= again["records"]
