"""``rantai-node``: the operator's commands (init-network, run, devnet, status, audit)."""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
import httpx

from rantai.client.format.errors import RantaiError

from .config import ConfigError, NodeConfig
from .storage import StorageError, StoreDamaged

__all__ = ["main"]


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Errors an operator can fix print one line (no traceback) and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RantaiError, ConfigError, StorageError, FileExistsError, ValueError, TimeoutError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the node: {exc}") from None
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None

    return wrapper


def _params(items: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = int(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: KEY=INTEGER expected", param_hint="--param") from None
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run and inspect rantai validator nodes."""


@cli.command("init-network")
@click.option("--validators", default=4, show_default=True, help="Number of validators.")
@click.option("--members", default="acme,kopi-co", show_default=True,
              help="Comma-separated members, each name[=Organisation][:role+role] "
                   "(default roles submitter+auditor; e.g. acme=Acme:submitter+admin).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for keys, genesis and configs.")
@click.option("--base-port", default=7100, show_default=True, help="Port of v0; vN listens on base-port + N.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--chain-id", default="rantai-devnet", show_default=True)
@click.option("--param", "params", multiple=True, help="Genesis parameter KEY=VALUE (repeatable).")
@click.option("--verify-workers", default=2, show_default=True,
              help="Signature-checking threads per node; 0 verifies on the event loop "
                   "(best when validators share cores).")
@click.option("--approvals", default=None, metavar="N|majority",
              help="Admin approvals a configuration change needs (default: a majority of the admins).")
@_friendly
def init_network_cmd(validators: int, members: str, out: str, base_port: int, host: str, chain_id: str,
                     params: tuple[str, ...], verify_workers: int, approvals: str | None) -> None:
    """Generate keys (PEM, 0600), genesis.json and one TOML config per validator."""
    from .bootstrap import init_network, parse_member

    names = [m.strip() for m in members.split(",") if m.strip()]
    threshold: int | str | None = None
    if approvals is not None:
        threshold = "majority" if approvals == "majority" else int(approvals)
    path = init_network(out, validators=validators, members=names, base_port=base_port, host=host,
                        chain_id=chain_id, params=_params(params), verify_workers=verify_workers,
                        approvals=threshold)
    click.echo(f"genesis: {path}")
    for i in range(validators):
        click.echo(f"v{i}: {Path(out) / f'v{i}.toml'}  http://{host}:{base_port + i}")
    for name in names:
        name = parse_member(name)[0]
        click.echo(f"member {name}: {Path(out) / 'members' / f'{name}.pem'}")


@cli.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Node TOML config.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@_friendly
def run_cmd(config_path: str, log_level: str) -> None:
    """Run one validator until SIGINT/SIGTERM."""
    import uvicorn

    from .app import create_app
    from .driver import Node

    cfg = NodeConfig.load(config_path)
    node = Node.from_config(cfg)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {node.name} %(levelname)s %(name)s: %(message)s")
    try:
        node.open_store()  # checked (and repaired, or refused) before the server starts: node/storecheck.py
    except StoreDamaged as exc:
        click.echo(f"rantai-node: {exc}", err=True)
        sys.exit(1)
    app = create_app(node)
    # What start-up allocated lives as long as the process: keep the cyclic GC from re-walking it.
    gc.collect()
    gc.freeze()
    server = _Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=log_level,
                                           access_log=False, lifespan="on", timeout_graceful_shutdown=5))
    server.before_shutdown = [node.begin_shutdown]
    profile_path = os.environ.get("RANTAI_PROFILE")  # set by `rantai bench --profile` for one validator
    if profile_path:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU time: wall time would charge CPU contention to whatever ran
        profiler.enable()
        try:
            server.run()
        finally:
            profiler.disable()
            profiler.dump_stats(profile_path)
    else:
        server.run()
    if not server.started:
        raise RuntimeError(f"node {node.name} did not start (is port {cfg.port} free?)")


def _server_class() -> type:
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but SIGINT/SIGTERM end a clean shutdown with exit code 0 (uvicorn re-raises them)."""

        before_shutdown: list = []

        async def shutdown(self, sockets=None):  # type: ignore[override]
            # Peers' streams are requests that never end by themselves: end them first, or the
            # graceful shutdown would wait for them until its timeout.
            for hook in self.before_shutdown:
                hook()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)

    return Server


def _Server(config: Any) -> Any:
    return _server_class()(config)


@cli.command("devnet", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def devnet_cmd(ctx: click.Context) -> None:
    """Start a local network of validator processes on 127.0.0.1: the same as ``rantai devnet``.

    The devnet harness is a client-side tool that drives validators through this command line, so
    this command hands over to it as a process rather than importing it.
    """
    os.execv(sys.executable, [sys.executable, "-m", "rantai.client.cli", "devnet", *ctx.args])


@cli.command("audit")
@click.option("--data-dir", "data_dirs", multiple=True, required=True, type=click.Path(file_okay=False),
              help="A stopped node's data directory (repeat with --compare to compare several).")
@click.option("--genesis", "genesis_path", required=True, type=click.Path(dir_okay=False),
              help="The network's genesis.json.")
@click.option("--compare", "compare_", is_flag=True, help="Compare the data directories height by height.")
@click.option("--to", "end", type=int, help="Stop at this height (default: the store's head).")
@click.option("--workers", type=int, help="Verifier processes (default: CPU count; 0: in-process).")
@click.option("--schema", is_flag=True, help="Also validate every EPCIS event.")
@click.option("--max-failures", type=int, default=50, show_default=True, help="Stop after this many failures.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
def audit_cmd(data_dirs: tuple[str, ...], genesis_path: str, compare_: bool, end: int | None, workers: int | None,
              schema: bool, max_failures: int, as_json: bool) -> None:
    """Re-verify a stopped node's chain from its data directory, with the auditor's rules (read-only).

    Exit code 0 when every rule holds, 1 when the chain breaks a rule (or the stores diverge),
    4 when a directory cannot be read at all.
    """
    from rantai.client.format import audit as engine
    from rantai.client.format.genesis import Genesis

    from .audit import DataDirSource

    try:
        genesis = Genesis.load(genesis_path)
        sources = [DataDirSource(d) for d in data_dirs]
    except RantaiError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(4)
    try:
        if compare_:
            if len(sources) < 2:
                raise click.UsageError("--compare needs at least two --data-dir")
            crep = engine.compare(genesis, sources, end=end)
            click.echo(json.dumps(crep.to_obj(), indent=2) if as_json else crep.summary())
            sys.exit(0 if crep.ok else (4 if crep.errors and crep.divergence is None else 1))
        if len(sources) != 1:
            raise click.UsageError("audit one --data-dir (use --compare for several)")
        with engine.Auditor(genesis, workers=workers, schema=schema, max_failures=max_failures) as auditor:
            rep = auditor.run(sources[0], end=end)
        click.echo(json.dumps(rep.to_obj(), indent=2) if as_json else rep.summary())
        sys.exit(0 if rep.ok else 1)
    finally:
        for s in sources:
            s.close()


@cli.command("status")
@click.argument("url", default="http://127.0.0.1:7100")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@_friendly
def status_cmd(url: str, as_json: bool) -> None:
    """Height, view, primary, peers and their heights, mempool size."""
    r = httpx.get(url.rstrip("/") + "/v1/status", timeout=5.0)
    if r.status_code != 200:
        raise RuntimeError(f"{url} answered HTTP {r.status_code}: {r.text[:200]}")
    s = r.json()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"node     {s.get('name', '')} {s['node']}  chain {s['chain_id']}")
    click.echo(f"height   {s['height']}   view {s['view']}   primary {s['primary']}   mode {s['mode']}")
    click.echo(f"mempool  {s['mempool']}")
    for p in s.get("peers", []):
        h = "-" if p.get("height") is None else p["height"]
        click.echo(f"peer     {p['id']}  {p['url']}  height {h}  {'up' if p.get('reachable') else 'DOWN'}")
    _print_validators_in_force(url)


def _print_validators_in_force(url: str) -> None:
    """The validator set governing the next block, from the node's own ``GET /v1/config``: after a
    governance change an operator checks here which validators this node now counts votes from.
    (This trusts the node; ``rantai members`` verifies the same against the genesis.)"""
    r = httpx.get(url.rstrip("/") + "/v1/config", timeout=5.0)
    if r.status_code != 200:  # a node from before governance: nothing more to show
        return
    c = r.json()
    since = f"in force since height {c['since']}" if c.get("since") else "from the genesis"
    click.echo(f"config   version {c.get('version', 0)}, {since}; {len(c['validators'])} validators, "
               f"{c['governance']['needed']} admin approval(s) per change")
    for v in c["validators"]:
        click.echo(f"validator {v['name']:<8} {v['id']}  {v['url']}")


def main() -> None:
    cli(prog_name="rantai-node")


if __name__ == "__main__":
    main()
