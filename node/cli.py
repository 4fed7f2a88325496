"""``rantai-node``: the operator's commands.

A real consortium: ``keygen`` (a validator's key and join request), ``genesis assemble`` (the
coordinator), ``config`` (one validator's TOML), ``run``. One machine, every key: ``init-network``,
``devnet``. Watching: ``status``, ``audit``.
"""

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
@click.version_option(package_name="rantai", prog_name="rantai-node")
def cli() -> None:
    """Run and inspect rantai validator nodes."""


@cli.command("init-network", short_help="DEVNET/TEST ONLY: all keys, genesis and configs on one machine.")
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
@click.option("--tls-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="HTTPS between validators with mTLS: a folder holding ca.crt and vN.crt/vN.key for each "
                   "validator (rantai devnet --tls makes them).")
@click.option("--read-policy", default="members", show_default=True,
              type=click.Choice(["members", "public", "parties"]), help="Who may read what (docs/governance.md).")
@click.option("--company-prefix", "company_prefixes", multiple=True, metavar="MEMBER=PREFIX[,PREFIX]",
              help="A member's GS1 Company Prefixes, for the parties read policy (repeatable).")
@_friendly
def init_network_cmd(validators: int, members: str, out: str, base_port: int, host: str, chain_id: str,
                     params: tuple[str, ...], verify_workers: int, approvals: str | None,
                     tls_dir: str | None, read_policy: str, company_prefixes: tuple[str, ...]) -> None:
    """DEVNET/TEST ONLY: every key, genesis.json and each validator's config, made on this one machine.

    Whoever runs this holds every organisation's private keys. A real consortium runs the key
    ceremony instead (keygen --join-request, genesis assemble, config: docs/operations.md).
    """
    from .bootstrap import init_network, parse_member

    names = [m.strip() for m in members.split(",") if m.strip()]
    threshold: int | str | None = None
    if approvals is not None:
        threshold = "majority" if approvals == "majority" else int(approvals)
    prefixes: dict[str, list[str]] = {}
    for spec in company_prefixes:
        who, eq, listed = spec.partition("=")
        if not eq:
            raise click.BadParameter(f"{spec!r}: MEMBER=PREFIX[,PREFIX] expected", param_hint="--company-prefix")
        prefixes.setdefault(who.strip(), []).extend(p.strip() for p in listed.split(",") if p.strip())
    path = init_network(out, validators=validators, members=names, base_port=base_port, host=host,
                        chain_id=chain_id, params=_params(params), verify_workers=verify_workers,
                        approvals=threshold, tls_dir=tls_dir, read_policy=read_policy,
                        company_prefixes=prefixes)
    click.echo(f"genesis: {path}")
    for i in range(validators):
        click.echo(f"v{i}: {Path(out) / f'v{i}.toml'}  {'https' if tls_dir else 'http'}://{host}:{base_port + i}")
    for name in names:
        name = parse_member(name)[0]
        click.echo(f"member {name}: {Path(out) / 'members' / f'{name}.pem'}")


@cli.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Node TOML config.")
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]),
              help="Overrides the config's log.level (default info).")
@click.option("--log-format", default=None, type=click.Choice(["text", "json"]),
              help="Overrides the config's log.format (default text; json: one object per line).")
@_friendly
def run_cmd(config_path: str, log_level: str | None, log_format: str | None) -> None:
    """Run one validator until SIGINT/SIGTERM."""
    import uvicorn

    from .app import create_app
    from .driver import Node
    from .logs import configure, start_event

    cfg = NodeConfig.load(config_path)
    node = Node.from_config(cfg)
    log_level = log_level or cfg.log_level
    configure(log_level, log_format or cfg.log_format, node.name)
    start_event(cfg, node, log_level, log_format or cfg.log_format)
    tls = _node_tls(cfg)
    if tls is not None:
        node.peer_tls = tls.client  # peers verified with the CA/pins; this node's certificate offered (mTLS)
    try:
        node.open_store()  # checked (and repaired, or refused) before the server starts: node/storecheck.py
    except StoreDamaged as exc:
        click.echo(f"rantai-node: {exc}", err=True)
        sys.exit(1)
    app = create_app(node, admission=cfg.admission)
    # What start-up allocated lives as long as the process: keep the cyclic GC from re-walking it.
    gc.collect()
    gc.freeze()
    app, server_tls = _serve_tls(cfg, node, tls, app)
    server = _Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=log_level, log_config=None,
                                           access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                                           **server_tls))
    server.before_shutdown = [node.begin_shutdown]
    if tls is not None:
        server.on_hangup = [tls.request_reload]
        tls.start()
    node.on_fatal = lambda exc: server.handle_exit(signal.SIGTERM, None)  # stop serving: this validator is unsafe
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
    if node.fatal is not None:
        click.echo(f"rantai-node: {node.name} stopped: invariant broken: {node.fatal} (a bug: see the log)", err=True)
        sys.exit(70)
    if not server.started:
        raise RuntimeError(f"node {node.name} did not start (is port {cfg.port} free?)")


