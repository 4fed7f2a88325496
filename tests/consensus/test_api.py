"""The public surface and the purity rule: consensus/ does no I/O and imports no client/node code."""

from __future__ import annotations

import ast
import pathlib

import rantai.consensus as consensus

ROOT = pathlib.Path(consensus.__file__).parent
FORBIDDEN = {"socket", "time", "random", "asyncio", "threading", "os", "subprocess", "multiprocessing",
             "datetime", "plyvel", "httpx", "rantai.client", "rantai.node", "pathlib", "io"}


def test_all_is_sorted_and_complete() -> None:
    assert consensus.__all__ == sorted(consensus.__all__)
    for name in consensus.__all__:
        assert hasattr(consensus, name), name
    for name in ["Replica", "ReplicaConfig", "Proposal", "Slot", "CommitCertificate", "Send", "Broadcast", "Persist",
                 "Commit", "Validate", "FetchState", "wire", "ProtocolViolation"]:
        assert name in consensus.__all__


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_consensus_is_pure() -> None:
    for path in ROOT.rglob("*.py"):
        allowed = {"random", "argparse"} if "sim" in path.relative_to(ROOT).parts else set()
        for name in _imports(path):
            top = name.split(".")[0]
            bad = {n for n in FORBIDDEN if name == n or name.startswith(n + ".") or top == n} - allowed
            assert not bad, f"{path.relative_to(ROOT)} imports {name}"
            assert top in {"__future__", "dataclasses", "typing", "collections", "struct", "hashlib", "heapq",
                           "msgpack", "cryptography", "random", "argparse", "sys", "functools"} or (
                path.name == "crypto.py" and top == "nacl"), f"{path}: {name}"  # crypto.py: libsodium, owned elsewhere
