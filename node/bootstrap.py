"""Validator configs from a genesis, and the one-machine network set-up that holds every key.

``write_node_config`` is the one place a validator's TOML is made: by ``rantai-node config`` in a
real consortium (each organisation, for its own validator, after the key ceremony of
docs/operations.md) and by ``init_network`` for all validators of a devnet at once.

``init_network`` is the devnet and test path (``rantai-node init-network``, ``rantai devnet``, the
demo, the bench): whoever runs it holds every organisation's private keys, which no real consortium
should accept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from rantai.client.format.errors import ConfigError
from rantai.client.format.genesis import Genesis
from rantai.client.format.keys import Signer, generate, load_key, save_key

from .config import NodeConfig
from .tls import TlsConfig

__all__ = ["DEFAULT_ROLES", "init_network", "parse_member", "write_node_config"]


def write_node_config(
    out: str | os.PathLike[str],
    *,
    genesis: Genesis,
    genesis_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    host: str,
    port: int,
    verify_workers: int = 2,
    peers: dict[str, str] | None = None,
    overwrite: bool = True,
    joining: bool = False,
    name: str | None = None,
    tls: TlsConfig | None = None,
) -> NodeConfig:
    """Write the TOML config of the validator whose key is ``key_path``, and return it.

    The key is read to find which validator of ``genesis`` it is: a config naming a key that is not
    a validator would only fail later, when the node starts (or, worse, at its first vote). With
    ``joining``, a key the genesis does not list is accepted: a validator the consortium adds later
    by governance (``add_validator``); its node observes until the chain makes it a validator.
    ``name`` is its name in the node's logs (default: the genesis name, else the key's id).
    """
    out = Path(out)
    if not overwrite and out.exists():
        raise FileExistsError(f"{out} already exists; refusing to overwrite a node config")
    signer = load_key(key_path)
    validator = genesis.validator_by_id.get(signer.id)
    if validator is None and not joining:
        raise ConfigError(f"config: key {key_path} (id {signer.id}) is not a validator of genesis "
                          f"{genesis.chain_id} ({genesis.hash.hex()[:16]}…); a validator that governance "
                          f"will add later: use --joining")
    # Absolute here, so the saved config holds paths relative to its own folder (or absolute when
    # outside it) whatever the current directory was: the node resolves them against the config.
    cfg = NodeConfig(
        id=signer.id,
        name=name or (validator.name if validator is not None else signer.id),
        key_path=Path(key_path).resolve(),
        genesis_path=Path(genesis_path).resolve(),
        data_dir=Path(data_dir).resolve(),
        host=host,
        port=port,
        peers=dict(peers or {}),
        verify_workers=verify_workers,
        tls=tls,
    )
    cfg.save(out)
    return cfg


DEFAULT_ROLES = ("submitter", "auditor")


def parse_member(spec: str) -> tuple[str, str, list[str]]:
    """``name[=Organisation][:role+role]`` as (name, organisation, roles): one string per member, so a
    devnet's whole consortium (who may submit, audit, govern) fits on one command line."""
    head, colon, tail = spec.rpartition(":") if ":" in spec else (spec, "", "")
    roles = [r.strip() for r in tail.split("+") if r.strip()] if colon else list(DEFAULT_ROLES)
    name, _, org = head.partition("=")
    name, org = name.strip(), org.strip()
    if not name or not roles:
        raise ValueError(f"member {spec!r}: name[=Organisation][:role+role] expected")
    return name, org or name, roles


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
    approvals: int | str | None = None,
    read_policy: str = "members",
    company_prefixes: dict[str, list[str]] | None = None,
    tls_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Keys (PEM 0600), ``genesis.json`` and one ``vN.toml`` per validator under ``out``. Returns the genesis path.

    ``members`` are names (``acme``), ``name=Organisation`` (``acme=Acme Coffee Ltd``), either with
    ``:role+role`` after it (``acme=Acme:submitter+admin``); without roles a member is a submitter and
    an auditor. ``approvals`` is the governance threshold (a number, or ``"majority"``, the default).
    ``read_policy`` is written into the genesis even when it is the default, so the file says who may read;
    ``company_prefixes`` gives members' GS1 Company Prefixes by name (docs/governance.md, "Read policy").
    With ``tls_dir`` (holding ``ca.crt`` and ``vN.crt``/``vN.key`` for each validator, made beforehand),
    validators are reached at https:// URLs and require their peers' client certificates (mTLS).
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
    mkeys: list[tuple[str, str, list[str], Signer]] = []
    for member in members:
        # A member is a name, or "name=Organisation Name" to give its organisation too.
        name, org, roles = parse_member(member)
        key = generate()
        save_key(key, out / "members" / f"{name}.pem")
        mkeys.append((name, org, roles, key))
    scheme = "http" if tls_dir is None else "https"
    tls_folder = None if tls_dir is None else Path(tls_dir).resolve()
    if tls_folder is not None:
        missing = [str(p) for i in range(validators) for p in (tls_folder / f"v{i}.crt", tls_folder / f"v{i}.key")
                   if not p.exists()] + ([] if (tls_folder / "ca.crt").exists() else [str(tls_folder / "ca.crt")])
        if missing:
            raise ConfigError(f"init-network: TLS files missing: {', '.join(missing)}")
    genesis = Genesis.build(
        chain_id,
        [(k.public_key, f"v{i}", f"{scheme}://{host}:{base_port + i}") for i, k in enumerate(vkeys)],
        [(k.public_key, name, org, roles) for name, org, roles, k in mkeys],
        params=params,
        approvals=approvals,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        read_policy=read_policy,
        company_prefixes=company_prefixes,
    )
    genesis_path.write_text(genesis.to_json(), encoding="utf-8")
    for i in range(len(vkeys)):
        write_node_config(
            out / f"v{i}.toml",
            genesis=genesis,
            genesis_path=genesis_path,
            key_path=out / "keys" / f"v{i}.pem",
            data_dir=out / "data" / f"v{i}",
            host=host,
            port=base_port + i,
            # All validators of a devnet share this machine's cores: verifying on each node's own
            # loop avoids GIL hand-offs that threads would add (see node/validation.py).
            verify_workers=verify_workers,
            tls=None if tls_folder is None else TlsConfig(
                cert=tls_folder / f"v{i}.crt", key=tls_folder / f"v{i}.key", ca=tls_folder / "ca.crt",
                require_client_cert=True),
        )
    return genesis_path