def _node_tls(cfg: NodeConfig) -> Any:
    """The node's TLS state (node/tls.py) when its config has a [tls] table; ``None`` for plain HTTP."""
    from .tls import NodeTls

    return None if cfg.tls is None else NodeTls(cfg.tls)


def _serve_tls(cfg: NodeConfig, node: Any, tls: Any, app: Any) -> tuple[Any, dict[str, Any]]:
    """The app (behind the peer-endpoint guard) and what uvicorn needs for HTTPS (the reloadable context, the
    protocol noting client certificates); without TLS, the loud warning of a node on a non-loopback address."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from .parser_errors import shaped_protocol
    from .tls import plain_http_warning

    if tls is None:
        warning = plain_http_warning(cfg.host, cfg.port)
        if warning is not None:
            logging.getLogger("rantai.node.tls").warning(warning)
        node.status_extra["tls"] = lambda: {"enabled": False, "warning": warning}
        return app, {"http": shaped_protocol(AutoHTTPProtocol)}
    node.status_extra["tls"] = tls.status
    return tls.guard(app), {"ssl_context_factory": lambda config, default: tls.server,
                            "http": tls.protocol_class(shaped_protocol(AutoHTTPProtocol))}


def _server_class() -> type:
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but SIGINT/SIGTERM end a clean shutdown with exit code 0 (uvicorn re-raises them)."""

        before_shutdown: list = []
        on_hangup: list = []  # SIGHUP: reload the TLS certificate (node/tls.py)

        async def shutdown(self, sockets=None):
            # Peers' streams are requests that never end by themselves: end them first, or the
            # graceful shutdown would wait for them until its timeout.
            for hook in self.before_shutdown:
                hook()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: [hook() for hook in self.on_hangup])
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
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True), envvar="RANTAI_CA_FILE",
              help="CA (or the node's own certificate) to verify an https:// node with (RANTAI_CA_FILE).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="This validator's (or a member's) key: signs the read of the configuration in force.")
@_friendly
def status_cmd(url: str, as_json: bool, ca_file: str | None, key_path: str | None) -> None:
    """Height, view, primary, peers and their heights, mempool size, TLS; with --key, the validators in force."""
    verify: Any = True if ca_file is None else _ca_context(ca_file)
    r = httpx.get(url.rstrip("/") + "/v1/status", timeout=5.0, verify=verify)
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
    _print_tls(s.get("tls"))
    _print_validators_in_force(url, verify, key_path)


@cli.command("doctor")
@click.argument("url", default="http://127.0.0.1:7100")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait for each node's answer.")
@click.option("--json", "as_json", is_flag=True, help="The findings as JSON.")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True), envvar="RANTAI_CA_FILE",
              help="CA to verify https:// validators with (RANTAI_CA_FILE).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="This validator's (or a member's) key: signs the read of the configuration in force, so the "
                   "findings name validators (without it, under a non-public read policy, they are named by id).")
