"""rantai-node: init-network writes keys (0600), genesis and configs; errors are one line; the devnet
command starts validators and stops them all on SIGTERM; `run` exits 0 after SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from rantai.client.format.genesis import Genesis
from rantai.node.cli import cli
from rantai.node.config import NodeConfig

from .procs import free_base_port, wait_until


def test_init_network(tmp_path):
    out = tmp_path / "net"
    r = CliRunner().invoke(cli, ["init-network", "--validators", "4", "--members", "acme,kopi-co", "--out", str(out),
                                 "--base-port", "7400", "--param", "window=4"])
    assert r.exit_code == 0, r.output
    g = Genesis.load(out / "genesis.json")
    assert len(g.validators) == 4 and g.params["window"] == 4
    assert {m.name: m.organisation for m in g.members.values()} == {"acme": "acme", "kopi-co": "kopi-co"}
    for i in range(4):
        cfg = NodeConfig.load(out / f"v{i}.toml")
        assert cfg.port == 7400 + i and cfg.id == g.validators[i].id and g.validators[i].url == cfg.url
        assert stat.S_IMODE(os.stat(cfg.key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "members" / "acme.pem").st_mode) == 0o600
    again = CliRunner().invoke(cli, ["init-network", "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output


def test_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "missing.toml")])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "cannot read" in r.output
    r = CliRunner().invoke(cli, ["status", f"http://127.0.0.1:{free_base_port(1)}"])
    assert r.exit_code == 1 and r.output.startswith("Error: cannot reach the node")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_devnet_command_starts_and_stops_everything(tmp_path):
    base = free_base_port(4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rantai.node.cli", "devnet", "--dir", str(tmp_path / "dn"), "--base-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until("all four nodes", lambda: all(
            httpx.get(f"http://127.0.0.1:{base + i}/healthz", timeout=1).status_code == 200 for i in range(4)))
        status = httpx.get(f"http://127.0.0.1:{base}/v1/status", timeout=5).json()
        assert status["height"] == 0 and len(status["peers"]) == 3
        r = CliRunner().invoke(cli, ["status", f"http://127.0.0.1:{base}"])
        assert r.exit_code == 0 and "primary" in r.output
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"v0: http://127.0.0.1:{base}" in out and "genesis:" in out
    def all_down() -> bool:
        for i in range(4):
            try:
                httpx.get(f"http://127.0.0.1:{base + i}/healthz", timeout=0.5)
                return False
            except httpx.HTTPError:
                pass
        return True
    wait_until("every validator stopped", all_down, timeout=30)
    for i in range(4):
        log = (tmp_path / "dn" / "logs" / f"v{i}.log").read_text()
        assert "Traceback" not in log
