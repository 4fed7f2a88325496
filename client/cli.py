"""The ``rantai`` command: keys, submitting events, receipts, tracing items and auditing the chain.

Every command verifies what nodes say against the genesis file; an error prints one line
(``error: …``) and exits with a code that says what kind of failure it was (``EXIT_CODES``).

Other modules add commands to this group (``demo``, ``bench``, ``import``, ``export`` are
reserved here and answer "not installed" until then):

- in code: ``from rantai.client.cli import register; register(my_click_command)`` (replaces the
  placeholder of the same name), or ``cli.add_command(...)``;
- for the installed console script, which only imports this module: declare an entry point in the
  group ``rantai.cli`` (``[project.entry-points."rantai.cli"] demo = "rantai.node.demo:demo"``),
  pointing at a click command or at a function called with the group; or, while developing, list
  modules in ``RANTAI_CLI_PLUGINS`` (comma separated) whose import registers commands.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from .format.receipts import Receipt
from .format.errors import (
    DuplicateEvent,
    InvalidGenesis,
    InvalidKey,
    InvalidRecord,
    NodeError,
    RantaiError,
    VerificationError,
)

__all__ = ["EXIT_CODES", "cli", "main", "register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_NODE, EXIT_NOT_FOUND, EXIT_CONFIG = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERNAL = 70

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "verification failed: a receipt, an answer or the audited chain breaks a rule",
    EXIT_USAGE: "usage error (bad flags or arguments), or a command not installed",
    EXIT_REJECTED: "the record was refused (bad event, unknown member, role, signature …)",
    EXIT_NODE: "no node could be reached or gave a verifiable answer; or a submit timed out",
    EXIT_NOT_FOUND: "no node has that record",
    EXIT_CONFIG: "configuration, key or genesis file problem",
    EXIT_INTERNAL: "internal error (a bug: rerun with RANTAI_DEBUG=1 for the traceback)",
}


def exit_code_for(exc: BaseException) -> int:
    from .http import NotFound

    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, (ConfigError, InvalidKey, InvalidGenesis)):
        return EXIT_CONFIG
    if isinstance(exc, VerificationError):
        return EXIT_FAILED
    if isinstance(exc, InvalidRecord):
        return EXIT_REJECTED
    if isinstance(exc, NodeError):
        return EXIT_NODE
    return EXIT_FAILED


def _err(message: str) -> None:
    click.echo(f"error: {message}", err=True)


class RantaiGroup(click.Group):
    """A click group that loads plugin commands lazily and turns errors into one line and an exit code."""

    _plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="rantai.cli"):
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the other commands
                click.echo(f"warning: cannot load the `{ep.name}` command ({ep.value}): {exc}", err=True)
                continue
            self._attach(obj, ep.name)
        for mod in filter(None, (m.strip() for m in os.environ.get("RANTAI_CLI_PLUGINS", "").split(","))):
            try:
                importlib.import_module(mod)
            except Exception as exc:  # noqa: BLE001
                click.echo(f"warning: cannot load CLI plugin module {mod}: {exc}", err=True)

    def _attach(self, obj: Any, name: str | None) -> None:
        if isinstance(obj, click.Command):
            self.add_command(obj, name)
        elif callable(obj):
            obj(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_plugins()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugins()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except RantaiError as exc:
            _err(str(exc))
            ctx.exit(exit_code_for(exc))
        except ValueError as exc:  # epcis.EventInvalid is a ValueError too
            if exc.__class__.__name__ == "EventInvalid":
                _err(str(exc))
                ctx.exit(EXIT_REJECTED)
            return self._internal(ctx, exc)
        except KeyboardInterrupt:
            _err("interrupted")
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001
            return self._internal(ctx, exc)

    @staticmethod
    def _internal(ctx: click.Context, exc: BaseException) -> None:
        if os.environ.get("RANTAI_DEBUG"):
            raise exc
        _err(f"internal: {type(exc).__name__}: {exc} (RANTAI_DEBUG=1 shows the traceback)")
        ctx.exit(EXIT_INTERNAL)


@click.group(cls=RantaiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rantai", prog_name="rantai")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="CA (or a node's own certificate) to trust for "
              "https:// nodes (RANTAI_CA_FILE).")
@click.option("--pin", "pins", multiple=True, metavar="SHA256",
              help="Accept only nodes whose certificate has this SHA-256 fingerprint, repeatable (RANTAI_PINS).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Client certificate, if a node asks (RANTAI_CERT).")
@click.option("--cert-key", type=click.Path(dir_okay=False), help="Its private key (RANTAI_CERT_KEY).")
def cli(ca_file: str | None, pins: tuple[str, ...], cert: str | None, cert_key: str | None) -> None:
    """rantai: submit supply-chain (EPCIS) records to a rantai ledger and verify them without trusting any node.

    Node URLs, identity and genesis come from flags, the environment (RANTAI_NODES, RANTAI_KEY,
    RANTAI_GENESIS) or ./rantai.toml / ~/.config/rantai/config.toml; HTTPS trust from --ca-file/--pin
    (RANTAI_CA_FILE, RANTAI_PINS) or the same file.
    """
    # Flags before the command win over the environment and the file: they become the environment.
    for name, value in (("RANTAI_CA_FILE", ca_file), ("RANTAI_CERT", cert), ("RANTAI_CERT_KEY", cert_key),
                        ("RANTAI_PINS", ",".join(pins))):
        if value:
            os.environ[name] = value


def register(command: click.Command, name: str | None = None) -> click.Command:
    """Add (or replace) a subcommand of ``rantai``; returns the command, so it works as a decorator."""
    cli.add_command(command, name)
    return command


# -- shared options ---------------------------------------------------------------------------------


def _common(needs_nodes: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")(f)
        f = click.option("--genesis", "-g", type=click.Path(dir_okay=False), help="Genesis file (RANTAI_GENESIS).")(f)
        if needs_nodes:
            f = click.option("--timeout", type=float, help="Seconds per request (RANTAI_TIMEOUT).")(f)
            f = click.option("--node", "-n", "nodes", multiple=True,
                             help="Node URL, repeatable (RANTAI_NODES; default: the genesis validators).")(f)
        return f

    return deco


def _config(config_file: str | None, genesis: str | None, nodes: tuple[str, ...] = (), key: str | None = None,
            timeout: float | None = None, tz: str | None = None) -> Config:
    return load_config(nodes=nodes or None, key=key, genesis=genesis, timeout=timeout, tz=tz, config_file=config_file)


def _transport(ctx: click.Context, cfg: Config | None = None) -> Any:
    """The httpx transport every command's requests go through: a test's, else one with the configured TLS trust."""
    obj = ctx.find_root().obj
    given = obj.get("transport") if isinstance(obj, dict) else None
    if given is not None:
        return given
    tls = (cfg or load_config()).tls_context()
    if tls is None:
        return None
    import httpx

    return httpx.HTTPTransport(verify=tls)


def _client(ctx: click.Context, cfg: Config, identity: Any = None) -> Any:
    from .http import Client

    def warn(node: str, exc: RantaiError) -> None:
        click.echo(f"warning: {exc}", err=True)

    return Client(cfg.load_genesis(), cfg.nodes or None, identity, cfg.timeout, on_failure=warn,
                  transport=_transport(ctx, cfg))


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


# -- keygen -----------------------------------------------------------------------------------------


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--encrypt/--no-encrypt", default=False,
              help="Protect the key with a passphrase (asked twice, or RANTAI_PASSPHRASE).")
@click.option("--name", default="my-org", show_default=True,
              help="Member name (in the join request, or the genesis snippet printed).")
@click.option("--json", "as_json", is_flag=True, help="Print the id and public key as JSON.")
@click.option("--join-request", "request_path", type=click.Path(dir_okay=False), metavar="OUT.json",
              help="Also write a signed join request to send to the genesis coordinator (needs --org and --name).")
@click.option("--org", "organisation", help="Your organisation's name as it should read, e.g. \"Kopi Co\".")
@click.option("--roles", default="submitter", show_default=True, metavar="ROLE,...",
              help="Roles to request: submitter, auditor, admin (comma separated).")
@click.pass_context
def keygen(ctx: click.Context, path: str, encrypt: bool, name: str, as_json: bool, request_path: str | None,
           organisation: str | None, roles: str) -> None:
    """Create an Ed25519 identity in PATH (mode 0600, never overwritten); print its id and public key.

    With --join-request, also write the signed join request of the key ceremony: it proves this key
    asked for this name, organisation and roles, so the coordinator cannot enrol it otherwise.
    """
    from .format.keys import generate, public_key_hex, save_key

    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    request = None
    signer = generate()
    if request_path is not None:
        if not organisation or ctx.get_parameter_source("name") is click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--join-request needs --org and --name")
        if Path(request_path).exists():
            raise click.UsageError(f"{request_path} already exists; refusing to overwrite it")
        from .format.ceremony import member_request, utc_timestamp

        # Built (and its fields checked) before the key is written: a bad role leaves no stray key behind.
        request = member_request(signer, organisation=organisation, name=name, roles=role_list,
                                 created_at=utc_timestamp(_dt.datetime.now(_dt.timezone.utc)))
    passphrase = None
    if encrypt:
        passphrase = os.environ.get("RANTAI_PASSPHRASE") or click.prompt(
            "passphrase", hide_input=True, confirmation_prompt=True)
    save_key(signer, path, passphrase)
    entry = {"id": signer.id, "name": name, "organisation": organisation or name,
             "public_key": public_key_hex(signer), "roles": sorted(role_list)}
    if request is not None and request_path is not None:
        _write_new(request_path, request.to_json())
    if as_json:
        _dump({"path": str(path), **entry, **({"join_request": request_path} if request_path else {})})
        return
    click.echo(f"wrote {path}")
    click.echo(f"id          {signer.id}")
    click.echo(f"public key  {entry['public_key']}")
    if request is not None:
        click.echo(f"wrote {request_path}: {request.describe()}")
        click.echo("send the join request to the genesis coordinator; the key stays here")
        return
    click.echo("genesis member entry (send it to the network's admin):")
    click.echo(json.dumps(entry, ensure_ascii=False))


def _write_new(path: str, text: str) -> None:
    """Create ``path`` with ``text``; never overwrite (a file that exists may already have been sent)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        with p.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite it") from None


