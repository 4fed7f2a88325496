"""Four validators on four "hosts": Linux network namespaces joined through a bridge namespace by veth pairs.

Goal: the multi-host path without pretending. Each validator runs in its own namespace with its own
address (198.18.0.1-4, the benchmarking range; no namespace has a default route, so nothing can
leave the machine), all traffic between them is HTTPS with mTLS on the peer endpoints, and a client
namespace (198.18.0.100) drives a verified load through tests/netns/agent.py. Under that load:
commits; a peer endpoint called without a client certificate (403 ``peer.client_certificate``) and
with one from another CA (handshake refused, ``tls.client_certificate``) is refused and counted;
the primary's namespace is cut off (its link set down) and brought back: commits go on during the
cut (a view change) and after it, and the cut validator catches up; one validator's certificate is
replaced while it runs (SIGHUP) and commits go on.

Needs root and ``ip netns`` (iproute2); skipped otherwise, with the reason. Every namespace it
creates (and with them every veth and the bridge) is deleted at the end, also when it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rantai.client.devcerts import CertificateAuthority
from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import generate, save_key
from rantai.node.bootstrap import write_node_config
from rantai.node.tls import TlsConfig

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(600)]

N = 4
SUBNET = "198.18.0"  # inside 198.18.0.0/15 (RFC 2544 benchmarking): never routed to anyone
PORT = 7100
AGENT = Path(__file__).with_name("agent.py")
PARAMS = {"checkpoint_interval": 4, "window": 4, "view_change_timeout_ms": 1000, "batch_timeout_ms": 5}


def _why_not() -> str | None:
    """Why this machine cannot run the test (``None``: it can)."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"rtnprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add is not allowed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Namespaces:
    """The namespaces (and through them the links) this test makes, and their removal."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.bridge = f"{tag}br"
        self.made: list[str] = []

    def ip(self, *args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def add(self, name: str) -> str:
        self.ip("netns", "add", name)
        self.made.append(name)
        self.ip("-n", name, "link", "set", "lo", "up")
        return name

    def build(self, hosts: dict[str, str]) -> None:
        """The bridge namespace, and for each host a namespace whose eth0 (with its address) is one end of a
        veth pair whose other end is a port of the bridge."""
        self.add(self.bridge)
        self.ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        self.ip("-n", self.bridge, "link", "set", "br0", "up")
        for name, address in hosts.items():
            self.add(name)
            self.ip("link", "add", "name", "eth0", "netns", name, "type", "veth",
                    "peer", "name", self.port(name), "netns", self.bridge)
            self.ip("-n", self.bridge, "link", "set", self.port(name), "master", "br0")
            self.ip("-n", self.bridge, "link", "set", self.port(name), "up")
            self.ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            self.ip("-n", name, "link", "set", "eth0", "up")

    def port(self, name: str) -> str:
        return "p-" + name.removeprefix(self.tag)

    def cut(self, name: str) -> None:
        self.ip("-n", self.bridge, "link", "set", self.port(name), "down")

    def restore(self, name: str) -> None:
        self.ip("-n", self.bridge, "link", "set", self.port(name), "up")

    def remove(self) -> list[str]:
        """Delete every namespace made (their veths and the bridge go with them); returns what failed."""
        failed = []
        for name in reversed(self.made):
            done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if done.returncode != 0:
                failed.append(f"{name}: {done.stderr.strip()}")
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        failed += [f"{line} still listed" for line in listed.splitlines() if line.split()[0] in self.made]
        return failed


class Agent:
    """tests/netns/agent.py in the client namespace: one JSON line per request and per answer."""

    def __init__(self, namespace: str, log: Path) -> None:
        self.stderr = open(log, "wb")
        self.proc = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-u", str(AGENT)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def __call__(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the agent exited ({self.proc.poll()}); see {self.stderr.name}")
        reply = json.loads(line)
        if "exception" in reply:
            raise RuntimeError(f"agent {op}: {reply['exception']}\n{reply.get('traceback', '')}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the agent ends at the end of its input
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError, ValueError):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def wait_for(what: str, fn, timeout: float = 120.0, every: float = 0.3, state=None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"; state: {state()}" if state else ""))
        time.sleep(every)


@pytest.fixture
def hosts(tmp_path):
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    ns = Namespaces(f"rtn{os.getpid() % 100000}")
    procs: list[subprocess.Popen] = []
    try:
        yield ns, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        failed = ns.remove()
        assert not failed, f"namespaces left behind: {failed}"


def _network(root: Path) -> tuple[Path, list[Path], Path, Path]:
    """Keys, certificates (one CA; each validator's for its own address), genesis and configs."""
    tls = root / "tls"
    ca = CertificateAuthority(tls)
    vkeys = [generate() for _ in range(N)]
    for i, k in enumerate(vkeys):
        save_key(k, root / "keys" / f"v{i}.pem")
        ca.issue(tls, f"v{i}", hosts=[f"{SUBNET}.{i + 1}"])
    acme = generate()
    save_key(acme, root / "members" / "acme.pem")
    genesis = Genesis.build("rantai-netns",
                            [(k.public_key, f"v{i}", f"https://{SUBNET}.{i + 1}:{PORT}") for i, k in enumerate(vkeys)],
                            [(acme.public_key, "acme", "Acme", ["submitter", "auditor"])],
                            params=PARAMS, created_at="2026-01-01T00:00:00Z")
    genesis_path = root / "genesis.json"
    genesis_path.write_text(genesis.to_json(), encoding="utf-8")
    configs = []
    for i in range(N):
        configs.append(root / f"v{i}.toml")
        write_node_config(configs[-1], genesis=genesis, genesis_path=genesis_path, key_path=root / "keys" / f"v{i}.pem",
                          data_dir=root / "data" / f"v{i}", host=f"{SUBNET}.{i + 1}", port=PORT, verify_workers=0,
                          tls=TlsConfig(cert=tls / f"v{i}.crt", key=tls / f"v{i}.key", ca=tls / "ca.crt",
                                        require_client_cert=True))
    return genesis_path, configs, tls, root / "members" / "acme.pem"


def test_four_validators_in_four_namespaces_over_tls(hosts, tmp_path):
    ns, procs = hosts
    genesis_path, configs, tls, acme_key = _network(tmp_path)
    names = {f"{ns.tag}v{i}": f"{SUBNET}.{i + 1}" for i in range(N)}
    client_ns = f"{ns.tag}c"
    ns.build({**names, client_ns: f"{SUBNET}.100"})
    vns = list(names)
    urls = [f"https://{SUBNET}.{i + 1}:{PORT}" for i in range(N)]
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(i: int) -> subprocess.Popen:
        with open(logs / f"v{i}.log", "ab") as log:
            p = subprocess.Popen(["ip", "netns", "exec", vns[i], sys.executable, "-m", "rantai.node.cli", "run",
                                  "--config", str(configs[i]), "--log-level", "info"],
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(p)
        return p

    nodes = [start(i) for i in range(N)]
    agent = Agent(client_ns, logs / "agent.log")
    ca = str(tls / "ca.crt")
    report: dict[str, Any] = {}
    try:
        def status(i: int) -> dict[str, Any] | None:
            r = agent("http", url=urls[i] + "/v1/status", ca=ca)
            return r["body"] if r.get("status") == 200 else None

        def snapshot() -> list:
            """Height, view and mode of each validator the client reaches, and the load's counts (failure messages)."""
            out: list = []
            for i in range(N):
                s = status(i)
                out.append((f"v{i}", None if s is None else (s["height"], s["view"], s["mode"])))
            return out + ([agent("count")] if "load" in report else [])

        for i in range(N):
            wait_for(f"v{i} answers over HTTPS in its namespace", lambda i=i: all(p.poll() is None for p in nodes)
                     and status(i) is not None, timeout=90)
        st = status(0)
        assert st is not None and st["tls"]["enabled"] and st["tls"]["require_client_cert"]
        assert {p["url"] for p in st["peers"]} == set(urls[1:])

        # No namespace of the test has a default route: nothing it sends can leave the machine.
        for name in ns.made:
            routes = subprocess.run(["ip", "-n", name, "route", "show", "default"], capture_output=True, text=True)
            assert routes.stdout.strip() == "", f"{name} has a default route: {routes.stdout}"

        agent("load_start", genesis=str(genesis_path), urls=urls, key=str(acme_key), ca=ca, batch=10)
        report["load"] = True
        count = lambda: agent("count")["committed"]  # noqa: E731
        wait_for("commits under load", lambda: count() >= 50, state=snapshot)
        report["before_cut"] = count()

        # Peer endpoints: no client certificate, then one from another CA.
        r = agent("http", method="POST", url=urls[2] + "/v1/peer/messages", body="x", ca=ca)
        assert r["status"] == 403 and r["body"]["error"] == "peer.client_certificate", r
        stranger = CertificateAuthority(tmp_path / "stranger").issue(tmp_path / "stranger", "v2",
                                                                     hosts=[f"{SUBNET}.100"])
        r = agent("http", method="POST", url=urls[2] + "/v1/peer/stream", body="x", ca=ca,
                  cert=str(stranger.cert), key=str(stranger.key))
        assert "error" in r, f"a peer with another CA's certificate was accepted: {r}"
        def refusals() -> dict[str, int] | None:
            s = status(2)
            counted = s["tls"]["refused"] if s else {}
            ok = counted.get("tls.client_certificate", 0) >= 1 and counted.get("peer.client_certificate", 0) >= 1
            return counted if ok else None

        refused = wait_for("v2 counts both refusals", refusals, timeout=30)
        report["refused_v2"] = refused
        metrics = agent("http", url=urls[2] + "/metrics", ca=ca)["body"]
        for rule in ("tls.client_certificate", "peer.client_certificate"):
            assert f'rantai_tls_refusals_total{{rule="{rule}"}} {refused[rule]}' in metrics, metrics[-800:]

        # Cut the primary's namespace off: its link goes down.
        primary = next(i for i, p in enumerate(configs) if status(0)["primary"] == _id(p))
        ns.cut(vns[primary])
        cut_at = count()
        assert "error" in agent("http", url=urls[primary] + "/healthz", ca=ca)
        others = [i for i in range(N) if i != primary]
        wait_for("commits during the cut (after a view change)", lambda: count() >= cut_at + 50, timeout=180,
                 state=snapshot)
        report["cut"] = {"validator": f"v{primary}", "committed_during": count() - cut_at,
                         "views": [status(i)["view"] for i in others]}
        ns.restore(vns[primary])
        restored_at = count()
        wait_for("commits after the cut", lambda: count() >= restored_at + 50, timeout=180, state=snapshot)
        target = max(status(i)["height"] for i in others)
        wait_for(f"v{primary} catches up after the cut",
                 lambda: (lambda s: s is not None and s["height"] >= target)(status(primary)), timeout=180,
                 state=snapshot)
        report["after_cut"] = count() - restored_at

        # Certificate rotation on one running validator (not the one that was cut): new file, SIGHUP.
        k = others[0]
        old = agent("fingerprint", url=urls[k])["sha256"]
        CertificateAuthority(tls).issue(tls, f"v{k}", hosts=[f"{SUBNET}.{k + 1}"])
        nodes[k].send_signal(signal.SIGHUP)
        new = wait_for(f"v{k} serves its new certificate",
                       lambda: (lambda f: f if f != old else None)(agent("fingerprint", url=urls[k])["sha256"]),
                       timeout=60)
        assert status(k)["tls"]["certificate"]["sha256"] == new and status(k)["tls"]["reloads"] == 1
        rotated_at = count()
        wait_for("commits after the rotation", lambda: count() >= rotated_at + 50, timeout=180, state=snapshot)
        report["after_rotation"] = count() - rotated_at

        # Reads are for members (the genesis' read policy): a member's signed read verifies; an anonymous read
        # and a non-member's signed read are refused by rule, and counted in /metrics.
        assert agent("read", genesis=str(genesis_path), urls=urls, ca=ca, key=str(acme_key))["height"] >= 1
        stranger = save_key(generate(), tmp_path / "stranger.pem")
        anonymous = agent("http", url=urls[0] + "/v1/head", ca=ca)
        assert anonymous["status"] == 401 and anonymous["body"]["error"] == "read.unsigned", anonymous
        outsider = agent("http", url=urls[0] + "/v1/head", ca=ca, reader_key=str(stranger))
        assert outsider["status"] == 403 and outsider["body"]["error"] == "read.not-member", outsider
        metrics = agent("http", url=urls[0] + "/metrics", ca=ca)["body"]
        for rule in ("read.unsigned", "read.not-member"):
            assert re.search(rf'rantai_read_refused_total{{rule="{re.escape(rule)}"}} [1-9]', metrics), rule
        report["refused_reads"] = ["read.unsigned", "read.not-member"]

        final = agent("load_stop")
        report["load"] = final
        assert all(p.poll() is None for p in nodes), [p.poll() for p in nodes]
        report["heights"] = wait_for("one height on every validator once the load stops",
                                     lambda: (lambda h: h if len(set(h)) == 1 else None)(
                                         [status(i)["height"] for i in range(N)]), timeout=120, state=snapshot)
        print("netns report:", json.dumps(report))
    except BaseException:
        for i in range(N):
            tail = (logs / f"v{i}.log").read_text(errors="replace").splitlines()[-15:]
            print(f"--- v{i} log tail ---", *tail, sep="\n")
        print("netns report so far:", json.dumps(report, default=str))
        raise
    finally:
        agent.close()


def _id(config: Path) -> str:
    import tomllib

    return tomllib.loads(config.read_text(encoding="utf-8"))["id"]