def doctor_cmd(url: str, timeout: float, as_json: bool, ca_file: str | None, key_path: str | None) -> None:
    """Why is this node not committing? Asks it and every validator in force, and names each cause found.

    Exit code 0 when nothing blocks commits, 1 when a cause was found (or the node does not answer).
    """
    from rantai.client.format.keys import load_key

    from .doctor import diagnose, gather
    from .read_policy import ValidatorReadAuth

    verify: Any = True if ca_file is None else _ca_context(ca_file)
    auth = ValidatorReadAuth(load_key(key_path)) if key_path else None  # signed reads (docs/api.md)
    with httpx.Client(timeout=timeout, verify=verify, auth=auth) as client:
        findings = diagnose(gather(url, timeout=timeout, client=client))
    if as_json:
        click.echo(json.dumps([{"cause": f.cause, "blocking": f.blocking, "text": f.text} for f in findings],
                              indent=2))
    else:
        for f in findings:
            click.echo(f"{f.cause}: {f.text}")
    sys.exit(1 if any(f.blocking for f in findings) else 0)


# -- backup, restore, reset (node/backup.py; docs/operations.md "Backup and restore") --------------


def _local(cfg: NodeConfig) -> tuple[str, Any]:
    """The node's API as seen from its own host, and how to verify it: with a [tls] table, HTTPS checked against
    the config's CA but not by name (the certificate names the address peers use, not loopback)."""
    import ssl

    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(cfg.host, cfg.host)
    tls = getattr(cfg, "tls", None)
    scheme = "http" if tls is None else "https"
    url = f"{scheme}://[{host}]:{cfg.port}" if ":" in host else f"{scheme}://{host}:{cfg.port}"
    if tls is None:
        return url, True
    verify = ssl.create_default_context(cafile=str(tls.ca) if getattr(tls, "ca", None) else None)
    verify.check_hostname = False
    return url, verify


@cli.command("healthcheck")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The node's TOML.")
@click.option("--timeout", default=4.0, show_default=True, help="Seconds to wait for the answer.")
def healthcheck_cmd(config_path: str, timeout: float) -> None:
    """Exit 0 when the node of this config answers GET /healthz on its own address, 1 otherwise (Docker's
    HEALTHCHECK). With a [tls] table it speaks HTTPS, checking the node's certificate against the config's CA
    (not its name: the node is asked on loopback, and its certificate names the address peers use)."""
    import ssl

    try:
        url, verify = _local(NodeConfig.load(config_path))
        r = httpx.get(url + "/healthz", timeout=timeout, verify=verify)
    except (ConfigError, httpx.HTTPError, OSError, ssl.SSLError) as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    if r.status_code != 200:
        click.echo(f"unhealthy: HTTP {r.status_code}: {r.text[:200]}", err=True)
        sys.exit(1)
    click.echo("healthy")


