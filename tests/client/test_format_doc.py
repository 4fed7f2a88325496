"""docs/format.md's worked example is recomputed from the code: the document cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from worked_example import compute

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"


def test_worked_example_matches_code():
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```text worked-example\n(.*?)```", text, re.S)
    assert block, "docs/format.md has no worked-example block"
    stated = dict(line.split(" = ", 1) for line in block.group(1).strip().splitlines())
    assert stated == compute()
