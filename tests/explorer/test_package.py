"""The explorer's files ship in the package: pyproject's package-data patterns match every one of them."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_data_ships_every_explorer_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "rantai.node.explorer" in config["packages"]
    patterns = config["package-data"]["rantai.node.explorer"]
    files = [p.name for p in (ROOT / "node" / "explorer").iterdir() if p.is_file() and p.suffix != ".py"]
    assert {"index.html", "app.js", "verify.js", "canonical.js"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} would not be installed"
