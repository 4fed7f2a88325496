"""Reconfiguration through real validator processes (issue 12, "Done when"): `rantai-node run` on
127.0.0.1, governance driven by the `rantai` / `rantai-node` commands, records from a background load.

1. 4 -> 5 -> 4 validators under load: a fifth validator's key (`rantai-node keygen`) and config
   (`rantai-node config --joining`); its process observes; admins propose and approve `add_validator`
   with the key's proof of possession (`rantai gov prove`); the newcomer catches up and votes; then
   an original validator is removed and says it retired; commits go on. Every running node holds the
   same blocks, `rantai audit --node` passes against each, every acknowledged record is on the chain,
   and receipts from before, between and after the changes verify offline (`rantai verify`) with
   the original genesis file only. The retired validator refuses records (503) and a client that still
   lists it submits through the others; the newcomer killed and a staying validator restarted catch up.
2. Members: a removed member's next record is refused (403 `member removed`) while its old receipt
   still verifies; a member rotates its key and records with the new one while the old one is
   refused; a stolen key is revoked (suspend: 403 `member suspended`, then rotate to a new key).

Method: `Devnet` with admins among the members and a small `window` (2), so a change is in force three
blocks after its approval. Waits are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from ports import free_base_port

from rantai.client.cli import cli as rantai
from rantai.client.devnet import Devnet
from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode, encode
from rantai.client.format.keys import Signer, generate, load_key, save_key
from rantai.client.format.receipts import Receipt
from rantai.client.format.records import sign_event
from rantai.client.http import Client
from rantai.node.cli import cli as rantai_node

from .conftest import event
from .procs import MP, Api, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MEMBERS = ("tani=Tani:admin", "kopi=Kopi:admin", "pasar=Pasar:admin", "acme=Acme:submitter",
           "cafe=Kafe Senja:submitter", "gayo=Gayo:submitter", "toko=Toko:submitter")
PARAMS = {"checkpoint_interval": 4, "window": 2, "view_change_timeout_ms": 1000, "batch_timeout_ms": 5}


def run(cli, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result.output


def start_devnet(tmp_path: Path) -> Devnet:
    net = Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4), members=MEMBERS, params=PARAMS)
    net.start()
    net.wait_ready(timeout=60)
    return net


class Gov:
    """`rantai gov …` as an admin would type it (in-process), answers parsed from --json."""

    def __init__(self, net: Devnet) -> None:
        self.net = net

    def _common(self, admin: str, node: int) -> list[str]:
        return ["--genesis", str(self.net.genesis_path), "--node", self.net.urls[node],
                "--key", str(self.net.dir / "members" / f"{admin}.pem"), "--json", "--wait-timeout", "60"]

    def propose(self, admin: str, node: int, op: str, *flags: str) -> dict:
        return json.loads(run(rantai, "gov", "propose", op, *flags, *self._common(admin, node)))

    def approve(self, admin: str, node: int, proposal: str) -> dict:
        return json.loads(run(rantai, "gov", "approve", proposal, *self._common(admin, node)))

    def prove(self, key: Path, name: str) -> dict:
        return json.loads(run(rantai, "gov", "prove", "--key", key, "--name", name, "--genesis",
                              self.net.genesis_path, "--json"))

    def change(self, admins: tuple[str, str], nodes: tuple[int, int], op: str, *flags: str) -> dict:
        """Propose (first admin) and approve (second): the approval's answer, with ``effective``."""
        p = self.propose(admins[0], nodes[0], op, *flags)
        assert p["approved_at"] is None, p  # majority of three admins: two approvals
        a = self.approve(admins[1], nodes[1], p["proposal"])
        assert a["approved_at"] is not None and a["effective"] == a["approved_at"] + PARAMS["window"] + 1, a
        return a