# -- submit -----------------------------------------------------------------------------------------


def shipment_event(epcs: list[str], *, step: str = "shipping", source: str | None = None,
                   destination: str | None = None, when: str | None = None, from_party: str | None = None,
                   to_party: str | None = None, po: str | None = None,
                   tz: _dt.tzinfo = _dt.timezone.utc, tz_given: bool = False) -> dict[str, Any]:
    """The event for ``--ship``/``--receive``: ``epcis.ship``/``epcis.receive`` with locations, parties and PO.

    The time is ``when``, else now, written in ``tz`` (UTC unless ``--tz`` or the config says otherwise).
    A ``when`` without offset is read in ``tz``; one with an offset keeps it unless a zone was given.
    """
    from .format import epcis

    at = _dt.datetime.now(tz)
    if when:
        try:
            at = _dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError as exc:
            raise click.BadParameter(f"{when!r} is not an ISO 8601 time", param_hint="--time") from exc
        if at.tzinfo is None:
            at = at.replace(tzinfo=tz)
        elif tz_given:
            at = at.astimezone(tz)
    build = epcis.ship if step == "shipping" else epcis.receive
    try:
        return build(epcs, from_party, to_party, at, source_location=source, destination_location=destination, po=po)
    except ValueError as exc:
        if isinstance(exc, RantaiError) or exc.__class__.__name__ == "EventInvalid":
            raise
        raise click.UsageError(str(exc)) from exc


