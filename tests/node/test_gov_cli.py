"""`rantai gov …`, `rantai members` and `rantai-node status` against real local validators.

Goal: an admin can drive a whole join from the command line, every refusal is one line naming the
node's rule (and exits 3, "refused"), and `members` says when a node's report disagrees with what
the client verified. Method: one 4-validator devnet (three admins, majority, window 2) shared by
the tests in order; the commands run through click's CliRunner over real HTTP.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rantai.client import governance_cli
from rantai.client.cli import EXIT_FAILED, EXIT_REJECTED, cli
from rantai.client.devnet import Devnet
from rantai.client.format.keys import generate, save_key
from rantai.node.cli import cli as node_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from ports import free_base_port

    d = tmp_path_factory.mktemp("govnet")
    devnet = Devnet(d / "net", validators=4, base_port=free_base_port(4),
                    members=("tani=Tani:submitter+admin", "kopi=Kopi:submitter+admin", "pasar=Pasar:admin",
                             "acme=Acme"), params={"window": 2})
    devnet.start()
    try:
        devnet.wait_ready(timeout=60)
        cafe = generate()
        save_key(cafe, d / "cafe.pem")
        yield devnet, d
    finally:
        devnet.stop()


def rantai(net, *args, key: str | None = None, code: int = 0):
    devnet, d = net
    argv = [*args, "--genesis", str(devnet.genesis_path)]
    if args[:2] != ("gov", "prove"):
        argv += ["--node", devnet.urls[0]]
    if key is None and args[:2] != ("gov", "prove"):
        key = "acme"  # reads are signed (docs/api.md "Signed reads"): any member may read under "members"
    if key is not None:
        argv += ["--key", str(d / f"{key}.pem") if key == "cafe" else str(devnet.dir / "members" / f"{key}.pem")]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == code, (res.exit_code, res.output)
    return res.output


def error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_join_from_the_command_line_with_every_refusal(net):
    devnet, d = net
    proof = json.loads(rantai(net, "gov", "prove", "--key", str(d / "cafe.pem"), "--name", "cafe", "--json"))
    assert len(proof["proof"]) == 128
    join = ["gov", "propose", "add-member", "--name", "cafe", "--org", "Kafe Senja", "--public-key",
            proof["public_key"], "--proof", proof["proof"]]

    # Refusals, each one line with the node's rule, exit code 3.
    out = rantai(net, *join, key="acme", code=EXIT_REJECTED)
    assert error_line(out).startswith("error: not an admin: "), out
    bad = [*join[:-1], "ab" * 64]
    assert error_line(rantai(net, *bad, key="tani", code=EXIT_REJECTED)).startswith(
        "error: change refused: the new key's proof of possession does not verify")
    no_proof = join[:-2]
    assert "proof of possession is missing" in error_line(rantai(net, *no_proof, key="tani", code=EXIT_REJECTED))

    out = rantai(net, *join, key="tani")
    assert out.splitlines()[0].startswith("proposed ") and "add member cafe (Kafe Senja) as submitter" in out
    assert "open: approved by 1 of 2 needed: tani (needs 2 of 3 admins, has 1: tani)" in out, out
    pid = out.split()[1]

    assert error_line(rantai(net, "gov", "approve", pid[:10], key="tani", code=EXIT_REJECTED)).startswith(
        "error: approved twice: tani already approved proposal")
    assert error_line(rantai(net, "gov", "approve", "00" * 32, key="kopi", code=EXIT_REJECTED)).startswith(
        "error: unknown proposal: no proposal 0000")
    assert "unknown proposal" in error_line(rantai(net, "gov", "approve", "abcdef12", key="kopi", code=EXIT_REJECTED))
    out = rantai(net, "submit", "--ship", "urn:epc:id:sgtin:0614141.107346.1", key="cafe", code=EXIT_REJECTED)
    assert "unknown member" in error_line(out)

    out = rantai(net, "gov", "list", "--open")
    assert pid[:16] in out and "needs 2 of 3 admins, has 1: tani" in out
    out = rantai(net, "gov", "show", pid[:12])
    assert "proposer   tani" in out and "status     open: needs 2 of 3 admins, has 1: tani" in out

    out = rantai(net, "gov", "approve", pid[:12], key="kopi")
    assert out.startswith(f"approved {pid}") and "approved by tani, kopi at height" in out, out
    assert error_line(rantai(net, "gov", "approve", pid, key="pasar", code=EXIT_REJECTED)).startswith(
        "error: proposal closed: ")
    show = json.loads(rantai(net, "gov", "show", pid[:12], "--json"))
    assert show["status"] == "approved" and show["verified"] and show["approvals"] == ["tani", "kopi"]
    effective = show["effective"]
    assert rantai(net, "gov", "list", "--open").startswith("no open proposals")

    # Until the change is in force the café is refused; the chain is advanced with acme's records.
    n = 10
    while True:
        head = json.loads(rantai(net, "members", "--json"))["head"]
        if head + 1 >= effective:
            break
        n += 1
        rantai(net, "submit", "--ship", f"urn:epc:id:sgtin:0614141.107346.{n}", key="acme")
    out = rantai(net, "submit", "--ship", "urn:epc:id:sgtin:0614141.107346.1", "--receipt", str(d / "r.json"),
                 key="cafe")
    assert "committed" in out
    out = CliRunner().invoke(cli, ["verify", str(d / "r.json"), "--genesis", str(devnet.genesis_path)]).output
    assert out.startswith("ok: ") and "submitted by cafe" in out  # offline: the receipt carries the change

    members = json.loads(rantai(net, "members", "--json"))
    assert members["agrees"] and members["verifiable"] and members["change_entries"] == 2
    assert [m["name"] for m in members["consortium"]["members"]] == ["acme", "cafe", "kopi", "pasar", "tani"]
    before = json.loads(rantai(net, "members", "--at", str(effective - 1), "--json"))
    assert "cafe" not in [m["name"] for m in before["consortium"]["members"]]
    out = rantai(net, "members")
    assert "verified: 2 change entries verified from the genesis" in out and "admins: kopi, pasar, tani" in out


def test_other_ops_refused_in_one_line(net):
    assert error_line(rantai(net, "gov", "propose", "remove-validator", "--validator", "v9", key="tani",
                             code=EXIT_REJECTED)) == "error: change refused: no validator named 'v9'"
    assert error_line(rantai(net, "gov", "propose", "set-governance", "--approvals", "7", key="tani",
                             code=EXIT_REJECTED)).startswith("error: change refused: it would need 7 approvals")
    assert error_line(rantai(net, "gov", "propose", "set-params", "window=3", key="tani",
                             code=EXIT_REJECTED)).startswith("error: change shape: ")
    out = rantai(net, "gov", "propose", "set-params", "max_block_records=1000", "--json", key="tani")
    assert json.loads(out)["status"] == "open"


def test_members_says_when_a_node_disagrees(net, monkeypatch):
    real = governance_cli.fetch_config

    def lying(client, height=None):
        node, config = real(client, height)
        config["members"] = [m for m in config["members"] if m["name"] != "acme"]
        return node, config

    monkeypatch.setattr(governance_cli, "fetch_config", lying)
    out = rantai(net, "members", code=EXIT_FAILED)
    assert "reports a different consortium" in error_line(out) and "members (acme)" in out


def test_node_status_shows_the_validators_in_force(net):
    devnet, _ = net
    res = CliRunner().invoke(node_cli, ["status", devnet.urls[0]])  # no key: what every operator may see
    assert res.exit_code == 0, res.output
    assert res.output.count("validator v") == 0 and "config   not shown: read.unsigned" in res.output
    res = CliRunner().invoke(node_cli, ["status", devnet.urls[0], "--key", str(devnet.dir / "keys" / "v0.pem")])
    assert res.exit_code == 0, res.output
    assert res.output.count("validator v") == 4 and "2 admin approval(s) per change" in res.output