class Load:
    """A few records a second from a background thread, each through the next of ``targets`` (the main
    thread changes the list); every record a node acknowledged as committed is kept in ``acked``."""

    def __init__(self, net: Devnet, signer: Signer, targets: list[int]) -> None:
        self.net, self.signer, self.targets = net, signer, list(targets)
        self.genesis = net.genesis
        self.acked: list[bytes] = []
        self.failed: list[tuple[int, object]] = []  # (node, answer) of records not acknowledged
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.serial = 500_000

    def start(self) -> "Load":
        self.thread.start()
        return self

    def _run(self) -> None:
        urls = self.net.urls
        k = 0
        with httpx.Client(timeout=40.0) as http:
            while not self.stop_flag.is_set():
                targets = list(self.targets)
                node = targets[k % len(targets)]
                k += 1
                self.serial += 1
                record = sign_event(self.signer, self.genesis, event(self.serial))
                try:
                    if node >= len(urls):
                        urls = self.net.urls
                    r = http.post(urls[node] + "/v1/records?wait=commit&timeout_ms=20000",
                                  content=encode({"records": [record.raw]}), headers=MP)
                    body = decode(r.content)
                    res = (body.get("results") or [body])[0]
                    if r.status_code == 200 and res.get("status") == "committed":
                        self.acked.append(record.id)
                    else:
                        self.failed.append((node, (r.status_code, res)))
                except httpx.HTTPError as exc:
                    self.failed.append((node, repr(exc)))
                self.stop_flag.wait(0.15)

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def chain(api: Api, i: int, top: int) -> list[tuple[bytes, dict]]:
    """(block bytes, certificate) of heights 1..top as node ``i`` serves them on /v1/blocks."""
    items = [decode(x) for x in api.blocks(i, 1, top)]
    assert len(items) == top, (i, len(items), top)
    return [(it["block"], it["certificate"]) for it in items]


def write_receipt(client: Client, tmp: Path, name: str, n: int) -> tuple[Path, Receipt]:
    receipt = client.submit(event(900_000 + n), wait=True, timeout=60.0)
    assert isinstance(receipt, Receipt)
    path = tmp / f"{name}.receipt.json"
    path.write_text(receipt.to_json(), encoding="utf-8")
    return path, receipt


def verify_offline(net: Devnet, path: Path) -> str:
    out = run(rantai, "verify", path, "--genesis", net.genesis_path)
    assert out.startswith("ok: record"), out
    return out