def _events_from_file(path: str, cfg: Config) -> list[dict[str, Any]]:
    """The events of FILE, read as ``rantai import`` reads files (``documents.load_events``: an EPCIS document,
    a JSON list of events or one event, EPCIS XML, a CSV in the template); any bad event refuses the file."""
    from .documents import load_events

    prepared = load_events(path, tz=cfg.tzinfo())
    for p in prepared:
        if p.event is None:
            raise InvalidRecord(f"{path}: {p.error}" if p.line is not None else str(p.error))
    if not prepared:
        raise InvalidRecord(f"submit: {path}: holds no event")
    return [p.event for p in prepared if p.event is not None]


def _receipt_summary(receipt: "Receipt", genesis: Any) -> dict[str, Any]:
    member = genesis.members.get(receipt.record.submitter)
    if member is None and receipt.changes:  # joined after the genesis: its receipt proves when
        from .format.validity import replay_changes

        consortium = replay_changes(genesis, receipt.changes).at(receipt.header.height)
        member = consortium.members.get(receipt.record.submitter)
    return {"record_id": receipt.record.id.hex(), "height": receipt.header.height, "index": receipt.index,
            "block_hash": receipt.header.hash.hex(), "submitter": member.name if member else receipt.record.submitter,
            "votes": len(receipt.certificate.votes)}


@cli.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--ship", "ship", multiple=True, metavar="EPC", help="Ship these items (GS1 EPC URI), repeatable.")
@click.option("--receive", "receive", multiple=True, metavar="EPC", help="Receive these items, repeatable.")
@click.option("--from", "source", metavar="SGLN", help="Where the goods leave from (GS1 location URI).")
@click.option("--to", "destination", metavar="SGLN", help="Where the goods go to.")
@click.option("--from-party", metavar="PGLN", help="The party that ships (owning party, GS1 PGLN URI).")
@click.option("--to-party", metavar="PGLN", help="The party that receives.")
@click.option("--po", metavar="REF", help="The buyer's purchase order (URI, or a reference qualified by --to-party).")
@click.option("--time", "when", metavar="ISO8601",
              help="Event time (default: now); without an offset it is read in --tz.")
@click.option("--tz", metavar="ZONE",
              help="Time zone of the event: UTC (default), +hh:mm or an IANA name (RANTAI_TZ, `tz =`).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the commit and its receipt.")
@click.option("--wait-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the commit.")
@click.option("--receipt", "receipt_out", type=click.Path(),
              help="Write the receipt JSON here (a directory for many events).")
@click.option("--batch", type=int, default=256, show_default=True, help="Records per request.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--key", "-k", type=click.Path(dir_okay=False), help="Identity key file (RANTAI_KEY).")
@_common()
@click.pass_context
def submit(ctx: click.Context, file: str | None, ship: tuple[str, ...], receive: tuple[str, ...], source: str | None,
           destination: str | None, from_party: str | None, to_party: str | None, po: str | None,
           when: str | None, tz: str | None, wait: bool, wait_timeout: float, receipt_out: str | None,
           batch: int, as_json: bool, key: str | None, config_file: str | None, genesis: str | None,
           nodes: tuple[str, ...], timeout: float | None) -> None:
    """Sign and submit an EPCIS event (FILE: an event, a list, or an EPCIS document), or a simple shipment by flags."""
    if sum(bool(x) for x in (file, ship, receive)) != 1:
        raise click.UsageError("give exactly one of FILE, --ship EPC… or --receive EPC…")
    cfg = _config(config_file, genesis, nodes, key, timeout, tz)
    if file:
        events = _events_from_file(file, cfg)
    else:
        events = [shipment_event(list(ship or receive), step="shipping" if ship else "receiving", source=source,
                                 destination=destination, when=when, from_party=from_party, to_party=to_party, po=po,
                                 tz=cfg.tzinfo(), tz_given="tz" in cfg.sources)]
    identity = cfg.load_identity(prompt=lambda: click.prompt("key passphrase", hide_input=True, err=True))
    with _client(ctx, cfg, identity) as client:
        client.wait_timeout = wait_timeout
        if len(events) == 1:
            try:
                results: list[Any] = [client.submit(events[0], wait=wait)]
            except DuplicateEvent as exc:
                results = [exc]
        else:
            results = client.submit_many(events, batch=batch, wait=wait, raise_on_error=False)
        # As `rantai import`: an event already on the ledger is a duplicate, not a failure; its receipt is
        # the existing record's. Any other refusal is raised once the rest is reported.
        duplicates = {i: r.details.get("existing") for i, r in enumerate(results) if isinstance(r, DuplicateEvent)}
        receipts = {i: client.get(rid).receipt for i, rid in duplicates.items() if wait and isinstance(rid, str)}
        g = client.genesis
    failed = next(((i, r) for i, r in enumerate(results) if isinstance(r, RantaiError) and i not in duplicates), None)
    out: list[dict[str, Any]] = []
    for i, r in enumerate(results):
        if i in duplicates:
            o = {"status": "duplicate", "existing": duplicates[i], "event_hash_id": r.details.get("event_hash_id")}
            receipt = receipts.get(i)
        elif isinstance(r, RantaiError):
            o, receipt = {"status": "rejected", "error": r.rule, "message": str(r)}, None
        elif not wait:
            o, receipt = {"record_id": r.id.hex(), "status": "accepted"}, None
        else:
            o, receipt = {**_receipt_summary(r, g), "status": "committed"}, r
        if receipt_out and receipt is not None:
            target = Path(receipt_out)
            if len(results) > 1:
                target.mkdir(parents=True, exist_ok=True)
                target = target / f"{receipt.record.id.hex()}.json"
            target.write_text(receipt.to_json(), encoding="utf-8")
            o["receipt"] = str(target)
        out.append(o)
    if as_json:
        _dump(out if len(out) > 1 else out[0])
    else:
        for o in out:
            if o["status"] == "accepted":
                click.echo(f"accepted {o['record_id']} (not waiting for the commit; `rantai get` finds it later)")
            elif o["status"] == "duplicate":
                line = f"duplicate {o['event_hash_id']} already recorded as {o['existing']}"
                click.echo(line + (f"; receipt: {o['receipt']}" if "receipt" in o else ""))
            elif o["status"] == "committed":
                line = f"committed {o['record_id']} at height {o['height']} (certified by {o['votes']} validators)"
                click.echo(line + (f"; receipt: {o['receipt']}" if "receipt" in o else ""))
    if failed is not None:
        i, err = failed
        from .http import _prefixed

        raise _prefixed(err, f"event {i}") if len(results) > 1 else err


