"""``rantai-node``: the operator's commands (init-network, run, devnet, status)."""

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

from rantai.client.errors import RantaiError

from .config import ConfigError, NodeConfig
from .storage import StorageError

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
              help="Comma-separated member names, each optionally name=Organisation.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for keys, genesis and configs.")
@click.option("--base-port", default=7100, show_default=True, help="Port of v0; vN listens on base-port + N.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--chain-id", default="rantai-devnet", show_default=True)
@click.option("--param", "params", multiple=True, help="Genesis parameter KEY=VALUE (repeatable).")
@click.option("--verify-workers", default=2, show_default=True,
              help="Signature-checking threads per node; 0 verifies on the event loop (best when validators share cores).")
@_friendly
def init_network_cmd(validators: int, members: str, out: str, base_port: int, host: str, chain_id: str,
                     params: tuple[str, ...], verify_workers: int) -> None:
    """Generate keys (PEM, 0600), genesis.json and one TOML config per validator."""
    from .devnet import init_network

    names = [m.strip() for m in members.split(",") if m.strip()]
    path = init_network(out, validators=validators, members=names, base_port=base_port, host=host,
                        chain_id=chain_id, params=_params(params), verify_workers=verify_workers)
    click.echo(f"genesis: {path}")
    for i in range(validators):
        click.echo(f"v{i}: {Path(out) / f'v{i}.toml'}  http://{host}:{base_port + i}")
    for name in names:
        name = name.partition("=")[0]
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
    from .storage import Storage

    cfg = NodeConfig.load(config_path)
    node = Node.from_config(cfg)
    Storage(cfg.data_dir, node.genesis.hash).close()  # fail fast, with one line, on a locked or foreign store
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {node.name} %(levelname)s %(name)s: %(message)s")
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


@cli.command("devnet")
@click.option("--validators", default=4, show_default=True)
@click.option("--dir", "dir_", default=".rantai/devnet", show_default=True, type=click.Path(file_okay=False))
@click.option("--base-port", default=7100, show_default=True)
@_friendly
def devnet_cmd(validators: int, dir_: str, base_port: int) -> None:
    """Start a local network of validator processes on 127.0.0.1 (created on first use, reused after)."""
    from .devnet import Devnet

    net = Devnet(dir_, validators=validators, base_port=base_port)
    created = net.init()
    click.echo(("created" if created else "reusing") + f" devnet in {dir_}")

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        net.start()
        net.wait_ready(timeout=60)
        click.echo(f"genesis: {net.genesis_path}")
        for i, url in enumerate(net.urls):
            click.echo(f"v{i}: {url}")
        click.echo(f"members' keys: {net.dir / 'members'}   logs: {net.dir / 'logs'}")
        click.echo("press Ctrl-C to stop")
        while True:
            for i, proc in list(net.procs.items()):
                if proc.poll() is not None:
                    click.echo(f"v{i} exited with code {proc.returncode}; see {net.dir / 'logs' / f'v{i}.log'}", err=True)
                    del net.procs[i]
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        net.stop()


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


def main() -> None:
    cli(prog_name="rantai-node")


if __name__ == "__main__":
    main()
