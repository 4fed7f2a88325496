"""`pip install rantai` (no extras) is what a member or an auditor installs: it must pull none of the
validator's dependencies, and `rantai verify` and `rantai audit --node` must work with it.

Method: copy the checkout, `pip install` it into a fresh venv (this needs the package index, which
CI has), check the installed distributions, then run that venv's `rantai` against a devnet started
from the test's own environment (which has the `node` extra).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

devnet_mod = pytest.importorskip("rantai.client.devnet")

from ports import free_base_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NODE_ONLY = {"fastapi", "uvicorn", "plyvel", "starlette", "uvloop", "httptools", "tomli-w", "tomli_w"}


def test_client_install_has_no_node_dependencies_and_verifies_and_audits(tmp_path):
    from rantai.client.format.receipts import Receipt
    from rantai.client.http import Client

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".mypy*", ".ruff_cache", ".pytest_cache",
        ".rantai", "tests"))
    env_dir = tmp_path / "client-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py, rantai = env_dir / "bin" / "python", env_dir / "bin" / "rantai"
    install = subprocess.Popen([str(py), "-m", "pip", "install", "-q", str(src)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    net = devnet_mod.Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4),
                            params={"batch_timeout_ms": 5})
    try:
        net.start()  # while pip works
        out, _ = install.communicate(timeout=240)
        assert install.returncode == 0, out
        listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                                check=True)
        names = {d["name"].lower() for d in json.loads(listed.stdout)}
        assert "rantai" in names
        assert not names & NODE_ONLY, names & NODE_ONLY
        probe = subprocess.run([str(py), "-c", "import rantai.client.cli, rantai.client.format.validity"],
                               capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr

        net.wait_ready(timeout=60)
        genesis = net.genesis
        with Client(genesis, net.urls, net.member_key("acme"), timeout=30.0) as client:
            receipt = client.submit({
                "type": "ObjectEvent", "eventTime": "2026-03-01T08:00:00.000+07:00", "eventTimeZoneOffset": "+07:00",
                "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"], "action": "ADD", "bizStep": "commissioning"})
        path = tmp_path / "receipt.json"
        path.write_text(receipt.to_json())
        g = str(net.genesis_path)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(rantai), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)

        res = run("verify", str(path), "--genesis", g)
        assert res.returncode == 0 and res.stdout.startswith("ok: record"), res.stdout + res.stderr
        doc = json.loads(path.read_text())
        doc["certificate"]["votes"].reverse()
        bad = tmp_path / "reversed.json"
        bad.write_text(json.dumps(doc))
        res = run("verify", str(bad), "--genesis", g)
        assert res.returncode == 1 and "error: certificate votes: " in res.stderr, res.stdout + res.stderr
        Receipt.from_json(path.read_text()).verify(genesis)  # the same file, in this environment

        res = run("audit", "--node", net.urls[0], "--genesis", g, "--workers", "0", "--json",
                  "--key", str(net.member_key_path("acme")))  # an auditor's key signs the block reads
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        assert report["ok"] and report["records"] >= 1, report
    finally:
        if install.poll() is None:
            install.kill()
        net.stop()