# -- get / trace ------------------------------------------------------------------------------------


@cli.command()
@click.argument("record_id")
@click.option("--receipt", "receipt_out", type=click.Path(dir_okay=False), help="Write the receipt JSON here.")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt file form.")
@_common()
@click.pass_context
def get(ctx: click.Context, record_id: str, receipt_out: str | None, as_json: bool, config_file: str | None,
        genesis: str | None, nodes: tuple[str, ...], timeout: float | None) -> None:
    """Fetch a record by id (64 hex digits) and verify its receipt."""
    cfg = _config(config_file, genesis, nodes, None, timeout)
    with _client(ctx, cfg) as client:
        vr = client.get(record_id)
        g = client.genesis
    if receipt_out:
        Path(receipt_out).write_text(vr.to_json(), encoding="utf-8")
    if as_json:
        click.echo(vr.to_json(), nl=False)
        return
    s = _receipt_summary(vr.receipt, g)
    click.echo(f"record     {s['record_id']}")
    click.echo(f"block      height {s['height']}, index {s['index']}, hash {s['block_hash']}")
    click.echo(f"submitter  {s['submitter']}")
    click.echo(f"verified   signature, Merkle path, {s['votes']} validator signatures (served by {vr.node})")
    click.echo(json.dumps(vr.event, indent=2, ensure_ascii=False))


