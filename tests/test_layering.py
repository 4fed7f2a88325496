"""Dependencies flow one way, and each layer imports only what it may.

Goal: keep the layers honest. Method: parse every module's imports with ``ast`` (including imports
inside functions); a forbidden import fails with the file and line, so a rule cannot erode one
shortcut at a time.

- ``consensus/``: the sans-I/O core: nothing from rantai above it, no I/O, clock or randomness
  (its simulator may use a seeded PRNG, time and os).
- ``client/format/``: the pure ledger format and every validity rule: no network, no disk store,
  no user interface, nothing from the client's I/O modules or from the node.
- ``client/`` (the user's I/O): never the node, nor the server-side libraries.
- ``node/``: of ``client/``, only the pure format.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IO_LIBS = {"socket", "asyncio", "subprocess", "httpx", "fastapi", "uvicorn", "starlette", "plyvel", "click", "rich"}
CLIENT_IO = {f"rantai.client.{m}" for m in
             ("http", "audit", "documents", "trace", "cli", "config", "demo", "bench", "devnet")}
FORBIDDEN = {
    "consensus": {"rantai.client", "rantai.node", "socket", "time", "random", "asyncio", "threading", "os",
                  "plyvel", "httpx", "fastapi", "uvicorn", "subprocess", "datetime"},
    "client/format": {"rantai.node", "random"} | IO_LIBS | CLIENT_IO,
    "client": {"rantai.node", "fastapi", "uvicorn", "starlette", "plyvel", "tomli_w"},
}
ALLOWED_IN_SIM = {"random", "time", "os"}


def imports(path: Path):
    """(line, absolute module name) of every import in ``path``; relative imports are resolved."""
    package = ["rantai", *path.relative_to(ROOT).parent.parts]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            yield node.lineno, base
            for alias in node.names:  # `from . import audit` names a module too
                yield node.lineno, f"{base}.{alias.name}"


def modules(layer: str):
    return sorted((ROOT / layer).rglob("*.py"))


def _bad(layer: str, forbidden: set[str]) -> list[str]:
    bad = []
    for path in modules(layer):
        in_sim = "sim" in path.relative_to(ROOT / layer).parts[:-1]
        if layer == "client" and path.is_relative_to(ROOT / "client" / "format"):
            continue  # its own, stricter rule
        for lineno, name in imports(path):
            for f in forbidden:
                if name == f or name.startswith(f + "."):
                    if in_sim and f in ALLOWED_IN_SIM:
                        continue
                    bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    return sorted(set(bad))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    bad = _bad(layer, FORBIDDEN[layer])
    assert not bad, "\n".join(bad)


def test_node_imports_only_the_pure_part_of_client():
    bad = []
    for path in modules("node"):
        for lineno, name in imports(path):
            if name.startswith("rantai.client") and not (name == "rantai.client" or
                                                          name.startswith("rantai.client.format")):
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_the_rules_catch_what_they_should(tmp_path, monkeypatch):
    """The checker itself: a relative import of the client's I/O from node-like code is resolved and caught."""
    fake = ROOT / "client" / "format" / "_layering_probe.py"
    fake.write_text("from .. import http\nfrom ..audit import NodeSource\nimport httpx\n", encoding="utf-8")
    try:
        bad = _bad("client/format", FORBIDDEN["client/format"])
    finally:
        fake.unlink()
    assert any("imports rantai.client.http" in b for b in bad)
    assert any("imports rantai.client.audit" in b for b in bad)
    assert any("imports httpx" in b for b in bad)
