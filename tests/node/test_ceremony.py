"""The key ceremony end to end: four organisations, four validators and three members, no shared secret.

Goal (issue 12): a consortium can start from keys that never left their organisations -- each
makes its key and a signed join request in its own folder, a coordinator assembles the genesis
from the requests alone, each organisation checks the genesis it receives and writes its own
node config -- and the network that results commits a record that a client verifies. The
coordinator's mistakes (a request twice) and a tampered genesis are refused with one line.

Method: the `rantai` and `rantai-node` commands in-process (click's runner), one folder per
organisation plus one for the coordinator, files "sent" by copying only requests and the genesis;
then real `rantai-node run` processes on 127.0.0.1 and the client library. Waits are bounded.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from ports import free_base_port

from rantai.client.cli import cli as rantai
from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import load_key
from rantai.client.http import Client, verify_receipt
from rantai.node.cli import cli as rantai_node

from .conftest import event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# organisation folder -> (organisation name, validator name, member name and roles or None)
ORGS = {
    "kopi": ("Kopi Co", "kopi-v1", ("kopi-co", "submitter,admin")),
    "gayo": ("Koperasi Kopi Gayo", "gayo-v1", ("gayo-coop", "submitter")),
    "watch": ("Fair Trade Watch", "watch-v1", ("watchdog", "auditor,admin")),
    "logistik": ("Logistik Nusantara", "logistik-v1", None),
}


def run(cli, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result.output


def one_line_error(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert "Traceback" not in output and len([ln for ln in lines if "rror" in ln]) == 1, output
    return output


def hash_line(output: str) -> str:
    return next(ln for ln in output.splitlines() if ln.startswith("genesis hash:")).split()[-1]


def test_key_ceremony_to_a_verified_record(tmp_path: Path) -> None:
    base = free_base_port(4)
    coordinator = tmp_path / "coordinator"
    inbox = coordinator / "requests"
    inbox.mkdir(parents=True)

    # 1. Each organisation, on its own machine: keys and join requests; only the requests are sent.
    for i, (folder, (org, vname, member)) in enumerate(ORGS.items()):
        home = tmp_path / folder
        out = run(rantai_node, "keygen", str(home / f"{vname}.pem"), "--join-request", str(home / f"{vname}.json"),
                  "--org", org, "--name", vname, "--url", f"http://127.0.0.1:{base + i}")
        assert "wrote" in out and (home / f"{vname}.pem").stat().st_mode & 0o077 == 0
        shutil.copy(home / f"{vname}.json", inbox)
        if member:
            name, roles = member
            run(rantai, "keygen", str(home / f"{name}.pem"), "--join-request", str(home / f"{name}.json"),
                "--org", org, "--name", name, "--roles", roles)
            shutil.copy(home / f"{name}.json", inbox)
    assert not list(coordinator.rglob("*.pem")), "no private key reaches the coordinator"
    requests = sorted(str(p) for p in inbox.glob("*.json"))
    assert len(requests) == 7

    # 2. The coordinator: a request twice is refused with one line; then the genesis, from requests only.
    out = run(rantai_node, "genesis", "assemble", "--chain-id", "kopi-chain", "--approvals", "majority",
              *requests, requests[0], "--out", str(coordinator / "bad.json"), code=1)
    assert "two requests are named" in one_line_error(out) and not (coordinator / "bad.json").exists()
    out = run(rantai_node, "genesis", "assemble", "--chain-id", "kopi-chain", "--approvals", "majority",
              "--param", "view_change_timeout_ms=1000", *requests, "--out", str(coordinator / "genesis.json"))
    announced = hash_line(out)
    assert announced == Genesis.load(coordinator / "genesis.json").hash.hex()

    # 3. Each organisation checks the genesis it received against its own requests and keys, and
    #    compares the hash (out of band); then writes its node's config.
    for i, (folder, (_org, vname, member)) in enumerate(ORGS.items()):
        home = tmp_path / folder
        shutil.copy(coordinator / "genesis.json", home / "genesis.json")
        expect = ["--expect", str(home / f"{vname}.json")]
        if member:
            expect += ["--expect", str(home / f"{member[0]}.json"), "--expect", str(home / f"{member[0]}.pem")]
        out = run(rantai, "genesis", "check", str(home / "genesis.json"), *expect)
        assert hash_line(out) == announced and f"ok: validator {vname}" in out
        run(rantai_node, "config", "--genesis", str(home / "genesis.json"), "--key", str(home / f"{vname}.pem"),
            "--data-dir", str(home / "data"), "--listen", f"127.0.0.1:{base + i}", "--verify-workers", "0",
            "--out", str(home / "node.toml"))

    # A coordinator who quietly makes gayo-coop an admin is caught by Gayo's check: exit 1, one line.
    doc = json.loads((coordinator / "genesis.json").read_text())
    for m in doc["members"]:
        if m["name"] == "gayo-coop":
            m["roles"] = ["admin", "submitter"]
    (tmp_path / "gayo" / "tampered.json").write_text(json.dumps(doc))
    out = run(rantai, "genesis", "check", str(tmp_path / "gayo" / "tampered.json"),
              "--expect", str(tmp_path / "gayo" / "gayo-coop.json"), code=1)
    assert "roles" in one_line_error(out)
    # ... and a config for a key that is not a validator is refused.
    out = run(rantai_node, "config", "--genesis", str(tmp_path / "kopi" / "genesis.json"), "--key",
              str(tmp_path / "kopi" / "kopi-co.pem"), "--data-dir", str(tmp_path / "x"), "--listen", "127.0.0.1:1",
              "--out", str(tmp_path / "kopi" / "x.toml"), code=1)
    assert "not a validator" in one_line_error(out)

    # 4. Each organisation starts its node.
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for folder in ORGS:
            home = tmp_path / folder
            with open(home / "node.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "rantai.node.cli", "run", "--config", str(home / "node.toml"),
                     "--log-level", "warning"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 60
        pending = set(range(4))
        while pending:
            for i in sorted(pending):
                assert procs[i].poll() is None, (tmp_path / list(ORGS)[i] / "node.log").read_text()[-2000:]
                try:
                    if httpx.get(f"http://127.0.0.1:{base + i}/healthz", timeout=1.0).status_code == 200:
                        pending.discard(i)
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, f"validators {sorted(pending)} not ready"
            time.sleep(0.1)

        # 5. Kopi Co submits its first record; Logistik (no member, only the genesis) verifies the receipt.
        genesis = Genesis.load(tmp_path / "kopi" / "genesis.json")
        with Client(genesis, None, load_key(tmp_path / "kopi" / "kopi-co.pem"), timeout=10.0) as client:
            receipt = client.submit(event(), wait=True, timeout=60.0)
        theirs = Genesis.load(tmp_path / "logistik" / "genesis.json")
        verify_receipt(receipt, theirs)
        assert receipt.header.height >= 1 and receipt.header.chain == theirs.hash
        # Reading from a node is for members (the default read policy): Kopi Co reads it back for Logistik.
        with Client(theirs, None, load_key(tmp_path / "kopi" / "kopi-co.pem")) as reader:
            found = reader.get(receipt.record_id)
        assert found.receipt.record.id == receipt.record_id
        assert theirs.members[found.receipt.record.submitter].name == "kopi-co"
        # ... and the same with the commands of docs/operations.md, step 7
        run(rantai, "submit", "--genesis", str(tmp_path / "kopi" / "genesis.json"), "--key",
            str(tmp_path / "kopi" / "kopi-co.pem"), "--ship", "urn:epc:id:sgtin:0614141.107346.2017",
            "--receipt", str(tmp_path / "kopi" / "first.receipt.json"))
        shutil.copy(tmp_path / "kopi" / "first.receipt.json", tmp_path / "gayo")
        out = run(rantai, "verify", str(tmp_path / "gayo" / "first.receipt.json"), "--genesis",
                  str(tmp_path / "gayo" / "genesis.json"))
        assert out.startswith("ok: record") and "kopi-chain" in out and "submitted by kopi-co" in out
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