def test_a_fifth_validator_joins_under_load_then_an_original_leaves(tmp_path):
    net = start_devnet(tmp_path)
    api = Api(net, reader="tani")  # acme is removed here; tani never is
    gov = Gov(net)
    receipts_dir = tmp_path / "receipts"
    receipts_dir.mkdir()
    load = None
    try:
        genesis = net.genesis
        acme = net.member_key("acme")
        load = Load(net, acme, [0, 1, 2, 3]).start()
        wait_until("the load commits", lambda: len(load.acked) >= 5, timeout=60, describe=api.snapshot)
        client = Client(net.genesis_path, net.urls[1:4], load_key(net.dir / "members" / "cafe.pem"), timeout=10.0)
        before, r_before = write_receipt(client, receipts_dir, "before", 1)
        assert not r_before.changes  # nothing changed yet

        # -- a fifth validator: its own key and config, made on "its machine" with the node's commands
        home = tmp_path / "newcomer"
        key = home / "v4.pem"
        run(rantai_node, "keygen", key)
        port = free_base_port(1)
        out = run(rantai_node, "config", "--genesis", net.genesis_path, "--key", key, "--data-dir", home / "data",
                  "--listen", f"127.0.0.1:{port}", "--out", net.config_path(4), "--verify-workers", "0",
                  "--joining", "--name", "v4")
        assert "joining validator v4" in out, out
        # without --joining the same key is refused, with a hint
        out = run(rantai_node, "config", "--genesis", net.genesis_path, "--key", key, "--data-dir", home / "x",
                  "--listen", f"127.0.0.1:{port}", "--out", home / "x.toml", code=1)
        assert "not a validator" in out and "--joining" in out, out
        net.start_node(4)
        net.wait_ready(timeout=60, indices=[4])
        api.urls = net.urls  # five now
        assert api.status(4)["mode"] == "observer"

        proof = gov.prove(key, "v4")
        assert proof["public_key"] == load_key(key).public_key.hex()
        added = gov.change(("tani", "kopi"), (1, 2), "add-validator", "--name", "v4",
                           "--url", f"http://127.0.0.1:{port}", "--public-key", proof["public_key"],
                           "--proof", proof["proof"])
        joined = added["effective"]
        v4_id = load_key(key).id

        def v4_voted() -> bool:
            h = api.height(4)
            if h < joined + 2:
                return False
            return any(v4_id in {v for v, _ in cert["votes"]} for _, cert in chain(api, 4, h)[joined - 1:])

        wait_until("the newcomer catches up and votes", v4_voted, timeout=90, every=0.5, describe=api.snapshot)
        assert api.status(4)["mode"] == "normal"
        load.targets = [1, 2, 3, 4]  # records through the newcomer too; v0 leaves next
        n = len(load.acked)
        wait_until("commits through five validators", lambda: len(load.acked) >= n + 5, timeout=60,
                   describe=api.snapshot)
        between, r_between = write_receipt(client, receipts_dir, "between", 2)
        assert r_between.height >= joined and r_between.changes

        # -- v0 leaves
        removed = gov.change(("pasar", "tani"), (2, 3), "remove-validator", "--validator", "v0")
        left = removed["effective"]
        staying = [1, 2, 3, 4]
        wait_until("commits past the removal", lambda: min(api.height(i) for i in staying) >= left + 3,
                   timeout=90, describe=api.snapshot)
        wait_until("v0 says it retired", lambda: api.status(0)["mode"] == "retired", timeout=30,
                   describe=api.snapshot)
        log = (net.dir / "logs" / "v0.log").read_text(encoding="utf-8", errors="replace")
        assert "was removed by governance" in log, log[-2000:]
        n = len(load.acked)
        wait_until("commits go on with four validators", lambda: len(load.acked) >= n + 5, timeout=60,
                   describe=api.snapshot)
        after, r_after = write_receipt(client, receipts_dir, "after", 3)
        assert r_after.height >= left and len(r_after.changes) > len(r_between.changes)
        load.stop()
        client.close()

        # -- every running node holds the same blocks; each audits clean; every acknowledged record is there
        # The retired v0 refuses records (it follows the chain no more, so it could never confirm them), and a
        # client that still lists it (the genesis URLs, v0 first) is sent on to the validators in force.
        status, res = post_one(api, 0, sign_event(acme, genesis, event(123456)))
        assert status == 503 and res["error"] == "unavailable" and "retired" in res["message"], (status, res)
        with Client(net.genesis_path, None, acme, timeout=10.0) as old_list:
            late = old_list.submit(event(123457), wait=True, timeout=60.0)
            assert net.urls[0] in {node for node, _ in old_list.failures}, old_list.failures
        wait_until("equal heights", lambda: len({api.height(i) for i in staying}) == 1, timeout=60,
                   describe=api.snapshot)
        top = api.height(1)
        assert late.height <= top
        chains = {i: chain(api, i, top) for i in staying}
        blocks = [b for b, _ in chains[1]]
        for i in staying:
            assert [b for b, _ in chains[i]] == blocks, f"v{i}'s chain differs from v1's"
        h0 = api.height(0)  # the retired validator keeps what it stored: a prefix of the same chain
        assert [b for b, _ in chain(api, 0, h0)] == blocks[:h0]
        for i in [0, *staying]:
            out = run(rantai, "audit", "--node", net.urls[i], "--genesis", net.genesis_path, "--workers", "0",
                      "--no-progress", "--key", str(net.dir / "members" / "tani.pem"))
            assert "OK: every rule holds" in out, out
        on_chain = {rid for raw in blocks for rid in Block.from_bytes(raw).record_ids()}
        missing = [rid.hex() for rid in load.acked if rid not in on_chain]
        assert not missing, missing
        assert len(load.acked) >= 15, (len(load.acked), load.failed)
        for r in (r_before, r_between, r_after):
            assert r.record.id in on_chain

        # -- restarts rebuild the schedule from the chain: the newcomer killed (-9) and v1 stopped, records
        # committed without the newcomer, both back: they catch up and the chain stays one
        net.kill(4)
        net.stop_node(1)
        net.start_node(1)
        net.wait_ready(timeout=60, indices=[1])
        with Client(net.genesis_path, net.urls[1:4], acme, timeout=10.0) as c3:
            for k in range(4):
                c3.submit(event(950_000 + k), wait=True, timeout=60.0)
        net.start_node(4)
        net.wait_ready(timeout=60, indices=[4])
        with Client(net.genesis_path, [net.urls[4]], acme, timeout=10.0) as via_newcomer:
            via_newcomer.submit(event(960_000), wait=True, timeout=60.0)  # the restarted newcomer still serves
        wait_until("equal heights after the restarts", lambda: len({api.height(i) for i in staying}) == 1,
                   timeout=60, describe=api.snapshot)
        top2 = api.height(1)
        blocks2 = [b for b, _ in chain(api, 1, top2)]
        assert blocks2[:top] == blocks
        for i in staying:
            assert [b for b, _ in chain(api, i, top2)] == blocks2, f"v{i} differs after the restarts"
        assert api.status(4)["mode"] == "normal" and api.status(1)["mode"] == "normal", api.snapshot()

        # -- the receipt files verify offline with the original genesis file alone
        for path in (before, between, after):
            verify_offline(net, path)
        assert "changes" in json.loads(after.read_text()) and "changes" not in json.loads(before.read_text())
        print(f"\nheights: joined {joined}, left {left}, top {top}; acknowledged {len(load.acked)}, "
              f"not acknowledged {len(load.failed)}: {load.failed[:5]}")
    finally:
        if load is not None:
            load.stop_flag.set()
        api.close()
        net.stop()


