"""Backup, restore and reset (issue 13, item 4): an online backup taken under load is a consistent store
(the auditor re-verifies it), restored into a fresh data directory it starts, rejoins and commits, and
the restored store audits clean after."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from .procs import Api, make_devnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def node_cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rantai.node.cli", *args], capture_output=True, text=True,
                          timeout=300, input=input)


def test_online_backup_under_load_restores_audits_and_rejoins(tmp_path):
    net = make_devnet(tmp_path)
    api = Api(net)
    stop = threading.Event()
    submitted: list[int] = []

    def load() -> None:
        client = Api(net)
        try:
            while not stop.is_set():
                status, _ = client.submit(0, client.records(20), wait=False)
                submitted.append(status)
        finally:
            client.close()

    loader = threading.Thread(target=load, daemon=True)
    try:
        status, res = api.submit(0, api.records(5))
        assert status == 200
        loader.start()
        wait_until("load commits", lambda: api.height(1) >= 5, timeout=60, describe=api.snapshot)
        healthy = node_cli("healthcheck", "--config", str(net.config_path(1)))  # the image's HEALTHCHECK
        assert healthy.returncode == 0 and healthy.stdout.strip() == "healthy", healthy.stderr
        dest = tmp_path / "backup"
        done = node_cli("backup", str(dest), "--config", str(net.config_path(1)))
        assert done.returncode == 0, done.stderr
        assert "online" in done.stdout, done.stdout
        manifest = json.loads((dest / "rantai-backup.json").read_text())
        wait_until("commits after the backup", lambda: api.height(1) > manifest["height"], timeout=60)
        stop.set()
        loader.join(timeout=60)
        assert manifest["height"] >= 5 and 202 in submitted

        # the backup is a store the auditor re-verifies, block by block, and it is at the manifest's head
        audit = node_cli("audit", "--data-dir", str(dest), "--genesis", str(net.genesis_path), "--workers", "0",
                         "--json")
        assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr
        assert json.loads(audit.stdout)["height"] == manifest["height"]

        # a second backup into the same directory is refused: a backup is never overwritten
        again = node_cli("backup", str(dest), "--config", str(net.config_path(1)))
        assert again.returncode == 1 and "not an empty directory" in again.stderr

        # restore into v3: stopped, reset (confirmation typed), restored, restarted
        assert net.stop_node(3) == 0
        down = node_cli("healthcheck", "--config", str(net.config_path(3)))
        assert down.returncode == 1 and down.stderr.startswith("unhealthy"), down.stderr
        refused = node_cli("restore", str(dest), "--config", str(net.config_path(3)))
        assert refused.returncode == 1 and "not empty" in refused.stderr, refused.stderr
        wrong = node_cli("reset", "--config", str(net.config_path(3)), input="v0\n")
        assert wrong.returncode == 1 and "not confirmed" in wrong.stderr
        reset = node_cli("reset", "--config", str(net.config_path(3)), input="v3\n")
        assert reset.returncode == 0, reset.stderr
        restored = node_cli("restore", str(dest), "--config", str(net.config_path(3)))
        assert restored.returncode == 0, restored.stderr
        assert f"at height {manifest['height']}" in restored.stdout
        net.start_node(3)
        net.wait_ready(indices=[3], timeout=60)
        status, res = api.submit(3, api.records(1), timeout_ms=60_000)
        assert status == 200 and res[0]["status"] == "committed", (res, api.snapshot())
        wait_until("v3 at the others' height", lambda: api.height(3) >= api.height(0), timeout=120,
                   describe=api.snapshot)
        top = api.height(3)
        net.stop()
        v3 = net.configs()[3].data_dir
        audit = node_cli("audit", "--data-dir", str(v3), "--genesis", str(net.genesis_path), "--workers", "0",
                         "--json")
        assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr
        assert json.loads(audit.stdout)["height"] >= top

        # a stopped node's store is backed up directly
        offline = node_cli("backup", str(tmp_path / "offline"), "--config", str(net.config_path(3)))
        assert offline.returncode == 0 and "offline" in offline.stdout, offline.stdout + offline.stderr
    finally:
        stop.set()
        api.close()
        net.stop()
