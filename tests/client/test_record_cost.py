"""``rantai bench --shape record-cost`` runs the validator's per-record stages on real signed records.

No timing is asserted (the machine is shared): the test checks the command runs every stage on both
record sets and reports a figure for each, so the documented command keeps working.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from rantai.client.bench import bench_command
from rantai.client.bench_record_cost import record_cost

STAGES = {"decode", "from_bytes", "unsigned_bytes", "signature (libsodium)", "validate_event", "event_hash",
          "check_record", "block parse (records unseen)", "block parse (records admitted)"}


def test_record_cost_reports_every_stage_for_both_record_sets():
    result = record_cost(count=40, rounds=4)
    assert set(result["us_per_record"]) == {"bench", "demo"}
    for stages in result["us_per_record"].values():
        assert STAGES <= set(stages)
        assert all(stages[s] > 0 for s in STAGES)
        assert stages["bytes per record (mean)"] > 300


def test_bench_command_record_cost_shape_prints_json():
    out = CliRunner().invoke(bench_command, ["--shape", "record-cost", "--records", "20"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["shape"] == "record-cost"
