"""``rantai demo``: a newcomer's first minute — a local network and one coffee shipment, verified end to end.

The journey (Indonesian coffee, from an Aceh cooperative to a café in Amsterdam) uses each of
the EPCIS event kinds an SME meets first, each recorded by a different member with its own key:
commissioning (ObjectEvent ADD), roasting (TransformationEvent), packing (AggregationEvent),
shipping and receiving (ObjectEvent with source and destination), and a retail sale. Every step
is submitted, committed by the validators, and its receipt checked offline against the genesis
file; the bag's whole journey is then traced back through the pallet and the green-coffee sacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from . import trace
from .devnet import Devnet
from .format.epcis import builders as b
from .format.receipts import Receipt
from .http import Client, VerifiedRecord

__all__ = ["MEMBERS", "run_demo"]

# (name in the genesis, organisation, what it does in the story)
MEMBERS = {
    "gayo-coop": ("Koperasi Kopi Gayo", "a farmers' cooperative in the Gayo highlands, Aceh"),
    "medan-roastery": ("PT Sangrai Medan", "a roaster in Medan"),
    "belawan-packers": ("CV Kemas Belawan", "a packing house at Belawan port"),
    "sumatra-export": ("PT Ekspor Kopi Sumatra", "the exporter"),
    "rotterdam-import": ("Koffie Import Rotterdam BV", "the importer in Rotterdam"),
    "kafe-senja": ("Kafe Senja Amsterdam", "a café in Amsterdam"),
}

WIB = timezone(timedelta(hours=7), "WIB")  # Jakarta / Medan
CET = timezone(timedelta(hours=1), "CET")  # Rotterdam / Amsterdam in winter

# GS1 company prefixes of the story's companies (made up, well-formed).
GAYO, MEDAN, BELAWAN, EXPORT, IMPORT, KAFE = "8991234", "8995678", "8990011", "8992222", "8712345", "8719876"


@dataclass(frozen=True)
class Step:
    member: str
    headline: str
    explain: str
    event: dict[str, Any]


def journey(run: str, start: datetime) -> tuple[list[Step], str, str, list[str]]:
    """The six events of one journey; ``run`` makes its serial numbers unique on a reused chain."""
    sacks = [b.sgtin(GAYO, "10001", f"{run}{i}") for i in range(1, 4)]
    bags = [b.sgtin(MEDAN, "20002", f"{run}{i}") for i in range(1, 5)]
    pallet = b.sscc(BELAWAN, f"{run}01")
    farm, roastery, packhouse = b.sgln(GAYO, "00001"), b.sgln(MEDAN, "00002"), b.sgln(BELAWAN, "00003")
    port_rtm, cafe = b.sgln(IMPORT, "00004"), b.sgln(KAFE, "00005")
    t = start
    steps = [
        Step("gayo-coop", "commissioned 3 sacks of green Gayo arabica",
             "ObjectEvent ADD · bizStep commissioning: the sacks get their GS1 serial numbers (SGTIN)",
             b.commission(sacks, farm, t, lot=f"GAYO-{run}", tz=WIB)),
        Step("medan-roastery", "roasted the 3 sacks into 4 bags of roasted beans",
             "TransformationEvent: inputs consumed, outputs created — the link from bag back to farm",
             b.transform(sacks, bags, t + timedelta(days=3), biz_location=roastery, lot=f"ROAST-{run}", tz=WIB)),
        Step("belawan-packers", "packed the 4 bags onto pallet " + pallet.rsplit(":", 1)[-1],
             "AggregationEvent ADD · bizStep packing: the bags now travel inside the pallet (SSCC)",
             b.pack(pallet, bags, t + timedelta(days=4), biz_location=packhouse, tz=WIB)),
        Step("sumatra-export", "shipped the pallet from Belawan to Rotterdam",
             "ObjectEvent OBSERVE · bizStep shipping · in_transit, with source and destination parties",
             b.ship([pallet], b.pgln(EXPORT, "00001"), b.pgln(IMPORT, "00001"), t + timedelta(days=5),
                    source_location=packhouse, destination_location=port_rtm, read_point=packhouse,
                    po=f"PO-{run}", tz=WIB)),
        Step("rotterdam-import", "received the pallet in Rotterdam",
             "ObjectEvent OBSERVE · bizStep receiving: the importer confirms arrival",
             b.receive([pallet], b.pgln(EXPORT, "00001"), b.pgln(IMPORT, "00001"), t + timedelta(days=33),
                       source_location=packhouse, destination_location=port_rtm, biz_location=port_rtm,
                       po=f"PO-{run}", tz=CET)),
        Step("kafe-senja", "sold bag 1 to a customer",
             "ObjectEvent OBSERVE · bizStep retail_selling · retail_sold",
             b.sell([bags[0]], t + timedelta(days=40), biz_location=cafe, tz=CET)),
    ]
    return steps, bags[0], pallet, sacks


def places() -> dict[str, str]:
    """Readable names of the story's locations (the ledger holds their GS1 ids)."""
    return {
        b.sgln(GAYO, "00001"): "Gayo highlands, Aceh", b.sgln(MEDAN, "00002"): "roastery, Medan",
        b.sgln(BELAWAN, "00003"): "Belawan port", b.sgln(IMPORT, "00004"): "Rotterdam port",
        b.sgln(KAFE, "00005"): "café, Amsterdam",
    }