@cli.command("backup")
@click.argument("dest", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The node's TOML.")
@click.option("--url", help="The running node's API (default: from the config's listen address).")
@_friendly
def backup_cmd(dest: str, config_path: str, url: str | None) -> None:
    """Write a consistent backup of the node's store into DIR (new or empty), while it runs.

    A running node writes it itself, from LevelDB snapshots (asked on loopback, POST /v1/admin/backup);
    a stopped node's store is read directly, the same way.
    """
    from rantai.client.format.genesis import Genesis

    from .backup import backup_store
    from .storage import Storage

    cfg = NodeConfig.load(config_path)
    target = str(Path(dest).resolve())
    local, verify = _local(cfg)
    try:
        r = httpx.post((url or local).rstrip("/") + "/v1/admin/backup", json={"dir": target}, timeout=3600.0,
                       verify=verify)
    except httpx.ConnectError:
        r = None
    if r is not None:
        if r.status_code != 200:
            raise RuntimeError(f"the node refused the backup: HTTP {r.status_code}: {r.text[:300]}")
        manifest, how = r.json(), "online, written by the running node"
    else:
        storage = Storage(cfg.data_dir, Genesis.load(cfg.genesis_path).hash, create=False)
        try:
            manifest, how = backup_store(storage, target, node=cfg.name), "offline: the node is not running"
        finally:
            storage.close()
    click.echo(f"backup of {cfg.name} at height {manifest['height']} ({manifest['head_hash'][:16]}…) in {target}: "
               f"{manifest['bytes'] / 2**20:.1f} MiB in {manifest['seconds']:.1f} s ({how})")


@cli.command("restore")
@click.argument("src", metavar="DIR", type=click.Path(file_okay=False, exists=True))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The node's TOML.")
@_friendly
def restore_cmd(src: str, config_path: str) -> None:
    """Copy the backup in DIR into the (stopped) node's empty data_dir; check it opens at the backup's head."""
    from rantai.client.format.genesis import Genesis

    from .backup import restore_store

    cfg = NodeConfig.load(config_path)
    manifest = restore_store(src, cfg.data_dir, Genesis.load(cfg.genesis_path).hash)
    click.echo(f"restored {cfg.data_dir} at height {manifest['height']} from {src}; start the node: it fetches "
               f"the blocks after {manifest['height']} from its peers (re-verify with rantai-node audit first if "
               f"you like)")


@cli.command("reset")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The node's TOML.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_friendly
def reset_cmd(config_path: str, yes: bool) -> None:
    """Delete the (stopped) node's store; at its next start it fetches the whole chain from its peers.

    The key, the genesis and the config are kept.
    """
    from .backup import reset_store

    cfg = NodeConfig.load(config_path)
    if not yes:
        click.echo(f"This deletes every block, index and vote of validator {cfg.name} in {cfg.data_dir}.")
        typed = click.prompt(f"Type the validator's name ({cfg.name}) to confirm", default="", show_default=False)
        if typed != cfg.name:
            raise click.ClickException("not confirmed: nothing deleted")
    n = reset_store(cfg.data_dir)
    click.echo(f"reset {cfg.data_dir}: {n} files deleted")


def _ca_context(ca_file: str) -> Any:
    import ssl

    return ssl.create_default_context(cafile=ca_file)


def _print_tls(t: dict[str, Any] | None) -> None:
    if not t:
        return
    if not t.get("enabled"):
        click.echo(f"tls      off{'   ' + t['warning'] if t.get('warning') else ' (loopback)'}")
        return
    c = t.get("certificate") or {}
    refused = ", ".join(f"{k} {v}" for k, v in (t.get("refused") or {}).items() if v) or "none"
    click.echo(f"tls      on   certificate {c.get('subject')} sha256 {c.get('sha256')}  expires {c.get('not_after')} "
               f"({c.get('days_left')} days)  reloads {t.get('reloads')}  client certs "
               f"{'required on peer endpoints' if t.get('require_client_cert') else 'not required'}")
    failed = f"   LAST RELOAD FAILED: {t['last_error']}" if t.get("last_error") else ""
    click.echo(f"tls      refused: {refused}{failed}")


def _print_validators_in_force(url: str, verify: Any = True, key_path: str | None = None) -> None:
    """The validator set governing the next block, from the node's own ``GET /v1/config``: after a
    governance change an operator checks here which validators this node now counts votes from.
    (This trusts the node; ``rantai members`` verifies the same against the genesis.)"""
    from rantai.client.format.keys import load_key

    from .read_policy import ValidatorReadAuth

    auth = ValidatorReadAuth(load_key(key_path)) if key_path else None
    r = httpx.get(url.rstrip("/") + "/v1/config", timeout=5.0, verify=verify, auth=auth)  # a signed read
    if r.status_code in (401, 403):
        click.echo(f"config   not shown: {r.json().get('error')} (pass --key, this validator's key file)")
        return
    if r.status_code != 200:  # a node from before governance: nothing more to show
        return
    c = r.json()
    since = f"in force since height {c['since']}" if c.get("since") else "from the genesis"
    click.echo(f"config   version {c.get('version', 0)}, {since}; {len(c['validators'])} validators, "
               f"{c['governance']['needed']} admin approval(s) per change")
    for v in c["validators"]:
        click.echo(f"validator {v['name']:<8} {v['id']}  {v['url']}")


# -- the key ceremony (docs/operations.md, "A real network") --------------------------------------


def _utc_now() -> str:
    import datetime as dt

    from rantai.client.format.ceremony import utc_timestamp

    return utc_timestamp(dt.datetime.now(dt.timezone.utc))


def _create_exclusive(path: str | os.PathLike[str], text: str) -> None:
    """Write a new file; a request or genesis that exists is never overwritten (it may already be sent)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise FileExistsError(f"{p} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@cli.command("keygen")
@click.argument("key_path", metavar="KEY.pem", type=click.Path(dir_okay=False))
@click.option("--join-request", "request_path", type=click.Path(dir_okay=False), metavar="OUT.json",
              help="Also write the validator's signed join request, for the genesis coordinator.")
@click.option("--org", "organisation", help="Your organisation's name, as it should read (with --join-request).")
@click.option("--name", help="The validator's name in the genesis, e.g. kopi-v1 (with --join-request).")
@click.option("--url", help="Where the other validators and clients reach this validator (with --join-request).")
@_friendly
def keygen_cmd(key_path: str, request_path: str | None, organisation: str | None, name: str | None,
               url: str | None) -> None:
    """Create a validator key in KEY.pem (mode 0600, never overwritten) on the machine that will run it.

    The key is not encrypted: the node reads it unattended at start. With --join-request, also
    write the signed request to send to the coordinator; the private key never leaves this machine.
    """
    from rantai.client.format.ceremony import validator_request
    from rantai.client.format.keys import generate, save_key

    if request_path is None and (organisation or name or url):
        raise click.UsageError("--org, --name and --url describe a join request: add --join-request OUT.json")
    if request_path is not None:
        missing = [f"--{o}" for o, v in (("org", organisation), ("name", name), ("url", url)) if not v]
        if missing:
            raise click.UsageError(f"--join-request needs {', '.join(missing)}")
        if Path(request_path).exists():
            raise FileExistsError(f"{request_path} already exists; refusing to overwrite it")
    signer = generate()
    request = None
    if request_path is not None:  # checked before the key is written: a bad field leaves nothing behind
        request = validator_request(signer, organisation=str(organisation), name=str(name), url=str(url).rstrip("/"),
                                    created_at=_utc_now())
    save_key(signer, key_path)
    click.echo(f"wrote {key_path}")
    click.echo(f"id          {signer.id}")
    click.echo(f"public key  {signer.public_key.hex()}")
    if request is not None and request_path is not None:
        _create_exclusive(request_path, request.to_json())
        click.echo(f"wrote {request_path}: {request.describe()}")
        click.echo("send it to the genesis coordinator; keep the key on this machine")


@cli.group("genesis")
def genesis_group() -> None:
    """The genesis of a real consortium, assembled from the organisations' join requests."""


@genesis_group.command("assemble")
@click.argument("requests", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="REQ.json...")
@click.option("--chain-id", required=True, help="The chain's name: lowercase letters, digits, '.', '_', '-'.")
@click.option("--approvals", default="majority", show_default=True, metavar="majority|N",
              help="Admins whose approval a configuration change needs.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write genesis.json (new file).")
@click.option("--param", "params", multiple=True, help="Genesis parameter KEY=VALUE (repeatable).")
@click.option("--created-at", help="The genesis created_at (default: now, UTC), e.g. to re-assemble the same bytes.")
@click.option("--read-policy", type=click.Choice(["members", "public", "parties"]),
              help="Who may read what (docs/governance.md, Read policy); left out of the file: members.")
@_friendly
def genesis_assemble_cmd(requests: tuple[str, ...], chain_id: str, approvals: str, out: str,
                         params: tuple[str, ...], created_at: str | None, read_policy: str | None) -> None:
    """Coordinator: check every join request's proof and write the genesis; print its hash.

    Send the genesis file to every organisation; each checks it (rantai genesis check) and compares
    the hash printed here with the others out of band before starting anything.
    """
    from rantai.client.format.ceremony import assemble, load_request, summary

    if approvals != "majority":
        try:
            n_approvals: int | str = int(approvals)
        except ValueError:
            raise click.BadParameter(f"{approvals!r}: 'majority' or a number", param_hint="--approvals") from None
    else:
        n_approvals = approvals
    reqs = [load_request(p) for p in requests]
    genesis = assemble(chain_id, reqs, approvals=n_approvals, params=_params(params),
                       created_at=created_at or _utc_now(), read_policy=read_policy)
    _create_exclusive(out, genesis.to_json())
    click.echo(f"wrote {out} from {len(reqs)} join requests, every proof of possession checked")
    for line in summary(genesis):
        click.echo(line)
    click.echo(f"genesis hash: {genesis.hash.hex()}")


@cli.command("config")
@click.option("--genesis", "genesis_path", required=True, type=click.Path(dir_okay=False),
              help="The checked genesis.json.")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="This validator's key.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Where the node stores the chain.")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Address to listen on, e.g. 0.0.0.0:7100.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The TOML config to write (new file).")
