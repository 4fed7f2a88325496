"""The `rantai` command: every command end to end against fake nodes (no sockets), the config
precedence, one-line errors with meaningful exit codes, and command registration.
"""

from __future__ import annotations

import json
import os
import stat

import click
import pytest
from click.testing import CliRunner
from helpers_client import ITEM, Net, fake_network, object_event

from rantai.client import cli as cli_mod
from rantai.client.cli import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_NODE,
    EXIT_NOT_FOUND,
    EXIT_REJECTED,
    EXIT_USAGE,
    cli,
    register,
)
from rantai.client.config import ConfigError, load_config
from rantai.client.format.keys import save_key


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fake 4-node network, its genesis file and acme's key, wired through RANTAI_* variables."""
    net = Net()
    nodes, tx = fake_network(net)
    (tmp_path / "genesis.json").write_text(net.genesis.to_json())
    save_key(net.members["acme"], tmp_path / "acme.pem")
    save_key(net.outsider, tmp_path / "outsider.pem")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for k in ("RANTAI_NODES", "RANTAI_KEY", "RANTAI_GENESIS", "RANTAI_CONFIG", "RANTAI_PASSPHRASE", "RANTAI_TZ"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RANTAI_GENESIS", str(tmp_path / "genesis.json"))
    monkeypatch.setenv("RANTAI_KEY", str(tmp_path / "acme.pem"))
    return net, nodes, tx, tmp_path


def run(tx, *args, code: int = 0):
    result = CliRunner().invoke(cli, list(args), obj={"transport": tx}, catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.output)
    return result


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(env):
    net, _, tx, tmp = env
    res = run(tx, "keygen", "me.pem", "--name", "kopi", "--json")
    info = json.loads(res.output)
    assert len(info["id"]) == 16 and len(info["public_key"]) == 64 and info["name"] == "kopi"
    assert stat.S_IMODE(os.stat(tmp / "me.pem").st_mode) == 0o600
    res = run(tx, "keygen", "me.pem", code=EXIT_CONFIG)
    assert "already exists" in one_error_line(res)


def test_submit_flags_receipt_and_offline_verify(env):
    net, nodes, tx, tmp = env
    res = run(tx, "submit", "--ship", ITEM, "--from", "urn:epc:id:sgln:0614141.07346.1234",
              "--to", "urn:epc:id:sgln:0614141.07346.9999", "--receipt", "r.json")
    assert "committed" in res.output and "at height 1" in res.output
    res = run(None, "verify", "r.json", "--genesis", "genesis.json")
    assert res.output.startswith("ok: record") and "by acme" in res.output

    doc = json.loads((tmp / "r.json").read_text())
    doc["event"]["bizStep"] = "receiving"  # the readable copy no longer matches the signed bytes
    (tmp / "bad.json").write_text(json.dumps(doc))
    res = run(None, "verify", "bad.json", code=EXIT_FAILED)
    assert "differs from the signed record" in one_error_line(res)

    doc = json.loads((tmp / "r.json").read_text())
    doc["path"] = ["00" * 32]  # a proof that leads elsewhere
    (tmp / "bad2.json").write_text(json.dumps(doc))
    res = run(None, "verify", "bad2.json", code=EXIT_FAILED)
    assert one_error_line(res).startswith("error: ")

    other = Net(chain_id="other-chain")
    (tmp / "other.json").write_text(other.genesis.to_json())
    res = run(None, "verify", "r.json", "--genesis", "other.json", code=EXIT_FAILED)
    assert "for chain" in one_error_line(res)


def test_submit_event_file_and_document(env):
    net, _, tx, tmp = env
    (tmp / "ev.json").write_text(json.dumps(object_event(1, [ITEM])))
    res = run(tx, "submit", "ev.json", "--json")
    assert json.loads(res.output)["height"] == 1
    doc = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument",
           "schemaVersion": "2.0", "creationDate": "2024-03-01T10:00:00.000Z",
           "epcisBody": {"eventList": [object_event(2), object_event(3)]}}
    (tmp / "doc.json").write_text(json.dumps(doc))
    res = run(tx, "submit", "doc.json", "--receipt", "receipts", "--json")
    out = json.loads(res.output)
    assert len(out) == 2 and len(list((tmp / "receipts").iterdir())) == 2


def test_submit_errors_are_one_line_with_exit_codes(env, monkeypatch):
    net, nodes, tx, tmp = env
    monkeypatch.setenv("RANTAI_KEY", str(tmp / "outsider.pem"))
    res = run(tx, "submit", "--ship", ITEM, code=EXIT_REJECTED)
    assert one_error_line(res).startswith("error: record: unknown member")
    monkeypatch.setenv("RANTAI_KEY", str(tmp / "acme.pem"))
    (tmp / "bad.json").write_text(json.dumps({"type": "ObjectEvent"}))
    res = run(tx, "submit", "bad.json", code=EXIT_REJECTED)
    assert one_error_line(res).startswith("error: schema:")
    res = run(tx, "submit", code=EXIT_USAGE)
    # Refused locally: nothing was submitted (a key not in the genesis makes the client ask whether
    # it joined later, GET /v1/changes, and nothing else).
    assert all(r == "GET /v1/changes" for n in nodes for r in n.requests)


