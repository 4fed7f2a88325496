"""What an operator sees of real validator processes (issue 13, item 3): the log's one-line events
(a view change and a catch-up, each with its reason) and ``rantai-node doctor`` naming why a node does
not commit — two validators down, this node behind, this node alone in a higher view.

A node is kept behind, or alone in a view, by the others' configs sending its messages to a closed port
(``[[peers]]`` overrides): it hears nobody, they hear it, and everyone answers the doctor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ports import free_base_port

from rantai.client.devnet import Devnet

from .procs import Api, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

PARAMS = {"checkpoint_interval": 4, "window": 4, "view_change_timeout_ms": 1000, "batch_timeout_ms": 5}


def json_devnet(tmp_path, edit=None) -> Devnet:
    """A devnet whose nodes log JSON lines at level info; ``edit(i, text)`` may change each config first."""
    net = Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4), params=PARAMS, log_level="info")
    net.init()
    for i in range(4):
        path = net.config_path(i)
        text = path.read_text() + '\n[log]\nformat = "json"\n'
        path.write_text(edit(i, text) if edit else text)
    net.start()
    net.wait_ready(timeout=60)
    return net


def events(net: Devnet, i: int, kind: str) -> list[dict]:
    out = []
    for line in (net.dir / "logs" / f"v{i}.log").read_text().splitlines():
        if line.startswith("{"):
            obj = json.loads(line)  # every line the node writes is one JSON object
            if obj.get("event") == kind:
                out.append(obj)
    return out


def doctor(url: str, key: Path | None = None) -> tuple[int, list[dict]]:
    """``rantai-node doctor`` as an operator runs it: with a key to sign its reads (the devnet's are for members)."""
    done = subprocess.run([sys.executable, "-m", "rantai.node.cli", "doctor", url, "--json",
                           *(["--key", str(key)] if key else [])], capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def causes(url: str) -> set[str]:
    return {f["cause"] for f in doctor(url)[1]}


def test_view_change_and_catch_up_logged_and_doctor_names_two_validators_down(tmp_path):
    net = json_devnet(tmp_path)
    api = Api(net)
    try:
        start = events(net, 1, "start")
        assert len(start) == 1 and start[0]["chain_id"] and start[0]["listen"].endswith(str(net.base_port + 1))
        status, res = api.submit(1, api.records(2))
        assert status == 200 and {e["status"] for e in res} == {"committed"}
        code, findings = doctor(net.urls[1], net.member_key_path("acme"))
        assert code == 0 and findings[0]["cause"] in ("idle", "committing"), findings

        # a view change: the primary of view 0 killed, a record submitted through v1
        net.kill(0)
        status, res = api.submit(1, api.records(1))
        assert status == 200 and res[0]["status"] == "committed", (res, api.snapshot())
        changes = events(net, 1, "view-change")
        assert changes, api.snapshot()
        first = changes[0]
        assert first["view"] >= 1 and first["previous_view"] == 0 and first["reason"].startswith("timeout")
        assert first["reason"] in first["msg"]  # one line says it all, for people and machines

        wait_until("v1 logs v0 lost", lambda: any(e["name"] == "v0" for e in events(net, 1, "peer-lost")), timeout=120)

        # two validators down: no quorum
        net.kill(2)
        wait_until("doctor names no quorum", lambda: "no-quorum" in causes(net.urls[1]), timeout=60)
        code, findings = doctor(net.urls[1], net.member_key_path("acme"))
        text = next(f["text"] for f in findings if f["cause"] == "no-quorum")
        assert code == 1 and "2 of 4 validators answer" in text and "v0" in text and "v2" in text, text
        net.start_node(0)
        net.start_node(2)
        net.wait_ready(timeout=60, indices=[0, 2])
        status, res = api.submit(0, api.records(1), timeout_ms=60_000)
        assert status == 200, (res, api.snapshot())
        wait_until("v1 logs v0 regained", lambda: any(e["name"] == "v0" for e in events(net, 1, "peer-regained")),
                   timeout=120)
        wait_until("the restarted ones in the others' view", lambda: len(
            {(api.status(i)["view"], api.status(i)["mode"]) for i in range(4)}) == 1, timeout=60,
            describe=api.snapshot)

        # a catch-up: v3 stopped while the others commit, then restarted
        assert net.stop_node(3) == 0
        status, res = api.submit(1, api.records(200), wait=False)
        assert status == 202
        for _ in range(12):  # more blocks than a checkpoint interval
            status, res = api.submit(1, api.records(1))
            assert status == 200, res
        net.start_node(3)
        net.wait_ready(timeout=60, indices=[3])
        status, res = api.submit(1, api.records(1))  # new votes: v3 learns it is behind
        wait_until("v3 caught up", lambda: api.height(3) >= api.height(1), timeout=120, describe=api.snapshot)
        wait_until("catch-up end logged", lambda: events(net, 3, "catch-up-end"), timeout=120)
        start, end = events(net, 3, "catch-up-start"), events(net, 3, "catch-up-end")
        assert start[0]["reason"] in start[0]["msg"] or start[0]["reason"], start
        assert start[0]["target"] > start[0]["height"] and end[-1]["reached"] and end[-1]["blocks"] >= 1, (start, end)
    finally:
        api.close()
        net.stop()


def test_doctor_names_a_node_alone_in_a_higher_view(tmp_path):
    """v3 hears nobody (the others' configs send its messages to a closed port) but they hear it: with a
    record of its own pending it times out and changes view alone, while they commit in view 0."""
    v3_id: list[str] = []

    def cut_v3(i: int, text: str) -> str:
        if i == 3:
            return text
        if not v3_id:
            v3_id.append(next(line.split('"')[1] for line in (tmp_path / "devnet" / "v3.toml").read_text()
                              .splitlines() if line.startswith("id ")))
        return text + f'\n[[peers]]\nid = "{v3_id[0]}"\nurl = "http://127.0.0.1:9"\n'

    net = json_devnet(tmp_path, cut_v3)
    api = Api(net)
    try:
        # behind: the others commit blocks v3 never hears of
        for _ in range(6):
            status, res = api.submit(0, api.records(1))
            assert status == 200, res
        code, findings = doctor(net.urls[3], net.member_key_path("acme"))
        found = {f["cause"]: f["text"] for f in findings}
        assert code == 1 and "behind" in found and "alone-in-higher-view" not in found, findings
        assert "this node is at height 0" in found["behind"], found

        # alone in a higher view: a record of its own pending, v3 times out and changes view alone
        status, res = api.submit(3, api.records(1), wait=False)  # v3 forwards it; only v0..v2 commit it
        assert status == 202
        wait_until("v3 alone in a higher view",
                   lambda: api.status(3)["mode"] == "view-change" and api.status(3)["view"] >= 1, timeout=60,
                   describe=api.snapshot)
        code, findings = doctor(net.urls[3], net.member_key_path("acme"))
        found = {f["cause"]: f["text"] for f in findings}
        assert code == 1 and "alone-in-higher-view" in found, findings
        assert "work in view 0" in found["alone-in-higher-view"], found
        assert all(api.status(i)["view"] == 0 and api.status(i)["mode"] == "normal" for i in range(3))
        changes = events(net, 3, "view-change")
        assert changes and changes[0]["reason"].startswith("timeout"), changes
    finally:
        api.close()
        net.stop()
