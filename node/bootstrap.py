"""One-machine network set-up: every key, the genesis file and each validator's config in one folder.

This is the devnet and test path (``rantai-node init-network``, ``rantai devnet``, the demo, the bench):
whoever runs it holds every organisation's private keys. A real consortium makes its keys on each
organisation's own machine (docs/operations.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import Signer, generate, save_key

from .config import NodeConfig

__all__ = ["init_network"]


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