def test_get_trace_and_not_found(env):
    net, _, tx, tmp = env
    res = run(tx, "submit", "--ship", ITEM, "--json")
    rid = json.loads(res.output)["record_id"]
    run(tx, "submit", "--receive", ITEM, "--to", "urn:epc:id:sgln:0614141.07346.9999")
    res = run(tx, "get", rid)
    assert rid in res.output and "submitter  acme" in res.output
    res = run(tx, "get", rid, "--json")
    assert json.loads(res.output)["record_id"] == rid
    res = run(tx, "trace", ITEM)
    assert "shipping" in res.output and "receiving" in res.output and "acme" in res.output
    res = run(tx, "trace", ITEM, "--json", "--cross-check")
    assert [s["height"] for s in json.loads(res.output)["steps"]] == [1, 2]
    res = run(tx, "get", "ab" * 32, code=EXIT_NOT_FOUND)
    assert "not found" in one_error_line(res)
    res = run(tx, "get", "xyz", code=EXIT_REJECTED)
    assert "64 hex digits" in one_error_line(res)


def test_lying_node_is_warned_about_and_skipped(env):
    net, nodes, tx, tmp = env
    run(tx, "submit", "--ship", ITEM)
    nodes[0].lie = "forge-cert"
    res = run(tx, "trace", ITEM)
    assert f"warning: node {net.urls[0]}: block 1: certificate" in res.output and "shipping" in res.output


def test_audit_node_json_and_lying_node(env):
    net, nodes, tx, tmp = env
    net.build_chain(4, 3)
    res = run(tx, "audit", "--node", net.urls[0], "--workers", "0", "--json")
    rep = json.loads(res.output)
    assert rep["ok"] and rep["blocks"] == 4 and rep["records"] == 12
    res = run(tx, "audit", "--node", net.urls[0], "--workers", "0")
    assert "OK: every rule holds" in res.output
    nodes[1].lie = "alter-block"
    res = run(tx, "audit", "--node", net.urls[1], "--workers", "0", "--json", code=EXIT_FAILED)
    assert json.loads(res.output)["failures"][0]["height"] == 2
    res = run(tx, "audit", "--compare", net.urls[0], net.urls[1], code=EXIT_FAILED)
    assert "DIVERGENCE at height 2" in res.output and net.urls[1] in res.output
    res = run(tx, "audit", "--compare", net.urls[0], net.urls[2])
    assert "OK: all agree on heights 1..4" in res.output
    # A node that cannot be reached is not a broken chain: its own exit code, nobody paged for tampering.
    nodes[3].lie = "down"
    res = run(tx, "audit", "--compare", net.urls[0], net.urls[3], code=EXIT_NODE)
    assert "cannot read" in res.output
    res = run(tx, "audit", "--node", net.urls[3], "--workers", "0", code=EXIT_NODE)