@click.option("--verify-workers", default=2, show_default=True, help="Signature-checking threads.")
@click.option("--peer", "peers", multiple=True, metavar="ID=URL",
              help="Reach validator ID at URL instead of its genesis URL (repeatable).")
@click.option("--joining", is_flag=True,
              help="The key is not a genesis validator: it is one the consortium will add by governance "
                   "(add_validator). The node starts as an observer, follows the chain, and votes from the "
                   "height its addition is in force. Without this flag such a key is refused.")
@click.option("--name", help="This validator's name in its logs (default: its genesis name, or its key id "
                             "with --joining); use the name the add_validator proposal gives it.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option("--tls-ca", type=click.Path(dir_okay=False), help="The CA that issues the peers' certificates.")
@click.option("--require-client-cert", is_flag=True, help="Peer endpoints require a client certificate (mTLS).")
@click.option("--pin", "pins", multiple=True, metavar="SHA256", help="Pin a peer's certificate (repeatable).")
@_friendly
def config_cmd(genesis_path: str, key_path: str, data_dir: str, listen: str, out: str, verify_workers: int,
               peers: tuple[str, ...], joining: bool, name: str | None, tls_cert: str | None, tls_key: str | None,
               tls_ca: str | None, require_client_cert: bool, pins: tuple[str, ...]) -> None:
    """Write the TOML config of this machine's validator (which one: its key says) for rantai-node run.

    The key must be a validator of the genesis, unless --joining: a validator added later by
    governance, which observes until the chain makes it one.
    """
    from rantai.client.format.genesis import Genesis
    from rantai.client.format.keys import load_key

    from .bootstrap import write_node_config

    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{listen!r}: HOST:PORT expected", param_hint="--listen")
    peer_urls: dict[str, str] = {}
    for item in peers:
        pid, sep, purl = item.partition("=")
        if not sep or not purl.startswith(("http://", "https://")):
            raise click.BadParameter(f"{item!r}: ID=URL expected", param_hint="--peer")
        peer_urls[pid] = purl.rstrip("/")
    tls = None
    if tls_cert or tls_key or tls_ca or require_client_cert or pins:
        if not (tls_cert and tls_key):
            raise click.UsageError("TLS needs both --tls-cert and --tls-key")
        from .tls import TlsConfig

        tls = TlsConfig.from_obj({"cert": str(Path(tls_cert).resolve()), "key": str(Path(tls_key).resolve()),
                                  **({"ca": str(Path(tls_ca).resolve())} if tls_ca else {}),
                                  "require_client_cert": require_client_cert, "pinned_peers": list(pins)})
    genesis = Genesis.load(genesis_path)
    # A validator governance adds later is not in the genesis: any well-formed id may be overridden.
    bad = sorted(p for p in peer_urls if len(p) != 16 or not set(p) <= set("0123456789abcdef"))
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: validator ids are 16 lower-case hex digits", param_hint="--peer")
    cfg = write_node_config(out, genesis=genesis, genesis_path=genesis_path, key_path=key_path, data_dir=data_dir,
                            host=host.strip("[]"), port=int(port_text), verify_workers=verify_workers,
                            peers=peer_urls, overwrite=False, joining=joining, name=name, tls=tls)
    known = genesis.validator_by_id.get(cfg.id)
    if known is not None:
        click.echo(f"wrote {out}: validator {cfg.name} ({cfg.id}) of {genesis.chain_id}, listening on "
                   f"{cfg.host}:{cfg.port}, reached at {known.url}")
    else:
        click.echo(f"wrote {out}: joining validator {cfg.name} ({cfg.id}) of {genesis.chain_id}, listening on "
                   f"{cfg.host}:{cfg.port}; not in the genesis: it observes until an approved add_validator "
                   f"(its public key {load_key(key_path).public_key.hex()}, its proof of possession, the URL "
                   f"the others reach it at) is in force")
    click.echo(f"genesis hash: {genesis.hash.hex()}")
    click.echo(f"start it with: rantai-node run --config {out}")


def main() -> None:
    cli(prog_name="rantai-node")


if __name__ == "__main__":
    main()
