"""Dependencies flow one way (node → client → consensus), and consensus does no I/O.

Goal: keep the sans-I/O core honest. Method: parse every module's imports with ``ast``; a
forbidden import fails with the file and line, so the rule cannot erode one shortcut at a time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each layer must not import. The simulator (consensus/sim) may use a seeded PRNG and argparse.
FORBIDDEN = {
    "consensus": {"rantai.client", "rantai.node", "socket", "time", "random", "asyncio", "threading", "os",
                  "plyvel", "httpx", "fastapi", "uvicorn", "subprocess", "datetime"},
    "client": {"rantai.node", "fastapi", "uvicorn"},
}
ALLOWED_IN_SIM = {"random", "time", "os"}


def imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def modules(layer: str):
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    bad = []
    for path in modules(layer):
        in_sim = "sim" in path.relative_to(ROOT / layer).parts[:-1]
        for lineno, name in imports(path):
            for forbidden in FORBIDDEN[layer]:
                if name == forbidden or name.startswith(forbidden + "."):
                    if in_sim and forbidden in ALLOWED_IN_SIM:
                        continue
                    bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert not bad, "\n".join(bad)