@cli.command()
@click.argument("item")
@click.option("--cross-check", is_flag=True, help="Ask f+1 nodes and merge, so no single node can leave records out.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_common()
@click.pass_context
def trace(ctx: click.Context, item: str, cross_check: bool, as_json: bool, config_file: str | None,
          genesis: str | None, nodes: tuple[str, ...], timeout: float | None) -> None:
    """The journey of ITEM (a GS1 identifier) as a timeline of verified records."""
    from .trace import render, timeline, to_json

    cfg = _config(config_file, genesis, nodes, None, timeout)
    with _client(ctx, cfg) as client:
        steps = timeline(client.history(item, cross_check=cross_check), item, client.genesis)
    if as_json:
        click.echo(to_json(steps, item))
    else:
        render(steps, item, _console())


# -- verify -----------------------------------------------------------------------------------------


@cli.command()
@click.argument("receipt", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_common(needs_nodes=False)
def verify(receipt: str, as_json: bool, config_file: str | None, genesis: str | None) -> None:
    """Verify a receipt file offline, with the genesis file only."""
    from .format.receipts import Receipt
    from .http import verify_receipt

    cfg = _config(config_file, genesis)
    g = cfg.load_genesis()
    try:
        text = Path(receipt).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"verify: cannot read {receipt}: {exc.strerror}") from exc
    try:
        r = Receipt.from_json(text)
        if r.header.chain != g.hash:
            raise VerificationError(f"receipt: for chain {r.header.chain.hex()[:16]}…, not {g.chain_id} "
                                    f"({g.hash.hex()[:16]}…)", rule="wrong chain")
        verify_receipt(r, g)
    except (RantaiError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # Whatever is wrong with the file (a broken record, a wrong type where a hash should be), the
        # answer to "does this receipt verify?" is no: exit 1, naming the broken rule (validity.RULES).
        err = exc if isinstance(exc, RantaiError) else VerificationError(
            f"receipt: {receipt} does not verify: {exc}", rule="receipt shape")
        if as_json:
            _dump({"ok": False, "rule": err.rule, "message": str(err)})
        else:
            _err(f"{err.rule}: {err}")
        raise click.exceptions.Exit(EXIT_FAILED) from exc
    s = _receipt_summary(r, g)
    if as_json:
        _dump({"ok": True, **s, "chain_id": g.chain_id})
        return
    click.echo(f"ok: record {s['record_id']} is committed at height {s['height']} of {g.chain_id}, "
               f"submitted by {s['submitter']}, certified by {s['votes']} of {len(g.validators)} validators")


# -- audit ------------------------------------------------------------------------------------------


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>8} rec/s"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=_console(stderr=True), transient=False)


def _print_report(rep: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title="audit", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("source", rep.source)
    table.add_row("chain", f"{rep.chain_id} ({rep.genesis_hash[:16]}…)")
    table.add_row("heights", f"1..{rep.height} of {rep.head}")
    table.add_row("blocks / records", f"{rep.blocks} / {rep.records}")
    table.add_row("last block hash", rep.head_hash or "-")
    table.add_row("time", f"{rep.seconds:.2f} s, {rep.rate:,.0f} records/s, {rep.workers or 1} process(es)")
    table.add_row("result", "[green]OK: every rule holds[/]" if rep.ok
                  else f"[red]FAILED: {len(rep.failures)} failure(s)" + (" (stopped early)" if rep.truncated else "")
                  + "[/]")
    console.print(table)
    if rep.failures:
        ft = Table(title="failures (first first)", title_justify="left")
        for col in ("height", "record", "rule", "message"):
            ft.add_column(col, overflow="fold")
        for f in rep.failures[:20]:
            rec = "" if f.index is None else f"#{f.index} {f.record[:16] if f.record else ''}"
            ft.add_row(str(f.height), rec, f.rule, f.message)
        console.print(ft)


def _print_compare(rep: Any) -> None:
    click.echo(rep.summary())


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--node", "-n", "node", help="Audit this node (streams its blocks).")
@click.option("--compare", "compare_", is_flag=True, help="Compare SOURCES (node URLs) height by height.")
@click.option("--to", "end", type=int, help="Stop at this height (default: the source's head).")
@click.option("--workers", type=int, help="Verifier processes (default: CPU count; 0: in-process).")
@click.option("--schema", is_flag=True, help="Also validate every EPCIS event.")
@click.option("--max-failures", type=int, default=50, show_default=True, help="Stop after this many failures.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@_common(needs_nodes=False)
@click.pass_context
def audit(ctx: click.Context, sources: tuple[str, ...], node: str | None, compare_: bool,
          end: int | None, workers: int | None, schema: bool, max_failures: int, progress: bool | None, as_json: bool,
          config_file: str | None, genesis: str | None) -> None:
    """Re-verify the whole chain from height 1 (hash links, roots, certificates, signatures, duplicates).

    \b
    rantai audit --node URL            stream from a node
    rantai audit --compare A B …       check nodes agree at every common height
    A stopped node's data directory: `rantai-node audit --data-dir DIR` (same checks).
    Exit code 0 when every rule holds, 1 at the first failure or divergence.
    """
    from . import audit as audit_mod
    from .format import audit as engine

    cfg = _config(config_file, genesis)
    g = cfg.load_genesis()
    transport = _transport(ctx, cfg)
    show = (sys.stderr.isatty() and not as_json) if progress is None else progress
    if compare_:
        specs = list(sources) + ([node] if node else [])
        if len(specs) < 2:
            raise click.UsageError("--compare needs at least two node URLs")
        srcs = [audit_mod.open_source(s, transport=transport) for s in specs]
        try:
            crep = engine.compare(g, srcs, end=end)
        finally:
            for s in srcs:
                s.close()
        if as_json:
            _dump(crep.to_obj())
        else:
            _print_compare(crep)
        # A divergence is a broken chain (1); a node that could not be read is not (4).
        ctx.exit(EXIT_OK if crep.ok else EXIT_FAILED if crep.divergence is not None else EXIT_NODE)
    if sum(bool(x) for x in (sources, node)) > 1 or len(sources) > 1:
        raise click.UsageError("audit one source: --node URL or one SOURCE (use --compare for several)")
    spec = node or (sources[0] if sources else None)
    if spec is None:
        nodes = load_config(config_file=config_file).nodes or [v.url for v in g.validators]
        spec = nodes[0]
    with engine.Auditor(g, workers=workers, schema=schema, max_failures=max_failures) as auditor:
        src = audit_mod.open_source(spec, transport=transport)
        bar = _progress_bar(show)
        try:
            if bar is None:
                rep = auditor.run(src, end=end)
            else:
                with bar:
                    task = bar.add_task("auditing", total=None, rate="-")
                    start = [0.0]

                    def tick(height: int, total: int, records: int) -> None:
                        import time as _t

                        if not start[0]:
                            start[0] = _t.perf_counter()
                        elapsed = max(1e-6, _t.perf_counter() - start[0])
                        bar.update(task, completed=height, total=total, rate=f"{records / elapsed:,.0f}")

                    rep = auditor.run(src, end=end, progress=tick)
        finally:
            src.close()
    if as_json:
        _dump(rep.to_obj())
    else:
        _print_report(rep)
    ctx.exit(EXIT_OK if rep.ok else EXIT_FAILED)


# -- reserved commands, filled in by other modules -----------------------------------------------------


def _placeholder(name: str, summary: str) -> click.Command:
    @click.command(name, help=f"{summary} (not installed in this build).", add_help_option=True,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.pass_context
    def cmd(ctx: click.Context) -> None:
        _err(f"`rantai {name}` is not installed in this build (see docs/client.md, 'Adding commands')")
        ctx.exit(EXIT_USAGE)

    cmd.rantai_placeholder = True  # type: ignore[attr-defined]
    return cmd


for _name, _summary in (
    ("demo", "Start a local network and walk through a supply chain"),
    ("bench", "Measure throughput and latency of a network"),
    ("import", "Import EPCIS documents in bulk"),
    ("export", "Export records and receipts"),
):
    cli.add_command(_placeholder(_name, _summary))


@cli.command("devnet")
@click.option("--validators", default=4, show_default=True)
@click.option("--dir", "dir_", default=".rantai/devnet", show_default=True, type=click.Path(file_okay=False))
@click.option("--base-port", default=7100, show_default=True)
@click.option("--tls", is_flag=True, help="HTTPS with mTLS between validators, from a throw-away CA in DIR/tls "
              "(when the devnet is created).")
def devnet_cmd(validators: int, dir_: str, base_port: int, tls: bool) -> None:
    """Start a local network of validator processes on 127.0.0.1 (created on first use, reused after)."""
    import signal
    import time

    from .devnet import Devnet

    net = Devnet(dir_, validators=validators, base_port=base_port, tls=tls)
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
        if net.ca_file is not None:
            click.echo(f"HTTPS: trust {net.ca_file} (rantai --ca-file {net.ca_file} ..., or RANTAI_CA_FILE)")
        click.echo("press Ctrl-C to stop")
        while True:
            for i, proc in list(net.procs.items()):
                if proc.poll() is not None:
                    log_path = net.dir / "logs" / f"v{i}.log"
                    click.echo(f"v{i} exited with code {proc.returncode}; see {log_path}", err=True)
                    del net.procs[i]
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        net.stop()


# -- the key ceremony: checking the genesis one receives -------------------------------------------


@cli.group("genesis")
def genesis_group() -> None:
    """The genesis file of a consortium: check it before your organisation starts anything."""


def _expected_entry(path: str) -> Any:
    """A join request (JSON) as a ``JoinRequest``, or a key file (PEM) as its raw public key."""
    from .format.ceremony import load_request
    from .format.keys import load_key

    try:
        head = Path(path).read_bytes()[:64].lstrip()
    except OSError as exc:
        raise ConfigError(f"--expect: cannot read {path}: {exc.strerror}") from exc
    if head.startswith(b"{"):
        return load_request(path)
    passphrase = os.environ.get("RANTAI_PASSPHRASE")
    if passphrase is None and head.startswith(b"-----BEGIN ENCRYPTED"):
        passphrase = click.prompt(f"passphrase for {path}", hide_input=True, err=True)
    return load_key(path, passphrase).public_key


@genesis_group.command("check")
@click.argument("genesis_path", metavar="GENESIS.json", type=click.Path(dir_okay=False))
@click.option("--expect", "expected", multiple=True, required=True, metavar="KEY.pem|REQ.json",
              help="Your join request (name, key, roles or URL must match) or key (must be in it); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def genesis_check(ctx: click.Context, genesis_path: str, expected: tuple[str, ...], as_json: bool) -> None:
    """Check that a genesis holds your entries exactly as you requested; print its hash and a summary.

    Read the hash to the other organisations out of band (a call, not the channel the file came
    by): everyone must hold the same bytes. Exit code 1 with one line when an entry is missing or
    differs -- then do not start a node or sign anything for this genesis.
    """
    from .format.ceremony import GenesisMismatch, check_genesis, summary
    from .format.genesis import Genesis

    genesis = Genesis.load(genesis_path)
    entries = [_expected_entry(p) for p in expected]
    try:
        lines = check_genesis(genesis, entries)
    except GenesisMismatch as exc:
        _err(f"{genesis_path}: {exc}")
        ctx.exit(EXIT_FAILED)
    if as_json:
        _dump({"genesis_hash": genesis.hash.hex(), "chain_id": genesis.chain_id, "checked": lines,
               "summary": summary(genesis)})
        return
    for line in lines:
        click.echo(line)
    for line in summary(genesis):
        click.echo(line)
    click.echo(f"genesis hash: {genesis.hash.hex()}")
    click.echo("compare this hash with every other organisation before starting")


# -- governance: gov propose/approve/list/show/prove, members (client/governance_cli.py) ----------------


@cli.group("gov")
def gov() -> None:
    """Configuration changes: propose, approve and follow them (members, roles, validators, rules).

    \b
    A change is a ledger entry signed by an admin; it is approved when enough admins have signed
    (the governance rule in force), and it is in force from a later height every node computes alike.
    rantai gov prove --key NEW.pem --name cafe          the new member's proof of possession
    rantai gov propose add-member --name cafe --org "Kafe" --public-key HEX --proof HEX
    rantai gov approve 3f2a91c0                          (an id prefix is enough)
    rantai gov list --open  /  rantai gov show 3f2a91c0
    """


def _gov_opts(f: Callable[..., Any]) -> Callable[..., Any]:
    f = _common()(f)
    f = click.option("--key", "-k", type=click.Path(dir_okay=False), help="The admin's key file (RANTAI_KEY).")(f)
    f = click.option("--wait-timeout", type=float, default=30.0, show_default=True,
                     help="Seconds to wait for the commit.")(f)
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def _gov_client(ctx: click.Context, kw: dict[str, Any], signing: bool) -> Any:
    cfg = _config(kw.pop("config_file"), kw.pop("genesis"), kw.pop("nodes", ()), kw.pop("key", None),
                  kw.pop("timeout", None))
    identity = cfg.load_identity(prompt=lambda: click.prompt("key passphrase", hide_input=True, err=True)) \
        if signing else None
    return _client(ctx, cfg, identity)


def _gov_entry(ctx: click.Context, change: dict[str, Any], kw: dict[str, Any]) -> None:
    """Submit a proposal or an approval, wait, and say where the proposal stands."""
    from . import governance_cli as g

    as_json, wait_timeout = kw.pop("as_json"), kw.pop("wait_timeout")
    with _gov_client(ctx, kw, signing=True) as client:
        record, receipt = g.submit_change(client, change, wait_timeout=wait_timeout)
        pid = change["proposal"] if change["op"] == "approve" else record.id
        view, p = g.proposal_after(client, pid, receipt)
    if as_json:
        _dump({"proposal": pid.hex(), "entry": record.id.hex(), "height": receipt.height, **p,
               "status_words": view.status_words(p)})
        return
    verb = "approved" if change["op"] == "approve" else "proposed"
    click.echo(f"{verb} {pid.hex()} at height {receipt.height}: {g.describe_change(p['change'] or change)}")
    click.echo(view.status_words(p))


_NEW_KEY = (
    click.option("--public-key", help="The new key, 64 hex digits (from its holder)."),
    click.option("--key-file", type=click.Path(dir_okay=False),
                 help="The new key as a file: its holder's PEM (the proof is then made here) or its public key hex."),
    click.option("--proof", help="The new key's proof of possession (hex, from `rantai gov prove`)."),
)
_PROPOSE_FLAGS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "add-member": ("Admit a new member (its key's proof of possession is required).", (
        click.option("--name", required=True), click.option("--org", required=True, help="Organisation name."),
        click.option("--roles", default="submitter", show_default=True, help="Comma-separated roles."), *_NEW_KEY)),
    "set-roles": ("Replace a member's roles.", (click.option("--member", required=True),
                                                click.option("--roles", required=True, help="Comma-separated."))),
    "suspend-member": ("Suspend a member: its records are refused, its approvals do not count.",
                       (click.option("--member", required=True),)),
    "reinstate-member": ("Lift a member's suspension.", (click.option("--member", required=True),)),
    "remove-member": ("Remove a member for good (its past records stay valid).",
                      (click.option("--member", required=True),)),
    "rotate-key": ("Give a member a new key (the old one signs nothing more).",
                   (click.option("--member", required=True), *_NEW_KEY)),
    "add-validator": ("Add a validator.", (click.option("--name", required=True), click.option("--url", required=True),
                                           *_NEW_KEY)),
    "remove-validator": ("Remove a validator.", (click.option("--validator", required=True),)),
    "rekey-validator": ("Give a validator a new key.", (click.option("--validator", required=True), *_NEW_KEY)),
    "set-validator-url": ("Change the URL where a validator is reached.",
                          (click.option("--validator", required=True), click.option("--url", required=True))),
    "set-governance": ("Change how many admin approvals a change needs.",
                       (click.option("--approvals", required=True, metavar="N|majority"),)),
    "set-params": ("Change ledger limits (max_block_records, max_block_bytes, max_record_bytes, max_clock_skew_ms).",
                   (click.argument("params", nargs=-1, required=True, metavar="KEY=VALUE..."),)),
}


@gov.group("propose")
def gov_propose() -> None:
    """Propose a change, signed with your admin key; it counts as your approval."""


def _propose_command(op: str, summary: str, flags: tuple[Any, ...]) -> click.Command:
    @click.pass_context
    def cmd(ctx: click.Context, **kw: Any) -> None:
        from .governance_cli import build_change

        cfg = _config(kw.get("config_file"), kw.get("genesis"))
        flag_names = {p.name for f in flags for p in _params_of(f)}
        change = build_change(op, {k: kw.pop(k) for k in list(kw) if k in flag_names}, cfg.load_genesis().hash)
        _gov_entry(ctx, change, kw)

    for f in reversed(flags):
        cmd = f(cmd)
    return click.command(op, help=summary)(_gov_opts(cmd))


def _params_of(decorator: Any) -> list[click.Parameter]:
    """The click parameters one option/argument decorator adds (to tell a change's flags from the rest)."""
    def probe() -> None: ...

    decorator(probe)
    return list(getattr(probe, "__click_params__", []))


for _op, (_summary, _flags) in _PROPOSE_FLAGS.items():
    gov_propose.add_command(_propose_command(_op, _summary, _flags))


@gov.command("approve")
@click.argument("proposal")
@_gov_opts
@click.pass_context
def gov_approve(ctx: click.Context, proposal: str, **kw: Any) -> None:
    """Approve PROPOSAL (its id, or a unique prefix of 6+ hex digits), signed with your admin key."""
    from .governance_cli import GovView

    pid = proposal.lower()
    if len(pid) != 64:
        opts = {k: kw[k] for k in ("config_file", "genesis", "nodes", "timeout")}
        with _gov_client(ctx, dict(opts), signing=False) as client:
            pid = GovView.load(client).find(pid)["id"]
    try:
        raw = bytes.fromhex(pid)
    except ValueError:
        raise click.UsageError(f"{proposal!r} is not a proposal id (hex digits)") from None
    _gov_entry(ctx, {"op": "approve", "proposal": raw}, kw)


@gov.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only proposals still waiting for approvals.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_common()
@click.pass_context
def gov_list(ctx: click.Context, only_open: bool, as_json: bool, **kw: Any) -> None:
    """Proposals on the chain: what each changes, who approved, and whether it is in force."""
    from .governance_cli import GovView, describe_change

    with _gov_client(ctx, kw, signing=False) as client:
        view = GovView.load(client)
    rows = [p for p in view.proposals() if not only_open or p["approved_at"] is None]
    if as_json:
        _dump([{**p, "status_words": view.status_words(p)} for p in rows])
        return
    if not rows:
        click.echo(f"no {'open ' if only_open else ''}proposals (head {view.head})")
    for p in rows:
        click.echo(f"{p['id'][:16]}  h{p['height']:<6} {p['proposer']:<16} {describe_change(p['change'])}")
        click.echo(f"{'':18}{view.status_words(p)}")


@gov.command("show")
@click.argument("proposal")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_common()
@click.pass_context
def gov_show(ctx: click.Context, proposal: str, as_json: bool, **kw: Any) -> None:
    """One proposal: proposer, change, approvals, status, effective height, and what it still needs."""
    from .governance_cli import GovView, describe_change

    with _gov_client(ctx, kw, signing=False) as client:
        view = GovView.load(client)
        p = view.find(proposal)
        entry = client.get(p["id"])  # the proposal entry itself, verified: its signer and its change
    member = view.gov.at(entry.height).members.get(entry.record.submitter)
    if not entry.record.is_change or member is None or member.name != p["proposer"]:
        raise VerificationError(f"proposal {p['id']}: the node's report does not match the verified entry")
    if as_json:
        _dump({**p, "status_words": view.status_words(p), "needed": view.needed(p) if not p["approved_at"] else None})
        return
    click.echo(f"proposal   {p['id']}")
    click.echo(f"proposer   {p['proposer']} (entry at height {p['height']}, signature and receipt verified)")
    click.echo(f"change     {describe_change(p['change'])}")
    click.echo(json.dumps(p["change"], indent=2, ensure_ascii=False))
    source = "verified from the change entries" if p["verified"] else f"as reported by {view.node}"
    click.echo(f"approvals  {', '.join(p['approvals'])} ({source})")
    if p["approved_at"] is None:
        click.echo(f"status     open: {view.needed(p)}")
    else:
        click.echo(f"status     {view.status_words(p)}")
        click.echo(f"effective  height {p['effective']}")


@gov.command("prove")
@click.option("--key", "-k", "key_path", required=True, type=click.Path(dir_okay=False), help="The NEW key's file.")
@click.option("--name", required=True, help="The member (or validator) name this key will carry.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_common(needs_nodes=False)
def gov_prove(key_path: str, name: str, as_json: bool, config_file: str | None, genesis: str | None) -> None:
    """Print the proof of possession of a new key, for the admin who proposes it (run by the key's holder)."""
    from .format.keys import load_key
    from .governance_cli import make_proof

    g = _config(config_file, genesis).load_genesis()
    passphrase = os.environ.get("RANTAI_PASSPHRASE")
    signer = load_key(key_path, passphrase)
    proof = make_proof(signer, g.hash, name).hex()
    if as_json:
        _dump({"name": name, "public_key": signer.public_key.hex(), "proof": proof, "chain_id": g.chain_id})
        return
    click.echo(f"public key  {signer.public_key.hex()}")
    click.echo(f"proof       {proof}")
    click.echo(f"send both to an admin of {g.chain_id}; the key file stays with you. The admin runs:")
    click.echo(f"  rantai gov propose add-member --name {name} --org ORG --public-key {signer.public_key.hex()} "
               f"--proof {proof}")


@cli.command("members")
@click.option("--at", "height", type=int, help="The consortium governing this height (default: the next block).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_common()
@click.pass_context
def members_cmd(ctx: click.Context, height: int | None, as_json: bool, **kw: Any) -> None:
    """The consortium in force: members, roles, validators, governance rule, verified from the genesis.

    The client replays every configuration change from the genesis (verifying each) and compares
    the result with the node's own report; if they differ it says so and exits 1.
    """
    from .governance_cli import GovView, differences

    with _gov_client(ctx, kw, signing=False) as client:
        view = GovView.load(client, height)
        at = int(view.config["height"])
        known = client.changes_to + view.gov.delay  # a change approved later cannot govern a height up to here
        verified = view.gov.at(at).describe()
        client_changes = len(client.changes)
    diff = differences(view.config, verified)
    if as_json:
        _dump({"height": at, "head": view.head, "consortium": verified, "node": view.node, "agrees": not diff,
               "differences": diff, "verifiable": at <= known, "change_entries": client_changes})
    else:
        _print_consortium(verified, at, view.head)
        note = f"{client_changes} change entr{'y' if client_changes == 1 else 'ies'} verified from the genesis"
        if at > known:
            click.echo(f"warning: height {at} is beyond what the chain has decided (head {view.head}); "
                       "a change approved later could still govern it", err=True)
        if not diff:
            click.echo(f"verified: {note}; {view.node} agrees")
    if diff:
        _err(f"node {view.node} reports a different consortium at height {at} than the verified changes give: "
             + "; ".join(diff))
        ctx.exit(EXIT_FAILED)


def _print_consortium(c: dict[str, Any], at: int, head: int) -> None:
    since = f"in force since height {c['since']}" if c["since"] else "the genesis"
    click.echo(f"consortium of {c['chain_id']} at height {at} (head {head}): version {c['version']}, {since}")
    click.echo("members")
    for m in c["members"]:
        state = "" if m["active"] else "  SUSPENDED"
        click.echo(f"  {m['name']:<20} {m['organisation'][:30]:<30} {','.join(m['roles']):<24} {m['id']}{state}")
    n = len(c["validators"])
    click.echo(f"validators ({n}; a block needs {n - (n - 1) // 3} signatures, {(n - 1) // 3} fault(s) tolerated)")
    for v in c["validators"]:
        click.echo(f"  {v['name']:<20} {v['url']:<30} {v['id']}")
    gv = c["governance"]
    rule = "a majority" if gv["approvals"] == "majority" else str(gv["approvals"])
    click.echo(f"governance  a change needs {gv['needed']} admin approval(s) ({rule}); "
               f"admins: {', '.join(gv['admins']) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``rantai``)."""
    cli.main(args=argv, prog_name="rantai")


if __name__ == "__main__":
    main()