def journey_table(timeline: list[trace.Step], names: dict[str, str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("#", "date", "what happened", "where", "recorded by", "block"):
        table.add_column(col, overflow="fold", no_wrap=col in ("#", "date", "block"))
    for i, s in enumerate(timeline, 1):
        where = s.where[3:] if s.where.startswith("to ") else s.where
        table.add_row(str(i), s.when[:10], _plain(s.event), names.get(where, where),
                      s.who.split(" (", 1)[-1].rstrip(")"), str(s.height))
    return table


def _plain(event: dict[str, Any]) -> str:
    """What an event says, in words for someone who never heard of EPCIS."""
    step = str(event.get("bizStep", "")).rsplit(":", 1)[-1]
    etype = event.get("type")
    if etype == "TransformationEvent":
        return f"{len(event.get('inputEPCList', []))} sacks roasted into {len(event.get('outputEPCList', []))} bags"
    if etype == "AggregationEvent":
        return f"{len(event.get('childEPCs', []))} bags packed onto a pallet"
    n = len(event.get("epcList", []))
    things = "pallet" if n == 1 and "sscc" in str(event.get("epcList")) else ("bag" if n == 1 else f"{n} items")
    return {"commissioning": f"{n} sacks labelled (commissioned)", "shipping": f"{things} shipped",
            "receiving": f"{things} received", "retail_selling": f"{things} sold"}.get(step, step or str(etype))


def lineage(client: Client, item: str, parents: list[str], inputs: list[str]) -> list[VerifiedRecord]:
    """The item's verified history, plus its pallet's and its ingredients', in chain order, once each."""
    seen: dict[bytes, VerifiedRecord] = {}
    for ident in [item, *parents, *inputs]:
        for r in client.history(ident):
            seen.setdefault(r.id, r)
    return sorted(seen.values(), key=lambda r: (r.height, r.index))


def _rantai_command() -> str:
    """How the reader can call ``rantai`` from here: the virtualenv's script unless it is on PATH."""
    import shutil
    import sys

    script = Path(sys.executable).with_name("rantai")
    on_path = shutil.which("rantai")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "rantai"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def run_demo(
    dir: str | Path = ".rantai/demo",
    *,
    base_port: int = 7200,
    keep: bool = False,
    console: Console | None = None,
    devnet_factory: Callable[..., Devnet] = Devnet,
) -> dict[str, Any]:
    console = console or Console()
    dir = Path(dir)
    net = devnet_factory(dir, validators=4, base_port=base_port,
                         members=tuple(f"{name}={org}" for name, (org, _) in MEMBERS.items()))
    created = net.init()
    genesis = net.genesis
    missing = [m for m in MEMBERS if genesis.member_by_name(m) is None]
    if missing:
        raise SystemExit(f"error: {dir} holds another network (members {missing} missing); remove it or pass another --dir")
    console.print(Panel.fit(
        "[bold]rantai[/] — a shared, tamper-evident logbook for supply chains.\n"
        "Four [bold]validators[/] (think: four independent companies' servers) keep identical copies. A record counts only\n"
        "once 3 of the 4 have signed off on the block holding it, so no single operator can rewrite or hide history.\n"
        "Each step below is a [bold]GS1 EPCIS[/] event — the global standard for 'what happened to which item, when, where,\n"
        "why' — signed by the business that recorded it, then checked with nothing but the network's genesis file.",
        title="welcome"))
    verb = "created" if created else "reusing"
    console.print(f"[dim]{verb} a 4-validator network in {dir}/ (genesis {net.genesis_path})[/]")
    net.start()
    results: dict[str, Any] = {"steps": []}
    try:
        net.wait_ready(timeout=60)
        urls = net.urls
        console.print(f"[dim]validators: {', '.join(urls)}[/]\n")
        run = time.strftime("%H%M%S")
        steps, bag, pallet, sacks = journey(run, datetime.now(WIB).replace(microsecond=0) - timedelta(days=40))
        receipts_dir = dir / "receipts"
        receipts_dir.mkdir(parents=True, exist_ok=True)
        for n, step in enumerate(steps, 1):
            org, role = MEMBERS[step.member]
            with Client(genesis, urls, identity=net.member_key(step.member)) as client:
                t0 = time.perf_counter()
                receipt = client.submit(step.event, wait=True)
                ms = (time.perf_counter() - t0) * 1000
            assert isinstance(receipt, Receipt)
            path = receipts_dir / f"{run}-{n}-{step.member}.json"
            path.write_text(receipt.to_json(genesis.hash), encoding="utf-8")
            Receipt.from_json(path.read_text(encoding="utf-8")).verify(genesis)  # offline, genesis only
            votes = len(receipt.certificate.votes)
            console.print(f"[green]✓[/] [bold]{n}. {org}[/] ({role}) {step.headline}")
            console.print(f"   [dim]{step.explain}[/]")
            console.print(f"   [dim]committed in block {receipt.height} in {ms:.0f} ms, signed by {votes} of "
                          f"{len(genesis.validators)} validators; receipt verified offline: {path}[/]")
            results["steps"].append({"member": step.member, "height": receipt.height,
                                     "record_id": receipt.record_id.hex(), "receipt": str(path)})
        with Client(genesis, urls) as client:
            records = lineage(client, bag, [pallet], sacks)
        console.print()
        console.print(f"[bold]The journey of bag {bag}[/]")
        console.print("[dim]read back from the validators; every line verified against the genesis file "
                      "(signature, Merkle proof, 3-of-4 validator certificate)[/]")
        console.print(journey_table(trace.timeline(records, bag, genesis), places()))
        results.update(bag=bag, pallet=pallet, traced=len(records))
        g = net.genesis_path
        rantai = _rantai_command()
        up = "" if keep else f"\n(trace, audit and the API docs need the network up: `{rantai} demo --keep`)"
        console.print(Panel.fit(
            f"{rantai} trace '{bag}' --genesis {g} --node {urls[0]}\n"
            f"{rantai} verify {results['steps'][-1]['receipt']} --genesis {g}   [dim]# offline[/]\n"
            f"{rantai} audit --genesis {g} --node {urls[0]}\n"
            f"API docs in a browser: {urls[0]}/docs" + up,
            title="explore further"))
    finally:
        if not keep:
            net.stop()
            console.print("[dim]validators stopped; the chain stays in " + str(dir) + "/ for the next run[/]")
        else:
            console.print(f"[dim]validators still running (pids {', '.join(str(p.pid) for p in net.procs.values())}); "
                          f"stop them with: kill {' '.join(str(p.pid) for p in net.procs.values())}[/]")
    return results


import click  # noqa: E402  (kept beside the command it serves)


@click.command("demo")
@click.option("--dir", "dir_", default=".rantai/demo", show_default=True, help="where the demo network lives (reused)")
@click.option("--base-port", default=7200, show_default=True, help="validator i listens on 127.0.0.1:base-port+i")
@click.option("--keep", is_flag=True, help="leave the validators running afterwards")
def demo_command(dir_: str, base_port: int, keep: bool) -> None:
    """Start a local 4-validator network, record a coffee shipment's journey, and verify it."""
    run_demo(dir_, base_port=base_port, keep=keep)
