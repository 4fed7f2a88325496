"""A local network of validator processes on 127.0.0.1, for ``rantai-node devnet``, the demo, the bench and tests.

    net = Devnet(".rantai/devnet", validators=4, base_port=7100)
    net.start()          # creates keys, genesis and configs on first use, else reuses them
    net.wait_ready()
    ...                  # net.urls, net.genesis_path, net.member_key("acme")
    net.kill(1)          # SIGKILL one validator; net.start_node(1) brings it back
    net.stop()

Each node runs ``python -m rantai.node.cli run --config vN.toml`` with its log in ``logs/vN.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx

from rantai.client.genesis import Genesis
from rantai.client.keys import Signer, generate, load_key, save_key

from .config import NodeConfig

__all__ = ["Devnet", "init_network"]


def init_network(
    out: str | os.PathLike[str],
    *,
    validators: int = 4,
    members: Sequence[str] = ("acme", "kopi-co"),
    base_port: int = 7100,
    host: str = "127.0.0.1",
    chain_id: str = "rantai-devnet",
    params: dict[str, int] | None = None,
    verify_workers: int = 0,
) -> Path:
    """Keys (PEM 0600), ``genesis.json`` and one ``vN.toml`` per validator under ``out``. Returns the genesis path.

    ``members`` are names (``acme``) or ``name=Organisation`` (``acme=Acme Coffee Ltd``).
    """
    out = Path(out)
    genesis_path = out / "genesis.json"
    if genesis_path.exists():
        raise FileExistsError(f"{genesis_path} already exists; refusing to overwrite a network")
    if validators < 1:
        raise ValueError("at least one validator")
    out.mkdir(parents=True, exist_ok=True)
    vkeys: list[Signer] = []
    for i in range(validators):
        key = generate()
        save_key(key, out / "keys" / f"v{i}.pem")
        vkeys.append(key)
    mkeys: list[tuple[str, str, Signer]] = []
    for member in members:
        # A member is a name, or "name=Organisation Name" to give its organisation too.
        name, _, org = member.partition("=")
        key = generate()
        save_key(key, out / "members" / f"{name}.pem")
        mkeys.append((name, org or name, key))
    genesis = Genesis.build(
        chain_id,
        [(k.public_key, f"v{i}", f"http://{host}:{base_port + i}") for i, k in enumerate(vkeys)],
        [(k.public_key, name, org, ["submitter", "auditor"]) for name, org, k in mkeys],
        params=params,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    genesis_path.write_text(genesis.to_json(), encoding="utf-8")
    for i, k in enumerate(vkeys):
        NodeConfig(
            id=k.id,
            name=f"v{i}",
            key_path=out / "keys" / f"v{i}.pem",
            genesis_path=genesis_path,
            data_dir=out / "data" / f"v{i}",
            host=host,
            port=base_port + i,
            # All validators of a devnet share this machine's cores: verifying on each node's own
            # loop avoids GIL hand-offs that threads would add (see node/validation.py).
            verify_workers=verify_workers,
        ).save(out / f"v{i}.toml")
    return genesis_path


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
    ) -> None:
        self.dir = Path(dir)
        self.validators = validators
        self.base_port = base_port
        self.members = tuple(members)
        self.params = params
        self.python = python
        self.log_level = log_level
        self.procs: dict[int, subprocess.Popen] = {}

    # -- files -----------------------------------------------------------------------------
    @property
    def genesis_path(self) -> Path:
        return self.dir / "genesis.json"

    def init(self) -> bool:
        """Create the network's files unless they exist. True when created."""
        if self.genesis_path.exists():
            return False
        init_network(self.dir, validators=self.validators, members=self.members,
                     base_port=self.base_port, params=self.params)
        return True

    @property
    def genesis(self) -> Genesis:
        return Genesis.load(self.genesis_path)

    def config_path(self, i: int) -> Path:
        return self.dir / f"v{i}.toml"

    def configs(self) -> list[NodeConfig]:
        out, i = [], 0
        while self.config_path(i).exists():
            out.append(NodeConfig.load(self.config_path(i)))
            i += 1
        return out

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.configs()]

    def member_key(self, name: str) -> Signer:
        return load_key(self.dir / "members" / f"{name}.pem")

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
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for i in sorted(pending):
                    proc = self.procs.get(i)
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"validator v{i} exited with code {proc.returncode}; see {self.dir}/logs/v{i}.log")
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