def post_one(api: Api, i: int, record) -> tuple[int, dict]:
    """POST one record (wait for its commit): (status, its result or the error the node answered)."""
    r = api.http.post(api.urls[i] + "/v1/records?wait=commit&timeout_ms=30000",
                      content=encode({"records": [record.raw]}), headers=MP)
    body = decode(r.content)
    return r.status_code, (body.get("results") or [body])[0]


def test_members_removed_rotated_and_revoked(tmp_path):
    net = start_devnet(tmp_path)
    api = Api(net, reader="tani")  # acme is removed here; tani never is
    gov = Gov(net)
    load = None
    serial = iter(range(700_000, 800_000))
    try:
        g = net.genesis
        load = Load(net, net.member_key("toko"), [0, 1, 2, 3]).start()  # blocks keep coming

        def in_force(effective: int) -> None:
            """Every node's next block is governed by the change (admission judges the next height)."""
            wait_until(f"every node at height {effective - 1}", lambda: min(api.height(i) for i in range(4))
                       >= effective - 1, timeout=60, describe=api.snapshot)

        def record(signer: Signer):
            return sign_event(signer, g, event(next(serial)))

        # -- acme is removed: its next record is refused, its old receipt still verifies offline
        acme = net.member_key("acme")
        with Client(net.genesis_path, net.urls, acme, timeout=10.0) as client:
            old_path, old = write_receipt(client, tmp_path, "acme-old", 10)
        removal = gov.change(("tani", "kopi"), (0, 1), "remove-member", "--member", "acme")
        in_force(removal["effective"])
        for i in range(4):
            status, res = post_one(api, i, record(acme))
            assert status == 403 and res["error"] == "member removed", (i, status, res)
        out = verify_offline(net, old_path)
        assert "submitted by acme" in out, out
        with Client(net.genesis_path, net.urls, load_key(net.dir / "members" / "tani.pem")) as reader:
            # fetched after the removal (by a member still in, since acme may no longer read): still valid
            again = reader.get(old.record_id)
        assert again.receipt.changes == () and again.height < removal["effective"]  # no change below it
        again_path = tmp_path / "acme-again.receipt.json"
        again_path.write_text(again.to_json(), encoding="utf-8")
        verify_offline(net, again_path)

        # -- cafe rotates its key: the holder makes the new key and its proof, an admin proposes it
        cafe_old = net.member_key("cafe")
        new_key_path = tmp_path / "cafe-new.pem"
        run(rantai, "keygen", new_key_path, "--name", "cafe")
        proof = gov.prove(new_key_path, "cafe")
        rotation = gov.change(("kopi", "pasar"), (1, 2), "rotate-key", "--member", "cafe",
                              "--public-key", proof["public_key"], "--proof", proof["proof"])
        cafe_new = load_key(new_key_path)
        in_force(rotation["effective"])
        with Client(net.genesis_path, net.urls, cafe_new, timeout=10.0) as client:
            new_path, new = write_receipt(client, tmp_path, "cafe-new", 11)
        assert new.record.submitter == cafe_new.id and new.height >= rotation["effective"]
        out = verify_offline(net, new_path)
        assert "submitted by cafe" in out, out
        status, res = post_one(api, 2, record(cafe_old))
        assert status == 403 and res["error"] == "member removed", (status, res)

        # -- gayo's key is stolen: suspended at once, then given a new key and reinstated
        gayo_stolen = net.member_key("gayo")
        with Client(net.genesis_path, net.urls, gayo_stolen, timeout=10.0) as client:
            gayo_path, _ = write_receipt(client, tmp_path, "gayo-before", 12)
        suspension = gov.change(("pasar", "tani"), (2, 3), "suspend-member", "--member", "gayo")
        in_force(suspension["effective"])
        status, res = post_one(api, 3, record(gayo_stolen))
        assert status == 403 and res["error"] == "member suspended", (status, res)
        gayo_new = generate()
        gayo_new_path = tmp_path / "gayo-new.pem"
        save_key(gayo_new, gayo_new_path)
        proof = gov.prove(gayo_new_path, "gayo")
        gov.change(("tani", "kopi"), (3, 0), "rotate-key", "--member", "gayo",
                   "--public-key", proof["public_key"], "--proof", proof["proof"])
        reinstated = gov.change(("kopi", "pasar"), (0, 1), "reinstate-member", "--member", "gayo")
        in_force(reinstated["effective"])
        with Client(net.genesis_path, net.urls, gayo_new, timeout=10.0) as client:
            _, fresh = write_receipt(client, tmp_path, "gayo-new", 13)
        assert fresh.record.submitter == gayo_new.id
        for i in range(4):  # the stolen key signs nothing any more, anywhere
            status, res = post_one(api, i, record(gayo_stolen))
            assert status == 403 and res["error"] == "member removed", (i, status, res)
        verify_offline(net, gayo_path)  # what gayo signed before the theft was known stays valid

        load.stop()
        wait_until("equal heights", lambda: len({api.height(i) for i in range(4)}) == 1, timeout=60,
                   describe=api.snapshot)
        top = api.height(0)
        blocks = [b for b, _ in chain(api, 0, top)]
        for i in range(1, 4):
            assert [b for b, _ in chain(api, i, top)] == blocks
        out = run(rantai, "audit", "--node", net.urls[0], "--genesis", net.genesis_path, "--workers", "0",
                  "--no-progress", "--key", str(net.dir / "members" / "tani.pem"))
        assert "OK: every rule holds" in out, out
        on_chain = {rid for raw in blocks for rid in Block.from_bytes(raw).record_ids()}
        assert all(rid in on_chain for rid in load.acked)
        print(f"\ntop {top}; load acknowledged {len(load.acked)}, not acknowledged {len(load.failed)}: "
              f"{load.failed[:5]}")
    finally:
        if load is not None:
            load.stop_flag.set()
        api.close()
        net.stop()