def test_audit_data_dir(env):
    from test_audit import write_datadir

    net, _, tx, tmp = env
    net.build_chain(3, 2)
    write_datadir(net, tmp / "db")
    res = run(tx, "audit", str(tmp / "db"), code=EXIT_NODE)  # a directory is the node tools' job, and says so
    assert "rantai-node audit --data-dir" in one_error_line(res)
    from rantai.node.cli import cli as node_cli

    res = CliRunner().invoke(node_cli, ["audit", "--data-dir", str(tmp / "db"), "--genesis", str(tmp / "genesis.json"),
                                        "--workers", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["records"] == 6


def test_missing_genesis_is_a_config_error(env, monkeypatch):
    _, _, tx, _ = env
    monkeypatch.delenv("RANTAI_GENESIS")
    res = run(tx, "get", "ab" * 32, code=EXIT_CONFIG)
    assert one_error_line(res).startswith("error: config: no genesis file")


def test_config_precedence_flags_env_file(tmp_path):
    (tmp_path / "rantai.toml").write_text('nodes = ["http://file:1"]\nkey = "k.pem"\ngenesis = "g.json"\ntimeout = 3\n')
    cfg = load_config(env={}, cwd=tmp_path)
    assert cfg.nodes == ["http://file:1"] and cfg.key == tmp_path / "k.pem" and cfg.timeout == 3.0
    cfg = load_config(env={"RANTAI_NODES": "http://env:1, http://env:2", "RANTAI_KEY": "/e.pem"}, cwd=tmp_path)
    assert cfg.nodes == ["http://env:1", "http://env:2"]
    assert str(cfg.key) == "/e.pem" and cfg.genesis == tmp_path / "g.json"
    cfg = load_config(nodes=["http://flag:1"], env={"RANTAI_NODES": "http://env:1"}, cwd=tmp_path)
    assert cfg.nodes == ["http://flag:1"] and cfg.sources["nodes"] == "flag"
    xdg = tmp_path / "xdg" / "rantai"
    xdg.mkdir(parents=True)
    (xdg / "config.toml").write_text('nodes = "http://xdg:1"\n')
    cfg = load_config(env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, cwd=tmp_path / "xdg")
    assert cfg.nodes == ["http://xdg:1"]
    (tmp_path / "bad.toml").write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(config_file=tmp_path / "bad.toml", env={})
    with pytest.raises(ConfigError, match="must start with http"):
        load_config(nodes=["node0:7100"], env={})


def test_reserved_commands_and_registration():
    placeholder = cli_mod._placeholder("frobnicate", "Frobnicate the ledger")
    res = CliRunner().invoke(placeholder, [])
    assert res.exit_code == EXIT_USAGE and "not installed" in res.output
    assert {"demo", "bench", "import", "export", "audit", "verify"} <= set(cli.list_commands(click.Context(cli)))
    original = cli.commands["bench"]

    @click.command("bench")
    def bench() -> None:
        click.echo("benching")

    try:
        register(bench)
        res = CliRunner().invoke(cli, ["bench"])
        assert res.exit_code == 0 and res.output == "benching\n"
    finally:
        cli.add_command(original)


def test_internal_errors_print_one_line(env, monkeypatch):
    _, _, tx, _ = env

    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli_mod, "_client", boom)
    monkeypatch.delenv("RANTAI_DEBUG", raising=False)
    res = run(tx, "get", "ab" * 32, code=cli_mod.EXIT_INTERNAL)
    assert "internal: RuntimeError: kaput" in one_error_line(res)


def test_submit_shipment_with_parties_po_and_time(env):
    net, _, tx, tmp = env
    res = run(tx, "submit", "--ship", ITEM, "--from", "urn:epc:id:sgln:0614141.07346.0",
              "--from-party", "urn:epc:id:pgln:0614141.00001", "--to-party", "urn:epc:id:pgln:0614142.00001",
              "--po", "PO-77", "--time", "2024-03-01T10:00:00Z", "--json")
    rid = json.loads(res.output)["record_id"]
    event = run(tx, "get", rid, "--json")
    doc = json.loads(event.output)["event"]
    assert doc["eventTime"].startswith("2024-03-01T10:00:00") and doc["bizStep"] == "shipping"
    assert any("PO-77" in t["bizTransaction"] for t in doc["bizTransactionList"])
    res = run(tx, "submit", "--ship", ITEM, "--time", "yesterday", code=EXIT_USAGE)


def test_submit_time_is_utc_unless_tz_says_otherwise(env, monkeypatch):
    """Issue 14: the CLI stamped +07:00 while its help said UTC; now UTC, or --tz / RANTAI_TZ / `tz =`."""
    net, _, tx, tmp = env

    def shipped(*args: str) -> dict:
        rid = json.loads(run(tx, "submit", "--ship", ITEM, *args, "--json").output)["record_id"]
        return json.loads(run(tx, "get", rid, "--json").output)["event"]

    ev = shipped()
    assert ev["eventTimeZoneOffset"] == "+00:00" and ev["eventTime"].endswith("+00:00")
    ev = shipped("--tz", "+07:00", "--time", "2024-03-01T10:00:00")  # a time without offset is read in --tz
    assert ev["eventTime"] == "2024-03-01T10:00:00.000+07:00" and ev["eventTimeZoneOffset"] == "+07:00"
    ev = shipped("--tz", "Asia/Makassar", "--time", "2024-03-01T02:00:00Z")  # an offset given is kept as the instant
    assert ev["eventTime"] == "2024-03-01T10:00:00.000+08:00"
    monkeypatch.setenv("RANTAI_TZ", "-05:00")
    assert shipped()["eventTimeZoneOffset"] == "-05:00"
    monkeypatch.delenv("RANTAI_TZ")
    (tmp / "rantai.toml").write_text('tz = "Asia/Jakarta"\n')
    assert shipped()["eventTimeZoneOffset"] == "+07:00"
    (tmp / "rantai.toml").unlink()
    res = run(tx, "submit", "--ship", ITEM, "--tz", "Mars/Olympus", code=EXIT_CONFIG)
    assert "time zone 'Mars/Olympus'" in one_error_line(res)


def test_audit_progress_bar_and_summary(env):
    net, _, tx, _ = env
    net.build_chain(3, 2)
    res = run(tx, "audit", net.urls[0], "--workers", "0", "--progress")
    assert "auditing" in res.output and "rec/s" in res.output and "OK: every rule holds" in res.output
