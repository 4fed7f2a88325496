"""A local network of validator processes on 127.0.0.1, for ``rantai devnet``, the demo, the bench and tests.

It drives the node only through its command line (``rantai-node init-network``, ``rantai-node run``),
never by importing it: the client side and the node share nothing but the ledger format, and this
harness needs ``rantai[node]`` installed only to start the processes.

    net = Devnet(".rantai/devnet", validators=4, base_port=7100)
    net.start()          # creates keys, genesis and configs on first use, else reuses them
    net.wait_ready()
    ...                  # net.urls, net.genesis_path, net.member_key("acme")
    net.kill(1)          # SIGKILL one validator; net.start_node(1) brings it back
    net.stop()

Each node runs ``python -m rantai.node.cli run --config vN.toml`` with its log in ``logs/vN.log``.
With ``tls=True`` the network speaks HTTPS with mTLS between validators: a throw-away CA and one
certificate per validator in ``tls/`` (client/devcerts.py); clients trust ``net.ca_file``.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from .format.genesis import Genesis
from .format.keys import Signer, load_key

__all__ = ["Devnet", "ValidatorProcessConfig"]


@dataclass(frozen=True)
class ValidatorProcessConfig:
    """What the harness needs from a validator's TOML config (written by ``rantai-node init-network``)."""

    path: Path
    id: str
    name: str
    url: str
    data_dir: Path

    @classmethod
    def load(cls, path: Path) -> "ValidatorProcessConfig":
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        listen = doc.get("listen", {})
        scheme = "https" if "tls" in doc else "http"
        return cls(path, doc["id"], doc.get("name", ""), f"{scheme}://{listen['host']}:{listen['port']}",
                   (path.parent / doc["data_dir"]).resolve())


class Devnet:
    def __init__(
        self,
        dir: str | os.PathLike[str] = ".rantai/devnet",
        validators: int = 4,
        base_port: int = 7100,
        *,
        members: Sequence[str] = ("acme", "kopi-co"),
        params: dict[str, int] | None = None,
        python: str = sys.executable,
        log_level: str = "warning",
        read_policy: str | None = None,
        company_prefixes: dict[str, list[str]] | None = None,
        tls: bool = False,
    ) -> None:
        self.dir = Path(dir)
        self.validators = validators
        self.base_port = base_port
        self.members = tuple(members)
        self.params = params
        self.python = python
        self.log_level = log_level
        self.read_policy = read_policy  # None: init-network's default ("members")
        self.company_prefixes = dict(company_prefixes or {})
        self.procs: dict[int, subprocess.Popen] = {}
        self.tls = tls

    @property
    def ca_file(self) -> Path | None:
        """The CA to trust for this devnet's https:// URLs (``None``: plain HTTP)."""
        ca = self.dir / "tls" / "ca.crt"
        return ca if ca.exists() else None

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx (or ``Client(verify=...)``) needs to reach this devnet's nodes."""
        from .tls import context

        return True if self.ca_file is None else context(self.ca_file)

    # -- files -----------------------------------------------------------------------------
    @property
    def genesis_path(self) -> Path:
        return self.dir / "genesis.json"

    def init(self) -> bool:
        """Create the network's files unless they exist. True when created."""
        if self.genesis_path.exists():
            return False
        cmd = [self.python, "-m", "rantai.node.cli", "init-network", "--out", str(self.dir),
               "--validators", str(self.validators), "--members", ",".join(self.members),
               "--base-port", str(self.base_port), "--verify-workers", "0"]
        for k, v in (self.params or {}).items():
            cmd += ["--param", f"{k}={v}"]
        if self.read_policy is not None:
            cmd += ["--read-policy", self.read_policy]
        for name, prefixes in self.company_prefixes.items():
            cmd += ["--company-prefix", f"{name}={','.join(prefixes)}"]
        if self.tls:
            from .devcerts import CertificateAuthority

            ca = CertificateAuthority(self.dir / "tls")
            for i in range(self.validators):
                ca.issue(self.dir / "tls", f"v{i}")
            cmd += ["--tls-dir", str(self.dir / "tls")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"rantai-node init-network failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}")
        return True

    @property
    def genesis(self) -> Genesis:
        return Genesis.load(self.genesis_path)

    def config_path(self, i: int) -> Path:
        return self.dir / f"v{i}.toml"

    def configs(self) -> list[ValidatorProcessConfig]:
        out, i = [], 0
        while self.config_path(i).exists():
            out.append(ValidatorProcessConfig.load(self.config_path(i)))
            i += 1
        return out

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.configs()]

    def member_key_path(self, name: str) -> Path:
        return self.dir / "members" / f"{name}.pem"

    def member_key(self, name: str) -> Signer:
        return load_key(self.member_key_path(name))

    # -- processes -------------------------------------------------------------------------
    def start(self, indices: Iterable[int] | None = None) -> "Devnet":
        self.init()
        n = len(self.configs())
        for i in indices if indices is not None else range(n):
            self.start_node(i)
        return self

    def start_node(self, i: int) -> subprocess.Popen:
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            return proc
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"v{i}.log", "ab")
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "rantai.node.cli", "run", "--config", str(self.config_path(i)),
                 "--log-level", self.log_level],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the devnet, which then stops the nodes cleanly
            )
        finally:
            log.close()
        self.procs[i] = proc
        return proc

    def running(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=30)

    def stop_node(self, i: int, timeout: float = 15.0) -> int | None:
        proc = self.procs.get(i)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self, timeout: float = 15.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_ready(self, timeout: float = 30.0, indices: Iterable[int] | None = None) -> None:
        """Wait until every (or the given) node answers /healthz; raise ``TimeoutError`` otherwise."""
        configs = self.configs()
        pending = set(indices if indices is not None else range(len(configs)))
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, verify=self.verify) as client:
            while pending:
                for i in sorted(pending):
                    proc = self.procs.get(i)
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"validator v{i} exited with code {proc.returncode}; "
                                           f"see {self.dir}/logs/v{i}.log")
                    try:
                        if client.get(configs[i].url + "/healthz").status_code == 200:
                            pending.discard(i)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"validators {sorted(pending)} not ready after {timeout:.0f}s")
                if pending:
                    time.sleep(0.1)

    def __enter__(self) -> "Devnet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
